"""The renewal countdown as data: `RenewalTimeline` with the shipped renewal.yaml.

The renewal date is Wednesday 2027-06-30; days below count from it (−180 is
2027-01-01). Covers the tier plans, skipping at a late start, collapsing of
steps due together (latest + catch-up), the date-change rules and task
re-planning, the endings, and the phase shown as a search attribute.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from core.models import TaskRef
from playbooks.loader import load_named
from workflows.calendar import at_local
from workflows.renewal_timeline import RenewalState, RenewalTimeline

NY = "America/New_York"
CONTENT = load_named("renewal").content
RENEWAL = date(2027, 6, 30)


def at(day: int, hour: int = 10) -> datetime:
    """`hour`:00 New York time `day` days from the renewal date."""
    return at_local(RENEWAL + timedelta(days=day), hour, NY)


def timeline(start_day: int = -180, tier: str = "Enterprise") -> RenewalTimeline:
    started = at(start_day)
    t = RenewalTimeline(CONTENT, RenewalState(
        started_at=started, start_date=started.date(), tier=tier, renewal_date=RENEWAL, original_renewal_date=RENEWAL,
    ))
    t.skip_before_start()
    return t


def drain(t: RenewalTimeline, now: datetime) -> list[str]:
    """Do what the workflow does: act on everything due now and mark it done."""
    steps = []
    while due := t.due(now):
        for a in due:
            t.mark_done(a.step, now)
            steps.append(a.step)
    return steps


@pytest.mark.parametrize(("tier", "steps"), [
    ("Enterprise", ["health_review", "value_review", "executive_review", "renewal_proposal", "negotiation",
                    "signature_chase", "renewal_day"]),
    ("Mid-Market", ["health_review", "value_review", "executive_review", "renewal_proposal", "negotiation",
                    "signature_chase", "renewal_day"]),
    ("Starter", ["health_review", "value_review", "renewal_proposal", "negotiation", "signature_chase",
                 "renewal_day"]),
])
def test_each_tier_counts_down_through_its_own_steps(tier, steps):
    assert [s.key for s in timeline(tier=tier).countdown()] == steps


def test_steps_fire_at_nine_on_their_day_counting_back_from_the_renewal_date():
    t = timeline()
    plan = {a.step: a.at for a in t.pending() if a.kind == "step"}
    assert plan["step/health_review"] == at(-180, 9)
    assert plan["step/renewal_proposal"] == at(-90, 9)
    assert plan["step/renewal_day"] == at(0, 9)
    assert drain(t, at(-180)) == ["step/health_review"]
    assert t.next_wake(at(-180)) == at(-150, 9)


def test_late_start_skips_earlier_steps_but_holds_the_final_window_from_the_start():
    t = timeline(start_day=-40)
    assert list(t.state.skipped_steps) == ["step/health_review", "step/value_review", "step/executive_review",
                                           "step/renewal_proposal", "step/negotiation"]
    assert drain(t, at(-40)) == ["risk/contract_final_90_days"]
    assert t.next_wake(at(-40)) == at(-30, 9)


def test_a_step_on_the_start_day_still_fires():
    t = timeline(start_day=-90)
    assert "step/renewal_proposal" not in t.state.skipped_steps
    assert drain(t, at(-90)) == ["step/renewal_proposal", "risk/contract_final_90_days"]


def test_steps_due_together_fire_the_latest_and_the_catch_up_ones_only():
    t = timeline()
    drain(t, at(-180))
    # Workers down (or the date moved) from day -179 to day -55: 150, 120, 90 and 60 are all due.
    fired = drain(t, at(-55))
    assert [s for s in fired if s.startswith("step/")] == ["step/renewal_proposal", "step/negotiation"]
    assert "overtaken by 'Renewal negotiation'" in t.state.skipped_steps["step/value_review"]
    assert "step/executive_review" in t.state.skipped_steps


@pytest.mark.parametrize(("new", "problem"), [
    (date(2027, 1, 31), "it is in the past (today is 2027-02-01)"),
    (RENEWAL, "the renewal date is already 2027-06-30"),
    (date(2030, 2, 1), "it is more than 1095 days ahead (the latest is 2030-01-31)"),
    (date(2027, 2, 1), None),  # today is allowed
    (date(2028, 6, 30), None),
])
def test_date_change_rules(new, problem):
    assert timeline().change_date_problem(new, at(-149)) == problem


def test_open_tasks_follow_the_renewal_date_but_never_fall_before_their_step_fired():
    t = timeline()
    drain(t, at(-180))
    step = CONTENT.step("health_review")
    task = step.tasks[0]
    due = t.task_due(step, task, at(-180))
    t.state.tasks["step/health_review/task/account_review"] = TaskRef(
        task_id=1, step="step/health_review/task/account_review", title=task.title, due_at=due, priority="P2")
    assert due == at_local(RENEWAL - timedelta(days=180 - 14), 18, NY)
    t.change_date(RENEWAL + timedelta(days=30), at(-170), "later")
    later = t.rescheduled_tasks()
    assert later == {"step/health_review/task/account_review": at_local(RENEWAL - timedelta(days=136), 18, NY)}
    ref = t.state.tasks["step/health_review/task/account_review"]
    t.state.tasks[ref.step] = ref.model_copy(update={"due_at": later[ref.step]})  # as the workflow does
    t.change_date(RENEWAL - timedelta(days=30), at(-170), "earlier")
    # The step fired on day -180 of the old plan: its task is due 14 days after that, not before.
    assert t.rescheduled_tasks() == {"step/health_review/task/account_review": due}


def test_renewed_skips_the_rest_of_the_countdown_and_runs_post_renewal_steps_from_the_date():
    t = timeline()
    drain(t, at(-20))
    t.record_outcome("renewed", at(-20), "sponsor")
    assert t.state.new_renewal_date == date(2028, 6, 30)
    assert t.state.skipped_steps["step/renewal_day"] == "the account renewed"
    assert [(a.step, a.at) for a in t.pending()] == [
        ("outcome/renewed", at(-20)),
        ("step/renewal_thanks", at(0, 9)),
        ("step/post_renewal_kickoff", at(14, 9)),
        ("step/success_plan", at(30, 9)),
    ]
    assert t.phase() == "post_renewal"
    drain(t, at(31))
    assert t.finished() and t.phase() == "renewed"


def test_renewed_late_runs_the_overdue_post_renewal_steps_at_once_in_playbook_order():
    t = timeline(start_day=-10)
    drain(t, at(20))
    assert t.phase() == "past_due"
    t.record_outcome("renewed", at(20), "sponsor")
    assert drain(t, at(20)) == ["outcome/renewed", "step/renewal_thanks", "step/post_renewal_kickoff"]


def test_churned_runs_only_the_close_out():
    t = timeline()
    drain(t, at(-45))
    t.state.tasks["step/negotiation/task/terms"] = TaskRef(
        task_id=9, step="step/negotiation/task/terms", title="terms", due_at=at(-40), priority="P1")
    t.record_outcome("churned", at(-45), "csm", reason="budget")
    assert [a.step for a in t.pending()] == ["churned", "outcome/churned"]
    assert t.open_tasks_to_close() == ["step/negotiation/task/terms"]
    drain(t, at(-45))
    assert t.finished() and t.phase() == "churned"
    assert t.change_date_problem(RENEWAL + timedelta(days=1), at(-45)) == "the account has already churned; the countdown is over"


def test_missed_date_records_past_due_then_escalates_on_its_rungs():
    t = timeline(start_day=-10)
    assert drain(t, at(0, 12))[-1] == "step/renewal_day"
    assert drain(t, at(1, 12)) == ["escalation/past-due-1d", "past-due"]
    assert t.phase() == "past_due" and not t.finished()
    assert t.next_wake(at(1, 12)) == at(14, 9)
    assert drain(t, at(14, 12)) == ["escalation/past-due-14d"]
    assert t.next_action() == ("waiting for renewed or churned", None)
