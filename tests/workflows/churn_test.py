"""The churn watch on the time-skipping test server: each band's play, an upgrade YELLOW -> RED,
recovery RED -> YELLOW -> 90 days of monitoring, a new scoring model, the monthly summary."""

from __future__ import annotations

from datetime import timedelta

from playbooks.loader import load_named, load_scoring
from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import churn_status, complete_task, flag_risk, read_metrics
from tests.workflows.play_driver import skip_to_next_monday
from workflows.churn import ChurnWatch, MonthlyRiskSummary
from workflows.churn_messages import IndicatorFlag, MetricsReading, ScoringUpdate, SummaryInput


def flag(indicator: str, present: bool = True) -> IndicatorFlag:
    return IndicatorFlag(indicator=indicator, present=present, source="test")


async def flag_and_wait(env, pool, settings, *indicators: str, present: bool = True):
    for ind in indicators:
        handle = await flag_risk(env.client, pool, settings, DEMO_ACCOUNT_ID, flag(ind, present), settings.task_queue)
    await env.sleep(timedelta(minutes=1))
    return handle


async def tasks_of(pool, workflow_id: str) -> dict[str, str]:
    rows = await pool.fetch("SELECT step, owner_email, status FROM tasks WHERE workflow_id = $1 ORDER BY id",
                            workflow_id)
    return {r["step"]: r["owner_email"] for r in rows}


async def escalations(pool) -> list[tuple[int, str, str]]:
    rows = await pool.fetch("SELECT level, to_role, step FROM escalations ORDER BY id")
    return [(r["level"], r["to_role"], r["step"]) for r in rows]


async def test_yellow_play_acts_within_a_week_and_escalates_what_is_late(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await flag_and_wait(env, pool, settings, "key_stakeholder_departed")
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert (st.score, st.band, st.phase) == (25, "YELLOW", "intervention_yellow")
    tasks = await tasks_of(pool, handle.id)
    assert set(tasks) == {f"band/1/YELLOW/action/{k}" for k in
                          ("sponsor_checkin", "value_assessment", "adoption_plan", "roadmap_alignment")}
    assert [m.step for m in sink.messages] == ["band/1/YELLOW/alert", "band/1/YELLOW/sponsor_checkin/email"]
    assert sink.messages[0].rcpt_to[0] == "casey.morgan@tai.example" and "YELLOW (risk 25)" in sink.messages[0].subject
    assert "dana.reyes@acme.example" in sink.messages[1].rcpt_to
    # Three actions done in time; the sponsor call is not: it escalates after a week, to the CS manager.
    for row in await pool.fetch("SELECT id, step FROM tasks WHERE step NOT LIKE '%sponsor_checkin'"):
        await complete_task(env.client, pool, row["id"], "casey")
    await env.sleep(timedelta(days=7, hours=1))
    assert await escalations(pool) == [(1, "cs_manager", "band/1/YELLOW/action/sponsor_checkin/deadline")]
    risk = await pool.fetchrow("SELECT score, band FROM account_risk WHERE account_id = 'acme'")
    assert dict(risk) == {"score": 25, "band": "YELLOW"}


async def test_orange_play_brings_in_the_vp_within_48_hours(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await read_metrics(env.client, pool, settings, DEMO_ACCOUNT_ID,
                                MetricsReading(values={"nps": 20, "dau_pct": 8, "training_pct": 10}, source="crm"),
                                settings.task_queue)
    await env.sleep(timedelta(minutes=1))
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert (st.score, st.band) == (55, "ORANGE")
    alert = sink.messages[0]
    assert alert.step == "band/1/ORANGE/alert" and "priya.nair@tai.example" in alert.rcpt_to
    assert "NPS score &lt; 30" not in alert.text and "NPS score < 30 (detractors) (+20)" in alert.text
    tasks = await tasks_of(pool, handle.id)
    assert tasks["band/1/ORANGE/action/vp_call"] == "priya.nair@tai.example" and len(tasks) == 5
    await env.sleep(timedelta(hours=49))
    assert [(lvl, role) for lvl, role, _ in await escalations(pool)] == [(2, "vp_customer_success")] * 5


async def test_upgrade_yellow_to_red_then_recovery_and_90_days_of_monitoring(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await flag_and_wait(env, pool, settings, "key_stakeholder_departed")
    await env.sleep(timedelta(days=2))
    # One reading of low NPS, CSAT and DAU: YELLOW straight to RED (25 + 20 + 15 + 20 = 80).
    bad = MetricsReading(values={"nps": 10, "csat": 2, "dau_pct": 8}, source="crm")
    await read_metrics(env.client, pool, settings, DEMO_ACCOUNT_ID, bad, settings.task_queue)
    await env.sleep(timedelta(minutes=1))
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert (st.score, st.band, st.spell, st.intervention_band) == (80, "RED", 1, "RED")
    red = [m for m in sink.messages if m.step == "band/1/RED/alert"]
    assert len(red) == 1 and "alex.chen@tai.example" in red[0].rcpt_to  # the CEO
    tasks = await tasks_of(pool, handle.id)
    assert sum(s.startswith("band/1/YELLOW/") for s in tasks) == 4 and sum(s.startswith("band/1/RED/") for s in tasks) == 4
    # A daily check-in each morning while RED.
    await env.sleep(timedelta(days=3))
    assert len([s for s in await tasks_of(pool, handle.id) if s.startswith("checkin/")]) == 3
    # Recovery: back to YELLOW stops the check-ins and starts 13 weeks of weekly monitoring.
    good = MetricsReading(values={"nps": 60, "csat": 4.5, "dau_pct": 70}, source="crm")
    await read_metrics(env.client, pool, settings, DEMO_ACCOUNT_ID, good, settings.task_queue)
    await env.sleep(timedelta(minutes=1))
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert st.band == "YELLOW" and st.monitoring_since is not None
    await env.sleep(timedelta(days=3))
    assert len([s for s in await tasks_of(pool, handle.id) if s.startswith("checkin/")]) == 3
    await flag_and_wait(env, pool, settings, "key_stakeholder_departed", present=False)
    assert (await churn_status(env.client, DEMO_ACCOUNT_ID)).band == "GREEN"
    await env.sleep(timedelta(days=92))
    monitor = [s for s in await tasks_of(pool, handle.id) if s.startswith("monitor/")]
    assert sorted(monitor) == sorted(f"monitor/1/{w}/task" for w in range(1, 14))
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert st.phase == "watching" and [(c.from_band, c.to_band) for c in st.band_changes] == [
        ("GREEN", "YELLOW"), ("YELLOW", "RED"), ("RED", "YELLOW"), ("YELLOW", "GREEN")]
    rows = await pool.fetch("SELECT from_band, to_band FROM risk_band_changes ORDER BY changed_at, id")
    assert [(r["from_band"], r["to_band"]) for r in rows] == [(c.from_band, c.to_band) for c in st.band_changes]


async def test_a_new_scoring_model_rescored_at_once(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await flag_and_wait(env, pool, settings, "budget_cuts")
    assert (await churn_status(env.client, DEMO_ACCOUNT_ID)).band == "GREEN"
    scoring = load_scoring()
    heavier = scoring.model_copy(update={"version": 2, "indicators": [
        i.model_copy(update={"points": 45}) if i.key == "budget_cuts" else i for i in scoring.indicators]})
    view = await handle.execute_update(ChurnWatch.apply_scoring, ScoringUpdate(scoring=heavier, by="Diana"))
    assert (view.score, view.band, view.previous_band, view.scoring_version) == (45, "ORANGE", "GREEN", 2)


async def test_long_watch_continues_as_new_with_its_state(env, worker, pool, settings, sink):
    from activities.churn import watch_input

    await skip_to_next_monday(env)
    handle = await env.client.start_workflow(
        ChurnWatch.run, watch_input(settings, DEMO_ACCOUNT_ID, "test", max_history_events=30),
        id="churn-acme", task_queue=settings.task_queue)
    for value in range(30, 0, -5):
        await handle.signal(ChurnWatch.read_metrics, MetricsReading(values={"dau_pct": value}))
        await env.sleep(timedelta(hours=6))
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert st.run_count >= 2 and st.metrics == {"dau_pct": 5} and st.band == "GREEN" and st.score == 20


async def test_monthly_summary_counts_bands_moves_rescues_and_losses(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    bad = MetricsReading(values={"nps": 10, "csat": 2, "dau_pct": 8}, source="crm")
    good = MetricsReading(values={"nps": 60, "csat": 4.5, "dau_pct": 70}, source="crm")
    for reading in (bad, good):
        await read_metrics(env.client, pool, settings, DEMO_ACCOUNT_ID, reading, settings.task_queue)
        await env.sleep(timedelta(hours=1))
    assert await pool.fetchval("SELECT band FROM account_risk WHERE account_id = 'acme'") == "GREEN"
    month = (await env.get_current_time()).date().replace(day=1)
    result = await env.client.execute_workflow(
        MonthlyRiskSummary.run, SummaryInput(playbook=load_named("churn"), month=month),
        id="summary", task_queue=settings.task_queue)
    assert result["counts"] == {"GREEN": 1, "YELLOW": 0, "ORANGE": 0, "RED": 0} and result["moves"] == 2
    mail = sink.messages[-1]
    assert mail.step == "report" and "alex.chen@tai.example" in mail.rcpt_to
    assert "Rescued (RED or ORANGE back to GREEN): Acme Logistics" in mail.text
    assert "Acme Logistics: GREEN → ORANGE" in mail.text and "Acme Logistics: ORANGE → GREEN" in mail.text
    assert "GREEN  1  $150,000" in mail.text


async def test_other_plays_feed_the_watch_and_a_renewal_clears_contract_risk(env, worker, pool, settings, sink):
    from starter.steering import launch_renewal
    from workflows.renewal import RenewalCountdown
    from workflows.renewal_messages import Renewed

    start = await skip_to_next_monday(env)
    renewal = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test",
                                   start.date() + timedelta(days=5), settings.task_queue)
    await env.sleep(timedelta(days=7))
    # Final 90 days (+10) and past due (+25), both recorded by the countdown: YELLOW.
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert (st.score, st.band) == (35, "YELLOW")
    assert st.flags == {"contract_final_90_days": "renewal-acme", "renewal_past_due": "renewal-acme"}
    await renewal.signal(RenewalCountdown.renewed, Renewed(signed_by="Dana Reyes"))
    await env.sleep(timedelta(hours=1))
    st = await churn_status(env.client, DEMO_ACCOUNT_ID)
    assert (st.score, st.band, st.flags) == (0, "GREEN", {})


async def test_a_rescue_that_began_last_month_counts_this_month(pool):
    from datetime import date, datetime, timezone

    from activities.churn import risk_summary

    def at(month: int, day: int) -> datetime:
        return datetime(2027, month, day, 15, tzinfo=timezone.utc)

    for n, (frm, to, when) in enumerate([("GREEN", "YELLOW", at(1, 5)), ("YELLOW", "RED", at(1, 20)),
                                         ("RED", "YELLOW", at(2, 3)), ("YELLOW", "GREEN", at(2, 10))]):
        await pool.execute(
            "INSERT INTO risk_band_changes (idem_key, account_id, workflow_id, from_band, to_band, score, changed_at)"
            " VALUES ($1, 'acme', 'churn-acme', $2, $3, 0, $4)", f"k{n}", frm, to, when)
    february = await risk_summary(pool, date(2027, 2, 1))
    assert february["rescued"] == ["Acme Logistics"] and len(february["moves"]) == 2
    assert (await risk_summary(pool, date(2027, 1, 1)))["rescued"] == []
