"""The onboarding plan on working days (issue 17), as data: `OnboardingTimeline` with calendars.

The issue's own case: onboarding launched for the demo account (New York, US holidays) on Monday
2026-11-30. On calendar days, tasks fell due on weekends, go-live landed on 24 December and a
phase start and a health-check e-mail on Christmas Day. On working days, day 25 is Tuesday
2027-01-05 (25 December and 1 January do not count), every task is due at 18:00 New York on a
working day, and every e-mail goes out on a working day. A Paris account with our team in New
York gets its e-mail at 09:00 Paris time and our tasks fall on New York working days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from core.holiday_calendars import work_calendar
from core.models import CalendarPlace, PlayCalendars
from playbooks.loader import load_named
from workflows.onboarding_timeline import OnboardingState, OnboardingTimeline

CONTENT = load_named("onboarding").content
NY, PARIS_TZ = ZoneInfo("America/New_York"), ZoneInfo("Europe/Paris")
US = work_calendar(CalendarPlace(tz="America/New_York", country="US"), date(2026, 1, 1))
FR = work_calendar(CalendarPlace(tz="Europe/Paris", country="FR"), date(2026, 1, 1))


def plan(started_at: datetime, account=US, staff=US) -> OnboardingTimeline:
    state = OnboardingState(started_at=started_at, start_date=started_at.date(), working_days=True)
    timeline = OnboardingTimeline(CONTENT, state, PlayCalendars(account=account, staff=staff))
    state.start_date = timeline.first_day(started_at)
    return timeline


def run_on_time(timeline: OnboardingTimeline, started_at: datetime) -> tuple[list, dict]:
    """Play the plan with every milestone completed two hours before it is due (16:00):
    (every action done, in order, with its time), {task step: due}."""
    done, tasks, now = [], {}, started_at
    for _ in range(500):
        for action in timeline.due(now):
            timeline.mark_done(action.step)
            done.append((action.step, action.kind, action.at))
            if action.kind == "phase":
                phase = next(p for p in CONTENT.phases if p.key == action.ref)
                tasks.update({t.step: (t, timeline.due_at(t.day)) for t in phase.tasks})
        if timeline.finished(now):
            return done, {step: due for step, (_, due) in tasks.items()}
        open_milestones = [(due, t) for t, due in tasks.values()
                           if t.milestone and t.milestone not in timeline.state.milestones_done]
        completed = [t for due, t in open_milestones if due - timedelta(hours=2) <= now]
        for task in completed:
            timeline.complete_milestone(task.milestone, now)
        if completed:
            continue  # what the completion makes due is due now
        wakes = [w for w in [timeline.next_wake(now)] if w] + [due - timedelta(hours=2) for due, _ in open_milestones]
        now = max(now, min(w for w in wakes if w > now)) if any(w > now for w in wakes) else now + timedelta(hours=1)
    raise AssertionError("the plan did not finish")


def test_the_issues_demo_launch_on_2026_11_30_keeps_to_working_days():
    started = datetime(2026, 11, 30, 10, tzinfo=NY).astimezone(timezone.utc)
    timeline = plan(started)
    done, dues = run_on_time(timeline, started)
    go_live = dues["task/go_live"].astimezone(NY)
    assert go_live.date() == date(2027, 1, 5) and go_live.hour == 18
    assert timeline.date_of(25) == date(2027, 1, 5) and timeline.date_of(1) == date(2026, 11, 30)
    for step, due in dues.items():
        local = due.astimezone(NY)
        assert US.is_working_day(local.date()) and local.hour == 18, (step, local)
    for step, kind, at in done:
        local = at.astimezone(NY)
        assert US.is_working_day(local.date()), (step, local)
        if kind == "phase" and at > started:
            assert local.hour == 9, (step, local)
        if kind == "email":  # inside the send window: 09:00-17:00
            assert 9 <= local.hour < 17, (step, local)
    christmas = [s for s, _, at in done if at.astimezone(NY).date() == date(2026, 12, 25)]
    assert christmas == []
    checks = [at.astimezone(NY).date() for s, _, at in done if s.startswith("email/go_live_health_check/")]
    assert checks == [date(2027, 1, 5), date(2027, 1, 6), date(2027, 1, 7), date(2027, 1, 8), date(2027, 1, 11),
                      date(2027, 1, 12), date(2027, 1, 13)]
    weekly = {s.rsplit("/", 1)[1]: at.astimezone(NY).date() for s, _, at in done if s.startswith("email/weekly_status/")}
    # Fridays 25 December and 1 January are holidays: those weeks' status goes on the Monday after.
    assert weekly.pop("2026-12-25") == date(2026, 12, 28) and weekly.pop("2027-01-01") == date(2027, 1, 4)
    assert all(d.weekday() == 4 and d.isoformat() == key for key, d in weekly.items())


def test_a_weekly_e_mail_on_a_holiday_friday_goes_on_the_next_working_day():
    started = datetime(2027, 12, 13, 10, tzinfo=NY).astimezone(timezone.utc)  # Christmas observed Fri 24th
    done, _ = run_on_time(plan(started), started)
    weekly = {s.rsplit("/", 1)[1]: at.astimezone(NY).date() for s, _, at in done if s.startswith("email/weekly_status/")}
    assert weekly["2027-12-24"] == date(2027, 12, 27)
    assert weekly["2027-12-31"] == date(2028, 1, 3)  # New Year's Day observed on Friday 31st


def test_a_launch_on_a_saturday_starts_day_one_on_monday():
    started = datetime(2027, 1, 9, 11, tzinfo=NY).astimezone(timezone.utc)
    timeline = plan(started)
    assert timeline.state.start_date == date(2027, 1, 11)
    assert timeline.today(started) <= 1
    phase = next(a for a in timeline.due(datetime(2027, 1, 11, 9, tzinfo=NY)) if a.kind == "phase")
    assert phase.at == datetime(2027, 1, 11, 9, tzinfo=NY)


def test_a_paris_account_with_our_team_in_new_york():
    started = datetime(2027, 7, 12, 10, tzinfo=PARIS_TZ).astimezone(timezone.utc)  # Wednesday 14th: Bastille Day
    timeline = plan(started, account=FR, staff=US)
    done, dues = run_on_time(timeline, started)
    assert timeline.date_of(3) == date(2027, 7, 15)
    for step, kind, at in done:
        if kind == "email":
            local = at.astimezone(PARIS_TZ)
            assert 9 <= local.hour < 17 and FR.is_working_day(local.date()), (step, local)
    for step, due in dues.items():
        local = due.astimezone(NY)
        assert local.hour == 18 and US.is_working_day(local.date()), (step, local)
    # Go-live is completed at 16:00 New York, 22:00 Paris: the first health check waits for 09:00 Paris.
    first_check = next(at for s, _, at in done if s == "email/go_live_health_check/1").astimezone(PARIS_TZ)
    go_live_day = dues["task/go_live"].astimezone(NY).date()
    assert first_check.hour == 9 and first_check.date() == FR.add_working_days(go_live_day, 1)
    # Labor Day 2027-09-06 is a working day in Paris, but not for our team.
    assert all(due.astimezone(NY).date() != date(2027, 9, 6) for due in dues.values())


def test_slips_count_working_days():
    started = datetime(2027, 1, 4, 10, tzinfo=NY).astimezone(timezone.utc)
    timeline = plan(started)
    timeline.due(started)
    for action in timeline.due(started):
        timeline.mark_done(action.step)
    kickoff_due = timeline.due_at(1)  # Monday 18:00
    friday = datetime(2027, 1, 8, 12, tzinfo=NY)
    monday = datetime(2027, 1, 11, 12, tzinfo=NY)
    assert timeline.days_late(kickoff_due, friday) == 4
    assert timeline.days_late(kickoff_due, monday) == 5  # the weekend does not count
    # Over 2 days late first at 09:00 on the 3rd working day after the due date.
    assert timeline.slip_crossing(2, started) == datetime(2027, 1, 7, 9, tzinfo=NY)


def evening_plan(started_at: datetime, patched: bool = True) -> OnboardingTimeline:
    timeline = plan(started_at)
    timeline.state.due_after_launch = patched
    return timeline


def day_one_dues(timeline: OnboardingTimeline) -> set[datetime]:
    first = CONTENT.phases[0]
    return {timeline.due_at(t.day).astimezone(NY) for t in first.tasks if t.day == 1}


def test_an_evening_launch_gets_its_day_one_tasks_due_the_next_working_day():
    """Launched Monday 2026-11-30 at 20:00 New York, after our team's 18:00 due hour: day 1 is still
    that Monday (the welcome e-mail waits for 09:00 Tuesday), but its tasks are due Tuesday 18:00, not
    two hours before they were created."""
    started = datetime(2026, 11, 30, 20, tzinfo=NY).astimezone(timezone.utc)
    timeline = evening_plan(started)
    assert timeline.date_of(1) == date(2026, 11, 30)
    assert day_one_dues(timeline) == {datetime(2026, 12, 1, 18, tzinfo=NY)}
    # Day 2's tasks keep their day: Tuesday 18:00 is also day 2's due hour.
    assert timeline.due_at(2).astimezone(NY) == datetime(2026, 12, 1, 18, tzinfo=NY)
    assert timeline.due_at(3).astimezone(NY) == datetime(2026, 12, 2, 18, tzinfo=NY)


def test_a_friday_evening_launch_gets_its_day_one_tasks_due_monday():
    started = datetime(2026, 12, 4, 19, 30, tzinfo=NY).astimezone(timezone.utc)  # Friday
    assert day_one_dues(evening_plan(started)) == {datetime(2026, 12, 7, 18, tzinfo=NY)}


def test_an_evening_launch_before_christmas_skips_the_holiday():
    started = datetime(2026, 12, 24, 21, tzinfo=NY).astimezone(timezone.utc)  # Thursday; Friday is Christmas
    assert day_one_dues(evening_plan(started)) == {datetime(2026, 12, 28, 18, tzinfo=NY)}


def test_a_launch_before_the_due_hour_keeps_day_one_dues_that_day():
    started = datetime(2026, 11, 30, 17, 59, tzinfo=NY).astimezone(timezone.utc)
    assert day_one_dues(evening_plan(started)) == {datetime(2026, 11, 30, 18, tzinfo=NY)}


def test_a_play_from_before_the_patch_keeps_its_overdue_day_one_tasks():
    """Plays launched before "due-after-launch-v1" replay with the due times they recorded."""
    started = datetime(2026, 11, 30, 20, tzinfo=NY).astimezone(timezone.utc)
    assert day_one_dues(evening_plan(started, patched=False)) == {datetime(2026, 11, 30, 18, tzinfo=NY)}
