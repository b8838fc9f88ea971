"""The schema of playbook content (the YAML files in this folder).

The content is what a CS manager may change without a code change: day
offsets, task lists, e-mail templates, thresholds. The workflow code holds
the control flow and receives a validated, frozen snapshot of this content
in its input, so editing a file never changes a run in flight.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from core.models import EmailTemplate, Priority, Role, StaffRole

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateContent(Content):
    template: str = Field(description="file under playbooks/templates/")
    subject: str = Field(min_length=1, description="Jinja2, rendered as plain text")


class EmailContent(TemplateContent):
    to: list[Role] = Field(min_length=1)
    cc: list[Role] = []


class TaskContent(Content):
    key: Slug
    title: str = Field(min_length=1)
    day: PositiveInt
    owner_role: Role = "csm"
    priority: Priority = "P2"
    detail: str = ""
    milestone: Slug | None = Field(None, description="completing this task completes the milestone")

    @property
    def step(self) -> str:
        """The play step (and idempotency key part) of the task created from this entry."""
        return f"task/{self.key}"


class PhaseContent(Content):
    key: Slug
    name: str
    first_day: PositiveInt
    last_day: PositiveInt
    tasks: list[TaskContent] = Field(min_length=1)

    @model_validator(mode="after")
    def _days_in_range(self) -> "PhaseContent":
        if self.last_day < self.first_day:
            raise ValueError(f"last_day: day {self.last_day} is before first_day {self.first_day}")
        for i, task in enumerate(self.tasks):
            if not self.first_day <= task.day <= self.last_day:
                raise ValueError(
                    f"tasks[{i}].day: task {task.key!r} is due on day {task.day}, outside the phase's days "
                    f"{self.first_day}-{self.last_day}"
                )
        return self


class AtStart(Content):
    kind: Literal["start"]


class AfterMilestone(Content):
    kind: Literal["after_milestone"]
    milestone: Slug
    offset_days: int = Field(ge=0)


class Weekly(Content):
    kind: Literal["weekly"]
    weekday: Weekday
    until_milestone: Slug


class DailyAfterMilestone(Content):
    kind: Literal["daily_after_milestone"]
    milestone: Slug
    days: PositiveInt


Trigger = Annotated[Union[AtStart, AfterMilestone, Weekly, DailyAfterMilestone], Field(discriminator="kind")]


class EmailStep(EmailContent):
    key: Slug
    trigger: Trigger


class SlipEscalation(Content):
    over_days: PositiveInt
    level: int = Field(ge=1, le=4)
    to_role: StaffRole
    severity: Priority
    label: str


class ChurnRiskRule(Content):
    over_days: PositiveInt
    points: int
    indicator: Slug


class BlockerRule(Content):
    alert_after_days: PositiveInt
    alert: EmailContent
    task_title: str
    task_priority: Priority = "P1"
    task_owner_role: Role = "csm"
    task_due_days: int = Field(1, ge=0)


class PlaybookContent(Content):
    """What every playbook file has."""

    name: str
    version: PositiveInt
    timezone: str = "America/New_York"
    work_start_hour: int = Field(9, ge=0, le=23, description="steps of a day fire at this local hour")
    due_hour: int = Field(18, ge=1, le=23, description="tasks of a day are due at this local hour")
    escalation: TemplateContent = Field(description="the report e-mailed to whoever a step escalates to")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        """(snapshot key, location in the file, content) of every e-mail this playbook can send."""
        return [("escalation", ("escalation",), self.escalation)]


class OnboardingContent(PlaybookContent):
    playbook: Literal["onboarding"]
    kickoff_milestone: Slug
    readiness_gate: Slug
    go_live_milestone: Slug
    max_go_live_day: PositiveInt
    phases: list[PhaseContent] = Field(min_length=1)
    emails: list[EmailStep] = []
    blockers: BlockerRule
    slip_escalations: list[SlipEscalation] = []
    churn_risk: ChurnRiskRule

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        return [
            *super().email_contents(),
            ("blocker_alert", ("blockers", "alert"), self.blockers.alert),
            *((e.key, ("emails", i), e) for i, e in enumerate(self.emails)),
        ]

    @property
    def tasks(self) -> list[TaskContent]:
        return [t for p in self.phases for t in p.tasks]

    def milestone_day(self, milestone: str) -> int:
        return next(t.day for t in self.tasks if t.milestone == milestone)

    def phase_of_day(self, day: int) -> PhaseContent:
        for phase in self.phases:
            if day <= phase.last_day:
                return phase
        return self.phases[-1]

    @property
    def go_live_day(self) -> int:
        return self.milestone_day(self.go_live_milestone)

    @property
    def gate_day(self) -> int:
        return self.milestone_day(self.readiness_gate)

    @model_validator(mode="after")
    def _consistent(self) -> "OnboardingContent":
        previous = 0
        for i, phase in enumerate(self.phases):
            if phase.first_day != previous + 1:
                raise ValueError(
                    f"phases[{i}].first_day: phase {phase.key!r} starts on day {phase.first_day}; phases must "
                    f"follow each other without gaps or overlaps (expected day {previous + 1})"
                )
            previous = phase.last_day
        _unique("phase key", {f"phases[{i}].key": p.key for i, p in enumerate(self.phases)})
        task_paths = {
            f"phases[{i}].tasks[{j}]": t for i, p in enumerate(self.phases) for j, t in enumerate(p.tasks)
        }
        _unique("task key", {f"{path}.key": t.key for path, t in task_paths.items()})
        _unique("e-mail key", {
            "escalation": "escalation", "blockers.alert": "blocker_alert",
            **{f"emails[{i}].key": e.key for i, e in enumerate(self.emails)},
        })
        milestones = {f"{path}.milestone": t.milestone for path, t in task_paths.items() if t.milestone}
        _unique("milestone", milestones)
        wanted = {
            "kickoff_milestone": self.kickoff_milestone,
            "readiness_gate": self.readiness_gate,
            "go_live_milestone": self.go_live_milestone,
        }
        for i, email in enumerate(self.emails):
            for attr in ("milestone", "until_milestone"):
                if hasattr(email.trigger, attr):
                    wanted[f"emails[{i}].trigger.{attr}"] = getattr(email.trigger, attr)
        for where, name in wanted.items():
            if name not in milestones.values():
                raise ValueError(f"{where}: names milestone {name!r}, which no task completes")
        if self.gate_day >= self.go_live_day:
            raise ValueError(
                f"readiness_gate: the readiness gate (day {self.gate_day}) must come before "
                f"go-live (day {self.go_live_day})"
            )
        if self.max_go_live_day < self.go_live_day:
            raise ValueError(f"max_go_live_day: day {self.max_go_live_day} is before go-live day {self.go_live_day}")
        days = [s.over_days for s in self.slip_escalations]
        if days != sorted(set(days)):
            raise ValueError("slip_escalations: must be in rising order of over_days, each once")
        return self


def _unique(what: str, values: dict[str, str]) -> None:
    """`values` maps each value's path in the file to the value."""
    seen: set[str] = set()
    for path, v in values.items():
        if v in seen:
            raise ValueError(f"{path}: {what} {v!r} appears twice")
        seen.add(v)


class PlaybookSnapshot(Content):
    """Validated content plus the template sources it uses, as of launch time."""

    source: str
    digest: str
    templates: dict[str, EmailTemplate]

    def template(self, name: str) -> EmailTemplate:
        return self.templates[name]


class OnboardingSnapshot(PlaybookSnapshot):
    content: OnboardingContent


PLAYBOOK_MODELS: dict[str, type[PlaybookContent]] = {"onboarding": OnboardingContent}
SNAPSHOT_MODELS: dict[str, type[PlaybookSnapshot]] = {"onboarding": OnboardingSnapshot}
