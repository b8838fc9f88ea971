"""Playbooks for tests that run in real time (a dev server, ./run.sh's stack): a play launched
whenever the suite runs, night or weekend, must act at once, as the tests expect. The copy plans on
calendar days, keeps dates on days off and opens every send window round the clock: what a
playbook may say (README "Customer e-mail"). Its working day starts at 00:00 (`work_start_hour: 0`),
so a step due "day 1 at work start" fires at launch even before 09:00 (CI ran once at 00:20 New York
time and every console play waited for 09:00). Time-skipping tests use the shipped playbooks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from playbooks.loader import PLAYBOOKS_DIR

ALWAYS = ('send_window: {days: [monday, tuesday, wednesday, thursday, friday, saturday, sunday], '
          'opens: "00:00", closes: "24:00", on_holidays: true}')


def round_the_clock(root: Path) -> Path:
    """A copy of the shipped playbooks under `root`, open round the clock; its path."""
    dest = root / "playbooks-round-the-clock"
    if dest.exists():  # made before for this test
        return dest
    shutil.copytree(PLAYBOOKS_DIR, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return open_round_the_clock(dest)


def open_round_the_clock(folder: Path) -> Path:
    """Make a copy of the playbooks (`folder`) open round the clock, in place; its path."""
    for name in ("onboarding.yaml", "renewal.yaml", "nps.yaml"):
        path = folder / name
        text, n = re.subn(r"(?m)^send_window:.*$", ALWAYS + "\ndates_on_days_off: keep", path.read_text())
        if n == 0 and ALWAYS in text:
            continue  # opened before
        assert n == 1, name
        text = text.replace("day_unit: business_days", "day_unit: calendar_days")
        text, n = re.subn(r"(?m)^work_start_hour: \d+$", "work_start_hour: 0", text)
        assert n == 1, name
        path.write_text(text)
    return folder
