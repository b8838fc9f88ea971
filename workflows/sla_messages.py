"""Inputs, signals and queries of a ticket's SLA clock: one small typed model each."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import Field, WrapValidator

from core.models import Person, Priority, TaskRef, TicketStatus, Tier
from core.working_time import SupportCalendar
from playbooks.schema import SlaSnapshot
from playbooks.schema_base import shared_snapshot
from workflows.messages import Message, PlayControl
from workflows.sla_timeline import ClockView, Escalation, PriorityChange, SlaState

SLA = "sla"
TICKET_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def sla_workflow_id(ticket_id: str) -> str:
    return f"sla-{ticket_id}"


class SlaInput(Message):
    ticket_id: str = Field(pattern=TICKET_ID)
    account_id: str
    tier: Tier
    priority: Priority
    subject: str
    opened_at: datetime
    playbook: Annotated[SlaSnapshot, WrapValidator(shared_snapshot)]
    # Business days exclude these (US public holidays, observed days included),
    # computed at launch so the workflow needs no calendar package.
    holidays: list[date] = []
    # Since organisation profiles: the support region's hours and holidays (then `holidays` is empty).
    calendar: SupportCalendar | None = None
    # Ticket communications: who asked (gets the customer e-mails; default: the playbook's `to`) and
    # who works on it (gets the "SLA approaching" warning; default: the playbook's `to`).
    requester: Person | None = None
    assignee: Person | None = None
    launched_by: str = "unknown"
    search_attributes: bool = True
    max_history_events: int = Field(2_000, ge=10)
    state: SlaState | None = None


class Acknowledged(Message):
    by: str = Field(min_length=1)


class PriorityChanged(Message):
    priority: Priority
    by: str = Field(min_length=1)


class OnHold(Message):
    reason: str = Field("pending customer", min_length=1)


class Resumed(Message):
    by: str = "unknown"


class Resolved(Message):
    by: str = Field(min_length=1)
    note: str = ""


class Reopened(Message):
    reason: str = ""


class CsatAnswered(Message):
    """A CSAT answer recorded by the survey endpoint (starter/csat.py): score 1-5 of survey `round`."""

    score: int = Field(ge=1, le=5)
    round: int = Field(ge=0)
    by: str = ""


class SlaStatus(Message):
    as_of: datetime
    ticket_id: str
    account_id: str
    tier: Tier
    priority: Priority
    status: TicketStatus
    opened_at: datetime
    clocks: list[ClockView]
    escalation_level: int
    escalations: list[Escalation]
    credits: dict[str, float]
    priority_changes: list[PriorityChange]
    open_tasks: list[TaskRef]
    next_action: str
    next_action_at: datetime | None
    failed_steps: dict[str, str]
    run_count: int
    control: PlayControl


class SlaResult(Message):
    ticket_id: str
    priority: Priority
    response_met: bool | None
    resolution_met: bool | None
    escalation_level: int
    escalations: list[Escalation]
    credits: dict[str, float]
    p0_updates: int
    reopens: int


SLA_REPORT = "monthly-sla-report"


class SlaReportInput(Message):
    """The monthly SLA report's input (workflows/sla_report.py): the SLA playbook and the month (its
    first day; default: the month before the run's start, UTC)."""

    playbook: SlaSnapshot
    month: date | None = None
