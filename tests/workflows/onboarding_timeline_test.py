"""The onboarding plan as data: `OnboardingTimeline` with the shipped onboarding.yaml.

Day 1 is Monday 2027-01-04 and the play starts at 10:00 New York time, so
the plan's days fall on fixed dates (Fridays are days 5, 12, 19, 26; go-live,
day 25, is Thursday 2027-01-28). Covers what is due at the start, when the
play wakes next, phase gating on earlier milestones, slip shifts from late
milestones, the slip count and its escalation crossing, the go-live move
rules, collapsing of missed weekly e-mails, and when the play is finished.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from playbooks.loader import load_named
from workflows.calendar import at_local
from workflows.onboarding_timeline import OnboardingState, OnboardingTimeline, Shift

NY = "America/New_York"
CONTENT = load_named("onboarding").content
START = date(2027, 1, 4)  # a Monday
STARTED_AT = at_local(START, 10, NY)
PHASES = [p.key for p in CONTENT.phases]
MILESTONE_TASKS = [t for t in CONTENT.tasks if t.milestone]


def local(day: int, hour: int) -> datetime:
    """`hour`:00 New York time on play day `day`, as aware UTC."""
    return at_local(START + timedelta(days=day - 1), hour, NY)


def new_timeline() -> OnboardingTimeline:
    return OnboardingTimeline(CONTENT, OnboardingState(started_at=STARTED_AT, start_date=START))


def drain(timeline: OnboardingTimeline, now: datetime) -> list[str]:
    """Do what the workflow does: act on everything due now and mark it done."""
    steps = []
    for action in timeline.due(now):
        timeline.mark_done(action.step)
        steps.append(action.step)
    return steps


def test_the_content_is_what_these_tests_assume():
    assert CONTENT.timezone == NY
    assert (CONTENT.work_start_hour, CONTENT.due_hour) == (9, 18)
    assert PHASES == ["planning", "technical_setup", "data_migration", "testing", "go_live_prep", "stabilization"]
    assert len(MILESTONE_TASKS) == 12
    assert (CONTENT.gate_day, CONTENT.go_live_day, CONTENT.max_go_live_day) == (22, 25, 90)
    assert STARTED_AT == datetime(2027, 1, 4, 15, tzinfo=timezone.utc)


# -- the start ---------------------------------------------------------------


def test_first_due_at_start_is_the_welcome_email_and_the_planning_phase():
    timeline = new_timeline()
    due = timeline.due(STARTED_AT)
    assert [(a.step, a.kind, a.ref, a.at) for a in due] == [
        ("email/welcome", "email", "welcome", STARTED_AT),
        ("phase/planning", "phase", "planning", STARTED_AT),  # day 1 09:00 is before the start: start time wins
    ]


def test_next_wake_at_start_is_the_first_friday_status():
    timeline = new_timeline()
    # the due actions are not in the future, so the next wake is the first weekly status
    assert timeline.next_wake(STARTED_AT) == local(5, 9) == datetime(2027, 1, 8, 14, tzinfo=timezone.utc)


def test_next_wake_once_planning_started_is_the_slip_escalation_for_kickoff():
    timeline = new_timeline()
    assert drain(timeline, STARTED_AT) == ["email/welcome", "phase/planning"]
    assert timeline.due(STARTED_AT) == []
    # kickoff (day 1) not done: the slip passes 2 days at 09:00 on day 1 + 3
    assert timeline.next_wake(STARTED_AT) == local(4, 9) == datetime(2027, 1, 7, 14, tzinfo=timezone.utc)


# -- phases wait for earlier milestones ------------------------------------------


def phase_steps(timeline: OnboardingTimeline, now: datetime) -> list[str]:
    return [a.step for a in timeline.due(now) if a.kind == "phase"]


@pytest.mark.parametrize(
    ("completed", "expected"),
    [
        ([], []),
        (["kickoff"], []),
        (["implementation_plan"], []),
        (["kickoff", "implementation_plan"], ["phase/technical_setup"]),
    ],
)
def test_second_phase_waits_for_every_planning_milestone(completed, expected):
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    for m in completed:
        timeline.complete_milestone(m, local(CONTENT.milestone_day(m), 12))
    assert phase_steps(timeline, local(6, 10)) == expected


def test_phase_starts_on_its_first_day_not_before():
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    timeline.complete_milestone("kickoff", local(1, 12))
    timeline.complete_milestone("implementation_plan", local(3, 12))
    assert phase_steps(timeline, local(4, 8)) == []  # 08:00 on day 4
    due = [a for a in timeline.due(local(4, 9)) if a.kind == "phase"]
    assert [(a.step, a.at) for a in due] == [("phase/technical_setup", local(4, 9))]


@pytest.mark.parametrize("missing", [t.milestone for t in MILESTONE_TASKS if t.day < 15])
def test_testing_phase_waits_for_any_single_earlier_milestone(missing):
    timeline = new_timeline()
    for key in PHASES[:3]:
        timeline.mark_done(f"phase/{key}")
    for task in MILESTONE_TASKS:
        if task.day < 15 and task.milestone != missing:
            timeline.complete_milestone(task.milestone, timeline.due_at(task.day))
    assert phase_steps(timeline, local(16, 10)) == []
    timeline.complete_milestone(missing, local(16, 10))
    assert "phase/testing" in phase_steps(timeline, local(40, 10))


def test_phase_later_than_its_day_starts_when_the_milestone_completes():
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    timeline.complete_milestone("kickoff", local(1, 12))
    # implementation plan (day 3) signed 2 days late, on day 5 at 11:00
    timeline.complete_milestone("implementation_plan", local(5, 11))
    due = [a for a in timeline.due(local(5, 11)) if a.kind == "phase"]
    # the slip moves the phase's first day from 4 to 6
    assert [(a.step, a.at) for a in due] == []
    assert [a.at for a in timeline.due(local(6, 9)) if a.kind == "phase"] == [local(6, 9)]


# -- slips ----------------------------------------------------------------------


def test_milestone_three_days_late_adds_a_slip_shift():
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    done_at = local(4, 12)  # kickoff was due day 1 at 18:00
    shift = timeline.complete_milestone("kickoff", done_at)
    assert shift == Shift(from_day=2, days=3, reason="slip", recorded_at=done_at, note="kickoff")
    assert timeline.state.shifts == [shift]
    assert timeline.state.milestones_done == {"kickoff": done_at}
    assert timeline.slip_base() == 3


@pytest.mark.parametrize(
    ("planned", "effective"),
    [(1, 1), (2, 5), (3, 6), (22, 25), (25, 28), (30, 33)],
)
def test_slip_moves_later_days_only(planned, effective):
    timeline = new_timeline()
    timeline.complete_milestone("kickoff", local(4, 12))
    assert timeline.effective_day(planned) == effective
    assert timeline.due_at(planned) == local(effective, 18)


def test_on_time_and_early_milestones_add_no_shift():
    timeline = new_timeline()
    assert timeline.complete_milestone("kickoff", local(1, 18)) is None  # exactly on time
    assert timeline.complete_milestone("implementation_plan", local(1, 12)) is None  # early
    assert timeline.complete_milestone("technical_foundation", local(5, 23)) is None  # same day, later hour
    assert timeline.state.shifts == []
    assert timeline.go_live_day() == 25


def test_completing_a_milestone_twice_or_an_unknown_one_is_ignored():
    timeline = new_timeline()
    timeline.complete_milestone("kickoff", local(1, 12))
    assert timeline.complete_milestone("kickoff", local(9, 12)) is None
    assert timeline.complete_milestone("no_such_milestone", local(9, 12)) is None
    assert timeline.state.milestones_done == {"kickoff": local(1, 12)}
    assert timeline.state.shifts == []


def test_two_slips_add_up():
    timeline = new_timeline()
    timeline.complete_milestone("kickoff", local(3, 10))  # 2 days late: days from 2 move by 2
    # implementation plan now due on day 5; done on day 6 -> 1 more day
    assert timeline.due_at(3) == local(5, 18)
    shift = timeline.complete_milestone("implementation_plan", local(6, 10))
    assert (shift.from_day, shift.days) == (4, 1)
    assert [timeline.effective_day(d) for d in (1, 2, 3, 4, 25)] == [1, 4, 5, 7, 28]
    assert timeline.slip_base() == 3


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (local(1, 17), 0),
        (local(1, 23), 0),  # later the same day is not a day late
        (local(2, 9), 1),
        (local(4, 12), 3),  # kickoff 3 days late, implementation plan 1 day: the most overdue counts
        (local(10, 9), 9),
    ],
)
def test_slip_days_counts_the_most_overdue_open_milestone(now, expected):
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    assert timeline.slip_days(now) == expected


def test_slip_days_ignores_milestones_of_phases_not_started():
    timeline = new_timeline()  # planning not started: its milestones are not counted yet
    assert timeline.slip_days(local(10, 9)) == 0


def test_slip_days_adds_completed_slips_to_the_open_overdue_one():
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    timeline.complete_milestone("kickoff", local(3, 10))  # 2 days late
    # implementation plan now due day 5 at 18:00; on day 8 it is 3 days late
    assert timeline.slip_days(local(8, 10)) == 2 + 3


@pytest.mark.parametrize(
    ("over_days", "completed", "expected"),
    [
        (2, [], local(4, 9)),  # kickoff due day 1: slip is 3 > 2 on day 1 + 3
        (7, [], local(9, 9)),
        (14, [], local(16, 9)),
        (2, [("kickoff", local(1, 12))], local(6, 9)),  # then implementation plan (day 3) decides
    ],
)
def test_slip_crossing_is_0900_local_on_due_date_plus_over_days_plus_one(over_days, completed, expected):
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    for milestone, at in completed:
        timeline.complete_milestone(milestone, at)
    now = local(1, 12)
    got = timeline.slip_crossing(over_days, now)
    assert got == expected
    assert timeline.slip_days(got) == over_days + 1
    assert timeline.slip_days(got - timedelta(hours=15)) == over_days  # 18:00 the evening before


def test_slip_crossing_is_now_once_the_recorded_slip_is_over():
    timeline = new_timeline()
    timeline.mark_done("phase/planning")
    timeline.complete_milestone("kickoff", local(5, 10))  # 4 days late
    now = local(5, 10)
    assert timeline.slip_crossing(2, now) == now
    # 4 recorded, 7 needs the implementation plan (now due day 7) to be 4 days late: day 11
    assert timeline.slip_crossing(7, now) == local(11, 9)


def test_slip_crossing_is_none_with_nothing_open():
    timeline = new_timeline()
    assert timeline.slip_crossing(2, STARTED_AT) is None  # no phase started yet


def test_escalation_action_is_due_at_the_crossing():
    timeline = new_timeline()
    drain(timeline, STARTED_AT)
    steps = [a.step for a in timeline.due(local(4, 9)) if a.kind == "escalation"]
    assert steps == ["escalation/slip-over-2d"]
    assert [a for a in timeline.due(local(4, 8)) if a.kind == "escalation"] == []


# -- moving go-live ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed", "today", "day", "problem"),
    [
        ([], 10, 9, "day 9 is not in the future (today is day 10)"),
        ([], 10, 10, "day 10 is not in the future (today is day 10)"),
        ([], 10, 91, "day must be between 1 and 90"),
        ([], 10, 0, "day must be between 1 and 90"),
        ([], 10, 25, "go-live is already planned for day 25"),
        (["go_live"], 26, 40, "go-live has already happened"),
        ([], 20, 21,
         "the readiness gate would fall on day 18, before today (day 20); the earliest go-live now is day 23"),
        ([], 10, 28, None),
        ([], 10, 90, None),
        # Earlier go-live must keep the gate after the work planned before it
        # (performance report, day 21): gate on day 10 or 20 is refused.
        ([], 10, 13, "the readiness gate would fall on day 10, not after 'Performance test report' (day 21); "
                     "the earliest go-live is day 25"),
        ([], 20, 23, "the readiness gate would fall on day 20, not after 'Performance test report' (day 21); "
                     "the earliest go-live is day 25"),
        ([], 10, 24, "the readiness gate would fall on day 21, not after 'Performance test report' (day 21); "
                     "the earliest go-live is day 25"),
        (["go_live_readiness"], 24, 26, None),  # gate signed: no gate check, only go-live moves
    ],
)
def test_move_go_live_problem(completed, today, day, problem):
    timeline = new_timeline()
    for m in completed:
        timeline.complete_milestone(m, timeline.due_at(CONTENT.milestone_day(m)))
    assert timeline.move_go_live_problem(day, local(today, 10)) == problem


def test_move_go_live_shifts_the_gate_but_not_earlier_tasks():
    timeline = new_timeline()
    now = local(10, 10)
    before = {d: timeline.due_at(d) for d in (21, 22, 25)}
    shift = timeline.move_go_live(28, now, "customer asked for a later date")
    assert shift == Shift(from_day=22, days=3, reason="move", recorded_at=now, note="customer asked for a later date")
    assert timeline.go_live_day() == 28
    assert timeline.effective_day(22) == 25  # the readiness gate
    assert timeline.effective_day(21) == 21  # performance report stays
    assert timeline.due_at(21) == before[21]
    assert timeline.due_at(22) == before[22] + timedelta(days=3)
    assert timeline.due_at(25) == local(28, 18)
    assert timeline.slip_base() == 0, "a move is an agreed re-plan, not a slip"
    assert timeline.slip_days(now) == 0
    assert timeline.move_go_live_problem(28, now) == "go-live is already planned for day 28"


def test_move_go_live_after_the_gate_moves_only_go_live():
    timeline = new_timeline()
    timeline.complete_milestone("go_live_readiness", local(22, 12))
    shift = timeline.move_go_live(27, local(23, 10), "runbook needs a rewrite")
    assert (shift.from_day, shift.days) == (25, 2)
    assert [timeline.effective_day(d) for d in (22, 24, 25, 29)] == [22, 24, 27, 31]


def test_move_go_live_after_a_slip_counts_from_the_effective_day():
    timeline = new_timeline()
    timeline.complete_milestone("kickoff", local(4, 12))  # 3 days late: go-live day 28
    assert timeline.move_go_live_problem(28, local(5, 10)) == "go-live is already planned for day 28"
    shift = timeline.move_go_live(30, local(5, 10), "")
    assert shift.days == 2
    assert timeline.go_live_day() == 30


# -- missed recurring e-mails ---------------------------------------------------------


def test_missed_weekly_statuses_collapse_into_the_latest():
    timeline = new_timeline()
    now = local(20, 10)  # Saturday 2027-01-23: three Fridays have passed
    weekly = [a for a in timeline.due(now) if a.ref == "weekly_status"]
    assert [(a.step, a.occurrence, a.at) for a in weekly] == [
        ("email/weekly_status/2027-01-22", 3, local(19, 9)),
    ]
    assert timeline.state.skipped_steps == ["email/weekly_status/2027-01-08", "email/weekly_status/2027-01-15"]
    assert timeline.is_done("email/weekly_status/2027-01-08")
    assert "email/weekly_status/2027-01-08" not in timeline.state.done_steps
    # asking again does not skip twice, and the latest is still due until it is sent
    assert [a.step for a in timeline.due(now) if a.ref == "weekly_status"] == ["email/weekly_status/2027-01-22"]
    assert timeline.state.skipped_steps == ["email/weekly_status/2027-01-08", "email/weekly_status/2027-01-15"]


def test_a_single_due_weekly_status_is_not_skipped():
    timeline = new_timeline()
    weekly = [a.step for a in timeline.due(local(5, 9)) if a.ref == "weekly_status"]
    assert weekly == ["email/weekly_status/2027-01-08"]
    assert timeline.state.skipped_steps == []


def test_weekly_status_stops_at_its_until_milestone():
    timeline = new_timeline()
    timeline.complete_milestone("steady_state", local(12, 8))  # before the day-12 Friday 09:00
    steps = [a.step for a in timeline.pending(local(40, 10)) if a.ref == "weekly_status"]
    assert steps == ["email/weekly_status/2027-01-08"]


# -- finished ------------------------------------------------------------------------


def run_on_time(timeline: OnboardingTimeline, milestones: list) -> datetime:
    """Complete the given milestone tasks on their due time, acting on everything due on the way."""
    now = STARTED_AT
    for task in milestones:
        now = timeline.due_at(task.day)
        drain(timeline, now)
        assert timeline.complete_milestone(task.milestone, now) is None
        drain(timeline, now)
    return now


def test_finished_only_after_all_milestones_and_the_thirty_day_checkin():
    timeline = new_timeline()
    for i, task in enumerate(MILESTONE_TASKS):
        now = run_on_time(timeline, [task])
        assert not timeline.finished(now), f"finished after only {i + 1} milestones"
    assert set(timeline.state.milestones_done) == {t.milestone for t in MILESTONE_TASKS}
    assert timeline.state.shifts == []
    assert [f"phase/{k}" for k in PHASES] == [s for s in timeline.state.done_steps if s.startswith("phase/")]

    checkin = local(25 + 30, 9)  # go-live done day 25 (2027-01-28) at 18:00: check-in 30 days later at 09:00
    assert checkin == datetime(2027, 2, 27, 14, tzinfo=timezone.utc)
    assert [a.step for a in timeline.pending(now)][-1] == "email/thirty_day_checkin"
    drain(timeline, checkin - timedelta(seconds=1))
    assert not timeline.finished(checkin - timedelta(seconds=1))
    assert not timeline.is_done("email/thirty_day_checkin")
    assert drain(timeline, checkin) == ["email/thirty_day_checkin"]
    assert timeline.finished(checkin)
    assert timeline.next_wake(checkin) is None


@pytest.mark.parametrize("missing", ["kickoff", "go_live_readiness", "baseline_performance"])
def test_not_finished_while_any_milestone_is_open(missing):
    timeline = new_timeline()
    run_on_time(timeline, [t for t in MILESTONE_TASKS if t.milestone != missing])
    later = local(120, 10)
    drain(timeline, later)
    timeline.mark_done("email/thirty_day_checkin")
    assert not timeline.finished(later)


def test_go_live_can_move_earlier_once_the_work_before_the_gate_is_done():
    from core.models import TaskRef

    timeline = new_timeline()
    content = timeline.content
    for task in content.tasks:
        if task.day < content.gate_day:
            timeline.state.tasks[task.step] = TaskRef(
                task_id=1, step=task.step, title=task.title, due_at=STARTED_AT, priority="P2",
                status="completed",
            )
    assert timeline.move_go_live_problem(22, local(18, 10)) is None  # gate on day 19
    assert "before today" in timeline.move_go_live_problem(20, local(18, 10))
