"""Models that cross a boundary: the database, activities, the HTTP API.

Workflow-specific messages (inputs, signals, updates, queries) live beside
their workflow; these are the shared nouns of customer success.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, ValidationInfo, field_validator

from core.mail_models import (  # noqa: F401 (re-exported: the shared nouns of e-mail and working days)
    CalendarPlace, CalendarsRequest, Meeting, MeetingSpec, PlayCalendars, RecipientOutcome, RecipientStatus,
    SendOutcome,
)
from core.working_time import SendWindow

# The urgency of one of our own tasks (the tasks table): the product's scale, the same for every
# organisation. A ticket's priority is the organisation's (`Priority` below).
TaskPriority = Literal["P0", "P1", "P2", "P3"]
TaskStatus = Literal["not-started", "in-progress", "blocked", "completed", "cancelled"]
AccountStatus = Literal["prospect", "onboarding", "active", "at-risk", "churned"]

# Tiers and ticket priorities are the active organisation profile's (playbooks/profiles/<name>/
# profile.yaml): code never names one. Their form is checked everywhere; that the profile has
# them is checked where a validation context carries the profile (`{"profile": ProfileContent}`:
# the playbook loader) and at the boundaries that take one from outside (launches, CRM mappings).
# A workflow reading its own input has no context: what was valid at launch stays valid.
PRIORITY_KEY = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$"
TIER_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$"


def context_profile(info: ValidationInfo | None):
    """The organisation profile (playbooks/profile_schema.ProfileContent) a value is validated in,
    or None when validated without one (a workflow reading its own input)."""
    context = info.context if info is not None else None
    return context.get("profile") if isinstance(context, dict) else None


def _profile_tier(value: str, info: ValidationInfo) -> str:
    profile = context_profile(info)
    if profile is not None and value not in profile.tier_names:
        raise ValueError(f"{value!r} is not a tier of profile {profile.name} ({', '.join(profile.tier_names)})")
    return value


def _profile_priority(value: str, info: ValidationInfo) -> str:
    profile = context_profile(info)
    if profile is not None and value not in profile.priority_keys:
        raise ValueError(f"{value!r} is not a priority of profile {profile.name} ({', '.join(profile.priority_keys)})")
    return value


def _mapped_priority(value: str, info: ValidationInfo) -> str:
    """A CRM mapping's help-desk priority: the profile's, unless the profile maps help-desk labels
    itself (profile.yaml `ticket_priorities`), which then replaces the mapping's."""
    profile = context_profile(info)
    if profile is not None and getattr(profile, "ticket_priorities", None) is None:
        return _profile_priority(value, info)
    return value


Tier = Annotated[str, Field(pattern=TIER_NAME), AfterValidator(_profile_tier)]
Priority = Annotated[str, Field(pattern=PRIORITY_KEY), AfterValidator(_profile_priority)]
MappedPriority = Annotated[str, Field(pattern=PRIORITY_KEY), AfterValidator(_mapped_priority)]
# The severity of an escalation: a ticket's priority, or the task scale for other plays' escalations.
Severity = Annotated[str, Field(pattern=PRIORITY_KEY)]

# Who a step can address. Account roles come from the account row; staff roles from the `staff`
# table. A staff role is one the active profile declares (profile.yaml `staff_roles`) or one of the
# product's own (the escalation ladder of seed 001 section 9), which every profile's default content
# files name. Like tiers, a role is checked against the profile where a validation context carries
# one; the SLA ladders and rules (`ProfileRole`) must name an account role or one the profile declares.
ROLE_KEY = r"^[a-z][a-z0-9_]{0,62}$"
ACCOUNT_ROLES: tuple[str, ...] = ("csm", "sponsor", "contacts")
STAFF_ROLES: tuple[str, ...] = ("support_team", "cs_manager", "vp_customer_success", "vp_engineering", "vp_product",
                                "ceo")
AccountRole = Literal["csm", "sponsor", "contacts"]


def _known_roles(profile, product: bool) -> tuple[str, ...]:
    declared = tuple(profile.staff_roles)
    return ACCOUNT_ROLES + declared + tuple(r for r in STAFF_ROLES if product and r not in declared)


def _role_check(value: str, info: ValidationInfo, product: bool, staff: bool) -> str:
    profile = context_profile(info)
    if profile is None:
        return value
    known = _known_roles(profile, product)
    if staff:
        known = tuple(r for r in known if r not in ACCOUNT_ROLES)
    if value not in known:
        raise ValueError(f"{value!r} is not a role of profile {profile.name} ({', '.join(known)}); "
                         f"declare it in its profile.yaml staff_roles")
    return value


Role = Annotated[str, Field(pattern=ROLE_KEY), AfterValidator(lambda v, i: _role_check(v, i, True, False))]
StaffRole = Annotated[str, Field(pattern=ROLE_KEY), AfterValidator(lambda v, i: _role_check(v, i, True, True))]
# A role an SLA ladder or rule names: an account role, or a staff role the profile declares.
ProfileRole = Annotated[str, Field(pattern=ROLE_KEY), AfterValidator(lambda v, i: _role_check(v, i, False, False))]


def tier_for_arr(arr: Decimal) -> str:
    """The active profile's tier of an ARR in US dollars (currency units, not cents): its tier
    ranges, by ARR or MRR in its currency (playbooks/profiles.py; seed 001 section 8 for the
    default profile: Enterprise > $100K, Mid-Market $25K-$100K, Starter < $25K). Not for
    workflow code: it reads the profile's file (a play gets its tier in its input)."""
    from playbooks.profiles import active_profile

    return active_profile().tier_for_usd(arr)


def tier_of(row) -> str:
    """The tier of an account row (a mapping with `arr`, and `usd_rate` and `crm_tier` when selected):
    the CRM's stated tier, else the active profile's tier ranges on the ARR in US dollars."""
    if row.get("crm_tier"):
        return row["crm_tier"]
    rate = Decimal(row.get("usd_rate") or 1)
    if row.get("arr_currency"):
        from playbooks.profiles import active_profile

        return active_profile().tier_for(Decimal(row["arr"]), row["arr_currency"], rate)
    return tier_for_arr(Decimal(row["arr"]) * rate)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Person(Model):
    name: str
    email: EmailStr


class Contact(Person):
    role: str = "user"


ACCOUNT_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Account(Model):
    """A customer account as plays see it.

    `arr` is in `arr_currency` units (not cents); `usd_rate` is the US dollars per unit taken
    when the account was last written, so the tier (seed 001 section 8, in USD) is computed
    the same way on every replay. `crm_tier` is a tier the CRM states outright (mapping
    configuration), which wins over the ARR. `timezone` is an IANA name, `country` ISO 3166-1
    alpha-2 and `region` its ISO 3166-2 subdivision; `language` a BCP 47 tag such as `fr`.
    `contacts` holds only people with an e-mail address: the ones a play can write to.
    """

    id: str = Field(pattern=ACCOUNT_ID)
    name: str = Field(min_length=1, max_length=200)
    status: AccountStatus = "onboarding"
    health: int = Field(70, ge=0, le=100)
    arr: Decimal = Field(Decimal(0), ge=0)
    arr_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    usd_rate: Decimal = Field(Decimal(1), gt=0)
    crm_tier: Tier | None = None
    renewal_date: date | None = None
    vertical: str | None = None
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    region: str | None = Field(None, pattern=r"^[A-Z0-9]{1,3}$")
    timezone: str = "America/New_York"
    language: str = Field("en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    csm: Person
    sponsor: Person
    contacts: list[Contact] = []

    @property
    def arr_usd(self) -> Decimal:
        """The ARR in US dollars at the rate of the last write."""
        return self.arr * self.usd_rate

    @property
    def tier(self) -> str:
        """The CRM's tier, else the active profile's for the ARR (outside workflows only)."""
        if self.crm_tier:
            return self.crm_tier
        from playbooks.profiles import active_profile

        return active_profile().tier_for(self.arr, self.arr_currency, self.usd_rate)


class StaffMember(Person):
    role: StaffRole


class TaskRef(Model):
    """What a play knows about a task it created."""

    task_id: int
    step: str
    title: str
    owner_role: str | None = None
    owner_email: str | None = None
    due_at: datetime
    priority: TaskPriority
    status: TaskStatus = "not-started"
    milestone: str | None = None
    completed_at: datetime | None = None


class PlayRef(Model):
    """Identifies the play instance that writes a row: the idempotency scope.

    `play_id` is the first run id of the workflow chain, stable across
    retries, worker restarts and continue-as-new, but new when the same
    playbook is launched again for the account later.
    """

    workflow_id: str
    play_id: str
    account_id: str

    def key(self, step: str) -> str:
        return f"{self.workflow_id}/{self.play_id}/{step}"


class PlayEventRequest(Model):
    """A play's own news for chat, CRM write-back and outbound webhooks (activities/play_events.py):
    it started (`play.started`, first run only), did a step (`play.step_done`, `outcome` done or
    failed: why) or ended (`play.finished`, `outcome` the final phase: completed, renewed,
    churned, closed, done, cancelled). `phase` is the play's current phase (its Phase search
    attribute); `at` is workflow time (UTC)."""

    play: PlayRef
    event: Literal["play.started", "play.step_done", "play.finished"]
    playbook: str
    at: datetime
    step: str | None = None
    phase: str | None = None
    outcome: str | None = None


class PlayEventsRequest(Model):
    """Several play events at once (`record_play_events`: one activity, one transaction), in order."""

    events: list[PlayEventRequest]


class PlayContextRequest(Model):
    """What a play reads at its start, in one activity (`load_play_context`): its account and, with
    `calendars`, the account's working-day calendar (its own zone, country, region) and our staff's
    (`staff`), from the year of `start` for `years` years."""

    account_id: str
    calendars: bool = False
    staff: CalendarPlace | None = None
    start: date | None = None
    years: int = Field(3, ge=1, le=10)


class PlayContext(Model):
    account: Account
    calendars: PlayCalendars | None = None


class NewTask(Model):
    """One task a play step creates (due_at UTC); with its play, a `CreateTaskRequest`."""

    step: str
    title: str
    detail: str = ""
    owner_role: Role | None = None
    owner_email: str | None = None
    due_at: datetime
    priority: TaskPriority = "P2"
    milestone: str | None = None


class CreateTaskRequest(NewTask):
    """One task for `create_task` (plays from before batched tasks): a `NewTask` and its play."""

    play: PlayRef


class CreateTasksRequest(Model):
    """All the tasks one play step creates, for `create_tasks` (one activity, one transaction).
    `tasks` as `CreateTaskRequest` without the play, in the order the play wants them back."""

    play: PlayRef
    tasks: list[NewTask]


class CompleteTaskRequest(Model):
    play: PlayRef
    step: str
    completed_by: str


class RescheduleTasksRequest(Model):
    play: PlayRef
    due_dates: dict[str, datetime]  # step -> new due date


# The class of an e-mail decides the rules it follows (issue 17; README "Customer e-mail"):
# transactional (SLA ticket updates) always goes; lifecycle and survey mail honours unsubscribes,
# the weekly cap and the recipient's send window; internal mail goes to our own staff only.
EmailCategory = Literal["transactional", "lifecycle", "survey", "internal"]
CUSTOMER_CATEGORIES: tuple[str, ...] = ("transactional", "lifecycle", "survey")


class EmailTemplate(Model):
    """A template snapshot: the sources travel with the play, not the file, with the rules the
    content gives the e-mail. `category` None: a play launched before e-mail classes existed."""

    name: str
    subject: str
    body: str
    partials: dict[str, str] = {}  # layouts it extends or includes, by name
    category: EmailCategory | None = None
    window: SendWindow | None = None  # lifecycle and survey mail: the recipient's local send window
    meeting: MeetingSpec | None = None
    stop_on_reply: bool = False  # a reply to this e-mail stops its follow-ups
    reach_another_way: bool = False  # a customer it cannot reach gets the CSM a task to reach them
    # "<version key>#<template key>": the sources (subject, body, partials) are in the stored playbook
    # version (activities/playbook_store.py) and travel empty. None: they travel here (older plays).
    stored_as: str | None = None


class SendEmailRequest(Model):
    play: PlayRef
    step: str
    template: EmailTemplate
    to: list[Role]
    cc: list[Role] = []
    data: dict = {}
    # Explicit people instead of (or besides) roles: an NPS respondent.
    people: list[Person] = []
    # The send window closes then: later, the e-mail waits for the next window (the worker was down).
    send_by: datetime | None = None
    planned_at: datetime | None = None  # when the step wanted it sent (a later send was held)
    # A customer reply to the e-mails of these steps (this play) stops this one: a follow-up.
    stop_if_replied: list[str] = []
    meeting: Meeting | None = None


class EmailResult(Model):
    communication_id: int
    message_id: str
    to: list[str]
    already_sent: bool
    outcome: SendOutcome = "sent"
    reason: str = ""
    deferred_until: datetime | None = None  # outcome deferred: ask again then (None: at the next window)
    recipients: list[RecipientOutcome] = []

    def unreached_customers(self) -> list[RecipientOutcome]:
        """Customers in To whom this e-mail did not (and will not) reach."""
        return [r for r in self.recipients
                if r.customer and r.kind == "to" and r.status in ("suppressed", "refused", "bounced", "stopped")]


class EscalationReport(Model):
    """The fields of the escalation report, seed 001 section 9.3."""

    title: str
    severity: Severity
    business_impact: str
    reported_at: datetime
    why: list[str]
    needs: list[str]
    success_criteria: list[str]
    tried: list[str] = []
    next_steps: list[str] = []
    timeline: list[str] = []  # reported, first response, escalated... (when the play knows them)
    status_updates: str = "Daily until resolved"


class EscalateRequest(Model):
    play: PlayRef
    step: str
    level: int = Field(ge=1, le=9)  # ladders of any length (profiles)
    to_role: Role
    from_role: Role = "csm"
    reason: str
    report: EscalationReport
    template: EmailTemplate


class EscalationResult(Model):
    escalation_id: int
    to_email: str
    level: int


class RenewalOutcomeRequest(Model):
    play: PlayRef
    outcome: Literal["renewed", "churned"]
    new_renewal_date: date | None = None


TicketStatus = Literal["open", "acknowledged", "on_hold", "resolved", "closed"]


class TicketRecord(Model):
    """A support ticket's SLA state, as its play last wrote it."""

    play: PlayRef
    ticket_id: str
    tier: Tier
    priority: Priority
    subject: str
    status: TicketStatus
    opened_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    response_met: bool | None = None
    resolution_met: bool | None = None
    escalation_level: int = 0
    # The ticket is at one of its playbook's most urgent priorities (a P0 in seed 001). None: a play
    # launched before profiles, whose most urgent priority is P0.
    incident: bool | None = None


class ServiceCreditRequest(Model):
    play: PlayRef
    step: str
    ticket_id: str
    clock: Literal["response", "resolution"]
    percent: float = Field(ge=0, le=100)
    reason: str
    missed_at: datetime | None = None  # when the clock passed its target (UTC, play time)
    # Seed 001 section 8.1, per account (plays launched before issue 19 send none): `repeat_misses` or
    # more missed clocks in a calendar month (UTC) earn one more credit of `repeat_percent`, once a
    # month; `review_misses` or more in a calendar quarter get `review_owner_role` a task
    # (`review_title`: an executive review and process improvement plan), once a quarter.
    repeat_misses: int | None = Field(None, ge=2)
    repeat_percent: float | None = Field(None, gt=0, le=100)
    review_misses: int | None = Field(None, ge=2)
    review_title: str | None = None
    review_owner_role: Role | None = None
    review_due_days: int = Field(7, ge=1)
    # Seed 004 section 3.3 ("25 % credit max" a month): the account's credits of the calendar month
    # (UTC) of the miss never pass this % of the monthly fee; None: no cap.
    cap_percent: float | None = Field(None, gt=0, le=100)


class BandChangeRecord(Model):
    from_band: str
    to_band: str
    score: int
    at: datetime


class RiskRecord(Model):
    """An account's current churn-risk score, and the band changes not yet written."""

    play: PlayRef
    score: int
    band: str
    indicators: list[str]
    at: datetime
    changes: list[BandChangeRecord] = []
    first_change: int = 0  # index of changes[0] in the play's list: the idempotency key
    health_score: int | None = Field(None, ge=0, le=100)  # the weighted health score (seeds 002/003), when known


class SlaReportRequest(Model):
    """The monthly SLA attainment report (seed 001 section 8.1: on the 2nd, for the month before):
    `month` (its first day), its template, and the roles of the people the profile names."""

    month: date
    template: EmailTemplate
    to: list[Role]


class RiskSummaryRequest(Model):
    month: date
    template: EmailTemplate
    to: list[Role]


class SurveyBatchRequest(Model):
    """Send (or remind) the next `limit` contacts of a cycle, after the cursor, in (account, e-mail) order."""

    play: PlayRef
    cycle_id: str
    kind: Literal["survey", "reminder"]
    template: EmailTemplate
    expires_at: datetime
    account_ids: list[str] | None = None
    tiers: list[Tier] | None = None
    after: tuple[str, str] | None = None
    limit: int = Field(1000, ge=1, le=5000)
    only_email: str | None = None  # a re-survey of one respondent
    # Cycles launched since issue 17: a contact outside their account's send window, or over the weekly
    # cap, is invited later (the cycle sweeps them up) instead of at once.
    defer: bool = False
    # Since issue 18: only the contacts of the accounts of shard `shard` of `shards` (a stable hash of the
    # account id), so that batches of different shards can run side by side without overlapping.
    shard: int = Field(0, ge=0)
    shards: int = Field(1, ge=1, le=32)


class SurveyBatchResult(Model):
    sent: int
    already: int
    last: tuple[str, str] | None
    done: bool
    suppressed: int = 0
    deferred: int = 0
    next_at: datetime | None = None  # the earliest deferred invitation of the cycle, if any


class DeferredInvitationsRequest(Model):
    """Send the cycle's invitations (and reminders) whose deferral has run out, up to `limit`."""

    play: PlayRef
    cycle_id: str
    survey: EmailTemplate
    reminder: EmailTemplate
    expires_at: datetime
    limit: int = Field(1000, ge=1, le=5000)


class RespondentEmailRequest(Model):
    play: PlayRef
    step: str
    template: EmailTemplate
    to: Person
    data: dict = {}


class CsatSurveyRequest(Model):
    """A ticket's CSAT survey (activities/sla_comms.py): one signed one-click link per score 1-5 for
    `to`, valid until `expires_at` (UTC); `round` is the ticket's reopen count."""

    play: PlayRef
    step: str
    template: EmailTemplate
    to: Person
    ticket_id: str
    round: int = Field(ge=0)
    expires_at: datetime
    data: dict = {}


class CsatFeedRequest(Model):
    """The account's support CSAT average over the last `days` days, for its churn watch."""

    play: PlayRef
    days: int = Field(90, ge=1)


class RiskPointsRequest(Model):
    play: PlayRef
    step: str
    indicator: str
    points: int
    reason: str

    @field_validator("indicator")
    @classmethod
    def _indicator_slug(cls, v: str) -> str:
        if not v.replace("_", "").isalnum():
            raise ValueError("indicator must be a snake_case name")
        return v
