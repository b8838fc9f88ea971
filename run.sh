#!/usr/bin/env bash
# Set up and run the whole product on embedded defaults (see README).
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
exec .venv/bin/python -m starter.devstack
