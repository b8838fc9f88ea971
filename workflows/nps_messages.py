"""Inputs, signals and queries of the NPS survey cycle and of each answer's follow-up."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from core.models import Person, TaskRef, Tier
from playbooks.schema import NpsSnapshot
from workflows.messages import Message, PlayControl, PlayLedger

NPS = "nps"


def cycle_workflow_id(cycle_id: str) -> str:
    return f"nps-cycle-{cycle_id}"


def followup_workflow_id(cycle_id: str, email: str) -> str:
    return f"nps-{cycle_id}-{email.lower()}"


class Lane(Message):
    """One shard of a cycle's contacts (issue 18): where its batches got to."""

    cursor: tuple[str, str] | None = None
    done: bool = False


class CycleState(Message):
    started_at: datetime
    phase: str = "sending"  # sending, waiting, reminding, closing, closed
    cursor: tuple[str, str] | None = None
    sent: int = 0
    reminded: int = 0
    closed: int = 0
    batches: int = 0
    runs: int = 1
    # Cycles launched since issue 17 defer contacts outside their send window or over the weekly cap.
    defers: bool = False
    deferred_next: datetime | None = None  # the earliest deferred invitation still waiting
    suppressed: int = 0
    # Cycles launched since issue 18 split their contacts into `shards` by account; each shard's batches
    # go one after another, the shards' side by side (any worker runs them). 1: one cursor, as before.
    shards: int = 1
    lanes: list[Lane] | None = None


class CycleInput(Message):
    # None: the month end the run measures (a run in early February is "2027-01"); the Schedule's way.
    cycle_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    playbook: NpsSnapshot
    account_ids: list[str] | None = None
    tiers: list[Tier] | None = None
    launched_by: str = "unknown"
    max_history_events: int = Field(2_000, ge=10)
    state: CycleState | None = None


class CycleProgress(Message):
    cycle_id: str
    phase: str
    sent: int
    reminded: int
    closed: int
    batches: int
    expires_at: datetime
    run_count: int
    suppressed: int = 0
    deferred_until: datetime | None = None  # the earliest invitation waiting for its window or the cap


class FollowUpInput(Message):
    cycle_id: str
    account_id: str
    respondent: Person
    score: int = Field(ge=0, le=10)
    comment: str = ""
    answered_at: datetime
    playbook: NpsSnapshot
    search_attributes: bool = True


class ChoosePath(Message):
    path: str = Field(min_length=1)
    by: str = Field(min_length=1)


class FollowUpState(PlayLedger):
    path: str | None = None
    path_chosen_at: datetime | None = None
    resurveys: int = 0


class FollowUpStatus(Message):
    as_of: datetime
    cycle_id: str
    account_id: str
    respondent: Person
    score: int
    category: str
    path: str | None
    next_action: str
    next_action_at: datetime | None
    done_steps: list[str]
    open_tasks: list[TaskRef]
    failed_steps: dict[str, str]
    control: PlayControl
