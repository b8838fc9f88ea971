"""The schema of playbook content (the YAML files in this folder).

The content is what a CS manager may change without a code change: day
offsets, task lists, e-mail templates, thresholds. The workflow code holds
the control flow and receives a validated, frozen snapshot of this content
in its input, so editing a file never changes a run in flight.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, ClassVar, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from core.models import EmailCategory, EmailTemplate, MeetingSpec, Priority, Role, StaffRole, Tier
from core.working_time import WEEKDAY_INDEX, SendWindow

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


CUSTOMER_ROLES = frozenset({"sponsor", "contacts"})


class WindowContent(Content):
    """When customer e-mail may go out, in the account's local time (see core/working_time.py)."""

    days: list[Weekday] | None = Field(None, min_length=1, description="default: the account's working days")
    opens: str = Field("09:00", description="HH:MM local")
    closes: str = Field("17:00", description="HH:MM local; not after `opens`: the window runs past midnight")
    on_holidays: bool = Field(False, description="also on the account's public holidays")

    @model_validator(mode="after")
    def _valid(self) -> "WindowContent":
        self.window()  # raises ValueError with the reason
        return self

    def window(self) -> SendWindow:
        days = None if self.days is None else tuple(WEEKDAY_INDEX[d] for d in self.days)
        return SendWindow(days=days, opens=self.opens, closes=self.closes, on_holidays=self.on_holidays)


class TemplateContent(Content):
    template: str = Field(description="file under playbooks/templates/")
    subject: str = Field(min_length=1, description="Jinja2, rendered as plain text")
    category: EmailCategory | None = Field(
        None, description="transactional, lifecycle or survey (default: the playbook's email_category); "
                          "e-mail to our staff only is internal whatever this says")
    send_window: WindowContent | None = Field(None, description="default: the playbook's send_window")
    meeting: MeetingSpec | None = Field(None, description="the e-mail proposes a meeting: an iCalendar invitation")
    stop_on_reply: bool = Field(False, description="a reply to this e-mail stops its follow-ups")
    reach_another_way: bool = Field(
        False, description="a customer in To it cannot reach (unsubscribed, bounced) gets the CSM a task")


class FollowUpEmail(TemplateContent):
    """A reminder sent `after_working_days` of the account after the e-mail it follows, to the same
    people, unless someone replied (`stop_on_reply` holds for every follow-up)."""

    after_working_days: PositiveInt


class EmailContent(TemplateContent):
    to: list[Role] = Field(min_length=1)
    cc: list[Role] = []
    follow_ups: list[FollowUpEmail] = Field([], description="reminders, in date order (renewal step e-mails)")

    @property
    def customer_facing(self) -> bool:
        return bool(CUSTOMER_ROLES & {*self.to, *self.cc})

    @model_validator(mode="after")
    def _class_fits_recipients(self) -> "EmailContent":
        if self.category == "internal" and self.customer_facing:
            raise ValueError("category: an e-mail to the sponsor or contacts cannot be internal")
        days = [f.after_working_days for f in self.follow_ups]
        if days != sorted(set(days)):
            raise ValueError("follow_ups: must be in rising order of after_working_days, each once")
        if self.follow_ups and not self.customer_facing:
            raise ValueError("follow_ups: only e-mails to the sponsor or contacts have follow-ups")
        return self


class TaskContent(Content):
    key: Slug
    title: str = Field(min_length=1)
    day: PositiveInt
    owner_role: Role = "csm"
    priority: Priority = "P2"
    detail: str = ""
    milestone: Slug | None = Field(None, description="completing this task completes the milestone")

    @property
    def step(self) -> str:
        """The play step (and idempotency key part) of the task created from this entry."""
        return f"task/{self.key}"


class PhaseContent(Content):
    key: Slug
    name: str
    first_day: PositiveInt
    last_day: PositiveInt
    tasks: list[TaskContent] = Field(min_length=1)

    @model_validator(mode="after")
    def _days_in_range(self) -> "PhaseContent":
        if self.last_day < self.first_day:
            raise ValueError(f"last_day: day {self.last_day} is before first_day {self.first_day}")
        for i, task in enumerate(self.tasks):
            if not self.first_day <= task.day <= self.last_day:
                raise ValueError(
                    f"tasks[{i}].day: task {task.key!r} is due on day {task.day}, outside the phase's days "
                    f"{self.first_day}-{self.last_day}"
                )
        return self


class AtStart(Content):
    kind: Literal["start"]


class AfterMilestone(Content):
    kind: Literal["after_milestone"]
    milestone: Slug
    offset_days: int = Field(ge=0)


class Weekly(Content):
    kind: Literal["weekly"]
    weekday: Weekday
    until_milestone: Slug


class DailyAfterMilestone(Content):
    kind: Literal["daily_after_milestone"]
    milestone: Slug
    days: PositiveInt


Trigger = Annotated[Union[AtStart, AfterMilestone, Weekly, DailyAfterMilestone], Field(discriminator="kind")]


class EmailStep(EmailContent):
    key: Slug
    trigger: Trigger


class SlipEscalation(Content):
    over_days: PositiveInt
    level: int = Field(ge=1, le=4)
    to_role: StaffRole
    severity: Priority
    label: str


class ChurnRiskRule(Content):
    over_days: PositiveInt
    points: int
    indicator: Slug


class BlockerRule(Content):
    alert_after_days: PositiveInt
    alert: EmailContent
    task_title: str
    task_priority: Priority = "P1"
    task_owner_role: Role = "csm"
    task_due_days: int = Field(1, ge=0)


class PlaybookContent(Content):
    """What every playbook file has."""

    name: str
    version: PositiveInt
    timezone: str = Field("America/New_York", description="our team's time zone for this playbook")
    work_start_hour: int = Field(9, ge=0, le=23, description="steps of a day fire at this local hour")
    due_hour: int = Field(18, ge=1, le=23, description="tasks of a day are due at this local hour")
    escalation: TemplateContent = Field(description="the report e-mailed to whoever a step escalates to")
    # Our staff's calendar: internal tasks and escalations fall on its working days.
    team_country: str = Field("US", pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2: our team's public holidays")
    team_region: str | None = Field(None, pattern=r"^[A-Z0-9]{1,3}$", description="ISO 3166-2 subdivision")
    email_category: EmailCategory = Field("lifecycle", description="the class of this playbook's customer e-mails")
    dates_on_days_off: Literal["next_working_day", "keep"] = Field(
        "next_working_day", description="a step, due date or meeting that falls on a weekend or public holiday "
                                        "moves to the next working day, unless this says keep")
    send_window: WindowContent = Field(WindowContent(), description="customer e-mail: when, in the account's time")
    # Templates without recipients in the file that are nonetheless for customers (NPS surveys).
    CUSTOMER_TEMPLATES: ClassVar[tuple[str, ...]] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        """(snapshot key, location in the file, content) of every e-mail this playbook can send."""
        return [("escalation", ("escalation",), self.escalation)]

    def email_class(self, key: str, email: TemplateContent) -> str:
        """The class an e-mail is sent as: internal when only our staff get it, else its own or the
        playbook's (see core.models.EmailCategory). A follow-up goes as the e-mail it follows."""
        if isinstance(email, FollowUpEmail):
            parent_key, parent = self._followed(key)
            return email.category or self.email_class(parent_key, parent)
        if isinstance(email, EmailContent):
            customers = email.customer_facing
        else:
            customers = key in self.CUSTOMER_TEMPLATES or key.endswith("/respondent")
        if not customers:
            return "internal"
        return email.category or self.email_category

    def _followed(self, key: str) -> tuple[str, TemplateContent]:
        parent_key = key.rsplit("/follow-up/", 1)[0]
        return parent_key, next(c for k, _, c in self.email_contents() if k == parent_key)

    def email_template(self, key: str, email: TemplateContent, body: str, partials: dict[str, str]) -> EmailTemplate:
        """The snapshot of one e-mail: its sources and the rules its content gives it."""
        category = self.email_class(key, email)
        own = email.send_window or (self._followed(key)[1].send_window if isinstance(email, FollowUpEmail) else None)
        window = (own or self.send_window).window() if category in ("lifecycle", "survey") else None
        return EmailTemplate(name=email.template, subject=email.subject, body=body, partials=partials,
                             category=category, window=window, meeting=email.meeting,
                             stop_on_reply=email.stop_on_reply or isinstance(email, FollowUpEmail),
                             reach_another_way=email.reach_another_way)


class OnboardingContent(PlaybookContent):
    playbook: Literal["onboarding"]
    day_unit: Literal["calendar_days", "business_days"] = Field(
        "calendar_days", description="business_days: day N is the account's Nth working day (weekends and its "
                                     "public holidays do not count), and every offset and slip counts those")
    kickoff_milestone: Slug
    readiness_gate: Slug
    go_live_milestone: Slug
    max_go_live_day: PositiveInt
    phases: list[PhaseContent] = Field(min_length=1)
    emails: list[EmailStep] = []
    blockers: BlockerRule
    slip_escalations: list[SlipEscalation] = []
    churn_risk: ChurnRiskRule

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        return [
            *super().email_contents(),
            ("blocker_alert", ("blockers", "alert"), self.blockers.alert),
            *((e.key, ("emails", i), e) for i, e in enumerate(self.emails)),
        ]

    @property
    def tasks(self) -> list[TaskContent]:
        return [t for p in self.phases for t in p.tasks]

    def milestone_day(self, milestone: str) -> int:
        return next(t.day for t in self.tasks if t.milestone == milestone)

    def phase_of_day(self, day: int) -> PhaseContent:
        for phase in self.phases:
            if day <= phase.last_day:
                return phase
        return self.phases[-1]

    @property
    def go_live_day(self) -> int:
        return self.milestone_day(self.go_live_milestone)

    @property
    def gate_day(self) -> int:
        return self.milestone_day(self.readiness_gate)

    @model_validator(mode="after")
    def _consistent(self) -> "OnboardingContent":
        previous = 0
        for i, phase in enumerate(self.phases):
            if phase.first_day != previous + 1:
                raise ValueError(
                    f"phases[{i}].first_day: phase {phase.key!r} starts on day {phase.first_day}; phases must "
                    f"follow each other without gaps or overlaps (expected day {previous + 1})"
                )
            previous = phase.last_day
        _unique("phase key", {f"phases[{i}].key": p.key for i, p in enumerate(self.phases)})
        task_paths = {
            f"phases[{i}].tasks[{j}]": t for i, p in enumerate(self.phases) for j, t in enumerate(p.tasks)
        }
        _unique("task key", {f"{path}.key": t.key for path, t in task_paths.items()})
        _unique("e-mail key", {
            "escalation": "escalation", "blockers.alert": "blocker_alert",
            **{f"emails[{i}].key": e.key for i, e in enumerate(self.emails)},
        })
        milestones = {f"{path}.milestone": t.milestone for path, t in task_paths.items() if t.milestone}
        _unique("milestone", milestones)
        wanted = {
            "kickoff_milestone": self.kickoff_milestone,
            "readiness_gate": self.readiness_gate,
            "go_live_milestone": self.go_live_milestone,
        }
        for i, email in enumerate(self.emails):
            for attr in ("milestone", "until_milestone"):
                if hasattr(email.trigger, attr):
                    wanted[f"emails[{i}].trigger.{attr}"] = getattr(email.trigger, attr)
        for where, name in wanted.items():
            if name not in milestones.values():
                raise ValueError(f"{where}: names milestone {name!r}, which no task completes")
        if self.gate_day >= self.go_live_day:
            raise ValueError(
                f"readiness_gate: the readiness gate (day {self.gate_day}) must come before "
                f"go-live (day {self.go_live_day})"
            )
        if self.max_go_live_day < self.go_live_day:
            raise ValueError(f"max_go_live_day: day {self.max_go_live_day} is before go-live day {self.go_live_day}")
        days = [s.over_days for s in self.slip_escalations]
        if days != sorted(set(days)):
            raise ValueError("slip_escalations: must be in rising order of over_days, each once")
        return self


def _unique(what: str, values: dict[str, str]) -> None:
    """`values` maps each value's path in the file to the value."""
    seen: set[str] = set()
    for path, v in values.items():
        if v in seen:
            raise ValueError(f"{path}: {what} {v!r} appears twice")
        seen.add(v)


class PlaybookSnapshot(Content):
    """Validated content plus the template sources it uses, as of launch time."""

    source: str
    digest: str
    templates: dict[str, EmailTemplate]

    def template(self, name: str) -> EmailTemplate:
        return self.templates[name]


class OnboardingSnapshot(PlaybookSnapshot):
    content: OnboardingContent


PLAYBOOK_MODELS: dict[str, type[PlaybookContent]] = {"onboarding": OnboardingContent}
SNAPSHOT_MODELS: dict[str, type[PlaybookSnapshot]] = {"onboarding": OnboardingSnapshot}


# -- renewal countdown (SPEC "Playbook 2"; seeds 002 and 003) -----------------
TIERS: tuple[Tier, ...] = Tier.__args__  # type: ignore[attr-defined]
OwnerRole = Union[Role, dict[Tier, Role]]


class TieredContent(Content):
    """An entry that applies to some tiers only; without `tiers`, to every tier
    its step applies to."""

    tiers: list[Tier] | None = Field(None, min_length=1)

    def applies_to(self, tier: Tier) -> bool:
        return self.tiers is None or tier in self.tiers


class StepTask(TieredContent):
    key: Slug
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: OwnerRole = Field("csm", description="a role, or a role per tier")
    priority: Priority = "P2"
    due_days: int = Field(7, ge=0, description="due this many days after the step's date")

    def owner_for(self, tier: Tier) -> Role:
        return self.owner_role if isinstance(self.owner_role, str) else self.owner_role[tier]

    def owner_problem(self, tiers: list[Tier]) -> str | None:
        if isinstance(self.owner_role, dict):
            missing = [t for t in (self.tiers or tiers) if t not in self.owner_role]
            if missing:
                return f"owner_role: names no owner for {', '.join(missing)}"
        return None


class StepEmail(TieredContent, EmailContent):
    key: Slug


class RenewalStep(TieredContent):
    key: Slug
    name: str = Field(min_length=1)
    phase: Slug = Field(description="the Phase search attribute while this step is the latest")
    tasks: list[StepTask] = []
    emails: list[StepEmail] = []
    catch_up: bool = Field(
        False, description="still fire when a change of renewal date leaves this step in the past"
    )

    @model_validator(mode="after")
    def _has_work(self) -> "RenewalStep":
        if not self.tasks and not self.emails:
            raise ValueError("tasks: a step needs at least one task or e-mail")
        tiers = self.tiers or list(TIERS)
        for what, entries in (("tasks", self.tasks), ("emails", self.emails)):
            for i, entry in enumerate(entries):
                extra = [t for t in entry.tiers or [] if t not in tiers]
                if extra:
                    raise ValueError(
                        f"{what}[{i}].tiers: {', '.join(extra)} not among the step's tiers ({', '.join(tiers)})"
                    )
        for i, task in enumerate(self.tasks):
            problem = task.owner_problem(tiers)
            if problem:
                raise ValueError(f"tasks[{i}].{problem}")
        _unique("task key", {f"tasks[{i}].key": t.key for i, t in enumerate(self.tasks)})
        _unique("e-mail key", {f"emails[{i}].key": e.key for i, e in enumerate(self.emails)})
        return self

    def tasks_for(self, tier: Tier) -> list[StepTask]:
        return [t for t in self.tasks if t.applies_to(tier)] if self.applies_to(tier) else []

    def emails_for(self, tier: Tier) -> list[StepEmail]:
        return [e for e in self.emails if e.applies_to(tier)] if self.applies_to(tier) else []


class CountdownStep(RenewalStep):
    days_before: int = Field(ge=0, le=730)


class PostRenewalStep(RenewalStep):
    days_after: int = Field(ge=0, le=365)


class RiskMark(Content):
    points: int
    indicator: Slug


class FinalWindow(RiskMark):
    days_before: PositiveInt


class PastDueEscalation(Content):
    after_days: PositiveInt
    level: int = Field(ge=1, le=4)
    to_role: StaffRole
    severity: Priority
    label: str


class PastDue(RiskMark):
    after_days: PositiveInt = Field(1, description="days after the renewal date without `renewed`")
    task: StepTask
    escalations: list[PastDueEscalation] = []


class ChurnClose(Content):
    task: StepTask
    notify: EmailContent


class RenewalContent(PlaybookContent):
    playbook: Literal["renewal"]
    max_days_ahead: PositiveInt = Field(1095, description="a renewal date further out is refused")
    countdown: list[CountdownStep] = Field(min_length=1)
    post_renewal: list[PostRenewalStep] = []
    final_window: FinalWindow
    past_due: PastDue
    churned: ChurnClose

    @property
    def steps(self) -> list[RenewalStep]:
        return [*self.countdown, *self.post_renewal]

    def step(self, key: str) -> RenewalStep:
        return next(s for s in self.steps if s.key == key)

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        return [
            *super().email_contents(),
            ("churn_notice", ("churned", "notify"), self.churned.notify),
            *(
                (email_key(s.key, e.key), (where, i, "emails", j), e)
                for where, steps in (("countdown", self.countdown), ("post_renewal", self.post_renewal))
                for i, s in enumerate(steps)
                for j, e in enumerate(s.emails)
            ),
            *(
                (follow_up_key(s.key, e.key, n), (where, i, "emails", j, "follow_ups", n - 1), f)
                for where, steps in (("countdown", self.countdown), ("post_renewal", self.post_renewal))
                for i, s in enumerate(steps)
                for j, e in enumerate(s.emails)
                for n, f in enumerate(e.follow_ups, start=1)
            ),
        ]

    @model_validator(mode="after")
    def _consistent(self) -> "RenewalContent":
        days = [s.days_before for s in self.countdown]
        if days != sorted(days, reverse=True) or len(set(days)) != len(days):
            bad = next(i for i in range(1, len(days)) if days[i] >= days[i - 1])
            raise ValueError(
                f"countdown[{bad}].days_before: steps must count down, each on its own day "
                f"({days[bad]} after {days[bad - 1]})"
            )
        after = [s.days_after for s in self.post_renewal]
        if after != sorted(after):
            bad = next(i for i in range(1, len(after)) if after[i] < after[i - 1])
            raise ValueError(f"post_renewal[{bad}].days_after: post-renewal steps must be in date order")
        _unique("step key", {
            **{f"countdown[{i}].key": s.key for i, s in enumerate(self.countdown)},
            **{f"post_renewal[{i}].key": s.key for i, s in enumerate(self.post_renewal)},
        })
        rungs = [e.after_days for e in self.past_due.escalations]
        if rungs != sorted(set(rungs)):
            raise ValueError("past_due.escalations: must be in rising order of after_days, each once")
        return self


def email_key(step_key: str, email: str) -> str:
    """The snapshot key (and step suffix) of a step's e-mail."""
    return f"{step_key}/{email}"


def follow_up_key(step_key: str, email: str, n: int) -> str:
    """The snapshot key of the `n`th follow-up (1, 2, ...) of a step's e-mail."""
    return f"{step_key}/{email}/follow-up/{n}"


class RenewalSnapshot(PlaybookSnapshot):
    content: RenewalContent


PLAYBOOK_MODELS["renewal"] = RenewalContent
SNAPSHOT_MODELS["renewal"] = RenewalSnapshot


# -- support SLA clock (SPEC "Playbook 5"; seed 001 sections 3, 8 and 9) ----------
PRIORITIES: tuple[Priority, ...] = Priority.__args__  # type: ignore[attr-defined]
TimeUnit = Literal["minutes", "hours", "business_hours", "business_days"]
Clock = Literal["response", "resolution"]


class SlaTarget(Content):
    """`4 business_hours` counts Mon-Fri opening hours without holidays; `30 minutes` runs 24/7."""

    amount: float = Field(gt=0)
    unit: TimeUnit

    @property
    def business(self) -> bool:
        return self.unit.startswith("business_")

    def duration(self, business_day_hours: int) -> timedelta:
        hours = {"minutes": 1 / 60, "hours": 1, "business_hours": 1, "business_days": business_day_hours}[self.unit]
        return timedelta(hours=self.amount * hours)

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount == int(self.amount) else self.amount
        return f"{amount} {self.unit.replace('_', ' ')}"


class PriorityTargets(Content):
    response: SlaTarget
    response_after_hours: SlaTarget | None = Field(
        None, description="the response target instead, for a ticket opened outside business hours"
    )
    resolution: SlaTarget


class CreditRates(Content):
    """Service credit in % of the monthly fee (ARR / 12) for a clock missed twice over."""

    response: float = Field(ge=0, le=100)
    resolution: float = Field(ge=0, le=100)


class TierSla(Content):
    targets: dict[Priority, PriorityTargets]
    credits: CreditRates
    ladder: list[Role] = Field(min_length=1, max_length=4, description="who levels 1, 2, ... go to")

    @model_validator(mode="after")
    def _every_priority(self) -> "TierSla":
        missing = [p for p in PRIORITIES if p not in self.targets]
        if missing:
            raise ValueError(f"targets: no targets for {', '.join(missing)}")
        return self


class LadderRule(Content):
    """Raises the ticket to at least `level` (each level in between is escalated
    once, in order): when a clock reaches `at_sla` times its target, or when a
    ticket of one of `priorities` has been open `open_hours`."""

    label: str = Field(min_length=1)
    level: int = Field(ge=1, le=4)
    level_by_priority: dict[Priority, Annotated[int, Field(ge=1, le=4)]] = {}
    at_sla: float | None = Field(None, gt=0)
    priorities: list[Priority] | None = None
    open_hours: float | None = Field(None, ge=0)
    notify: list[Role] = []
    credit: bool = False

    def level_for(self, priority: Priority) -> int:
        return self.level_by_priority.get(priority, self.level)

    def applies_to(self, priority: Priority) -> bool:
        return self.priorities is None or priority in self.priorities

    @model_validator(mode="after")
    def _one_trigger(self) -> "LadderRule":
        if (self.at_sla is None) == (self.open_hours is None):
            raise ValueError("at_sla: give either at_sla (a multiple of the SLA) or open_hours, not both")
        if self.credit and self.at_sla is None:
            raise ValueError("credit: a service credit is for a missed SLA: use it with at_sla")
        return self


class EveryMinutes(EmailContent):
    every_minutes: PositiveInt


class TaskRule(Content):
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: Role = "csm"
    priority: Priority = "P1"
    due_hours: int = Field(24, ge=0)


class SlaContent(PlaybookContent):
    playbook: Literal["sla"]
    email_category: EmailCategory = "transactional"  # ticket updates reach the customer whatever they unsubscribed
    open_hour: int = Field(9, ge=0, le=23, description="business hours open, local time")
    close_hour: int = Field(18, ge=1, le=24)
    holidays: str = Field("US", pattern=r"^([A-Z]{2}|none)$",
                          description="the support region's public holidays: an ISO 3166-1 country, or none")
    holidays_region: str | None = Field(None, pattern=r"^[A-Z0-9]{1,3}$", description="ISO 3166-2 subdivision")
    tiers: dict[Tier, TierSla]
    ladder: list[LadderRule] = Field(min_length=1)
    breach_notice: EmailContent = Field(description="the notice a rule's `notify` roles get")
    p0_updates: EveryMinutes
    root_cause: TaskRule
    reopen_window_days: int = Field(7, ge=0, description="after resolution, how long a reopen resumes the clock")
    report: EmailContent

    @property
    def business_day_hours(self) -> int:
        return self.close_hour - self.open_hour

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        return [
            *super().email_contents(),
            ("breach_notice", ("breach_notice",), self.breach_notice),
            ("p0_update", ("p0_updates",), self.p0_updates),
            ("report", ("report",), self.report),
        ]

    @model_validator(mode="after")
    def _consistent(self) -> "SlaContent":
        if self.close_hour <= self.open_hour:
            raise ValueError(f"close_hour: {self.close_hour} is not after open_hour {self.open_hour}")
        missing = [t for t in TIERS if t not in self.tiers]
        if missing:
            raise ValueError(f"tiers: no SLA for {', '.join(missing)}")
        return self


class SlaSnapshot(PlaybookSnapshot):
    content: SlaContent


PLAYBOOK_MODELS["sla"] = SlaContent
SNAPSHOT_MODELS["sla"] = SlaSnapshot


# -- churn-risk interventions (SPEC "Playbook 4"; seed 001 sections 13.3, 13.4) ---------
InterventionBand = Literal["YELLOW", "ORANGE", "RED"]


class InterventionAction(Content):
    key: Slug
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: Role = "csm"
    priority: Priority = "P1"
    due_hours: PositiveInt = Field(description="the action is due this long after the band is entered")
    email: EmailContent | None = Field(None, description="sent when the action starts")

    @property
    def step(self) -> str:
        return f"action/{self.key}"


class BandPlay(Content):
    band: InterventionBand
    name: str = Field(min_length=1)
    alert: EmailContent = Field(description="tells the people involved that the account entered the band")
    actions: list[InterventionAction] = Field(min_length=1)
    escalate_to: Role = Field(description="who hears of an action past its deadline")
    escalation_level: int = Field(ge=1, le=4)


class RecurringTask(Content):
    title: str = Field(min_length=1)
    owner_role: Role = "csm"
    priority: Priority = "P1"
    due_hours: PositiveInt = 8


class Monitoring(RecurringTask):
    weeks: PositiveInt = 13


class ChurnContent(PlaybookContent):
    playbook: Literal["churn"]
    bands: list[BandPlay] = Field(min_length=3, max_length=3)
    daily_checkin: RecurringTask = Field(description="RED: every day until the account is back to YELLOW")
    monitoring: Monitoring = Field(description="after a RED rescue: weekly for `weeks` weeks")
    summary: EmailContent = Field(description="the monthly risk summary to CS leadership")
    metric_history_days: PositiveInt = Field(60, description="how long metric readings are kept for alerts")

    def band_play(self, band: str) -> BandPlay | None:
        return next((b for b in self.bands if b.band == band), None)

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        out = [*super().email_contents(), ("summary", ("summary",), self.summary)]
        for i, play in enumerate(self.bands):
            out.append((f"{play.band}/alert", ("bands", i, "alert"), play.alert))
            out.extend((f"{play.band}/{a.key}", ("bands", i, "actions", j, "email"), a.email)
                       for j, a in enumerate(play.actions) if a.email is not None)
        return out

    @model_validator(mode="after")
    def _one_per_band(self) -> "ChurnContent":
        if [b.band for b in self.bands] != ["YELLOW", "ORANGE", "RED"]:
            raise ValueError("bands: give the YELLOW, ORANGE and RED plays, in that order")
        for i, play in enumerate(self.bands):
            _unique("action key", {f"bands[{i}].actions[{j}].key": a.key for j, a in enumerate(play.actions)})
        return self


class ChurnSnapshot(PlaybookSnapshot):
    content: ChurnContent


PLAYBOOK_MODELS["churn"] = ChurnContent
SNAPSHOT_MODELS["churn"] = ChurnSnapshot


# -- NPS survey cycle and follow-up (SPEC "Playbook 3"; seed 001 section 14) --------------
class FollowUpTask(Content):
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: Role = "csm"
    priority: Priority = "P2"
    due_hours: PositiveInt


class FollowUpAction(Content):
    """Something done `after_hours` after the answer (or after a path is chosen): a task, an
    e-mail to people by role, an e-mail to the respondent, or several of these."""

    key: Slug
    after_hours: int = Field(0, ge=0)
    task: FollowUpTask | None = None
    email: EmailContent | None = None
    to_respondent: TemplateContent | None = None
    resurvey: bool = Field(False, description="send the respondent a new survey link")

    @model_validator(mode="after")
    def _does_something(self) -> "FollowUpAction":
        if not (self.task or self.email or self.to_respondent or self.resurvey):
            raise ValueError("task: an action needs a task, an email, a to_respondent e-mail or resurvey")
        return self


class DetractorPath(Content):
    key: Slug
    name: str
    actions: list[FollowUpAction] = Field(min_length=1)


class NpsContent(PlaybookContent):
    playbook: Literal["nps"]
    email_category: EmailCategory = "survey"
    CUSTOMER_TEMPLATES: ClassVar[tuple[str, ...]] = ("survey", "reminder")
    survey: TemplateContent
    reminder: TemplateContent
    reminder_after_days: PositiveInt = 4
    expires_after_days: PositiveInt = 7
    batch_size: int = Field(1000, ge=1, le=5000)
    parallel_batches: int = Field(4, ge=1, le=32, description=(
        "a cycle's contacts are split into this many shards (by account), whose batches run side by side "
        "on every worker polling the task queue"))
    promoter: list[FollowUpAction] = Field(min_length=1)
    passive: list[FollowUpAction] = Field(min_length=1)
    detractor: list[FollowUpAction] = Field(min_length=1)
    detractor_paths: list[DetractorPath] = Field(min_length=1)
    choose_path_within_days: PositiveInt = 14
    report: EmailContent

    def actions_for(self, category: str) -> list[FollowUpAction]:
        return {"promoter": self.promoter, "passive": self.passive, "detractor": self.detractor}[category]

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        out = [*super().email_contents(), ("survey", ("survey",), self.survey), ("reminder", ("reminder",), self.reminder),
               ("report", ("report",), self.report)]
        groups = [(c, (c,), self.actions_for(c)) for c in ("promoter", "passive", "detractor")]
        groups += [(f"path/{p.key}", ("detractor_paths", i, "actions"), p.actions) for i, p in enumerate(self.detractor_paths)]
        for prefix, loc, actions in groups:
            for j, a in enumerate(actions):
                if a.email:
                    out.append((f"{prefix}/{a.key}/email", (*loc, j, "email"), a.email))
                if a.to_respondent:
                    out.append((f"{prefix}/{a.key}/respondent", (*loc, j, "to_respondent"), a.to_respondent))
        return out


class NpsSnapshot(PlaybookSnapshot):
    content: NpsContent


PLAYBOOK_MODELS["nps"] = NpsContent
SNAPSHOT_MODELS["nps"] = NpsSnapshot
