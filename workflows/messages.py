"""Messages every play understands, whatever its playbook."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskCompleted(Message):
    """Sent by whoever completes a task (CLI, HTTP, console) to the play that created it."""

    task_id: int
    step: str
    completed_by: str
