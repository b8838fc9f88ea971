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
from playbooks.profiles import profile_of
from workflows.churn import MonthlyRiskSummary
from workflows.churn_messages import CHURN, SummaryInput
from workflows.nps import NpsCycle
from workflows.nps_messages import NPS, CycleInput
from workflows.sla_messages import SLA, SLA_REPORT, SlaReportInput
from workflows.sla_report import MonthlySlaReport

RISK_SUMMARY = "monthly-risk-summary"
NPS_CYCLE = "quarterly-nps-survey"


def risk_summary_schedule(settings: Settings) -> Schedule:
    """Seed 001 section 13.4: last month's churn-risk summary, on the 1st at 08:00 New York time."""
    playbook = load_named(CHURN, profile=profile_of(settings))
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


def nps_cycle_schedule(settings: Settings) -> Schedule:
    """Seed 001 section 14: after each quarter's month end (Jan 31, Apr 30, Jul 31, Oct 31), the survey
    goes out on the Monday 9 AM ET that follows: the first Monday of February, May, August, November."""
    playbook = load_named(NPS, profile=profile_of(settings))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            NpsCycle.run, CycleInput(playbook=playbook, launched_by="schedule"), id="nps-cycle-scheduled",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(
                month=[ScheduleRange(2), ScheduleRange(5), ScheduleRange(8), ScheduleRange(11)],
                day_of_month=[ScheduleRange(1, 7)], day_of_week=[ScheduleRange(1)],
                hour=[ScheduleRange(9)], minute=[ScheduleRange(0)], second=[ScheduleRange(0)],
            )],
            time_zone_name=playbook.content.timezone,
        ),
    )


def sla_report_schedule(settings: Settings) -> Schedule:
    """Seed 001 section 8.1: the monthly SLA report "on 2nd of month for prior month", at 08:00 in the
    SLA playbook's time zone, to the people its `report.to` names."""
    playbook = load_named(SLA, profile=profile_of(settings))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            MonthlySlaReport.run, SlaReportInput(playbook=playbook), id=SLA_REPORT, task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(day_of_month=[ScheduleRange(2)], hour=[ScheduleRange(8)],
                                            minute=[ScheduleRange(0)], second=[ScheduleRange(0)])],
            time_zone_name=playbook.content.timezone,
        ),
    )


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create the product's schedules that do not exist yet; the ids created."""
    created = []
    for schedule_id, build in ((RISK_SUMMARY, risk_summary_schedule), (NPS_CYCLE, nps_cycle_schedule),
                               (SLA_REPORT, sla_report_schedule)):
        try:
            await client.create_schedule(schedule_id, build(settings))
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:
            pass
    return created
