"""Whole renewal countdowns on the time-skipping test server, checked at the SMTP sink and in PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.accounts import fetch_account, upsert_account
from starter.demo import DEMO_ACCOUNT_ID, demo_account
from starter.steering import SteeringError, launch_renewal
from tests.workflows.play_driver import ET, skip_to_next_monday, us_calendar
from workflows.renewal import RenewalCountdown
from workflows.renewal_messages import ChangeRenewalDate, Churned, Renewed, renewal_workflow_id

# Steps count calendar days from the renewal date; one whose date is a weekend or US holiday fires
# on the working day before it (countdown) or after it (post-renewal). The e-mails, with the day
# (from the renewal date) each step is dated:
ENTERPRISE_EMAILS = [
    ("step/health_review/email/countdown_started", -180),
    ("step/health_review/email/countdown_started_manager", -180),
    ("step/value_review/email/value_review_invite", -150),
    ("step/executive_review/email/qbr_invite", -120),
    ("step/renewal_proposal/email/proposal", -90),
    ("step/signature_chase/email/signature_request", -30),
    # Reminders 5 and 10 working days after the signature request (nobody replied).
    ("step/signature_chase/email/signature_request/follow-up/1", -30),
    ("step/signature_chase/email/signature_request/follow-up/2", -30),
    ("step/renewal_thanks/email/thanks", 0),
    ("step/post_renewal_kickoff/email/kickoff_invite", 14),
    ("step/success_plan/email/success_plan", 30),
]
FOLLOW_UP_DAYS = {"follow-up/1": 5, "follow-up/2": 10}
# Each task: owner, and due days after its step's date (rolled to our team's next working day).
ENTERPRISE_TASKS = {
    "step/health_review/task/account_review": ("csm", -180, 14),
    "step/health_review/task/relationship_map": ("csm", -180, 14),
    "step/health_review/task/competitive_review": ("cs_manager", -180, 21),
    "step/value_review/task/value_report": ("csm", -150, 14),
    "step/executive_review/task/executive_presentation": ("vp_customer_success", -120, 21),
    "step/executive_review/task/expansion_proposal": ("csm", -120, 21),
    "step/renewal_proposal/task/renewal_package": ("csm", -90, 10),
    "step/negotiation/task/terms": ("cs_manager", -60, 21),
    "step/signature_chase/task/signature": ("csm", -30, 14),
    "step/post_renewal_kickoff/task/kickoff": ("csm", 14, 7),
    "step/post_renewal_kickoff/task/reference": ("csm", 14, 14),
    "step/success_plan/task/success_plan": ("csm", 30, 7),
}
CAL = us_calendar()


def day_of(moment: datetime, renewal: date) -> int:
    """Days from the renewal date (negative before it), in New York."""
    return (moment.astimezone(ET).date() - renewal).days


def fired(renewal: date, offset: int, post: bool = False) -> date:
    """The date a step dated `offset` days from the renewal fires: on a working day (before, or after)."""
    day = renewal + timedelta(days=offset)
    return CAL.roll_forward(day) if post else CAL.roll_back(day)


def email_day(renewal: date, step: str, offset: int) -> int:
    post = offset > 0 or "renewal_thanks" in step
    day = fired(renewal, offset, post)
    for suffix, n in FOLLOW_UP_DAYS.items():
        if step.endswith(suffix):
            day = CAL.add_working_days(day, n)
    return (day - renewal).days


def task_day(renewal: date, offset: int, due_days: int) -> int:
    anchor = fired(renewal, offset, post=offset > 0)
    anchor = max(anchor, renewal + timedelta(days=offset))
    return (CAL.roll_forward(anchor + timedelta(days=due_days)) - renewal).days


async def launch(env, pool, settings, days_out: int = 180, account_id: str = DEMO_ACCOUNT_ID, **kw):
    start = await skip_to_next_monday(env)
    renewal = start.date() + timedelta(days=days_out)
    handle = await launch_renewal(env.client, pool, settings, account_id, "test", renewal, settings.task_queue, **kw)
    return handle, renewal


async def sleep_until(env, renewal: date, day: int, hour: int = 12) -> None:
    """Skip to `day` days from the renewal date (negative before it) at `hour` New York time."""
    target = datetime.combine(renewal + timedelta(days=day), datetime.min.time().replace(hour=hour), tzinfo=ET)
    now = await env.get_current_time()
    assert target > now, f"cannot go back to day {day}"
    await env.sleep(target - now)


async def status(handle: WorkflowHandle):
    return await handle.query(RenewalCountdown.status)


async def test_whole_210_day_countdown_sends_exactly_the_planned_emails_and_tasks(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings)
    await sleep_until(env, renewal, -10)
    st = await status(handle)
    assert st.phase == "closure" and st.next_action == "step/renewal_day"
    assert day_of(st.next_action_at, renewal) == (fired(renewal, 0) - renewal).days
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="Dana Reyes"))
    result = await handle.result()

    assert result.outcome == "renewed" and result.failed_steps == {}
    assert [m.step for m in sink.messages] == [step for step, _ in ENTERPRISE_EMAILS]
    sent = {r["step"]: day_of(r["sent_at"], renewal) for r in await pool.fetch(
        "SELECT step, sent_at FROM communications WHERE workflow_id = $1", handle.id)}
    assert {step: sent[step] for step, _ in ENTERPRISE_EMAILS} == {
        step: email_day(renewal, step, offset) for step, offset in ENTERPRISE_EMAILS}
    for step, at in sent.items():  # each on a working day, in the send window, New York time
        assert CAL.is_working_day(renewal + timedelta(days=at)), step
    proposal = next(m for m in sink.messages if m.step.endswith("/proposal"))
    assert set(proposal.rcpt_to) == {"dana.reyes@acme.example", "casey.morgan@tai.example"}
    assert "Acme Logistics renewal proposal" in proposal.subject
    manager = next(m for m in sink.messages if m.step.endswith("countdown_started_manager"))
    assert list(manager.rcpt_to) == ["diana.hoang@tai.example"]

    rows = await pool.fetch("SELECT step, owner_role, due_at, status, completed_by FROM tasks WHERE workflow_id = $1",
                            handle.id)
    assert {r["step"]: (r["owner_role"], day_of(r["due_at"], renewal)) for r in rows} == {
        step: (owner, task_day(renewal, offset, due)) for step, (owner, offset, due) in ENTERPRISE_TASKS.items()}
    # Renewed 10 days out: the open countdown tasks were closed as moot, the renewal-day step skipped.
    closed = {r["step"] for r in rows if r["completed_by"] == "renewal renewed"}
    assert closed == {s for s in ENTERPRISE_TASKS if not s.startswith(("step/post_renewal", "step/success_plan"))}
    assert result.skipped_steps["step/renewal_day"] == "the account renewed"
    risk = await pool.fetch("SELECT indicator, points, created_at FROM risk_events WHERE workflow_id = $1", handle.id)
    assert [(r["indicator"], r["points"]) for r in risk] == [("contract_final_90_days", 10)]
    account = await fetch_account(pool, DEMO_ACCOUNT_ID)
    assert account.status == "active" and account.renewal_date == renewal.replace(year=renewal.year + 1)
    assert await pool.fetchval("SELECT count(*) FROM escalations") == 0


async def test_renewal_date_moved_later_replans_steps_and_open_tasks(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings)
    await sleep_until(env, renewal, -100)
    before = await pool.fetchval("SELECT due_at FROM tasks WHERE step = 'step/executive_review/task/expansion_proposal'")
    later = renewal + timedelta(days=60)
    plan = await handle.execute_update(RenewalCountdown.change_renewal_date,
                                       ChangeRenewalDate(renewal_date=later, reason="budget cycle moved"))
    assert plan.previous_date == renewal and plan.renewal_date == later and plan.days_to_renewal == 160
    by_step = {e.step: e for e in plan.schedule}
    assert by_step["step/renewal_proposal"].date == later - timedelta(days=90)
    assert by_step["step/renewal_proposal"].status == "planned"
    assert by_step["step/health_review"].status == "done"
    assert by_step["step/renewal_thanks"].status == "if renewed"
    await env.sleep(timedelta(hours=1))  # the play re-plans its open tasks on its next turn
    after = await pool.fetchval("SELECT due_at FROM tasks WHERE step = 'step/executive_review/task/expansion_proposal'")
    assert (after.astimezone(ET).date() - before.astimezone(ET).date()).days == 60

    await sleep_until(env, later, -89)
    assert [m.step for m in sink.messages][-1] == "step/renewal_proposal/email/proposal"
    assert len([m for m in sink.messages if m.step.endswith("/proposal")]) == 1
    st = await status(handle)
    assert st.original_renewal_date == renewal and st.renewal_date == later
    assert [(c.from_date, c.to_date, c.reason) for c in st.date_changes] == [(renewal, later, "budget cycle moved")]
    assert await pool.fetchval("SELECT count(*) FROM risk_events WHERE workflow_id = $1", handle.id) == 1


async def test_renewal_date_moved_earlier_fires_the_latest_and_catch_up_steps_once(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings)
    await sleep_until(env, renewal, -130)
    now = await env.get_current_time()
    sooner = now.astimezone(ET).date() + timedelta(days=50)
    plan = await handle.execute_update(RenewalCountdown.change_renewal_date, ChangeRenewalDate(renewal_date=sooner))
    by_step = {e.step: e for e in plan.schedule}
    # 120 (no catch-up) is overtaken; 90 (catch-up) and 60 (the latest) fire now.
    assert by_step["step/executive_review"].status == "skipped"
    assert "overtaken by 'Renewal negotiation'" in by_step["step/executive_review"].note
    assert by_step["step/renewal_proposal"].status == "due" and by_step["step/negotiation"].status == "due"
    await env.sleep(timedelta(hours=1))
    steps = [m.step for m in sink.messages]
    assert steps.count("step/renewal_proposal/email/proposal") == 1
    assert not any(s.startswith("step/executive_review") for s in steps)
    tasks = {r["step"] for r in await pool.fetch("SELECT step FROM tasks WHERE workflow_id = $1", handle.id)}
    assert {"step/renewal_proposal/task/renewal_package", "step/negotiation/task/terms"} <= tasks
    assert not any(t.startswith("step/executive_review") for t in tasks)
    # Now inside the final 90 days: the +10 is recorded at once, once.
    risk = await pool.fetch("SELECT indicator FROM risk_events WHERE workflow_id = $1", handle.id)
    assert [r["indicator"] for r in risk] == ["contract_final_90_days"]


async def test_bad_renewal_dates_are_refused_and_change_nothing(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings)
    await env.sleep(timedelta(days=3))
    before = await status(handle)
    today = (await env.get_current_time()).astimezone(ET).date()
    cases = [
        (ChangeRenewalDate(renewal_date=today - timedelta(days=1)), "is in the past"),
        (ChangeRenewalDate(renewal_date=renewal), "already"),
        (ChangeRenewalDate(renewal_date=today + timedelta(days=2000)), "more than 1095 days ahead"),
        ({"renewal_date": "2027-13-45"}, "renewal_date"),
        ({"renewal_date": "next tuesday"}, "renewal_date"),
        ({"reason": "no date"}, "renewal_date"),
    ]
    for change, expected in cases:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("change_renewal_date", change)
        cause = refused.value.cause
        message = " ".join(str(c) for c in (cause, getattr(cause, "cause", None)) if c)
        assert expected in message, (change, message)
    after = await status(handle)
    assert after.renewal_date == renewal and after.date_changes == [] and after.schedule == before.schedule


async def test_churned_ends_the_countdown_at_once_with_a_close_out_task(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings)
    await sleep_until(env, renewal, -45)
    await handle.signal(RenewalCountdown.churned, Churned(recorded_by="Casey Morgan", reason="Budget cuts"))
    result = await handle.result()
    assert result.outcome == "churned"
    closed = (await handle.describe()).close_time
    assert day_of(closed, renewal) == -45, "the play must end at once, not wait for the renewal date"
    notice = sink.messages[-1]
    assert notice.step == "churned/email" and "Acme Logistics has churned" in notice.subject
    assert "Budget cuts" in notice.text and "diana.hoang@tai.example" in notice.rcpt_to
    rows = await pool.fetch("SELECT step, status, completed_by, owner_email FROM tasks WHERE workflow_id = $1", handle.id)
    close_out = [r for r in rows if r["step"] == "churned/task/churn_closeout"]
    assert len(close_out) == 1 and close_out[0]["status"] == "not-started"
    assert close_out[0]["owner_email"] == "casey.morgan@tai.example"
    assert all(r["status"] == "completed" for r in rows if r["step"] != "churned/task/churn_closeout")
    assert (await fetch_account(pool, DEMO_ACCOUNT_ID)).status == "churned"
    assert {s for s, why in result.skipped_steps.items() if why == "the account churned"} >= {
        "step/signature_chase", "step/renewal_day", "step/renewal_thanks", "past-due"}
    # A second outcome is ignored, a new launch is refused.
    with pytest.raises(SteeringError) as refused:
        await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", renewal, settings.task_queue)
    assert refused.value.status == 409 and "churned" in str(refused.value)


async def test_missed_renewal_date_adds_risk_escalates_and_waits_for_an_outcome(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings, days_out=60)
    await sleep_until(env, renewal, 20)
    st = await status(handle)
    assert st.phase == "past_due" and not st.finished
    risk = await pool.fetch("SELECT indicator, points FROM risk_events WHERE workflow_id = $1 ORDER BY id", handle.id)
    assert [(r["indicator"], r["points"]) for r in risk] == [("contract_final_90_days", 10), ("renewal_past_due", 25)]
    esc = await pool.fetch("SELECT level, to_role FROM escalations WHERE workflow_id = $1 ORDER BY id", handle.id)
    assert [(r["level"], r["to_role"]) for r in esc] == [(1, "cs_manager"), (2, "vp_customer_success")]
    reports = [m for m in sink.messages if m.step.startswith("escalation/")]
    assert [m.step for m in reports] == ["escalation/past-due-1d/email", "escalation/past-due-14d/email"]
    overdue = (CAL.roll_forward(renewal + timedelta(days=1)) - renewal).days  # on our next working day
    assert f"has not renewed, {overdue} days after" in reports[0].subject and "ARR $150,000 at risk" in reports[0].text
    task = await pool.fetchrow("SELECT priority, owner_email FROM tasks WHERE step = 'past-due/task/past_due'")
    assert dict(task) == {"priority": "P0", "owner_email": "diana.hoang@tai.example"}

    # Signed late: the post-renewal steps whose dates have passed run now, once.
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="Dana Reyes", new_renewal_date=renewal + timedelta(days=400)))
    result = await handle.result()
    assert result.outcome == "renewed" and result.new_renewal_date == renewal + timedelta(days=400)
    post = [m.step for m in sink.messages if m.step.startswith(("step/renewal_thanks", "step/post_renewal", "step/success_plan"))]
    assert post == ["step/renewal_thanks/email/thanks", "step/post_renewal_kickoff/email/kickoff_invite",
                    "step/success_plan/email/success_plan"]


async def test_play_started_40_days_out_skips_the_earlier_steps(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings, days_out=40)
    await sleep_until(env, renewal, -29)
    st = await status(handle)
    skipped = {e.step: e.note for e in st.schedule if e.status == "skipped"}
    assert list(skipped) == ["step/health_review", "step/value_review", "step/executive_review",
                             "step/renewal_proposal", "step/negotiation"]
    assert all("before the play started" in why for why in skipped.values())
    assert [m.step for m in sink.messages] == ["step/signature_chase/email/signature_request"]
    # Already inside the final 90 days when it started: the +10 holds from the start.
    risk = await pool.fetch("SELECT indicator FROM risk_events WHERE workflow_id = $1", handle.id)
    assert [r["indicator"] for r in risk] == ["contract_final_90_days"]


async def starter_account(pool) -> str:
    account = demo_account(date.today()).model_copy(update={"id": "tiny", "name": "Tiny Shop", "arr": Decimal(12_000)})
    await upsert_account(pool, account)
    return account.id


async def test_starter_tier_gets_its_own_steps_and_owners(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings, account_id=await starter_account(pool))
    await sleep_until(env, renewal, -5)
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="owner"))
    result = await handle.result()
    assert [m.step for m in sink.messages] == [
        "step/health_review/email/countdown_started",
        "step/value_review/email/value_summary",
        "step/renewal_proposal/email/proposal",
        "step/negotiation/email/renewal_reminder",
        "step/signature_chase/email/signature_request",
        "step/signature_chase/email/signature_request/follow-up/1",
        "step/signature_chase/email/signature_request/follow-up/2",
        "step/renewal_thanks/email/thanks",
        "step/success_plan/email/success_plan",
    ]
    summary = sink.messages[1]
    assert {"dana.reyes@acme.example", "lee.park@acme.example", "sam.ortiz@acme.example"} <= set(summary.rcpt_to)
    rows = await pool.fetch("SELECT step, owner_role FROM tasks WHERE workflow_id = $1 ORDER BY id", handle.id)
    assert {r["step"]: r["owner_role"] for r in rows} == {
        "step/health_review/task/account_review": "csm",
        "step/renewal_proposal/task/renewal_package": "csm",
        "step/negotiation/task/terms": "csm",
        "step/signature_chase/task/signature": "csm",
        "step/post_renewal_kickoff/task/kickoff": "csm",
        "step/success_plan/task/success_plan": "csm",
    }
    assert "step/executive_review" not in result.done_steps + list(result.skipped_steps)


async def test_launch_refusals_start_nothing(env, worker, pool, settings):
    today = (await env.get_current_time()).astimezone(ET).date()
    cases = [
        ("nobody", today + timedelta(days=100), 404, "unknown account"),
        (DEMO_ACCOUNT_ID, today - timedelta(days=1), 422, "in the past"),
        (DEMO_ACCOUNT_ID, today + timedelta(days=4000), 422, "days ahead"),
    ]
    for account_id, day, code, text in cases:
        with pytest.raises(SteeringError) as refused:
            await launch_renewal(env.client, pool, settings, account_id, "test", day, settings.task_queue)
        assert refused.value.status == code and text in str(refused.value)
    await pool.execute("UPDATE accounts SET renewal_date = NULL WHERE id = $1", DEMO_ACCOUNT_ID)
    with pytest.raises(SteeringError) as refused:
        await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", None, settings.task_queue)
    assert refused.value.status == 422 and "no renewal date" in str(refused.value)
    for account_id in ("nobody", DEMO_ACCOUNT_ID):
        with pytest.raises(RPCError) as missing:
            await env.client.get_workflow_handle(renewal_workflow_id(account_id)).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
    await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", today + timedelta(days=100), settings.task_queue)
    with pytest.raises(SteeringError) as refused:
        await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", today + timedelta(days=100), settings.task_queue)
    assert refused.value.status == 409


async def test_long_history_continues_as_new_carrying_its_state(env, worker, pool, settings, sink):
    handle, renewal = await launch(env, pool, settings, max_history_events=40)
    await sleep_until(env, renewal, -100)
    later = renewal + timedelta(days=7)
    await handle.execute_update(RenewalCountdown.change_renewal_date, ChangeRenewalDate(renewal_date=later))
    await sleep_until(env, later, -10)
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="Dana Reyes"))
    result = await handle.result()
    st = await status(handle)
    assert st.run_count >= 3, "the history limit of 40 events must have forced continue-as-new"
    assert [m.step for m in sink.messages] == [step for step, _ in ENTERPRISE_EMAILS]
    assert result.outcome == "renewed" and st.renewal_date == later and len(st.date_changes) == 1
    rows = await pool.fetch("SELECT DISTINCT play_id FROM tasks WHERE workflow_id = $1", handle.id)
    assert len(rows) == 1, "every run of the chain writes under the same play id"
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1", handle.id) == len(ENTERPRISE_TASKS)
    history = await handle.fetch_history()
    assert len(history.events) < 60
