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
import itertools
import logging
import sysconfig
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.utils import formataddr
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.common import not_retryable
from activities.email import resolve_roles
from activities.sla import CENT, monthly_fee
from core.holiday_calendars import work_calendar
from core.models import (
    Account, CalendarPlace, CalendarsRequest, CompleteTaskRequest, CreateTaskRequest, DeferredInvitationsRequest, EmailResult,
    EmailTemplate, EscalateRequest, EscalationResult, Person, PlayCalendars, PlayRef, RenewalOutcomeRequest,
    RescheduleTasksRequest, RespondentEmailRequest, RiskPointsRequest, RiskRecord, RiskSummaryRequest,
    SendEmailRequest, ServiceCreditRequest, StaffMember, SurveyBatchRequest, SurveyBatchResult, TaskRef,
    TicketRecord,
)
from core.settings import Settings
from playbooks.loader import load_named
from playbooks.rendering import RenderError, email_context, render_email
from playbooks.samples import SAMPLE_ACCOUNT, SAMPLE_STAFF
from playbooks.schema import PRIORITIES, PlaybookSnapshot
from starter.steering import public_holidays
from worker import WORKFLOWS, activities_for, workflow_runner
from workflows.calendar import day_number, local_date
from workflows.inbound_messages import InboundOutcome
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


@dataclass
class PreviewEntry:
    at: datetime  # UTC, workflow time when the activity was scheduled
    # email, task, task_completed, task_cancelled, reschedule, escalation, risk, credit, outcome,
    # ticket; "team" for what the driver assumed people did; "failed" for a step that would fail
    kind: str
    step: str
    summary: str
    day: int | None = None  # onboarding: play day; renewal: days from the renewal date; SLA: None


def activity_name(fn: Callable) -> str:
    # The SDK keeps the name on the callable; there is no public getter.
    return activity._Definition.must_from_callable(fn).name


def check_mirrors(recording: list[Callable], real: list[Callable]) -> None:
    """Refuse to preview with a recorder that no longer matches the worker: a new
    or changed activity would otherwise make the preview fail or lie quietly."""
    mine = {activity_name(fn): activity._Definition.must_from_callable(fn) for fn in recording}
    theirs = {activity_name(fn): activity._Definition.must_from_callable(fn) for fn in real}
    problems = [f"the worker runs {n!r}, the preview does not record it" for n in sorted(theirs.keys() - mine.keys())]
    problems += [f"the preview records {n!r}, the worker has no such activity"
                 for n in sorted(mine.keys() - theirs.keys())]
    for name in sorted(mine.keys() & theirs.keys()):
        a, b = mine[name], theirs[name]
        if (a.arg_types, a.ret_type) != (b.arg_types, b.ret_type):
            problems.append(f"{name!r} takes {a.arg_types} -> {a.ret_type} in the preview, "
                            f"{b.arg_types} -> {b.ret_type} in the worker")
    if problems:
        raise RuntimeError("starter/preview.py is out of step with worker.activities_for: " + "; ".join(problems))


def real_activities() -> list[Callable]:
    # The real activity classes only keep their pool and settings when built; nothing connects.
    return activities_for(None, Settings(_env_file=None))


class RecordingActivities:
    """The worker's activities, as a diary: same names and arguments, no side effects."""

    def __init__(self, account: Account, staff: dict[str, StaffMember], tz: str):
        self.account, self.staff, self.tz = account, staff, ZoneInfo(tz)
        self.entries: list[PreviewEntry] = []
        self.tasks: dict[str, TaskRef] = {}  # by idempotency key, like the tasks table
        self.day_of: Callable[[datetime], int | None] = lambda at: None
        self._ids = itertools.count(1)
        self._done: dict[str, object] = {}  # idempotency key -> result: a retried activity records once
        self._ticket_status: str | None = None

    def activities(self) -> list[Callable]:
        mine = [getattr(self, n) for n in dir(type(self)) if activity._Definition.from_callable(getattr(self, n))]
        check_mirrors(mine, real_activities())
        return mine

    def record(self, kind: str, step: str, summary: str, at: datetime | None = None) -> None:
        at = at or activity.info().current_attempt_scheduled_time
        self.entries.append(PreviewEntry(at=at, kind=kind, step=step, summary=summary, day=self.day_of(at)))

    def _local(self, moment: datetime) -> str:
        return f"{moment.astimezone(self.tz):%Y-%m-%d %H:%M}"

    def _render(self, step: str, template: EmailTemplate, to: list[Person], cc: list[Person], data: dict) -> str:
        # The same refusals as Mailer.deliver, so the play records the same failed steps.
        if not to:
            self.record("failed", step, "nobody to send to")
            raise not_retryable(f"step {step!r} has nobody to send to", "NoRecipient")
        try:
            subject, _, _ = render_email(template, email_context(self.account, self.staff, step, data, to[0]))
        except RenderError as exc:
            self.record("failed", step, f"template {exc}")
            raise not_retryable(f"template {exc}", "TemplateError") from None
        return subject

    # -- the activities: names and signatures of worker.activities_for --------------
    @activity.defn(name="load_account")
    async def load_account(self, account_id: str) -> Account:
        if account_id != self.account.id:
            raise not_retryable(f"unknown account {account_id!r}", "AccountNotFound")
        return self.account

    @activity.defn(name="record_renewal_outcome")
    async def record_renewal_outcome(self, req: RenewalOutcomeRequest) -> None:
        new_date = f", next renewal {req.new_renewal_date.isoformat()}" if req.new_renewal_date else ""
        self.record("outcome", "outcome", f"account {req.outcome}{new_date}")

    @activity.defn(name="load_calendars")
    async def load_calendars(self, req: CalendarsRequest) -> PlayCalendars:
        # The real calendars: the preview must show weekends, public holidays and DST as plays meet them.
        return PlayCalendars(account=work_calendar(req.account, req.start, req.years),
                             staff=work_calendar(req.staff, req.start, req.years))

    @activity.defn(name="send_templated_email")
    async def send_templated_email(self, req: SendEmailRequest) -> EmailResult:
        key = req.play.key(req.step)
        if key not in self._done:
            to = [*req.people, *resolve_roles(req.to, self.account, self.staff)]
            cc = resolve_roles(req.cc, self.account, self.staff)
            subject = self._render(req.step, req.template, to, cc, req.data)
            who = [*(["the respondent"] if req.people else []), *req.to]
            roles = f"to {', '.join(who)}" + (f"; cc {', '.join(req.cc)}" if req.cc else "")
            notes = []
            if req.planned_at is not None:
                notes.append(f"held from {self._local(req.planned_at)} for the send window "
                             f"({req.template.window.describe() if req.template.window else 'none'}, "
                             f"{self.account.timezone})")
            if req.meeting is not None:
                notes.append(f"invitation for {req.meeting.start.astimezone(ZoneInfo(req.meeting.tz)):%a %Y-%m-%d %H:%M} "
                             f"{req.meeting.tz}")
            self.record("email", req.step, f"{subject!r} {roles}" + "".join(f" [{n}]" for n in notes))
            n = next(self._ids)
            self._done[key] = EmailResult(communication_id=n, message_id=f"<preview-{n}@preview.invalid>",
                                          to=[formataddr((p.name, str(p.email))) for p in to], already_sent=False)
        return self._done[key]

    @activity.defn(name="create_task")
    async def create_task(self, req: CreateTaskRequest) -> TaskRef:
        key = req.play.key(req.step)
        if key not in self.tasks:
            owner_email = req.owner_email
            if owner_email is None and req.owner_role is not None:
                owners = resolve_roles([req.owner_role], self.account, self.staff)
                owner_email = str(owners[0].email) if owners else None
            self.tasks[key] = TaskRef(
                task_id=next(self._ids), step=req.step, title=req.title, owner_role=req.owner_role,
                owner_email=owner_email, due_at=req.due_at, priority=req.priority, milestone=req.milestone,
            )
            owner = req.owner_role or owner_email or "nobody"
            self.record("task", req.step, f"{req.title} (owner {owner}, {req.priority}, due {self._local(req.due_at)})")
        return self.tasks[key]

    @activity.defn(name="complete_task")
    async def complete_task(self, req: CompleteTaskRequest) -> TaskRef:
        key = req.play.key(req.step)
        ref = self.tasks.get(key)
        if ref is None:
            raise not_retryable(f"the play has no task for step {req.step!r}", "TaskNotFound")
        if ref.status != "completed":
            at = activity.info().current_attempt_scheduled_time
            self.tasks[key] = ref = ref.model_copy(update={"status": "completed", "completed_at": at})
            self.record("task_completed", req.step, f"{ref.title} (closed: {req.completed_by})")
        return ref

    @activity.defn(name="reschedule_tasks")
    async def reschedule_tasks(self, req: RescheduleTasksRequest) -> int:
        moved = []
        for step, due in req.due_dates.items():
            ref = self.tasks.get(req.play.key(step))
            if ref is not None and ref.status != "completed":
                self.tasks[req.play.key(step)] = ref.model_copy(update={"due_at": due})
                moved.append(f"{step} to {self._local(due)}")
        if moved:
            self.record("reschedule", "reschedule", "; ".join(moved))
        return len(moved)

    @activity.defn(name="cancel_open_tasks")
    async def cancel_open_tasks(self, play: PlayRef) -> list[TaskRef]:
        at = activity.info().current_attempt_scheduled_time
        cancelled = []
        for key, ref in self.tasks.items():
            if key.startswith(play.key("")) and ref.status not in ("completed", "cancelled"):
                self.tasks[key] = ref = ref.model_copy(update={"status": "cancelled", "completed_at": at})
                self.record("task_cancelled", ref.step, f"{ref.title} (play cancelled)")
                cancelled.append(ref)
        return cancelled

    @activity.defn(name="escalate")
    async def escalate(self, req: EscalateRequest) -> EscalationResult:
        key = req.play.key(req.step)
        if key not in self._done:
            target = resolve_roles([req.to_role], self.account, self.staff)[0]
            data = {"escalation": {
                "level": req.level, "to": target.model_dump(mode="python"), "from_role": req.from_role,
                "reason": req.reason, "report": req.report.model_dump(mode="python"),
            }}
            self.record("escalation", req.step, f"L{req.level} to {req.to_role}: {req.reason}")
            # The real activity e-mails the report as a step of its own: so does the timeline.
            subject = self._render(f"{req.step}/email", req.template, [target], [self.account.csm], data)
            self.record("email", f"{req.step}/email", f"{subject!r} to {req.to_role}; cc csm")
            self._done[key] = EscalationResult(escalation_id=next(self._ids), to_email=str(target.email),
                                               level=req.level)
        return self._done[key]

    @activity.defn(name="record_risk_points")
    async def record_risk_points(self, req: RiskPointsRequest) -> int:
        key = req.play.key(req.step)
        if key not in self._done:
            self.record("risk", req.step, f"{req.indicator} +{req.points} ({req.reason})")
            self._done[key] = next(self._ids)
        return self._done[key]

    @activity.defn(name="record_ticket")
    async def record_ticket(self, t: TicketRecord) -> None:
        # The play writes the row after every step; only a new status is news.
        if t.status != self._ticket_status:
            self._ticket_status = t.status
            self.record("ticket", "ticket", f"{t.ticket_id} {t.priority} {t.status}")

    @activity.defn(name="record_service_credit")
    async def record_service_credit(self, req: ServiceCreditRequest) -> Decimal:
        key = req.play.key(req.step)
        if key not in self._done:
            amount = (monthly_fee(self.account.arr) * Decimal(str(req.percent)) / 100).quantize(CENT, ROUND_HALF_UP)
            self.record("credit", req.step,
                        f"{req.clock}: {req.percent:g}% of the monthly fee = ${amount} ({req.reason})")
            self._done[key] = amount
        return self._done[key]

    @activity.defn(name="record_risk")
    async def record_risk(self, rec: RiskRecord) -> None:
        for c in rec.changes:
            self.record("band", f"band-change/{c.from_band}-{c.to_band}", f"{c.from_band} -> {c.to_band} "
                        f"(risk {c.score})", at=c.at)

    @activity.defn(name="send_risk_summary")
    async def send_risk_summary(self, req: RiskSummaryRequest) -> dict:
        self.record("email", "summary", f"monthly risk summary {req.month:%Y-%m} to {', '.join(req.to)}")
        return {"month": f"{req.month:%Y-%m}"}

    @activity.defn(name="send_survey_batch")
    async def send_survey_batch(self, req: SurveyBatchRequest) -> SurveyBatchResult:
        contacts = [c for c in self.account.contacts if req.only_email in (None, str(c.email))]
        for c in contacts:
            self.record("email", f"{req.kind}/{req.cycle_id}/{c.email}", f"NPS {req.kind} to {c.name}")
        return SurveyBatchResult(sent=len(contacts), already=0, last=None, done=True)

    @activity.defn(name="send_deferred_invitations")
    async def send_deferred_invitations(self, req: DeferredInvitationsRequest) -> SurveyBatchResult:
        return SurveyBatchResult(sent=0, already=0, last=None, done=True)

    @activity.defn(name="apply_inbound_mail")
    async def apply_inbound_mail(self, inbound_id: int) -> InboundOutcome:
        return InboundOutcome(kind="none", outcome="a preview receives no mail")

    @activity.defn(name="resend_after_soft_bounce")
    async def resend_after_soft_bounce(self, inbound_id: int) -> InboundOutcome:
        return InboundOutcome(kind="none", outcome="a preview receives no mail")

    @activity.defn(name="close_nonresponses")
    async def close_nonresponses(self, cycle_id: str) -> int:
        self.record("survey", f"close/{cycle_id}", "non-responses closed")
        return 0

    @activity.defn(name="email_respondent")
    async def email_respondent(self, req: RespondentEmailRequest) -> EmailResult:
        subject = self._render(req.step, req.template, [req.to], [self.account.csm], req.data)
        self.record("email", req.step, f"{subject!r} to the respondent; cc csm")
        return EmailResult(communication_id=next(self._ids), message_id="<preview>", to=[str(req.to.email)],
                           already_sent=False)

    @activity.defn(name="feed_account_nps")
    async def feed_account_nps(self, play: PlayRef) -> int | None:
        return None


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


async def _renewal(env, task_queue, rec: RecordingActivities, account, snapshot, start, renewal_days_out, **_) -> None:
    renewal = start.date() + timedelta(days=renewal_days_out)
    rec.day_of = lambda at: (local_date(at, snapshot.content.timezone) - renewal).days
    handle = await env.client.start_workflow(
        RenewalCountdown.run,
        RenewalInput(account_id=account.id, renewal_date=renewal, tier=account.tier, playbook=snapshot,
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


async def _sla(env, task_queue, rec: RecordingActivities, account, snapshot, start, ticket_priority, **_) -> None:
    content = snapshot.content
    handle = await env.client.start_workflow(
        SlaClock.run,
        SlaInput(ticket_id=PREVIEW_TICKET, account_id=account.id, tier=account.tier, priority=ticket_priority,
                 subject="Preview ticket", opened_at=start, playbook=snapshot,
                 holidays=public_holidays(content.holidays, start.date(), content.holidays_region),
                 launched_by=PREVIEW_BY,
                 search_attributes=False),
        id=sla_workflow_id(PREVIEW_TICKET), task_queue=task_queue,
    )
    # Nobody answers until the resolution clock reaches twice its target (by the play's own
    # business-time clock), so the whole ladder and the credits show; then it is resolved.
    target = content.tiers[account.tier].targets[ticket_priority].resolution.duration(content.business_day_hours)
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
) -> list[PreviewEntry]:
    """Run `playbook` for the sample (or given) account on a time-skipping server; the timeline, sorted.
    The play starts next Monday at 10:00 in the playbook's (our team's) time zone, or at 10:00 on
    `start`: a DST week or a holiday season shows what the account's calendar does to the plan."""
    if playbook not in DRIVERS:
        raise ValueError(f"unknown playbook {playbook!r}: one of {', '.join(DRIVERS)}")
    if ticket_priority not in PRIORITIES:
        raise ValueError(f"priority {ticket_priority!r} must be one of {', '.join(PRIORITIES)}")
    if renewal_days_out < 0:
        raise ValueError("renewal_days_out must not be negative")
    hide_preview_logs()
    account = account or SAMPLE_ACCOUNT
    snapshot: PlaybookSnapshot = load_named(playbook, playbooks_dir)
    recorder = RecordingActivities(account, SAMPLE_STAFF, snapshot.content.timezone)
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
                                    renewal_days_out=renewal_days_out, ticket_priority=ticket_priority)
    finally:
        await env.shutdown()
    return sorted(recorder.entries, key=lambda e: (e.at, e.step))


def format_timeline(entries: list[PreviewEntry], tz: str = "America/New_York") -> list[str]:
    zone = ZoneInfo(tz)
    return [f"{e.at.astimezone(zone):%a %Y-%m-%d %H:%M}  {e.kind:<14} {e.step}  {e.summary}" for e in entries]

