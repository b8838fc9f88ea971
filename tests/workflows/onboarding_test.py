"""Whole onboarding plays on the time-skipping test server, checked at the SMTP sink and in PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from playbooks.loader import PlaybookError
from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import SteeringError, launch_onboarding
from tests.workflows.play_driver import ET, PlayDriver, skip_to_next_monday
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import BlockerReport, BlockerResolved, MoveGoLive, ReadinessSignoff

# Day 1 is a Monday: Fridays are days 5, 12, 19 and 26; go-live (day 25) is a Friday.
ON_TIME_EMAILS = [
    ("email/welcome", 1),
    ("email/kickoff_summary", 3),
    ("email/weekly_status/", 5),
    ("email/weekly_status/", 12),
    ("email/weekly_status/", 19),
    ("email/go_live_health_check/1", 25),
    ("email/go_live_health_check/2", 26),  # same 09:00 as the weekly status: ordered by step name
    ("email/weekly_status/", 26),
    ("email/go_live_health_check/3", 27),
    ("email/go_live_health_check/4", 28),
    ("email/go_live_health_check/5", 29),
    ("email/go_live_health_check/6", 30),
    ("email/go_live_health_check/7", 31),
    ("email/thirty_day_checkin", 55),
]


async def test_whole_30_day_play_sends_exactly_the_planned_emails(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    result = await PlayDriver(env, pool, handle).run()

    steps = [m.step for m in sink.messages]
    assert len(steps) == len(set(steps)), f"duplicate e-mails: {steps}"
    weekly = [s for s in steps if s.startswith("email/weekly_status/")]
    assert [(date.fromisoformat(s.rsplit("/", 1)[1]) - start.date()).days + 1 for s in weekly] == [5, 12, 19, 26]
    assert [s.rsplit("/", 1)[0] + "/" if s.startswith("email/weekly_status/") else s for s in steps] == [
        s for s, _ in ON_TIME_EMAILS
    ]
    welcome = sink.messages[0]
    assert "Welcome to TAI Autonomic Systems, Acme Logistics" in welcome.subject
    assert set(welcome.rcpt_to) >= {"dana.reyes@acme.example", "lee.park@acme.example", "casey.morgan@tai.example"}
    assert result.slip_days == 0 and result.escalations == [] and result.failed_steps == {}

    tasks = await pool.fetch("SELECT step, status FROM tasks WHERE workflow_id = $1", handle.id)
    assert len(tasks) == 20 and {t["status"] for t in tasks} == {"completed"}
    comms = await pool.fetch("SELECT status FROM communications WHERE workflow_id = $1", handle.id)
    assert len(comms) == len(ON_TIME_EMAILS) and {c["status"] for c in comms} == {"sent"}


async def test_nine_day_slip_escalates_twice_and_shifts_the_plan(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    result = await PlayDriver(env, pool, handle).run(hold={"data_migration": 9})

    assert result.slip_days == 9
    assert result.escalations == ["escalation/slip-over-2d", "escalation/slip-over-7d"]
    rows = await pool.fetch("SELECT level, to_role, to_email FROM escalations WHERE workflow_id = $1 ORDER BY id", handle.id)
    assert [(r["level"], r["to_role"]) for r in rows] == [(1, "cs_manager"), (3, "vp_product")]
    reports = [m for m in sink.messages if m.step.startswith("escalation/")]
    assert [m.subject.split("]")[0] for m in reports] == ["[Escalation L1", "[Escalation L3"]
    assert "diana.hoang@tai.example" in reports[0].rcpt_to and "priya.nair@tai.example" in reports[1].rcpt_to
    for field in ("ESCALATION REPORT", "Escalation level: Level 1", "Severity: P2", "Tier: Enterprise",
                  "Why we're escalating", "What we need to resolve", "Success criteria", "Next steps"):
        assert field in reports[0].text, field
    # 9 days, not more than 14: no churn-risk points.
    assert await pool.fetchval("SELECT count(*) FROM risk_events") == 0
    # Dates after the late milestone moved by 9 days: go-live on day 34 instead of 25.
    go_live = await pool.fetchrow("SELECT due_at, completed_at FROM tasks WHERE step = 'task/go_live'")
    assert (go_live["due_at"].astimezone(ET).date() - start.date()).days + 1 == 34


async def test_delay_over_two_weeks_records_churn_risk_once(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await PlayDriver(env, pool, handle).run(hold={"implementation_plan": 16})
    rows = await pool.fetch("SELECT indicator, points FROM risk_events WHERE workflow_id = $1", handle.id)
    assert [(r["indicator"], r["points"]) for r in rows] == [("implementation_delayed", 20)]


async def test_blocker_open_three_days_alerts_cs_manager_and_creates_task(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await env.sleep(timedelta(days=1))
    await handle.signal(OnboardingPlan.report_blocker, BlockerReport(key="sso", title="SSO metadata missing"))
    await handle.signal(OnboardingPlan.report_blocker, BlockerReport(key="vpn", title="VPN access"))
    await env.sleep(timedelta(days=1))
    await handle.signal(OnboardingPlan.resolve_blocker, BlockerResolved(key="vpn"))
    await env.sleep(timedelta(days=2, hours=1))
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
    assert (go_live["due_at"].astimezone(ET).date() - start.date()).days + 1 == 28
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
    await env.sleep(timedelta(days=3, hours=2))
    st = await handle.query(OnboardingPlan.status)
    assert (st.phase, st.day, st.go_live_day, st.slip_days) == ("planning", 4, 25, 3)
    assert st.escalations == ["escalation/slip-over-2d"]
    assert {t.step for t in st.open_tasks} == {"task/project_charter", "task/current_state_assessment", "task/implementation_plan"}
    # Next: Friday's status report (day 5), before the next rung (day 9).
    assert st.next_action.startswith("email/weekly_status/")
    assert (st.next_action_at.astimezone(ET).date() - st.as_of.astimezone(ET).date()).days == 1


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
