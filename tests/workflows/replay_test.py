"""Replay of recorded histories: a change to a playbook workflow that would
break a play in flight fails here. Record a new history (after a deliberate,
`workflow.patched` change) with RECORD_HISTORIES=1 ./test.sh -k record."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.stored_parts import DictPartStore, StoredParts
from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import complete_task, launch_onboarding, launch_renewal, open_ticket
from tests.workflows.play_driver import PlayDriver, skip_to_next_monday
from worker import WORKFLOWS, workflow_runner
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import BlockerReport, MoveGoLive, ReadinessSignoff
from workflows.renewal import RenewalCountdown
from workflows.renewal_messages import ChangeRenewalDate, Renewed
from workflows.sla import SlaClock
from workflows.sla_messages import Acknowledged, OnHold, PriorityChanged, Reopened, Resolved, Resumed

HISTORIES = Path(__file__).parent.parent / "histories"
PARTS = HISTORIES / "parts"  # stored payload parts a history refers to, by history file name


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_there_is_a_recorded_history():
    assert recorded(), f"no histories in {HISTORIES}"


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path):
    replayer = Replayer(workflows=WORKFLOWS, data_converter=converter_for(path), workflow_runner=workflow_runner())
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_onboarding_history(env, worker, pool, settings):
    """A play that uses every message: blockers, a slip, a go-live move, the signed gate."""
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "recorder", settings.task_queue)
    done = set()

    async def steer(st):
        if st.day >= 2 and "blocker" not in done:
            await handle.signal(OnboardingPlan.report_blocker, BlockerReport(key="sso", title="SSO metadata"))
            done.add("blocker")
        if st.day >= 10 and "move" not in done:
            await handle.execute_update(OnboardingPlan.move_go_live, MoveGoLive(day=27, reason="recorded"))
            done.add("move")
        if st.phase == "testing" and st.day >= 26 and "gate" not in done:
            await handle.signal(OnboardingPlan.sign_readiness_checklist, ReadinessSignoff(signed_by="recorder"))
            done.add("gate")

    await PlayDriver(env, pool, handle).run(hold={"data_migration": 4, "go_live_readiness": 99}, on_tick=steer)
    await save_history(handle, "onboarding-slip-move-gate")


async def save_history(handle, name: str, pool=None) -> None:
    """The play's history as tests/histories/<name>.json; with `pool`, the stored payload parts it refers
    to (activities/stored_parts.py: every part of the test's database) as tests/histories/parts/<name>.json."""
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))
    if pool is not None:
        parts = {r["part_key"]: r["body"] for r in await pool.fetch("SELECT part_key, body FROM stored_payload_parts")}
        PARTS.mkdir(exist_ok=True)
        (PARTS / f"{name}.json").write_text(json.dumps(parts, indent=1, sort_keys=True))


def converter_for(path: Path):
    """The data converter a recorded history replays with: with the stored payload parts saved beside
    it (tests/histories/parts/), the StoredParts codec over them."""
    parts = PARTS / path.name
    if not parts.exists():
        return pydantic_data_converter
    store = DictPartStore(json.loads(parts.read_text()))
    return dataclasses.replace(pydantic_data_converter, payload_codec=StoredParts(store))


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_renewal_history(env, worker, pool, settings):
    """A countdown that completes a task, moves its date earlier (a step overtaken,
    two caught up), crosses the final 90 days and is renewed."""
    start = await skip_to_next_monday(env)
    renewal = start.date() + timedelta(days=180)
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "recorder", renewal, settings.task_queue)
    await env.sleep(timedelta(days=50))
    task_id = await pool.fetchval("SELECT min(id) FROM tasks WHERE workflow_id = $1", handle.id)
    await complete_task(env.client, pool, task_id, "recorder")
    sooner = renewal - timedelta(days=80)
    await handle.execute_update(RenewalCountdown.change_renewal_date, ChangeRenewalDate(renewal_date=sooner))
    await env.sleep(timedelta(days=40))
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="recorder"))
    await handle.result()
    await save_history(handle, "renewal-move-earlier-renewed")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_light_renewal_history(env, worker, pool, settings):
    """A countdown launched with a light snapshot (issue 18: the templates' sources in the stored
    playbook version, summaries on every call and timer) that e-mails, completes a task and is
    renewed. The histories above were recorded before, with whole snapshots."""
    await save_history(await _renewed_countdown(env, pool, settings), "renewal-light-snapshot-renewed")


async def _renewed_countdown(env, pool, settings) -> WorkflowHandle:
    """A countdown 120 days out that e-mails, has its first task completed at day 45 and is renewed at 65."""
    start = await skip_to_next_monday(env)
    renewal = start.date() + timedelta(days=120)
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "recorder", renewal, settings.task_queue)
    await env.sleep(timedelta(days=45))
    task_id = await pool.fetchval("SELECT min(id) FROM tasks WHERE workflow_id = $1", handle.id)
    await complete_task(env.client, pool, task_id, "recorder")
    await env.sleep(timedelta(days=20))
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="recorder"))
    await handle.result()
    return handle


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_stored_parts_renewal_history(env, worker, pool, settings):
    """The same countdown with its playbook snapshot and calendars as stored payload parts (issue 18:
    only their keys in the history; the parts saved beside it). The one above has them inline."""
    await save_history(await _renewed_countdown(env, pool, settings), "renewal-light-stored-parts-renewed", pool)


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_sla_history(env, worker, pool, settings):
    """A P2 raised to P0 that climbs the ladder, goes on hold, resumes, is resolved, reopened and closed."""
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, "T-REC", DEMO_ACCOUNT_ID, "P2", "Sync stalls", start,
                               "recorder", settings.task_queue, now=start)
    await env.sleep(timedelta(hours=5))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="recorder"))
    await handle.signal(SlaClock.priority_changed, PriorityChanged(priority="P0", by="recorder"))
    await env.sleep(timedelta(hours=2))
    await handle.signal(SlaClock.on_hold, OnHold(reason="pending customer"))
    await env.sleep(timedelta(hours=3))
    await handle.signal(SlaClock.resumed, Resumed(by="recorder"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(SlaClock.resolved, Resolved(by="recorder"))
    await env.sleep(timedelta(days=1))
    await handle.signal(SlaClock.reopened, Reopened(reason="recorder"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(SlaClock.resolved, Resolved(by="recorder"))
    await handle.result()
    await save_history(handle, "sla-p2-to-p0-hold-reopen")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_churn_history(env, worker, pool, settings):
    """A watch that goes YELLOW, is upgraded to RED, recovers to GREEN through monitoring, under a new model."""
    from playbooks.loader import load_scoring
    from starter.steering import flag_risk, read_metrics
    from workflows.churn import ChurnWatch
    from workflows.churn_messages import IndicatorFlag, MetricsReading, ScoringUpdate

    await skip_to_next_monday(env)
    handle = await flag_risk(env.client, pool, settings, DEMO_ACCOUNT_ID,
                             IndicatorFlag(indicator="key_stakeholder_departed", source="recorder"), settings.task_queue)
    await env.sleep(timedelta(days=2))
    await read_metrics(env.client, pool, settings, DEMO_ACCOUNT_ID,
                       MetricsReading(values={"nps": 10, "csat": 2, "dau_pct": 8}), settings.task_queue)
    await env.sleep(timedelta(days=3))
    task_id = await pool.fetchval("SELECT min(id) FROM tasks WHERE workflow_id = $1", handle.id)
    await complete_task(env.client, pool, task_id, "recorder")
    await read_metrics(env.client, pool, settings, DEMO_ACCOUNT_ID,
                       MetricsReading(values={"nps": 60, "csat": 4.5, "dau_pct": 70}), settings.task_queue)
    await env.sleep(timedelta(days=2))
    scoring = load_scoring().model_copy(update={"version": 2})
    await handle.execute_update(ChurnWatch.apply_scoring, ScoringUpdate(scoring=scoring, by="recorder"))
    await flag_risk(env.client, pool, settings, DEMO_ACCOUNT_ID,
                    IndicatorFlag(indicator="key_stakeholder_departed", present=False, source="recorder"),
                    settings.task_queue)
    await env.sleep(timedelta(days=20))
    await save_history(handle, "churn-yellow-red-recovery")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_nps_detractor_history(env, worker, pool, settings):
    """A detractor's follow-up: alert and tasks, the path escalation, then a chosen path."""
    from datetime import datetime, timezone

    from activities.nps import survey_link
    from starter.steering import choose_detractor_path, record_nps_answer

    await skip_to_next_monday(env)
    link = survey_link(settings, "2026-10", DEMO_ACCOUNT_ID, "lee.park@acme.example",
                       datetime.now(timezone.utc) + timedelta(days=7))
    handle = await record_nps_answer(env.client, pool, settings, link.rsplit("/", 1)[1], 4, "slow",
                                     task_queue=settings.task_queue)
    await env.sleep(timedelta(days=15))
    await choose_detractor_path(env.client, handle.id, "fix_and_resurvey", "recorder")
    await handle.result()
    await save_history(handle, "nps-detractor-fix-and-resurvey")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_play_events_history(env, worker, pool, settings):
    """After the play-events patches (workflows/play.py): a P1 ticket that starts, climbs the ladder,
    is resolved and closes, recording play.started, play.step_done and play.finished."""
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, "T-EVENTS", DEMO_ACCOUNT_ID, "P1", "Reports slow", start,
                               "recorder", settings.task_queue, now=start)
    await env.sleep(timedelta(hours=5))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="recorder"))
    await env.sleep(timedelta(hours=2))
    await handle.signal(SlaClock.resolved, Resolved(by="recorder"))
    await handle.result()
    await save_history(handle, "sla-p1-play-events")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_onboarding_working_days_history(env, worker, pool, settings):
    """Issue 17: an onboarding on working days (calendars loaded, business days, send windows), with a
    slip, for an account in Tokyo whose e-mails wait for its window."""
    from activities.accounts import upsert_account
    from datetime import date

    from starter.demo import demo_account

    tokyo = demo_account(date.today()).model_copy(update={"timezone": "Asia/Tokyo", "country": "JP"})
    await upsert_account(pool, tokyo)
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "recorder", settings.task_queue)
    await PlayDriver(env, pool, handle).run(hold={"data_migration": 3})
    await save_history(handle, "onboarding-working-days-tokyo")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_renewal_reply_stops_reminders_history(env, inbound, pool, settings):
    """Issue 17: a countdown on working days whose signature request is answered: its reminders stop;
    a suppressed sponsor's proposal gets the CSM a task; renewed."""
    from datetime import datetime, time

    from tests.conftest import deliver_to, eventually
    from tests.inbound.dsn_test import shape
    from tests.workflows.play_driver import ET

    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ('dana.reyes@acme.example', 'lifecycle', 'unsubscribed', 'one-click', 'recorder')")
    start = await skip_to_next_monday(env)
    renewal = start.date() + timedelta(days=95)
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "recorder", renewal, settings.task_queue)
    await env.sleep(datetime.combine(renewal - timedelta(days=27), time(12), tzinfo=ET) - await env.get_current_time())
    await pool.execute("DELETE FROM suppressions")
    reply_token = await pool.fetchval("SELECT reply_token FROM communications WHERE step LIKE '%/signature_request'")
    to = f"reply+{reply_token}@{settings.inbound_mail_domain}"
    await deliver_to(inbound, "dana.reyes@acme.example", to, shape("outlook_reply.eml", to=to, rcpt="dana.reyes@acme.example"))
    await eventually(lambda: pool.fetchval("SELECT processed_at FROM inbound_mail"), "the reply")
    await env.sleep(datetime.combine(renewal - timedelta(days=5), time(12), tzinfo=ET) - await env.get_current_time())
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="recorder"))
    await handle.result()
    await save_history(handle, "renewal-working-days-reply-stops-reminders")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_nps_cycle_send_checks_history(env, worker, pool, settings):
    """Issue 17: a survey cycle that defers a Tokyo account's contacts to 09:00 Tokyo and sweeps them up."""
    from datetime import date

    from activities.accounts import upsert_account
    from playbooks.loader import load_named
    from starter.demo import demo_account
    from workflows.nps import NpsCycle
    from workflows.nps_messages import CycleInput

    tokyo = demo_account(date.today()).model_copy(update={
        "id": "tokyo", "name": "Tokyo KK", "status": "active", "timezone": "Asia/Tokyo", "country": "JP",
        "contacts": [c.model_copy(update={"email": c.email.replace("acme", "tokyo")})
                     for c in demo_account(date.today()).contacts]})
    await upsert_account(pool, tokyo)
    await skip_to_next_monday(env)
    handle = await env.client.start_workflow(NpsCycle.run, CycleInput(cycle_id="2026-10", playbook=load_named("nps")),
                                             id="nps-cycle-2026-10", task_queue=settings.task_queue)
    await handle.result()
    await save_history(handle, "nps-cycle-tokyo-deferred")


async def record_onboarding_tokyo(env, pool, settings, name: str) -> None:
    from activities.accounts import upsert_account
    from datetime import date

    from starter.demo import demo_account

    tokyo = demo_account(date.today()).model_copy(update={"timezone": "Asia/Tokyo", "country": "JP"})
    await upsert_account(pool, tokyo)
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "recorder", settings.task_queue)
    await PlayDriver(env, pool, handle).run(hold={"data_migration": 3})
    await save_history(handle, name)


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_onboarding_before_batching_history(env, worker, pool, settings):
    """Issue 18, recorded before the batching patches: an onboarding on working days with play events
    (one create_task per task, one record_play_event per event, load_account then load_calendars)."""
    await record_onboarding_tokyo(env, pool, settings, "onboarding-tokyo-play-events-unbatched")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_onboarding_batched_history(env, worker, pool, settings):
    """Issue 18, after the batching patches: load_play_context, create_tasks, record_play_events."""
    await record_onboarding_tokyo(env, pool, settings, "onboarding-tokyo-batched")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_nps_sharded_cycle_history(env, worker, pool, settings):
    """Issue 18: a cycle of 8 accounts in 3 shards of batches of 2, continued as new on the way."""
    from playbooks.loader import load_named
    from tests.workflows.nps_test import more_accounts
    from workflows.nps import NpsCycle
    from workflows.nps_messages import CycleInput

    await skip_to_next_monday(env)
    await more_accounts(pool, 7)
    snapshot = load_named("nps")
    snapshot = snapshot.model_copy(update={"content": snapshot.content.model_copy(
        update={"batch_size": 2, "parallel_batches": 3})})
    handle = await env.client.start_workflow(NpsCycle.run, CycleInput(cycle_id="2026-10", playbook=snapshot),
                                             id="nps-cycle-2026-10", task_queue=settings.task_queue)
    await handle.result()
    await save_history(handle, "nps-cycle-sharded")


async def record_evening_onboarding(env, pool, settings, name: str) -> None:
    """An onboarding launched on a Monday at 20:00 New York (after our team's 18:00 due hour), played to
    the end on time."""
    await skip_to_next_monday(env, hour=20)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "recorder", settings.task_queue)
    await PlayDriver(env, pool, handle).run()
    await save_history(handle, name)


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_onboarding_evening_launch_history(env, worker, pool, settings):
    """Recorded before "due-after-launch-v1" as onboarding-evening-overdue-day-one (its day-1 tasks due
    two hours before the launch), and after it as onboarding-evening-due-next-day."""
    await record_evening_onboarding(env, pool, settings, os.environ.get("HISTORY_NAME", "onboarding-evening-due-next-day"))


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_sla_profile_calendar_history(env, worker, pool, settings):
    """Issue 19, after organisation profiles: a P2 ticket whose business hours come from the default
    profile's support region (the input's `calendar`), credited at the response miss (section 8.1),
    raised to P1, acknowledged, resolved and closed. Record changes to the SLA clock against it."""
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, "T-PROFILE", DEMO_ACCOUNT_ID, "P2", "Export stalls", start,
                               "recorder", settings.task_queue, now=start)
    await env.sleep(timedelta(hours=5))
    await handle.signal(SlaClock.priority_changed, PriorityChanged(priority="P1", by="recorder"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="recorder"))
    await env.sleep(timedelta(hours=3))
    await handle.signal(SlaClock.resolved, Resolved(by="recorder"))
    await handle.result()
    await save_history(handle, "sla-p2-profile-calendar")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_sla_mid_market_p0_history(env, worker, pool, settings):
    """Issue 19, seed 001 section 3.2 rules: a Mid-Market P0 that climbs at once and at 4 hours,
    is acknowledged and resolved at 5 hours and closes. Recorded before "sla-rule-roles-v1" as
    sla-mid-market-p0-before-rule-roles (its ladder by levels only) and after it as
    sla-mid-market-p0-rule-roles (VP Engineering at once, the COO's notice at 2 hours)."""
    await pool.execute("UPDATE accounts SET crm_tier = 'Mid-Market' WHERE id = $1", DEMO_ACCOUNT_ID)
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, "T-MID-P0", DEMO_ACCOUNT_ID, "P0", "Platform down", start,
                               "recorder", settings.task_queue, now=start)
    await env.sleep(timedelta(hours=5))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="recorder"))
    await env.sleep(timedelta(minutes=10))
    await handle.signal(SlaClock.resolved, Resolved(by="recorder"))
    await handle.result()
    await save_history(handle, os.environ.get("HISTORY_NAME", "sla-mid-market-p0-rule-roles"))


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
async def test_record_sla_before_comms_history(env, worker, pool, settings):
    """Issue 19, recorded before ticket communications: a P1 ticket open through two 4-hour update
    times, acknowledged, resolved and closed. A play like it must stay silent after the change
    (`workflow.patched("sla-ticket-comms")`)."""
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, "T-PRECOMMS", DEMO_ACCOUNT_ID, "P1", "Reports fail",
                               start, "recorder", settings.task_queue, now=start)
    await env.sleep(timedelta(hours=1))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="recorder"))
    await env.sleep(timedelta(hours=8))
    await handle.signal(SlaClock.resolved, Resolved(by="recorder"))
    await handle.result()
    await save_history(handle, "sla-p1-before-comms")
