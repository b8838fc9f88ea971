"""The churn-risk models (`playbooks/churn_scoring.yaml`) and how they score.

Two configurable models, as the seeds give them:

- the risk score of seed 001 section 13.2: points for each indicator present,
  minus points for positive factors; bands GREEN / YELLOW / ORANGE / RED by
  upper bound. An indicator is present because something said so (a signal,
  another play) or because a metric crosses its bounds (DAU below 10%).
- the weighted 0-100 health score of seeds 002 and 003, with alert rules on
  a metric's history (usage down 20% in 2 weeks); an alert raises the
  indicator it names.

Pure functions of the config and the inputs, so the scoring is property
tested on its own and a CS leader's edit changes scores, not code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from playbooks.schema import Content, Slug

Band = Literal["GREEN", "YELLOW", "ORANGE", "RED"]
BANDS: tuple[Band, ...] = Band.__args__  # type: ignore[attr-defined]


class MetricBounds(Content):
    """The indicator is present while `metric` is within the bounds given
    (`above` and `below` exclusive, `at_least` inclusive)."""

    metric: Slug
    at_least: float | None = None
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> "MetricBounds":
        if self.at_least is None and self.above is None and self.below is None:
            raise ValueError("below: give at least one of at_least, above, below")
        if self.at_least is not None and self.above is not None:
            raise ValueError("above: give at_least or above, not both")
        low = self.at_least if self.at_least is not None else self.above
        if low is not None and self.below is not None and low >= self.below:
            raise ValueError(f"below: {self.below} is not above the lower bound {low}")
        return self

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return ((self.at_least is None or value >= self.at_least) and (self.above is None or value > self.above)
                and (self.below is None or value < self.below))


class Indicator(Content):
    key: Slug
    label: str = Field(min_length=1)
    group: Literal["contractual", "engagement", "satisfaction", "organizational", "implementation", "positive"]
    points: int = Field(description="added to the risk score while present; negative for positive factors")
    when: MetricBounds | None = Field(None, description="present while a metric is within bounds")

    @model_validator(mode="after")
    def _sign(self) -> "Indicator":
        if self.group == "positive" and self.points >= 0:
            raise ValueError(f"points: a positive factor lowers the risk: use a negative number, not {self.points}")
        if self.group != "positive" and self.points <= 0:
            raise ValueError(f"points: a risk indicator adds points: use a positive number, not {self.points}")
        return self


class BandLimit(Content):
    band: Band
    up_to: int | None = Field(None, description="highest score in the band; none for the last band")


class HealthComponent(Content):
    key: Slug
    label: str
    weight: float = Field(gt=0, le=100)


class HealthAlert(Content):
    """Seed 002 'Proactive Monitoring & Alerts': a fall of `drop_pct` in `metric` within `window_days`."""

    key: Slug
    metric: Slug
    drop_pct: float = Field(gt=0, le=100)
    window_days: int = Field(gt=0, le=365)
    raises: Slug = Field(description="the risk indicator this alert makes present")


class HealthModel(Content):
    components: list[HealthComponent] = Field(min_length=1)
    at_risk_below: int = Field(60, ge=0, le=100, description="a health score below this raises `raises`")
    raises: Slug
    alerts: list[HealthAlert] = []

    @model_validator(mode="after")
    def _weights(self) -> "HealthModel":
        total = sum(c.weight for c in self.components)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"components: weights add up to {total:g}, not 100")
        return self


class ScoringContent(Content):
    scoring: Literal["churn"]
    version: int = Field(ge=1)
    indicators: list[Indicator] = Field(min_length=1)
    bands: list[BandLimit] = Field(min_length=4, max_length=4)
    health: HealthModel

    @model_validator(mode="after")
    def _consistent(self) -> "ScoringContent":
        seen: set[str] = set()
        for i, ind in enumerate(self.indicators):
            if ind.key in seen:
                raise ValueError(f"indicators[{i}].key: indicator {ind.key!r} appears twice")
            seen.add(ind.key)
        if [b.band for b in self.bands] != list(BANDS):
            raise ValueError(f"bands: must list {', '.join(BANDS)} in that order")
        limits = [b.up_to for b in self.bands]
        if limits[-1] is not None or any(v is None for v in limits[:-1]):
            raise ValueError("bands: every band but the last has up_to; the last has none")
        if limits[:-1] != sorted(set(limits[:-1])):
            raise ValueError("bands: up_to must rise from band to band")
        for i, alert in enumerate(self.health.alerts):
            if alert.raises not in seen:
                raise ValueError(f"health.alerts[{i}].raises: no indicator {alert.raises!r}")
        if self.health.raises not in seen:
            raise ValueError(f"health.raises: no indicator {self.health.raises!r}")
        return self

    def indicator(self, key: str) -> Indicator | None:
        return next((i for i in self.indicators if i.key == key), None)


# -- scoring (pure) --------------------------------------------------------------------
def band_of(config: ScoringContent, score: int) -> Band:
    for limit in config.bands:
        if limit.up_to is None or score <= limit.up_to:
            return limit.band
    return config.bands[-1].band


def health_score(config: ScoringContent, components: dict[str, float]) -> int | None:
    """Weighted 0-100 health; None until every component is known."""
    parts = config.health.components
    if any(c.key not in components for c in parts):
        return None
    value = sum(max(0.0, min(100.0, components[c.key])) * c.weight for c in parts) / 100
    return round(value)


def fired_alerts(config: ScoringContent, history: dict[str, list[tuple[datetime, float]]],
                 now: datetime) -> list[str]:
    """Alerts whose metric fell by at least `drop_pct` from a reading within the window to the latest one."""
    out = []
    for alert in config.health.alerts:
        readings = [(at, v) for at, v in history.get(alert.metric, []) if at >= now - timedelta(days=alert.window_days)]
        if len(readings) < 2:
            continue
        latest = readings[-1][1]
        peak = max(v for _, v in readings[:-1])
        if peak > 0 and (peak - latest) / peak * 100 >= alert.drop_pct:
            out.append(alert.key)
    return out


def present_indicators(config: ScoringContent, flagged: set[str], metrics: dict[str, float],
                       alerts: list[str], health: int | None) -> list[str]:
    """Indicators present now: flagged by a signal or play, within their metric bounds, or raised by an alert."""
    raised = {a.raises for a in config.health.alerts if a.key in alerts}
    if health is not None and health < config.health.at_risk_below:
        raised.add(config.health.raises)
    out = []
    for ind in config.indicators:
        by_metric = ind.when is not None and ind.when.holds(metrics.get(ind.when.metric))
        if ind.key in flagged or by_metric or ind.key in raised:
            out.append(ind.key)
    return out


def risk_score(config: ScoringContent, present: list[str]) -> int:
    """Sum of the present indicators' points, never below 0 (positive factors cannot make risk negative)."""
    total = sum(i.points for i in config.indicators if i.key in set(present))
    return max(0, total)
