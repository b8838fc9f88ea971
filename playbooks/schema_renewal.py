"""The renewal countdown's content (SPEC "Playbook 2"; seeds 002 and 003): steps counted down
to the renewal date, per tier, past-due escalations and the churn close-out."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, PositiveInt, ValidationInfo, model_validator

from core.models import Role, StaffRole, TaskPriority, Tier
from playbooks.schema_base import (
    PLAYBOOK_MODELS, SNAPSHOT_MODELS, Content, EmailContent, PlaybookContent, PlaybookSnapshot, Slug,
    TemplateContent, _unique, context_profile,
)

OwnerRole = Union[Role, dict[Tier, Role]]


class TieredContent(Content):
    """An entry that applies to some tiers only; without `tiers`, to every tier
    its step applies to."""

    tiers: list[Tier] | None = Field(None, min_length=1)

    def applies_to(self, tier: Tier) -> bool:
        return self.tiers is None or tier in self.tiers


class StepTask(TieredContent):
    key: Slug
    title: str = Field(min_length=1)
    detail: str = ""
    owner_role: OwnerRole = Field("csm", description="a role, or a role per tier")
    priority: TaskPriority = "P2"
    due_days: int = Field(7, ge=0, description="due this many days after the step's date")

    def owner_for(self, tier: Tier) -> Role:
        return self.owner_role if isinstance(self.owner_role, str) else self.owner_role[tier]

    def owner_problem(self, tiers: list[Tier]) -> str | None:
        if isinstance(self.owner_role, dict):
            missing = [t for t in (self.tiers or tiers) if t not in self.owner_role]
            if missing:
                return f"owner_role: names no owner for {', '.join(missing)}"
        return None


class StepEmail(TieredContent, EmailContent):
    key: Slug


class RenewalStep(TieredContent):
    key: Slug
    name: str = Field(min_length=1)
    phase: Slug = Field(description="the Phase search attribute while this step is the latest")
    tasks: list[StepTask] = []
    emails: list[StepEmail] = []
    catch_up: bool = Field(
        False, description="still fire when a change of renewal date leaves this step in the past"
    )

    @model_validator(mode="after")
    def _has_work(self, info: ValidationInfo) -> "RenewalStep":
        if not self.tasks and not self.emails:
            raise ValueError("tasks: a step needs at least one task or e-mail")
        profile = context_profile(info)
        # Without a profile (a play reading its input) only what the step itself names is known.
        tiers = self.tiers or (list(profile.tier_names) if profile else None)
        for what, entries in (("tasks", self.tasks), ("emails", self.emails)):
            for i, entry in enumerate(entries):
                extra = [t for t in entry.tiers or [] if tiers is not None and t not in tiers]
                if extra:
                    raise ValueError(
                        f"{what}[{i}].tiers: {', '.join(extra)} not among the step's tiers ({', '.join(tiers)})"
                    )
        for i, task in enumerate(self.tasks):
            problem = task.owner_problem(tiers) if tiers is not None else None
            if problem:
                raise ValueError(f"tasks[{i}].{problem}")
        _unique("task key", {f"tasks[{i}].key": t.key for i, t in enumerate(self.tasks)})
        _unique("e-mail key", {f"emails[{i}].key": e.key for i, e in enumerate(self.emails)})
        return self

    def tasks_for(self, tier: Tier) -> list[StepTask]:
        return [t for t in self.tasks if t.applies_to(tier)] if self.applies_to(tier) else []

    def emails_for(self, tier: Tier) -> list[StepEmail]:
        return [e for e in self.emails if e.applies_to(tier)] if self.applies_to(tier) else []


class CountdownStep(RenewalStep):
    days_before: int = Field(ge=0, le=730)


class PostRenewalStep(RenewalStep):
    days_after: int = Field(ge=0, le=365)


class RiskMark(Content):
    points: int
    indicator: Slug


class FinalWindow(RiskMark):
    days_before: PositiveInt


class PastDueEscalation(Content):
    after_days: PositiveInt
    level: int = Field(ge=1, le=4)
    to_role: StaffRole
    severity: TaskPriority
    label: str


class PastDue(RiskMark):
    after_days: PositiveInt = Field(1, description="days after the renewal date without `renewed`")
    task: StepTask
    escalations: list[PastDueEscalation] = []


class ChurnClose(Content):
    task: StepTask
    notify: EmailContent


class RenewalContent(PlaybookContent):
    playbook: Literal["renewal"]
    max_days_ahead: PositiveInt = Field(1095, description="a renewal date further out is refused")
    countdown: list[CountdownStep] = Field(min_length=1)
    post_renewal: list[PostRenewalStep] = []
    final_window: FinalWindow
    past_due: PastDue
    churned: ChurnClose

    @property
    def steps(self) -> list[RenewalStep]:
        return [*self.countdown, *self.post_renewal]

    def step(self, key: str) -> RenewalStep:
        return next(s for s in self.steps if s.key == key)

    def email_contents(self) -> list[tuple[str, tuple, TemplateContent]]:
        return [
            *super().email_contents(),
            ("churn_notice", ("churned", "notify"), self.churned.notify),
            *(
                (email_key(s.key, e.key), (where, i, "emails", j), e)
                for where, steps in (("countdown", self.countdown), ("post_renewal", self.post_renewal))
                for i, s in enumerate(steps)
                for j, e in enumerate(s.emails)
            ),
            *(
                (follow_up_key(s.key, e.key, n), (where, i, "emails", j, "follow_ups", n - 1), f)
                for where, steps in (("countdown", self.countdown), ("post_renewal", self.post_renewal))
                for i, s in enumerate(steps)
                for j, e in enumerate(s.emails)
                for n, f in enumerate(e.follow_ups, start=1)
            ),
        ]

    @model_validator(mode="after")
    def _consistent(self) -> "RenewalContent":
        days = [s.days_before for s in self.countdown]
        if days != sorted(days, reverse=True) or len(set(days)) != len(days):
            bad = next(i for i in range(1, len(days)) if days[i] >= days[i - 1])
            raise ValueError(
                f"countdown[{bad}].days_before: steps must count down, each on its own day "
                f"({days[bad]} after {days[bad - 1]})"
            )
        after = [s.days_after for s in self.post_renewal]
        if after != sorted(after):
            bad = next(i for i in range(1, len(after)) if after[i] < after[i - 1])
            raise ValueError(f"post_renewal[{bad}].days_after: post-renewal steps must be in date order")
        _unique("step key", {
            **{f"countdown[{i}].key": s.key for i, s in enumerate(self.countdown)},
            **{f"post_renewal[{i}].key": s.key for i, s in enumerate(self.post_renewal)},
        })
        rungs = [e.after_days for e in self.past_due.escalations]
        if rungs != sorted(set(rungs)):
            raise ValueError("past_due.escalations: must be in rising order of after_days, each once")
        return self


def email_key(step_key: str, email: str) -> str:
    """The snapshot key (and step suffix) of a step's e-mail."""
    return f"{step_key}/{email}"


def follow_up_key(step_key: str, email: str, n: int) -> str:
    """The snapshot key of the `n`th follow-up (1, 2, ...) of a step's e-mail."""
    return f"{step_key}/{email}/follow-up/{n}"


class RenewalSnapshot(PlaybookSnapshot):
    content: RenewalContent


PLAYBOOK_MODELS["renewal"] = RenewalContent
SNAPSHOT_MODELS["renewal"] = RenewalSnapshot
