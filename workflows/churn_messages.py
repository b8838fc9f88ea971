"""Inputs, signals, updates and queries of an account's churn watch."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from core.models import TaskRef
from playbooks.schema import ChurnSnapshot
from playbooks.scoring import Band, ScoringContent
from workflows.churn_timeline import BandChange, ChurnState
from workflows.messages import Message, PlayControl

CHURN = "churn"


def churn_workflow_id(account_id: str) -> str:
    return f"churn-{account_id}"


class ChurnInput(Message):
    account_id: str
    playbook: ChurnSnapshot
    scoring: ScoringContent
    launched_by: str = "unknown"
    search_attributes: bool = True
    max_history_events: int = Field(2_000, ge=10)
    state: ChurnState | None = None


class IndicatorFlag(Message):
    """A risk indicator (or positive factor) becomes present or goes away."""

    indicator: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    present: bool = True
    source: str = Field("unknown", min_length=1)
    note: str = ""


class MetricsReading(Message):
    """Readings of the metrics the scoring model uses (dau_pct, nps, usage, ...) and health components."""

    values: dict[str, float] = {}
    health: dict[str, float] = {}
    source: str = "unknown"


class ScoringUpdate(Message):
    scoring: ScoringContent
    by: str = Field(min_length=1)


class ScoreView(Message):
    score: int
    band: Band
    previous_band: Band
    indicators: list[dict]
    health_score: int | None
    scoring_version: int


class ChurnStatus(Message):
    as_of: datetime
    account_id: str
    score: int
    band: Band
    health_score: int | None
    indicators: list[dict]
    flags: dict[str, str]
    metrics: dict[str, float]
    phase: str
    intervention_band: Band | None
    spell: int
    band_changes: list[BandChange]
    monitoring_since: datetime | None
    open_tasks: list[TaskRef]
    next_action: str
    next_action_at: datetime | None
    failed_steps: dict[str, str]
    scoring_version: int
    run_count: int
    control: PlayControl


class SummaryInput(Message):
    playbook: ChurnSnapshot
    month: date | None = Field(None, description="default: the month before the run's start")
