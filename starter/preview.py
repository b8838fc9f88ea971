"""Preview a playbook: the whole timeline of one play, in a second, sending nothing.

A CS manager editing a playbook wants to see what it will do to a customer
before launching it: which e-mail goes out when (with its real subject),
which tasks land on whose desk, when the escalations and risk marks come.

The preview stays faithful by running the REAL workflow classes (the ones
the worker runs) on a Temporal time-skipping test server: every date, step
and ordering comes from the same code as a real play. Only the activities
are replaced, by recording ones with the same names and signatures: they
render each e-mail against the sample (or given) account and staff and
write the entry down, but never touch PostgreSQL or SMTP. A driver then
plays a CS team that does everything on time, through the same signals
the CLI sends.
"""

from __future__ import annotations

import asyncio
import logging
import sysconfig
import uuid
from datetime import date, datetime, time, timedelta
from functools import lru_cache, partial
from pathlib import Path
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.holiday_calendars import work_calendar
from core.models import Account, CalendarPlace, TaskRef
from playbooks.loader import load_named
from playbooks.profiles import Profile, cached_profile
from playbooks.samples import SAMPLE_ACCOUNT, sample_staff
from playbooks.schema import PlaybookSnapshot
from starter.preview_recorder import (  # noqa: F401 (part of this module's interface)
    PreviewEntry, RecordingActivities, activity_name, check_mirrors, real_activities,
)
from worker import WORKFLOWS, workflow_runner
from workflows.calendar import day_number, local_date
from workflows.messages import TaskCompleted
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import ONBOARDING, OnboardingInput, onboarding_workflow_id
from workflows.renewal import RenewalCountdown
from workflows.renewal_messages import RENEWAL, RenewalInput, Renewed, renewal_workflow_id
from workflows.sla import SlaClock
from workflows.sla_messages import SLA, Resolved, SlaInput, sla_workflow_id

TEST_SERVER = Path(sysconfig.get_path("scripts")) / "temporal-test-server"
PREVIEW_BY = "preview"
PREVIEW_TICKET = "PREVIEW-1"
TICK = timedelta(hours=12)  # the CS team looks at its task list twice a day
MAX_STEPS = 1_000  # a driver that loops longer than this has met a play it does not understand


# -- drivers: a CS team that does everything on time ---------------------------------
async def _start_monday_morning(env: WorkflowEnvironment, tz: ZoneInfo, start: date | None = None) -> datetime:
    """Plays start on a Monday 10:00, so days and weekdays match the tests' expectations;
    or at 10:00 on `start` (a DST week, a holiday season)."""
    now = await env.get_current_time()
    local = now.astimezone(tz)
    if start is None:
        days = (7 - local.weekday()) % 7 or 7
        target = datetime.combine(local.date() + timedelta(days=days), time(10), tzinfo=tz)
    else:
        target = datetime.combine(start, time(10), tzinfo=tz)
        if target <= now:
            raise ValueError(f"start {start.isoformat()} is not in the future")
    await env.sleep(target - now)
    return target


def account_calendar(account: Account, start: datetime):
    return work_calendar(CalendarPlace(tz=account.timezone, country=account.country, region=account.region),
                         start.date() - timedelta(days=1), years=3)


async def _sleep_until(env: WorkflowEnvironment, moment: datetime) -> None:
    now = await env.get_current_time()
    if moment > now:
        await env.sleep(moment - now)


async def _look(env: WorkflowEnvironment, handle: WorkflowHandle, query) -> tuple[object | None, datetime]:
    """The play's status (None once it has ended) and the time. A failed play ends the
    preview with its error: its query would still answer, from the state it failed in."""
    described, status, now = await asyncio.gather(handle.describe(), handle.query(query), env.get_current_time())
    if described.status != WorkflowExecutionStatus.RUNNING:
        await handle.result()
        return None, now
    return status, now


def _completable(task: TaskRef, at: datetime, tz: str) -> bool:
    """What play_driver.PlayDriver completes at a tick: a task due that day, or earlier."""
    return local_date(at, tz) >= local_date(task.due_at, tz) and at + TICK >= task.due_at


async def _onboarding(env, task_queue, rec: RecordingActivities, account, snapshot, start, **_) -> None:
    content = snapshot.content
    if content.day_unit == "business_days":  # the plan's own day numbers: the account's working days
        cal = account_calendar(account, start)
        day1 = cal.roll_forward(cal.local_date(start))
        rec.day_of = lambda at: 1 + cal.working_days_after(day1, cal.local_date(at))
    else:
        rec.day_of = lambda at: day_number(start.date(), at, content.timezone)
    handle = await env.client.start_workflow(
        OnboardingPlan.run,
        OnboardingInput(account_id=account.id, playbook=snapshot, launched_by=PREVIEW_BY, search_attributes=False),
        id=onboarding_workflow_id(account.id), task_queue=task_queue,
    )
    milestones = {t.milestone for t in content.tasks if t.milestone}
    for _ in range(MAX_STEPS):
        st, now = await _look(env, handle, OnboardingPlan.status)
        if st is None:
            return
        # With every milestone done in the last phase, only timed e-mails are left: the
        # server skips to them by itself (the status cannot say "nothing more for people").
        if st.finished or (not st.open_tasks and st.phase == content.phases[-1].key
                           and milestones <= set(st.milestones_done)):
            await handle.result()
            return
        due = partial(_completable, tz=content.timezone)
        waiting = []
        for task in st.open_tasks:
            if not due(task, now):
                waiting.append(task)
                continue
            rec.record("team", task.step, f"the team completes {task.title!r}", at=now)
            await handle.signal(OnboardingPlan.task_completed,
                                TaskCompleted(task_id=task.task_id, step=task.step, completed_by=PREVIEW_BY))
        # Skip the ticks at which the team would find nothing due and the play would not act,
        # keeping the twice-a-day rhythm: tasks are completed at the same moments as tick by tick.
        # Not after a completion: the play may have acted on it, and the status is stale.
        ticks = 1
        while (len(waiting) == len(st.open_tasks) and st.next_action_at is not None
               and now + ticks * TICK < st.next_action_at
               and not any(due(task, now + ticks * TICK) for task in waiting)):
            ticks += 1
        await env.sleep(TICK * ticks)
    raise RuntimeError(f"the onboarding preview did not finish in {MAX_STEPS} steps")


async def _renewal(env, task_queue, rec: RecordingActivities, account, snapshot, start, renewal_days_out,
                   profile: Profile, **_) -> None:
    renewal = start.date() + timedelta(days=renewal_days_out)
    rec.day_of = lambda at: (local_date(at, snapshot.content.timezone) - renewal).days
    handle = await env.client.start_workflow(
        RenewalCountdown.run,
        RenewalInput(account_id=account.id, renewal_date=renewal, playbook=snapshot,
                     tier=account.crm_tier or profile.tier_for(account.arr, account.arr_currency, account.usd_rate),
                     launched_by=PREVIEW_BY, search_attributes=False),
        id=renewal_workflow_id(account.id), task_queue=task_queue,
    )
    # The customer signs ten days ahead of the date, as in the renewal tests.
    await _sleep_until(env, datetime.combine(renewal - timedelta(days=10), time(12), tzinfo=rec.tz))
    st, now = await _look(env, handle, RenewalCountdown.status)
    if st is None:
        raise RuntimeError("the renewal countdown ended before the customer signed")
    rec.record("team", "renewed", "the customer signs the renewal", at=now)
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by=PREVIEW_BY))
    await handle.result()


async def _sla(env, task_queue, rec: RecordingActivities, account, snapshot, start, ticket_priority,
               profile: Profile, **_) -> None:
    content = snapshot.content
    tier = account.crm_tier or profile.tier_for(account.arr, account.arr_currency, account.usd_rate)
    calendar = profile.support_calendar(tier, start)
    handle = await env.client.start_workflow(
        SlaClock.run,
        SlaInput(ticket_id=PREVIEW_TICKET, account_id=account.id, tier=tier, priority=ticket_priority,
                 subject="Preview ticket", opened_at=start, playbook=snapshot, calendar=calendar,
                 launched_by=PREVIEW_BY, search_attributes=False),
        id=sla_workflow_id(PREVIEW_TICKET), task_queue=task_queue,
    )
    # Nobody answers until the resolution clock reaches twice its target (by the play's own
    # business-time clock), so the whole ladder and the credits show; then it is resolved.
    target = content.tiers[tier].targets[ticket_priority].resolution.duration(calendar.business_day_hours)
    for _ in range(MAX_STEPS):
        st, now = await _look(env, handle, SlaClock.status)
        if st is None:
            raise RuntimeError("the ticket's play ended before it was resolved")
        clock = next(c for c in st.clocks if c.clock == "resolution")
        if clock.elapsed_minutes >= 2 * target.total_seconds() // 60 or st.next_action_at is None:
            break
        # A minute past the step, so the play has acted when we look again.
        await env.sleep(max(st.next_action_at + timedelta(minutes=1) - now, timedelta(minutes=1)))
    else:
        raise RuntimeError(f"the SLA preview did not reach twice the resolution target in {MAX_STEPS} steps")
    rec.record("team", "resolved", "support resolves the ticket", at=now)
    await handle.signal(SlaClock.resolved, Resolved(by=PREVIEW_BY))
    await handle.result()


DRIVERS = {ONBOARDING: _onboarding, RENEWAL: _renewal, SLA: _sla}


class _HidePreviewRuns(logging.Filter):
    """A preview's plays log like real ones; in a long-running process (the console) those
    lines would read as real plays acting, so they are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None) or {}
        return not str(info.get("task_queue", "")).startswith("preview-")


@lru_cache(maxsize=1)
def hide_preview_logs() -> None:
    for name in ("temporalio.workflow", "temporalio.activity"):
        logging.getLogger(name).addFilter(_HidePreviewRuns())


@lru_cache(maxsize=1)
def quiet_runtime() -> Runtime:
    """A Temporal runtime that logs only errors: the test server's capability warnings are noise
    in a CS manager's terminal. One per process (a runtime owns threads)."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


async def preview(
    playbook: str,
    account: Account | None = None,
    *,
    renewal_days_out: int = 180,
    ticket_priority: str = "P1",
    playbooks_dir: Path | None = None,
    start: date | None = None,
    profile: str | None = None,
) -> list[PreviewEntry]:
    """Run `playbook` for the sample (or given) account on a time-skipping server; the timeline, sorted.
    The play starts next Monday at 10:00 in the playbook's (our team's) time zone, or at 10:00 on
    `start`: a DST week or a holiday season shows what the account's calendar does to the plan.
    `profile`: the organisation profile whose playbook and calendars run (default: PROFILE)."""
    if playbook not in DRIVERS:
        raise ValueError(f"unknown playbook {playbook!r}: one of {', '.join(DRIVERS)}")
    from core.settings import get_settings

    org = cached_profile(profile or get_settings().profile, playbooks_dir or get_settings().playbooks_dir)
    if ticket_priority not in org.priority_keys:
        raise ValueError(f"priority {ticket_priority!r} must be one of {', '.join(org.priority_keys)}")
    if renewal_days_out < 0:
        raise ValueError("renewal_days_out must not be negative")
    hide_preview_logs()
    account = account or SAMPLE_ACCOUNT
    snapshot: PlaybookSnapshot = load_named(playbook, profile=org)
    recorder = RecordingActivities(account, sample_staff(org.content), snapshot.content.timezone)
    activities = recorder.activities()
    task_queue = f"preview-{uuid.uuid4()}"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER), runtime=quiet_runtime()
    )
    try:
        # A bug in a play fails the preview at once: a real worker would retry the workflow
        # task until a fix is deployed, which here would only look like a hang.
        async with Worker(env.client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities,
                          workflow_runner=workflow_runner(), workflow_failure_exception_types=[Exception]):
            started = await _start_monday_morning(env, recorder.tz, start)
            await DRIVERS[playbook](env, task_queue, recorder, account, snapshot, started,
                                    renewal_days_out=renewal_days_out, ticket_priority=ticket_priority,
                                    profile=org)
    finally:
        await env.shutdown()
    return sorted(recorder.entries, key=lambda e: (e.at, e.step))


def format_timeline(entries: list[PreviewEntry], tz: str = "America/New_York") -> list[str]:
    zone = ZoneInfo(tz)
    return [f"{e.at.astimezone(zone):%a %Y-%m-%d %H:%M}  {e.kind:<14} {e.step}  {e.summary}" for e in entries]

