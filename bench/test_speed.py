"""Test speed: wall time of the whole-play time-skipping tests, and of the whole suite.

The promise is that a 30-day onboarding and a 210-day renewal countdown run
end to end in a test in about a second each. This runs those two tests
(through pytest, with their real PostgreSQL, SMTP sink and time-skipping
Temporal server) --repeat times and prints each one's call time as pytest
measures it (setup, i.e. the database and server, shown apart); with --suite
it also times the whole `./test.sh -q`.

    .venv/bin/python bench/test_speed.py [--repeat 3] [--suite]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHOLE_PLAYS = {
    "30-day onboarding": "tests/workflows/onboarding_test.py::test_whole_30_day_play_sends_exactly_the_planned_emails",
    "210-day renewal": "tests/workflows/renewal_test.py::"
                       "test_whole_210_day_countdown_sends_exactly_the_planned_emails_and_tasks",
}


def durations(output: str) -> dict[tuple[str, str], float]:
    """pytest --durations lines: (phase, test id) -> seconds."""
    found = {}
    for m in re.finditer(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)", output, re.MULTILINE):
        found[(m.group(2), m.group(3))] = float(m.group(1))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--suite", action="store_true", help="also time the whole ./test.sh -q")
    args = parser.parse_args()
    calls: dict[str, list[float]] = {name: [] for name in WHOLE_PLAYS}
    setups: dict[str, list[float]] = {name: [] for name in WHOLE_PLAYS}
    for n in range(args.repeat):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
                               "--durations-min=0", *WHOLE_PLAYS.values()], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-2000:])
            return 1
        found = durations(done.stdout)
        for name, test in WHOLE_PLAYS.items():
            calls[name].append(found[("call", test)])
            setups[name].append(found.get(("setup", test), 0.0))
        print(f"run {n + 1}: " + ", ".join(f"{name} {calls[name][-1]:.2f} s" for name in WHOLE_PLAYS), flush=True)
    for name in WHOLE_PLAYS:
        print(f"  {name:<18} call median {statistics.median(calls[name]):.2f} s "
              f"(min {min(calls[name]):.2f}, max {max(calls[name]):.2f}); setup median "
              f"{statistics.median(setups[name]):.2f} s (database + test server)")
    if args.suite:
        began = time.monotonic()
        done = subprocess.run(["bash", "./test.sh", "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                              text=True)
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
        print(f"  whole suite        {time.monotonic() - began:.0f} s: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
