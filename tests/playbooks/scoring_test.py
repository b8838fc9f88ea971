"""The churn-risk models (`playbooks/scoring.py` with churn_scoring.yaml): property tests of the
score and bands, the health score and its alerts, and file:line errors for a broken scoring file."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from playbooks.loader import PlaybookError, load_scoring, validate_all
from playbooks.scoring import BANDS, band_of, fired_alerts, health_score, present_indicators, risk_score
from tests.playbooks.loader_test import edit_yaml, line_of

CONFIG = load_scoring()
RISKS = [i.key for i in CONFIG.indicators if i.points > 0]
POSITIVES = [i.key for i in CONFIG.indicators if i.points < 0]
subsets = st.sets(st.sampled_from([i.key for i in CONFIG.indicators]))


@given(subsets, st.sampled_from(RISKS))
def test_adding_a_risk_indicator_never_lowers_the_score(present, extra):
    assert risk_score(CONFIG, sorted(present | {extra})) >= risk_score(CONFIG, sorted(present))


@given(subsets, st.sampled_from(POSITIVES))
def test_a_positive_factor_never_raises_the_score(present, extra):
    assert risk_score(CONFIG, sorted(present | {extra})) <= risk_score(CONFIG, sorted(present))


@given(subsets)
def test_score_is_the_sum_of_points_floored_at_zero(present):
    assert risk_score(CONFIG, sorted(present)) == max(0, sum(i.points for i in CONFIG.indicators if i.key in present))


@given(st.integers(min_value=0, max_value=10_000))
def test_bands_partition_every_score(score):
    band = band_of(CONFIG, score)
    expected = "GREEN" if score <= 20 else "YELLOW" if score <= 40 else "ORANGE" if score <= 60 else "RED"
    assert band == expected


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=0, max_value=500))
def test_bands_are_monotonic_in_the_score(a, b):
    low, high = sorted((a, b))
    assert BANDS.index(band_of(CONFIG, low)) <= BANDS.index(band_of(CONFIG, high))


@given(st.lists(st.integers(min_value=1, max_value=60), min_size=3, max_size=3, unique=True).map(sorted),
       st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=200))
@settings(max_examples=60)
def test_changed_thresholds_and_weights_are_honoured(limits, points, score):
    edited = CONFIG.model_copy(update={
        "bands": [b.model_copy(update={"up_to": up}) for b, up in zip(CONFIG.bands, [*limits, None])],
        "indicators": [i.model_copy(update={"points": points}) if i.key == "budget_cuts" else i
                       for i in CONFIG.indicators],
    })
    assert risk_score(edited, ["budget_cuts"]) == points
    band = band_of(edited, score)
    assert band == ("GREEN" if score <= limits[0] else "YELLOW" if score <= limits[1]
                    else "ORANGE" if score <= limits[2] else "RED")


@given(st.floats(min_value=0, max_value=100, allow_nan=False))
def test_each_dau_reading_counts_in_exactly_one_band_of_the_table(dau):
    present = present_indicators(CONFIG, set(), {"dau_pct": dau}, [], None)
    dau_rows = [k for k in present if k.startswith("dau_")]
    assert len(dau_rows) == (1 if dau < 50 else 0)


@given(st.dictionaries(st.sampled_from(["product_adoption", "technical_health", "business_outcomes",
                                        "relationship_health", "growth_potential"]),
                       st.floats(min_value=0, max_value=100, allow_nan=False), min_size=5))
def test_health_score_is_a_weighted_average_within_0_100(components):
    value = health_score(CONFIG, components)
    assert 0 <= value <= 100
    assert min(components.values()) - 1 <= value <= max(components.values()) + 1


def test_seed_examples_score_as_the_seed_says():
    # Seed 001 section 13.2 examples: renewal in 60 days (final 90 days), low satisfaction, budget concerns.
    assert band_of(CONFIG, risk_score(CONFIG, ["contract_final_90_days", "nps_below_30", "budget_cuts"])) == "ORANGE"
    assert risk_score(CONFIG, ["key_stakeholder_departed", "uptime_issues", "renewal_past_due"]) == 75
    assert risk_score(CONFIG, ["multi_year_contract"]) == 0


def test_usage_drop_of_20_percent_in_two_weeks_raises_its_indicator():
    now = datetime(2027, 3, 1, tzinfo=timezone.utc)
    history = {"usage": [(now - timedelta(days=13), 1000.0), (now - timedelta(days=5), 900.0), (now, 790.0)]}
    assert fired_alerts(CONFIG, history, now) == ["usage_drop_20_in_14d"]
    slow = {"usage": [(now - timedelta(days=20), 1000.0), (now, 790.0)]}  # the peak is outside the window
    assert fired_alerts(CONFIG, slow, now) == []
    assert "usage_drop" in present_indicators(CONFIG, set(), {}, ["usage_drop_20_in_14d"], None)
    assert "health_at_risk" in present_indicators(CONFIG, set(), {}, [], 59)


SCORING_CASES = {
    "weights not adding up": ("{key: growth_potential, label: Growth potential, weight: 15}",
                              "{key: growth_potential, label: Growth potential, weight: 25}",
                              "  components:", "health.components", "weights add up to 110, not 100"),
    "positive factor with positive points": ("points: -15, label: Signed multi-year", "points: 15, label: Signed multi-year",
                                             "points: 15, label: Signed multi-year", "indicators[24].points",
                                             "a positive factor lowers the risk: use a negative number, not 15"),
    "bands out of order": ("{band: YELLOW, up_to: 40}", "{band: YELLOW, up_to: 10}", "bands:", "bands",
                           "up_to must rise from band to band"),
    "alert raising an unknown indicator": ("raises: usage_drop}", "raises: usage_dip}", "raises: usage_dip}",
                                           "health.alerts[0].raises", "no indicator 'usage_dip'"),
    "bounds the wrong way round": ("when: {metric: dau_pct, at_least: 10, below: 30}",
                                   "when: {metric: dau_pct, at_least: 30, below: 10}",
                                   "at_least: 30, below: 10", "indicators[5].when.below",
                                   "10.0 is not above the lower bound 30.0"),
}


@pytest.mark.parametrize(("old", "new", "needle", "field", "message"), SCORING_CASES.values(), ids=SCORING_CASES.keys())
def test_broken_scoring_file_names_file_line_and_field(folder, old, new, needle, field, message):
    path = folder / "churn_scoring.yaml"
    text = edit_yaml(folder, old, new, "churn_scoring.yaml")
    error = load_error_scoring(path)
    assert (str(path), line_of(text, needle), field, message) in error.problems, error.problems
    assert any(str(path) in p for p in validate_all(folder))


def load_error_scoring(path) -> PlaybookError:
    with pytest.raises(PlaybookError) as info:
        load_scoring(path)
    return info.value

