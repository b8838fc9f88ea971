"""Temporal Schedules the product keeps: created on start, left alone if present.

A Schedule, not a cron in a script: it lives in Temporal, shows in the UI,
survives restarts, and can be paused or triggered by hand there.
"""

from __future__ import annotations

from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError, ScheduleCalendarSpec, ScheduleRange,
    ScheduleSpec,
)

from core.settings import Settings
from playbooks.loader import load_named
from workflows.churn import MonthlyRiskSummary
from workflows.churn_messages import CHURN, SummaryInput

RISK_SUMMARY = "monthly-risk-summary"


def risk_summary_schedule(settings: Settings) -> Schedule:
    """Seed 001 section 13.4: last month's churn-risk summary, on the 1st at 08:00 New York time."""
    playbook = load_named(CHURN, settings.playbooks_dir)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            MonthlyRiskSummary.run, SummaryInput(playbook=playbook), id=RISK_SUMMARY, task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(day_of_month=[ScheduleRange(1)], hour=[ScheduleRange(8)],
                                            minute=[ScheduleRange(0)], second=[ScheduleRange(0)])],
            time_zone_name=playbook.content.timezone,
        ),
    )


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create the product's schedules that do not exist yet; the ids created."""
    created = []
    try:
        await client.create_schedule(RISK_SUMMARY, risk_summary_schedule(settings))
        created.append(RISK_SUMMARY)
    except ScheduleAlreadyRunningError:
        pass
    return created
