#!/usr/bin/env bash
# Run the whole test suite (see README). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/scripts/bootstrap.sh"
source scripts/chromium.sh
exec .venv/bin/python -m pytest "$@"
