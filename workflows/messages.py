"""Messages every play understands, whatever its playbook."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from core.models import TaskRef


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskCompleted(Message):
    """Sent by whoever completes a task (CLI, HTTP, console) to the play that created it."""

    task_id: int
    step: str
    completed_by: str


class ControlEntry(Message):
    kind: str  # paused, resumed, skipped
    at: datetime
    by: str
    note: str = ""


class PlayControl(Message):
    """How people have steered a play: carried in its state, shown in its status."""

    paused_at: datetime | None = None
    paused_by: str = ""
    pause_reason: str = ""
    log: list[ControlEntry] = []


class PausePlay(Message):
    by: str = Field(min_length=1)
    reason: str = ""


class ResumePlay(Message):
    by: str = Field(min_length=1)


class SkipStep(Message):
    step: str = Field(min_length=1)
    by: str = Field(min_length=1)
    reason: str = ""


class SkipResult(Message):
    skipped: str
    next_step: str
    next_at: datetime | None


class PlayLedger(Message):
    """What every play keeps about its own steps; the part of its state that is the same everywhere."""

    done_steps: list[str] = []
    skipped_steps: list[str] = []
    failed_steps: dict[str, str] = {}
    tasks: dict[str, TaskRef] = {}
    control: PlayControl = PlayControl()
