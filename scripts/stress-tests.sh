#!/usr/bin/env bash
# Run the whole test suite N times in a row (default 5) while a CPU load keeps every core busy,
# and print each run's summary line and wall time. `--idle` runs without the load. Extra
# arguments after `--` go to pytest. CI runs the suite once (./test.sh); this is for checking
# that no test depends on an idle machine.
#
#   scripts/stress-tests.sh            # 5 runs under load
#   scripts/stress-tests.sh 3 --idle   # 3 runs on an idle machine
#   scripts/stress-tests.sh 2 -- -x tests/console
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5 load=1 pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --idle) load=0 ;;
    --) shift; pytest_args=("$@"); break ;;
    [0-9]*) runs=$1 ;;
    *) echo "usage: scripts/stress-tests.sh [N] [--idle] [-- pytest args]" >&2; exit 2 ;;
  esac
  shift
done
source scripts/bootstrap.sh
source scripts/chromium.sh

cores=$(nproc)
loader="" run_pid=""
# Each run and the load get their own process group, so an interrupted script leaves no
# PostgreSQL, Temporal server or busy loop behind.
stop_all() {
  [ -n "$run_pid" ] && kill -- -"$run_pid" 2>/dev/null
  [ -n "$loader" ] && kill -- -"$loader" 2>/dev/null
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM
if [ "$load" = 1 ]; then
  if ! command -v stress-ng >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing stress-ng for the CPU load ..."
    apt-get install -y stress-ng >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y stress-ng >/dev/null 2>&1; } || true
  fi
  if command -v stress-ng >/dev/null 2>&1; then
    setsid stress-ng --cpu "$cores" --quiet &
  else
    # Plain busy loops, one per core, when stress-ng cannot be installed.
    setsid bash -c 'for _ in $(seq "$1"); do ( while :; do :; done ) & done; wait' _ "$cores" &
  fi
  loader=$!
  echo "CPU load on all $cores cores (pid $loader)"
fi

logs=$(mktemp -d)
failed=0
for i in $(seq "$runs"); do
  start=$(date +%s)
  setsid .venv/bin/python -m pytest -q -p no:cacheprovider "${pytest_args[@]}" > "$logs/run-$i.log" 2>&1 &
  run_pid=$!
  if wait "$run_pid"; then rc=0; else rc=$?; failed=$((failed + 1)); fi
  run_pid=""
  wall=$(( $(date +%s) - start ))
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|(passed|failed|error).* in [0-9.]+s' "$logs/run-$i.log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
  printf 'run %d/%d (%s): %s  [wall %dm%02ds, exit %d]\n' "$i" "$runs" "$([ "$load" = 1 ] && echo loaded || echo idle)" \
    "${summary:-no summary line}" $((wall / 60)) $((wall % 60)) "$rc"
  if [ "$rc" != 0 ]; then grep -E '^(FAILED|ERROR) ' "$logs/run-$i.log" | sed 's/^/    /' || true; fi
done
echo "logs: $logs"
exit $(( failed > 0 ))
