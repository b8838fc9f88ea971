"""Whole onboarding plays on the time-skipping test server, checked at the SMTP sink and in PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import launch_onboarding
from tests.workflows.play_driver import ET, PlayDriver, skip_to_next_monday
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import MoveGoLive

# Day 1 is a Monday: Fridays are days 5, 12, 19 and 26; go-live (day 25) is a Friday.
ON_TIME_EMAILS = [
    ("email/welcome", 1),
    ("email/kickoff_summary", 3),
    ("email/weekly_status/", 5),
    ("email/weekly_status/", 12),
    ("email/weekly_status/", 19),
    ("email/go_live_health_check/1", 25),
    ("email/go_live_health_check/2", 26),  # same 09:00 as the weekly status: ordered by step name
    ("email/weekly_status/", 26),
    ("email/go_live_health_check/3", 27),
    ("email/go_live_health_check/4", 28),
    ("email/go_live_health_check/5", 29),
    ("email/go_live_health_check/6", 30),
    ("email/go_live_health_check/7", 31),
    ("email/thirty_day_checkin", 55),
]


def sent_steps(sink, start) -> list[tuple[str, int]]:
    out = []
    for m in sink.messages:
        day = None
        if m.step.startswith("email/weekly_status/"):
            from datetime import date

            day = (date.fromisoformat(m.step.rsplit("/", 1)[1]) - start.date()).days + 1
            out.append(("email/weekly_status/", day))
        else:
            out.append((m.step, None))
    return out


async def test_whole_30_day_play_sends_exactly_the_planned_emails(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    result = await PlayDriver(env, pool, handle).run()

    steps = [m.step for m in sink.messages]
    assert len(steps) == len(set(steps)), f"duplicate e-mails: {steps}"
    weekly = [s for s in steps if s.startswith("email/weekly_status/")]
    from datetime import date

    assert [(date.fromisoformat(s.rsplit("/", 1)[1]) - start.date()).days + 1 for s in weekly] == [5, 12, 19, 26]
    assert [s.rsplit("/", 1)[0] + "/" if s.startswith("email/weekly_status/") else s for s in steps] == [
        s for s, _ in ON_TIME_EMAILS
    ]
    welcome = sink.messages[0]
    assert "Welcome to TAI Autonomic Systems, Acme Logistics" in welcome.subject
    assert set(welcome.rcpt_to) >= {"dana.reyes@acme.example", "lee.park@acme.example", "casey.morgan@tai.example"}
    assert result.slip_days == 0 and result.escalations == [] and result.failed_steps == {}

    tasks = await pool.fetch("SELECT step, status FROM tasks WHERE workflow_id = $1", handle.id)
    assert len(tasks) == 20 and {t["status"] for t in tasks} == {"completed"}
    comms = await pool.fetch("SELECT status FROM communications WHERE workflow_id = $1", handle.id)
    assert len(comms) == len(ON_TIME_EMAILS) and {c["status"] for c in comms} == {"sent"}
