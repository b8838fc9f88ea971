"""Inputs, signals, updates and queries of the onboarding play: one small typed model each."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, WrapValidator

from core.models import TaskRef
from playbooks.schema import OnboardingSnapshot
from playbooks.schema_base import shared_snapshot
from workflows.messages import Message, PlayControl
from workflows.onboarding_timeline import Blocker, OnboardingState, ScheduleEntry, Shift

ONBOARDING = "onboarding"


def onboarding_workflow_id(account_id: str) -> str:
    return f"onboarding-{account_id}"


class OnboardingInput(Message):
    account_id: str
    playbook: Annotated[OnboardingSnapshot, WrapValidator(shared_snapshot)]
    launched_by: str = "unknown"
    search_attributes: bool = True
    # Set only when the play continues as new, carrying what it has learnt.
    state: OnboardingState | None = None


class ReadinessSignoff(Message):
    signed_by: str = Field(min_length=1)
    note: str = ""


class BlockerReport(Message):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    title: str = Field(min_length=1, max_length=300)


class BlockerResolved(Message):
    key: str


class MoveGoLive(Message):
    day: int
    reason: str = ""


class MoveGoLiveResult(Message):
    go_live_day: int
    go_live_at: datetime
    shifted_by_days: int
    schedule: list[ScheduleEntry]


class OnboardingStatus(Message):
    # A query sees the play as of its last activity (workflow time does not
    # move between activations); `day` and overdue counts are as of then.
    as_of: datetime
    account_id: str
    playbook_version: int
    playbook_digest: str
    phase: str
    phase_name: str
    day: int
    go_live_day: int
    slip_days: int
    open_tasks: list[TaskRef]
    next_action: str
    next_action_at: datetime | None
    milestones_done: dict[str, datetime]
    blockers: list[Blocker]
    shifts: list[Shift]
    escalations: list[str]
    failed_steps: dict[str, str]
    schedule: list[ScheduleEntry]
    finished: bool
    control: PlayControl


class OnboardingResult(Message):
    account_id: str
    go_live_at: datetime | None
    slip_days: int
    escalations: list[str]
    emails_sent: int
    tasks_created: int
    skipped_steps: list[str]
    failed_steps: dict[str, str]
