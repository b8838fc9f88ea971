"""Inputs, signals, updates and queries of the renewal countdown: one small typed model each."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import Field, WrapValidator

from core.models import TaskRef, Tier
from playbooks.schema import RenewalSnapshot
from playbooks.schema_base import shared_snapshot
from workflows.messages import Message, PlayControl
from workflows.renewal_timeline import DateChange, Outcome, RenewalState, ScheduleEntry

RENEWAL = "renewal"


def renewal_workflow_id(account_id: str) -> str:
    return f"renewal-{account_id}"


class RenewalInput(Message):
    account_id: str
    # Both snapshotted at launch, like the playbook: a later ARR change does
    # not reshuffle a countdown in flight; a date change goes through the update.
    renewal_date: date
    tier: Tier
    playbook: Annotated[RenewalSnapshot, WrapValidator(shared_snapshot)]
    launched_by: str = "unknown"
    search_attributes: bool = True
    # Continue as new once the history is this long (the server suggests it
    # sooner for very large histories); tests lower it to exercise the carry-over.
    max_history_events: int = Field(2_000, ge=10)
    # Set only when the play continues as new, carrying what it has learnt.
    state: RenewalState | None = None


class Renewed(Message):
    signed_by: str = Field(min_length=1)
    new_renewal_date: date | None = Field(None, description="end of the new term; one year on if not given")


class Churned(Message):
    recorded_by: str = Field(min_length=1)
    reason: str = ""


class ChangeRenewalDate(Message):
    renewal_date: date
    reason: str = ""


class RenewalPlan(Message):
    """What the date-change update returns: the new date and every step's place in it."""

    renewal_date: date
    previous_date: date
    days_to_renewal: int
    schedule: list[ScheduleEntry]


class RenewalStatus(Message):
    # As of the play's last activation (workflow time does not move in a query).
    as_of: datetime
    account_id: str
    tier: Tier
    playbook_version: int
    playbook_digest: str
    renewal_date: date
    original_renewal_date: date
    days_to_renewal: int
    phase: str
    outcome: Outcome | None
    next_action: str
    next_action_at: datetime | None
    open_tasks: list[TaskRef]
    date_changes: list[DateChange]
    failed_steps: dict[str, str]
    schedule: list[ScheduleEntry]
    run_count: int
    finished: bool
    control: PlayControl


class RenewalResult(Message):
    account_id: str
    outcome: Outcome
    renewal_date: date
    new_renewal_date: date | None
    emails_sent: int
    tasks_created: int
    done_steps: list[str]
    skipped_steps: dict[str, str]
    failed_steps: dict[str, str]
