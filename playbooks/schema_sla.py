"""The support SLA clock's content (SPEC "Playbook 5"; seed 001 sections 3, 8 and 9): the tier x
priority matrix, credits, the escalation ladder, P0 updates, the root-cause task and the report.
Tiers and priorities are the organisation profile's (validated when the loader gives one)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, model_validator

from core.models import EmailCategory, Priority, ProfileRole, Role, TaskPriority, Tier
from playbooks.schema_base import (
    PLAYBOOK_MODELS, SNAPSHOT_MODELS, Content, EmailContent, PlaybookContent, PlaybookSnapshot, Span, TemplateContent,
    context_profile,
)
from playbooks.schema_sla_comms import TicketComms

TimeUnit = Literal["minutes", "hours", "business_hours", "business_days"]
Clock = Literal["response", "resolution"]


class SlaTarget(Span):
    """`4 business_hours` counts Mon-Fri opening hours without holidays; `30 minutes` runs 24/7."""

    unit: TimeUnit

    @model_validator(mode="after")
    def _at_most_a_year(self) -> "SlaTarget":
        limit = {"minutes": 525_600, "hours": 8_760, "business_hours": 8_760, "business_days": 365}[self.unit]
        if self.amount > limit:
            raise ValueError(f"amount: {self.amount:g} {self.unit.replace('_', ' ')} is more than a year "
                             f"(at most {limit:,} {self.unit.replace('_', ' ')})")
        return self


class PriorityTargets(Content):
    response: SlaTarget
    response_after_hours: SlaTarget | None = Field(
        None, description="the response target instead, for a ticket opened outside business hours"
    )
    resolution: SlaTarget


class RepeatMissCredit(Content):
    """Seed 001 section 8.1 ("2+ misses in same month: 15% credit"): `misses` or more missed clocks of
    one account in a calendar month (UTC) earn one more credit of `percent` of the monthly fee, once
    that month, besides each miss's own."""

    misses: int = Field(2, ge=2)
    percent: float = Field(gt=0, le=100)


class MissReview(Content):
    """Seed 001 section 8.1 ("3+ misses in quarter: executive review + process improvement plan"):
    `misses` or more missed clocks of one account in a calendar quarter (UTC) get `owner_role` a task,
    due `due_days` later, once that quarter."""

    misses: int = Field(3, ge=2)
    title: str = Field(min_length=1)
    owner_role: Role
    due_days: int = Field(7, ge=1)


class CreditRates(Content):
    """Service credit in % of the monthly fee (ARR / 12) for a missed clock (issued by the ladder rule
    with `credit: true`), and the tier's rules for an account that misses again. A rate of 0 issues
    no credit. `resolution_by_priority`: the resolution rate for these priorities instead (seed 004
    section 3.3: P1 10 %, P2 5 %, others none). `monthly_cap`: an account's credits of one calendar
    month (UTC) never pass this % of its monthly fee (seed 004: 25 %); a credit past it is cut to what
    is left, with the reason recorded."""

    response: float = Field(ge=0, le=100)
    resolution: float = Field(ge=0, le=100)
    resolution_by_priority: dict[Priority, Annotated[float, Field(ge=0, le=100)]] = {}
    monthly_cap: float | None = Field(None, gt=0, le=100)
    repeat: RepeatMissCredit | None = None
    review: MissReview | None = None

    def percent(self, clock: Clock, priority: str) -> float:
        """The % of the monthly fee a miss of `clock` on a ticket of `priority` earns (0: none)."""
        if clock == "resolution" and priority in self.resolution_by_priority:
            return self.resolution_by_priority[priority]
        return getattr(self, clock)


class TierSla(Content):
    targets: dict[Priority, PriorityTargets]
    credits: CreditRates
    ladder: list[ProfileRole] = Field(min_length=1, max_length=9, description="who levels 1, 2, ... go to")

    @model_validator(mode="after")
    def _every_priority(self, info: ValidationInfo) -> "TierSla":
        profile = context_profile(info)
        missing = [p for p in (profile.priority_keys if profile else ()) if p not in self.targets]
        if missing:
            raise ValueError(f"targets: no targets for {', '.join(missing)}")
        return self


class LadderRule(Content):
    """Raises the ticket to at least `level` (each level in between is escalated
    once, in order): when a clock reaches `at_sla` times its target, or when a
    ticket of one of `priorities` has been open `open_hours`. `role`: also escalate
    to this role at once, whatever the tier's ladder (seed 001 section 3.2: a P0 goes to
    VP Engineering at once, every tier), unless the ticket was already escalated to it.
    `notify`: these roles get `notice` (default: the playbook's breach notice).
    `level: 0` climbs nothing (a rule that only notifies or escalates to its `role`)."""

    label: str = Field(min_length=1)
    level: int = Field(0, ge=0, le=9)
    level_by_priority: dict[Priority, Annotated[int, Field(ge=0, le=9)]] = {}
    role: ProfileRole | None = None
    notice: TemplateContent | None = Field(
        None, description="the e-mail `notify` gets (without the breach notice's cc) instead of the breach notice")
    at_sla: float | None = Field(None, gt=0, le=100)
    priorities: list[Priority] | None = None
    open_hours: float | None = Field(None, ge=0, le=8_760)
    notify: list[ProfileRole] = []
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
        if self.notice is not None and not self.notify:
            raise ValueError("notice: a notice needs the roles that get it: give notify")
        if not (self.level or self.level_by_priority or self.role or self.notify or self.credit):
            raise ValueError("level: the rule does nothing: give a level, a role, notify or credit")
        return self


class EveryMinutes(EmailContent):
    """Customer updates every `every_minutes` while a ticket of one of `priorities` is open (seed 001
    section 3.2: a P0 every 30 minutes); such a ticket, once resolved, also gets the root-cause task
    and is an incident for chat and webhooks."""

    every_minutes: int = Field(ge=5, le=1_440)
    priorities: list[Priority] = Field(["P0"], min_length=1, description="the most urgent priorities")


class TaskRule(Content):
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: Role = "csm"
    priority: TaskPriority = "P1"
    due_hours: int = Field(24, ge=0)


class SlaContent(PlaybookContent):
    playbook: Literal["sla"]
    email_category: EmailCategory = "transactional"  # ticket updates reach the customer whatever they unsubscribed
    # Business hours and holidays are the profile's support region serving the ticket's tier
    # (profile.yaml), computed at launch. These four are what plays launched before profiles count.
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
    communications: TicketComms | None = Field(None, description="ticket e-mails (playbooks/schema_sla_comms.py)")

    @property
    def business_day_hours(self) -> int:
        return self.close_hour - self.open_hour

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        return [
            *super().email_contents(),
            ("breach_notice", ("breach_notice",), self.breach_notice),
            ("p0_update", ("p0_updates",), self.p0_updates),
            ("report", ("report",), self.report),
            *((f"ladder/{i}/notice", ("ladder", i, "notice"), rule.notice)
              for i, rule in enumerate(self.ladder) if rule.notice is not None),
            *(self.communications.email_contents() if self.communications else []),
        ]

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "SlaContent":
        if self.close_hour <= self.open_hour:
            raise ValueError(f"close_hour: {self.close_hour} is not after open_hour {self.open_hour}")
        profile = context_profile(info)
        missing = [t for t in (profile.tier_names if profile else ()) if t not in self.tiers]
        if missing:
            raise ValueError(f"tiers: no SLA for {', '.join(missing)}")
        if self.communications is not None:
            self._comms_fit(self.communications)
        return self

    def _comms_fit(self, comms: TicketComms) -> None:
        urgent = [p for p in comms.updates.every if p in self.p0_updates.priorities]
        if urgent:
            raise ValueError(f"communications.updates.every: {', '.join(urgent)} already get p0_updates")
        if comms.closing.after_hours > 24 * self.reopen_window_days:
            raise ValueError(f"communications.closing.after_hours: {comms.closing.after_hours} is past the "
                             f"reopen window ({self.reopen_window_days} days), when the play ends")


class SlaSnapshot(PlaybookSnapshot):
    content: SlaContent


PLAYBOOK_MODELS["sla"] = SlaContent
SNAPSHOT_MODELS["sla"] = SlaSnapshot
