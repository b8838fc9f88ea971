"""The preview's stand-ins for the worker's activities: same names and signatures (checked at
start against worker.activities_for), recording what each would do, touching nothing. The real
working-day calendars are computed, so a preview shows weekends, public holidays and DST as
plays meet them. Used by starter/preview.py."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from email.utils import formataddr
from typing import Callable
from zoneinfo import ZoneInfo

from temporalio import activity

from activities.common import not_retryable
from activities.delivery import DeliveryOutcome, GiveUpRequest
from activities.email import resolve_roles
from activities.sla import CENT, monthly_fee
from core.holiday_calendars import work_calendar
from core.models import (
    Account, CalendarPlace, CalendarsRequest, CompleteTaskRequest, CsatFeedRequest, CsatSurveyRequest, CreateTaskRequest, CreateTasksRequest,
    DeferredInvitationsRequest, EmailResult, EmailTemplate, EscalateRequest, EscalationResult, Person, PlayCalendars,
    PlayContext, PlayContextRequest, PlayEventRequest, PlayEventsRequest, PlayRef,
    RenewalOutcomeRequest,
    RescheduleTasksRequest, RespondentEmailRequest, RiskPointsRequest, RiskRecord, RiskSummaryRequest,
    SendEmailRequest, ServiceCreditRequest, SlaReportRequest, StaffMember, SurveyBatchRequest, SurveyBatchResult,
    TaskRef, TicketRecord,
)
from core.settings import Settings
from playbooks.rendering import RenderError, email_context, render_email
from worker import activities_for
from workflows.inbound_messages import InboundOutcome


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

    @activity.defn(name="load_play_context")
    async def load_play_context(self, req: PlayContextRequest) -> PlayContext:
        account = await self.load_account(req.account_id)
        calendars = None
        if req.calendars:
            calendars = await self.load_calendars(CalendarsRequest(
                account=CalendarPlace(tz=account.timezone, country=account.country, region=account.region),
                staff=req.staff, start=req.start, years=req.years))
        return PlayContext(account=account, calendars=calendars)

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

    @activity.defn(name="create_tasks")
    async def create_tasks(self, req: CreateTasksRequest) -> list[TaskRef]:
        return [await self.create_task(CreateTaskRequest(play=req.play, **t.model_dump())) for t in req.tasks]

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

    @activity.defn(name="send_sla_report")
    async def send_monthly_report(self, req: SlaReportRequest) -> dict:
        self.record("email", "report", f"monthly SLA report {req.month:%Y-%m} to {', '.join(req.to)}")
        return {"month": f"{req.month:%Y-%m}", "tickets": 0, "already_sent": False}

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

    @activity.defn(name="send_csat_survey")
    async def send_csat_survey(self, req: CsatSurveyRequest) -> EmailResult:
        key = req.play.key(req.step)
        if key not in self._done:
            links = [(n, f"https://survey.preview.invalid/csat/preview?score={n}") for n in range(1, 6)]
            subject = self._render(req.step, req.template, [req.to], [],
                                   {**req.data, "links": links, "expires_at": req.expires_at})
            self.record("email", req.step, f"{subject!r} to the requester ({req.to.name}); one-click scores 1-5, "
                                           f"open until {self._local(req.expires_at)}")
            n = next(self._ids)
            self._done[key] = EmailResult(communication_id=n, message_id=f"<preview-{n}@preview.invalid>",
                                          to=[str(req.to.email)], already_sent=False)
        return self._done[key]

    @activity.defn(name="feed_account_csat")
    async def feed_account_csat(self, req: CsatFeedRequest) -> float | None:
        return None

    @activity.defn(name="record_play_event")
    async def record_play_event(self, req: PlayEventRequest) -> None:
        return None  # news for chat, CRM and webhooks: a preview tells nobody

    @activity.defn(name="record_play_events")
    async def record_play_events(self, req: PlayEventsRequest) -> None:
        return None

    @activity.defn(name="deliver")
    async def deliver(self, delivery_id: int) -> DeliveryOutcome:
        return DeliveryOutcome(delivery_id=delivery_id, status="delivered", detail="preview: nothing sent")

    @activity.defn(name="give_up_delivery")
    async def give_up_delivery(self, req: GiveUpRequest) -> None:
        return None
