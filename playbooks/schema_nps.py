"""The NPS survey cycle's content (SPEC "Playbook 3"; seed 001 section 14): the survey, its
reminder, batches, and the follow-up of promoters, passives and detractors."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from core.models import EmailCategory, Role, TaskPriority
from playbooks.schema_base import (
    PLAYBOOK_MODELS, SNAPSHOT_MODELS, Content, EmailContent, PlaybookContent, PlaybookSnapshot, Slug,
    TemplateContent,
)


class FollowUpTask(Content):
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: Role = "csm"
    priority: TaskPriority = "P2"
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
