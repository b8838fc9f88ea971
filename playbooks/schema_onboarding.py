"""The onboarding plan's content (SPEC "Playbook 1"; seed 001 sections 5-7): phases, tasks,
milestones, e-mails, blockers and slips."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt, model_validator

from core.models import Role, StaffRole, TaskPriority
from playbooks.schema_base import (
    PLAYBOOK_MODELS, SNAPSHOT_MODELS, Content, EmailContent, PlaybookContent, PlaybookSnapshot, Slug, Weekday,
    _unique,
)


class TaskContent(Content):
    key: Slug
    title: str = Field(min_length=1)
    day: PositiveInt
    owner_role: Role = "csm"
    priority: TaskPriority = "P2"
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
    severity: TaskPriority
    label: str


class ChurnRiskRule(Content):
    over_days: PositiveInt
    points: int
    indicator: Slug


class BlockerRule(Content):
    alert_after_days: PositiveInt
    alert: EmailContent
    task_title: str
    task_priority: TaskPriority = "P1"
    task_owner_role: Role = "csm"
    task_due_days: int = Field(1, ge=0)


class OnboardingContent(PlaybookContent):
    playbook: Literal["onboarding"]
    day_unit: Literal["calendar_days", "business_days"] = Field(
        "calendar_days", description="business_days: day N is the account's Nth working day (weekends and its "
                                     "public holidays do not count), and every offset and slip counts those")
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


class OnboardingSnapshot(PlaybookSnapshot):
    content: OnboardingContent


PLAYBOOK_MODELS["onboarding"] = OnboardingContent
SNAPSHOT_MODELS["onboarding"] = OnboardingSnapshot
