"""Whole onboarding plays on the time-skipping test server, checked at the SMTP sink and in PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from playbooks.loader import PlaybookError
from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import SteeringError, launch_onboarding
from tests.conftest import asleep_on_timer
from tests.workflows.play_driver import ET, PlayDriver, plan_day, skip_to_next_monday, us_calendar
from workflows.calendar import weekly_dates
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import BlockerReport, BlockerResolved, MoveGoLive, ReadinessSignoff

# Days are the account's working days (New York, US public holidays): day 1 is the first working
# day from the launch (a Monday), and what is due on a day falls on a working day whatever the date
# the suite runs on. Fridays carry the weekly status (a holiday Friday: the next working day).
ON_TIME_EMAILS = [
    ("email/welcome", 1),
    ("email/kickoff_summary", 3),
    *(("email/go_live_health_check/%d" % n, 24 + n) for n in range(1, 8)),
    ("email/thirty_day_checkin", 55),
]


def planned_emails(cal, day1: date) -> set[str]:
    """Every e-mail step a play started on `day1` sends when everything is done on time."""
    fridays = weekly_dates(day1, "friday", cal.add_working_days(day1, 29))
    return {s for s, _ in ON_TIME_EMAILS} | {f"email/weekly_status/{f.isoformat()}" for f in fridays}


async def sent_emails(pool, workflow_id: str) -> list[tuple[str, datetime]]:
    rows = await pool.fetch("SELECT step, sent_at FROM communications WHERE workflow_id = $1 AND status = 'sent'"
                            " ORDER BY sent_at, step", workflow_id)
    return [(r["step"], r["sent_at"]) for r in rows]


async def test_whole_30_day_play_sends_exactly_the_planned_emails(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    cal = us_calendar(start)
    day1 = cal.roll_forward(start.date())
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    result = await PlayDriver(env, pool, handle, cal).run()

    steps = [m.step for m in sink.messages]
    assert len(steps) == len(set(steps)), f"duplicate e-mails: {steps}"
    sent = await sent_emails(pool, handle.id)
    days = {step: plan_day(cal, day1, at) for step, at in sent}
    assert {s: days[s] for s, _ in ON_TIME_EMAILS} == dict(ON_TIME_EMAILS)
    # Every e-mail went on a working day, inside the send window (09:00-17:00 New York).
    for step, at in sent:
        local = at.astimezone(ET)
        assert cal.is_working_day(local.date()) and 9 <= local.hour < 17, (step, local)
    # The weekly status: each Friday (or the next working day) until the 30-day review (day 30).
    steady = cal.add_working_days(day1, 29)
    fridays = weekly_dates(day1, "friday", steady)
    weekly = sorted(s for s in days if s.startswith("email/weekly_status/"))
    assert weekly == [f"email/weekly_status/{f.isoformat()}" for f in fridays]
    assert all(days[f"email/weekly_status/{f.isoformat()}"] == plan_day(cal, day1, cal.at_hour(cal.roll_forward(f), 9))
               for f in fridays)
    welcome = sink.messages[0]
    assert "Welcome to TAI Autonomic Systems, Acme Logistics" in welcome.subject
    assert set(welcome.rcpt_to) >= {"dana.reyes@acme.example", "lee.park@acme.example", "casey.morgan@tai.example"}
    assert result.slip_days == 0 and result.escalations == [] and result.failed_steps == {}

    tasks = await pool.fetch("SELECT step, status, due_at FROM tasks WHERE workflow_id = $1", handle.id)
    assert len(tasks) == 20 and {t["status"] for t in tasks} == {"completed"}
    for t in tasks:  # due 18:00 New York on a working day of our team
        local = t["due_at"].astimezone(ET)
        assert cal.is_working_day(local.date()) and local.hour == 18, (t["step"], local)
    go_live = next(t for t in tasks if t["step"] == "task/go_live")
    assert plan_day(cal, day1, go_live["due_at"]) == 25
    comms = await pool.fetch("SELECT status FROM communications WHERE workflow_id = $1", handle.id)
    assert len(comms) == len(ON_TIME_EMAILS) + len(fridays) and {c["status"] for c in comms} == {"sent"}


async def test_four_weeks_before_christmas_nothing_falls_on_a_weekend_or_holiday(env, worker, pool, settings, sink):
    """The issue's case: onboarding launched four weeks before Christmas (2026-11-30 when it was
    reported) used to put tasks on weekends, go-live on 24 December and a phase start and a health
    check on Christmas Day."""
    now = (await env.get_current_time()).astimezone(ET)
    christmas = date(now.year if now.date() < date(now.year, 11, 20) else now.year + 1, 12, 25)
    monday = christmas - timedelta(days=christmas.weekday() + 21)
    await env.sleep(datetime.combine(monday, time(10), tzinfo=ET) - now)
    cal = us_calendar(datetime.combine(monday, time(10), tzinfo=ET))
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await PlayDriver(env, pool, handle, cal).run()
    tasks = await pool.fetch("SELECT step, due_at, created_at FROM tasks WHERE workflow_id = $1", handle.id)
    for t in tasks:
        local = t["due_at"].astimezone(ET).date()
        assert cal.is_working_day(local), (t["step"], local)
    go_live = next(t["due_at"].astimezone(ET).date() for t in tasks if t["step"] == "task/go_live")
    assert go_live > christmas and cal.is_working_day(go_live)
    for step, at in await sent_emails(pool, handle.id):
        local = at.astimezone(ET)
        assert cal.is_working_day(local.date()) and local.date() != christmas and 9 <= local.hour < 17, (step, local)
    status = await handle.query(OnboardingPlan.status)
    assert all(cal.is_working_day(e.at.astimezone(ET).date()) for e in status.schedule if e.step.startswith("phase/"))


async def test_an_evening_launch_creates_no_task_already_overdue(env, worker, pool, settings, sink):
    """Launched on a Monday at 20:00 New York, after our team's 18:00 due hour: the first tasks are
    due Tuesday 18:00 (they used to be due two hours before they were created)."""
    start = await skip_to_next_monday(env, hour=20)
    cal = us_calendar(start)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await asleep_on_timer(env.client, handle.id, "the evening launch's first steps")
    tasks = await pool.fetch("SELECT step, due_at, created_at FROM tasks WHERE workflow_id = $1", handle.id)
    assert tasks, "the launch created no task"
    next_day = cal.add_working_days(start.date(), 1)
    for t in tasks:
        assert t["due_at"] > t["created_at"], (t["step"], t["due_at"], t["created_at"])
        assert t["due_at"].astimezone(ET) >= datetime.combine(next_day, time(18), tzinfo=ET), t["step"]


async def test_nine_day_slip_escalates_twice_and_shifts_the_plan(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    cal = us_calendar(start)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    result = await PlayDriver(env, pool, handle, cal).run(hold={"data_migration": 9})

    assert result.slip_days == 9
    assert result.escalations == ["escalation/slip-over-2d", "escalation/slip-over-5d"]
    rows = await pool.fetch("SELECT level, to_role, to_email FROM escalations WHERE workflow_id = $1 ORDER BY id", handle.id)
    assert [(r["level"], r["to_role"]) for r in rows] == [(1, "cs_manager"), (3, "vp_product")]
    reports = [m for m in sink.messages if m.step.startswith("escalation/")]
    assert [m.subject.split("]")[0] for m in reports] == ["[Escalation L1", "[Escalation L3"]
    assert "diana.hoang@tai.example" in reports[0].rcpt_to and "priya.nair@tai.example" in reports[1].rcpt_to
    for field in ("ESCALATION REPORT", "Escalation level: Level 1", "Severity: P2", "Tier: Enterprise",
                  "Why we're escalating", "What we need to resolve", "Success criteria", "Next steps"):
        assert field in reports[0].text, field
    # 9 working days, not more than 10: no churn-risk points.
    assert await pool.fetchval("SELECT count(*) FROM risk_events") == 0
    # Dates after the late milestone moved by 9 working days: go-live on day 34 instead of 25.
    go_live = await pool.fetchrow("SELECT due_at, completed_at FROM tasks WHERE step = 'task/go_live'")
    assert plan_day(cal, cal.roll_forward(start.date()), go_live["due_at"]) == 34


async def test_delay_over_two_weeks_records_churn_risk_once(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await PlayDriver(env, pool, handle).run(hold={"implementation_plan": 12})
    rows = await pool.fetch("SELECT indicator, points FROM risk_events WHERE workflow_id = $1", handle.id)
    assert [(r["indicator"], r["points"]) for r in rows] == [("implementation_delayed", 20)]


async def test_blocker_open_three_days_alerts_cs_manager_and_creates_task(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await env.sleep(timedelta(days=1))
    await handle.signal(OnboardingPlan.report_blocker, BlockerReport(key="sso", title="SSO metadata missing"))
    await handle.signal(OnboardingPlan.report_blocker, BlockerReport(key="vpn", title="VPN access"))
    await env.sleep(timedelta(days=1))
    await handle.signal(OnboardingPlan.resolve_blocker, BlockerResolved(key="vpn"))
    # Three days after it was reported, on our team's next working day if that one is not.
    alert_at = us_calendar(start).roll_instant(start + timedelta(days=4), 9)
    await env.sleep(alert_at + timedelta(hours=1) - await env.get_current_time())
    alerts = [m for m in sink.messages if m.step.startswith("blocker/")]
    assert [m.step for m in alerts] == ["blocker/sso-1/alert"]
    assert "diana.hoang@tai.example" in alerts[0].rcpt_to and "SSO metadata missing" in alerts[0].subject
    task = await pool.fetchrow("SELECT title, priority, owner_email FROM tasks WHERE step = 'blocker/sso-1/task'")
    assert dict(task) == {"title": "Resolve blocker: SSO metadata missing", "priority": "P1",
                          "owner_email": "casey.morgan@tai.example"}


async def test_go_live_moved_to_day_28_replans_later_dates(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    moved = {}

    async def move_on_day_10(st):
        if st.day >= 10 and not moved:
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(OnboardingPlan.move_go_live, MoveGoLive(day=5))
            assert "not in the future" in str(refused.value.cause)
            result = await handle.execute_update(OnboardingPlan.move_go_live, MoveGoLive(day=28, reason="customer holiday"))
            moved["result"] = result
            assert result.go_live_day == 28 and result.shifted_by_days == 3
            gate = next(e for e in result.schedule if e.step == "milestone/go_live_readiness")
            assert gate.day == 25

    await PlayDriver(env, pool, handle).run(on_tick=move_on_day_10)
    assert moved
    go_live = await pool.fetchrow("SELECT due_at, completed_at FROM tasks WHERE step = 'task/go_live'")
    cal = us_calendar(start)
    assert plan_day(cal, cal.roll_forward(start.date()), go_live["due_at"]) == 28
    first_health_check = next(m for m in sink.messages if m.step == "email/go_live_health_check/1")
    assert first_health_check is not None
    # A re-plan is agreed, not a slip: no escalation.
    assert await pool.fetchval("SELECT count(*) FROM escalations") == 0


async def test_move_go_live_validator_rejects_without_changing_the_plan(env, worker, pool, settings):
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    before = await handle.query(OnboardingPlan.status)
    for day, reason in [(0, "between 1 and 90"), (91, "between 1 and 90"), (25, "already planned")]:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(OnboardingPlan.move_go_live, MoveGoLive(day=day))
        assert isinstance(refused.value.cause, ApplicationError) and reason in refused.value.cause.message
    after = await handle.query(OnboardingPlan.status)
    assert after.shifts == before.shifts == [] and after.go_live_day == 25


async def test_status_query_reports_phase_day_open_tasks_and_next_action(env, worker, pool, settings):
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    # Nothing completed: the kickoff milestone (due day 1) is 3 days late on day 4 at 09:00,
    # which wakes the play to escalate; the query sees it as of then.
    cal = us_calendar()
    day1 = cal.roll_forward((await env.get_current_time()).astimezone(ET).date())
    thursday = cal.at_hour(cal.add_working_days(day1, 3), 11)
    await env.sleep(thursday - await env.get_current_time())
    st = await handle.query(OnboardingPlan.status)
    assert (st.phase, st.day, st.go_live_day, st.slip_days) == ("planning", 4, 25, 3)
    assert st.escalations == ["escalation/slip-over-2d"]
    assert {t.step for t in st.open_tasks} == {"task/project_charter", "task/current_state_assessment", "task/implementation_plan"}
    # Next: the status report on the coming Friday (or its next working day), before the next rung.
    assert st.next_action.startswith("email/weekly_status/")
    friday = weekly_dates(day1, "friday", day1 + timedelta(days=7))[0]
    assert st.next_action_at == cal.at_hour(cal.roll_forward(friday), 9)


async def test_readiness_gate_holds_go_live_until_signed(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    driver = PlayDriver(env, pool, handle)
    signed = {}

    async def sign_by_signal(st):
        # The gate task is never completed by the driver: only the signal opens it, 2 days late.
        if st.day >= 24 and not signed:
            assert st.phase == "testing" and "go_live_readiness" not in st.milestones_done
            await handle.signal(OnboardingPlan.sign_readiness_checklist, ReadinessSignoff(signed_by="Dana Reyes"))
            signed["day"] = st.day

    await driver.run(hold={"go_live_readiness": 99}, on_tick=sign_by_signal)
    gate = await pool.fetchrow("SELECT status, completed_by FROM tasks WHERE step = 'task/readiness_checklist'")
    assert dict(gate) == {"status": "completed", "completed_by": "signal"}
    prep = await pool.fetchrow("SELECT created_at FROM tasks WHERE step = 'task/dry_run'")
    assert prep is not None and signed["day"] >= 24


async def test_unknown_account_is_refused_and_starts_nothing(env, pool, settings):
    with pytest.raises(SteeringError) as refused:
        await launch_onboarding(env.client, pool, settings, "nobody", "test", settings.task_queue)
    assert refused.value.status == 404 and "unknown account 'nobody'" in str(refused.value)
    with pytest.raises(RPCError):
        await env.client.get_workflow_handle("onboarding-nobody").describe()


async def test_second_launch_while_running_is_refused(env, worker, pool, settings):
    await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    with pytest.raises(SteeringError) as refused:
        await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    assert refused.value.status == 409


async def test_invalid_playbook_is_refused_with_file_line_field_and_starts_nothing(env, pool, settings, tmp_path):
    folder = tmp_path / "playbooks"
    shutil.copytree(Path(settings.playbooks_dir), folder)
    text = (folder / "onboarding.yaml").read_text()
    broken = text.replace("        day: 19\n", "        day: 40\n", 1)
    (folder / "onboarding.yaml").write_text(broken)
    line = broken.splitlines().index("        day: 40") + 1
    bad = settings.model_copy(update={"playbooks_dir": folder})
    with pytest.raises(PlaybookError) as refused:
        await launch_onboarding(env.client, pool, bad, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    message = str(refused.value)
    assert f"onboarding.yaml:{line}: phases[3].tasks[1].day" in message and "outside the phase's days 15-22" in message
    with pytest.raises(RPCError):
        await env.client.get_workflow_handle("onboarding-acme").describe()
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0
