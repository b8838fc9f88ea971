"""The churn-risk interventions' content (SPEC "Playbook 4"; seed 001 sections 13.3, 13.4):
one play per band, the RED daily check-in, monitoring and the monthly summary."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from core.models import Role, TaskPriority
from playbooks.schema_base import (
    PLAYBOOK_MODELS, SNAPSHOT_MODELS, Content, EmailContent, PlaybookContent, PlaybookSnapshot, Slug,
    TemplateContent, _unique,
)


InterventionBand = Literal["YELLOW", "ORANGE", "RED"]


class InterventionAction(Content):
    key: Slug
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: Role = "csm"
    priority: TaskPriority = "P1"
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
    priority: TaskPriority = "P1"
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
