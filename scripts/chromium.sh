# Sourced by test.sh and .ci/run: the browser tests drive the system's Chromium
# (Debian package `chromium`); Playwright's own browser download is never used.
CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
export CHROMIUM_PATH
if [ ! -x "$CHROMIUM_PATH" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing Chromium from the system packages for the browser tests ..."
    mkdir -p .venv
    if ! { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } \
        > .venv/apt-chromium.log 2>&1; then
      tail -20 .venv/apt-chromium.log >&2
      echo "error: installing Chromium failed (full log: .venv/apt-chromium.log)" >&2
      exit 1
    fi
  else
    echo "error: the browser tests need Chromium: run 'sudo apt-get install chromium', or set CHROMIUM_PATH" >&2
    exit 1
  fi
fi
