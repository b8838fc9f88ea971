"""Ticket communications of the SLA clock (issue 19; seed 001 sections 3.1 templates 1 and 4, 3.2 update
frequency, 9.2 level-1 trigger "SLA threshold approached"): the acknowledgement, regular updates by
priority, the resolution notice, the closing e-mail after the confirmation window, the CSAT survey after
closing and the "SLA approaching" warning. Content of sla.yaml's `communications`; a profile may say
other cadences, windows and thresholds. Without `communications` a play sends none of these."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.models import Priority, Role, TaskPriority
from playbooks.schema_base import Content, EmailContent, Span

CadenceUnit = Literal["hours", "business_hours", "business_days"]


class Every(Span):
    """An update interval: `hours` run 24/7; `business_hours` and `business_days` count the support
    region's opening hours (one business day = the region's business-day hours), like SLA targets."""

    unit: CadenceUnit

    @model_validator(mode="after")
    def _between_a_quarter_hour_and_a_year(self) -> "Every":
        low, high = {"hours": (0.25, 8_760), "business_hours": (0.25, 8_760), "business_days": (0.25, 365)}[self.unit]
        if not low <= self.amount <= high:
            raise ValueError(f"amount: an update every {self.amount:g} {self.unit.replace('_', ' ')}: give "
                             f"{low:g} to {high:,} {self.unit.replace('_', ' ')}")
        return self


class UpdateEmails(EmailContent):
    """Regular customer updates while a ticket of a priority in `every` is open and not on hold (seed
    001 section 3.2: P1 every 4 hours, P2 daily). The urgent priorities keep `p0_updates`; an update
    spell starts again at a priority change, a resume and a reopen."""

    every: dict[Priority, Every] = Field(min_length=1)


class ClosingEmail(EmailContent):
    """Sent `after_hours` (24/7) after the resolution unless the ticket was reopened meanwhile."""

    after_hours: float = Field(72, gt=0, description="the confirmation window after the resolution notice")


class CsatFollowUp(Content):
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: Role = "cs_manager"
    priority: TaskPriority = "P1"
    due_hours: int = Field(24, ge=0)


class CsatSurvey(EmailContent):
    """A one-click 1-5 survey sent with the closing e-mail; its signed links stay open until the play
    closes (the reopen window). An answer at or below `low_score` opens `followup`; every answer
    sends the account's CSAT average over `average_days` to its churn watch (metric `csat`)."""

    low_score: int = Field(2, ge=1, le=4)
    average_days: int = Field(90, ge=1)
    followup: CsatFollowUp


class ApproachingEmail(EmailContent):
    """An internal warning when a running clock reaches `at_fraction` of its target (seed 001 section
    9.2: "SLA threshold approached" is the level-1 trigger), once per clock."""

    at_fraction: float = Field(0.75, gt=0, lt=1)


class TicketComms(Content):
    """What the requester (or, lacking one, the e-mails' `to`) hears about a ticket, and the assignee's warning."""

    acknowledgement: EmailContent
    updates: UpdateEmails
    resolution: EmailContent
    closing: ClosingEmail
    csat: CsatSurvey
    approaching: ApproachingEmail

    @field_validator("approaching")
    @classmethod
    def _internal(cls, v: ApproachingEmail) -> ApproachingEmail:
        if v.customer_facing:
            raise ValueError("to: the SLA-approaching warning is for our staff, not the sponsor or contacts")
        return v

    def email_contents(self) -> list[tuple[str, tuple, EmailContent]]:
        """(snapshot key, location in sla.yaml, content) of each e-mail."""
        return [(f"ticket_{name}", ("communications", name), getattr(self, name))
                for name in ("acknowledgement", "updates", "resolution", "closing", "csat", "approaching")]
