"""An account's churn watch as data: score, band, and the intervention the band
calls for (seed 001 sections 13.2 and 13.3). Pure and deterministic.

- Every change (a flag from a play or the CRM, a metric reading, a new
  scoring model) rescores the account; a band change is recorded.
- Entering YELLOW, ORANGE or RED starts that band's play when no play is
  under way or the new band is higher (an upgrade adds the higher band's
  actions); a lower band keeps what is under way (a downgrade). There is one
  play per account at a time: an intervention "spell", from leaving GREEN
  to coming back to it.
- Each action is a task due `due_hours` after its band was entered; one not
  done by then escalates to the band's owner.
- Once RED, a daily check-in task until the account is back to YELLOW;
  leaving RED for YELLOW or GREEN starts weekly post-rescue monitoring.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from playbooks.schema import ChurnContent
from playbooks.scoring import (
    Band, ScoringContent, band_of, fired_alerts, health_score, present_indicators, risk_score,
)
from workflows.calendar import at_local, local_date
from workflows.messages import PlayLedger

RANK = {"GREEN": 0, "YELLOW": 1, "ORANGE": 2, "RED": 3}
ActionKind = Literal["band", "deadline", "checkin", "monitor"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Flag(Model):
    source: str
    at: datetime
    note: str = ""


class Reading(Model):
    at: datetime
    value: float


class BandChange(Model):
    from_band: Band
    to_band: Band
    score: int
    at: datetime


class ChurnState(PlayLedger):
    """Everything the watch has learnt; carried whole across continue-as-new."""

    started_at: datetime
    flags: dict[str, Flag] = {}
    metrics: dict[str, float] = {}
    history: dict[str, list[Reading]] = {}
    health: dict[str, float] = {}
    score: int = 0
    band: Band = "GREEN"
    present: list[str] = []
    band_changes: list[BandChange] = []
    recorded_changes: int = 0  # band changes written to PostgreSQL
    spell: int = 0
    intervention_band: Band | None = None
    entered: dict[str, datetime] = {}  # band -> entered, in the current spell
    monitoring_since: datetime | None = None
    monitoring_spell: int = 0
    last_checkin: datetime | None = None
    runs: int = 1


class Action(Model):
    step: str
    kind: ActionKind
    at: datetime
    band: Band | None = None
    key: str = ""


class ChurnTimeline:
    def __init__(self, content: ChurnContent, scoring: ScoringContent, state: ChurnState):
        self.content, self.scoring, self.state = content, scoring, state

    @property
    def tz(self) -> str:
        return self.content.timezone

    # -- scoring ---------------------------------------------------------------------
    def health(self) -> int | None:
        return health_score(self.scoring, self.state.health)

    def alerts(self, now: datetime) -> list[str]:
        history = {m: [(r.at, r.value) for r in rs] for m, rs in self.state.history.items()}
        return fired_alerts(self.scoring, history, now)

    def rescore(self, now: datetime) -> BandChange | None:
        st = self.state
        st.present = present_indicators(self.scoring, set(st.flags), st.metrics, self.alerts(now), self.health())
        st.score = risk_score(self.scoring, st.present)
        band = band_of(self.scoring, st.score)
        if band == st.band:
            return None
        change = BandChange(from_band=st.band, to_band=band, score=st.score, at=now)
        st.band_changes.append(change)
        st.band = band
        self._transition(change)
        return change

    def _transition(self, change: BandChange) -> None:
        st, new, old = self.state, change.to_band, change.from_band
        if new != "GREEN" and (st.intervention_band is None or RANK[new] > RANK[st.intervention_band]):
            if st.intervention_band is None:
                st.spell += 1
                st.entered = {}
            st.intervention_band = new
            st.entered.setdefault(new, change.at)
        if new == "RED":
            st.monitoring_since = None  # back in RED: the rescue starts over
        if old in ("RED", "ORANGE") and new in ("YELLOW", "GREEN") and "RED" in st.entered and st.monitoring_since is None:
            st.monitoring_since, st.monitoring_spell = change.at, st.spell
        if new == "GREEN":
            st.intervention_band = None

    def flag(self, key: str, present: bool, source: str, note: str, now: datetime) -> bool:
        st = self.state
        if present and key not in st.flags:
            st.flags[key] = Flag(source=source, at=now, note=note)
            return True
        if not present and key in st.flags:
            del st.flags[key]
            return True
        return False

    def read_metrics(self, values: dict[str, float], health: dict[str, float], now: datetime) -> None:
        st = self.state
        st.metrics.update(values)
        st.health.update(health)
        keep_from = now - timedelta(days=self.content.metric_history_days)
        for metric, value in values.items():
            readings = [r for r in st.history.get(metric, []) if r.at >= keep_from]
            readings.append(Reading(at=now, value=value))
            st.history[metric] = readings

    # -- what is due -------------------------------------------------------------------
    def _next_morning(self, after: datetime) -> datetime:
        day = local_date(after, self.tz) + timedelta(days=1)
        return at_local(day, self.content.work_start_hour, self.tz)

    def pending(self, now: datetime) -> list[Action]:
        st, c = self.state, self.content
        done = set(st.done_steps) | set(st.skipped_steps)
        actions: list[Action] = []
        if st.intervention_band is not None:
            for band, entered in st.entered.items():
                play = c.band_play(band)
                actions.append(Action(step=f"band/{st.spell}/{band}", kind="band", at=entered, band=band))
                for a in play.actions:
                    task = self.task_step(band, a.step)
                    ref = st.tasks.get(task)
                    if ref is None or ref.status != "completed":
                        actions.append(Action(step=f"{task}/deadline", kind="deadline", band=band, key=a.key,
                                              at=entered + timedelta(hours=a.due_hours)))
            if "RED" in st.entered and st.band in ("RED", "ORANGE"):
                at = self._next_morning(max(st.entered["RED"], st.last_checkin or st.entered["RED"]))
                actions.append(Action(step=f"checkin/{st.spell}/{local_date(at, self.tz).isoformat()}",
                                      kind="checkin", at=at))
        if st.monitoring_since is not None and st.band != "RED":
            start = local_date(st.monitoring_since, self.tz)
            for week in range(1, c.monitoring.weeks + 1):
                at = at_local(start + timedelta(days=7 * week), c.work_start_hour, self.tz)
                actions.append(Action(step=f"monitor/{st.monitoring_spell}/{week}", kind="monitor", at=at))
        return sorted((a for a in actions if a.step not in done), key=lambda a: (a.at, a.step))

    def due(self, now: datetime) -> list[Action]:
        return [a for a in self.pending(now) if a.at <= now]

    def next_wake(self, now: datetime) -> datetime | None:
        return min((a.at for a in self.pending(now) if a.at > now), default=None)

    def mark_done(self, step: str) -> None:
        if step not in self.state.done_steps:
            self.state.done_steps.append(step)

    def skip(self, step: str) -> None:
        if step not in self.state.skipped_steps:
            self.state.skipped_steps.append(step)

    def task_step(self, band: str, action_step: str) -> str:
        return f"band/{self.state.spell}/{band}/{action_step}"

    # -- reporting -----------------------------------------------------------------------
    def breakdown(self) -> list[dict]:
        return [{"key": i.key, "label": i.label, "points": i.points}
                for i in self.scoring.indicators if i.key in set(self.state.present)]

    def next_action(self, now: datetime) -> tuple[str, datetime | None]:
        pending = self.pending(now)
        return (pending[0].step, pending[0].at) if pending else ("watching", None)

    def phase(self) -> str:
        st = self.state
        if st.intervention_band is not None:
            return f"intervention_{st.intervention_band.lower()}"
        return "monitoring" if st.monitoring_since is not None and self.pending_monitoring() else "watching"

    def pending_monitoring(self) -> bool:
        done = set(self.state.done_steps)
        return any(f"monitor/{self.state.monitoring_spell}/{w}" not in done
                   for w in range(1, self.content.monitoring.weeks + 1))
