"""Customer e-mail inside whole plays (issue 17), on the time-skipping server with PostgreSQL, the
SMTP sink and the inbound listener: a reply stops the renewal's signature reminders, a suppressed
sponsor gets the CSM a task, the weekly cap defers (never drops), meetings carry an invitation at a
working-hours slot in the account's zone, NPS invites each contact in their own window, and SLA
ticket updates (transactional) go at once without an unsubscribe."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar

from activities.accounts import upsert_account
from core.holiday_calendars import work_calendar
from core.models import CalendarPlace
from playbooks.loader import load_named
from starter.demo import DEMO_ACCOUNT_ID, demo_account
from starter.steering import launch_onboarding, launch_renewal, open_ticket
from tests.conftest import asleep_on_timer, deliver_to, eventually
from tests.inbound.dsn_test import shape
from tests.workflows.play_driver import ET, skip_to_next_monday, us_calendar
from worker import build_worker
from workflows.nps import NpsCycle
from workflows.nps_messages import CycleInput
from workflows.renewal import RenewalCountdown
from workflows.renewal_messages import Renewed

SPONSOR = "dana.reyes@acme.example"
CHASE = "step/signature_chase/email/signature_request"


async def renewal_in(env, pool, settings, days_out: int, account_id: str = DEMO_ACCOUNT_ID):
    start = await skip_to_next_monday(env)
    renewal = start.date() + timedelta(days=days_out)
    return await launch_renewal(env.client, pool, settings, account_id, "test", renewal, settings.task_queue), renewal


async def sent(pool, workflow_id: str) -> dict[str, str]:
    rows = await pool.fetch("SELECT step, status FROM communications WHERE workflow_id = $1", workflow_id)
    return {r["step"]: r["status"] for r in rows}


async def test_a_reply_to_the_signature_request_stops_its_reminders(env, inbound, pool, settings, sink):
    handle, renewal = await renewal_in(env, pool, settings, 40)
    await asleep_on_timer(env.client, handle.id)
    await env.sleep(datetime.combine(renewal - timedelta(days=28), time(12), tzinfo=ET) - await env.get_current_time())
    reply_token, message_id = await pool.fetchrow(
        "SELECT reply_token, message_id FROM communications WHERE step = $1", CHASE)
    to = f"reply+{reply_token}@{settings.inbound_mail_domain}"
    raw = shape("outlook_reply.eml", to=to, rcpt=SPONSOR).replace(b"<0123456789abcdef@tai.example>", message_id.encode())
    code, _ = await deliver_to(inbound, SPONSOR, to, raw)
    assert code == 250
    await eventually(lambda: pool.fetchval("SELECT processed_at FROM inbound_mail WHERE kind = 'reply'"),
                     "the reply to be recorded")
    await env.sleep(datetime.combine(renewal - timedelta(days=8), time(12), tzinfo=ET) - await env.get_current_time())
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="Dana Reyes"))
    result = await handle.result()
    assert not any("/follow-up/" in m.step for m in sink.messages)
    assert result.skipped_steps[f"{CHASE}/follow-up/1"] == "the customer replied"
    # The CSM heard of the reply by e-mail; the rest of the play went on.
    assert any(m.step.startswith("inbound/") and m.rcpt_to == ("casey.morgan@tai.example",) for m in sink.messages)
    assert "step/renewal_thanks/email/thanks" in await sent(pool, handle.id)


async def test_without_a_reply_the_reminders_go_on_working_days(env, worker, pool, settings, sink):
    handle, renewal = await renewal_in(env, pool, settings, 40)
    await env.sleep(datetime.combine(renewal - timedelta(days=5), time(12), tzinfo=ET) - await env.get_current_time())
    rows = await pool.fetch("SELECT step, sent_at FROM communications WHERE step LIKE $1 ORDER BY sent_at", CHASE + "%")
    assert [r["step"] for r in rows] == [CHASE, f"{CHASE}/follow-up/1", f"{CHASE}/follow-up/2"]
    cal = work_calendar(CalendarPlace(tz="America/New_York", country="US"), renewal - timedelta(days=60))
    first = rows[0]["sent_at"].astimezone(ET).date()
    assert [r["sent_at"].astimezone(ET).date() for r in rows[1:]] == [cal.add_working_days(first, 5),
                                                                     cal.add_working_days(first, 10)]


async def test_a_suppressed_sponsor_gets_the_csm_a_task_and_the_play_goes_on(env, worker, pool, settings, sink):
    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ($1, 'lifecycle', 'unsubscribed', 'one-click', 'test')", SPONSOR)
    handle, renewal = await renewal_in(env, pool, settings, 95)
    await env.sleep(datetime.combine(renewal - timedelta(days=85), time(12), tzinfo=ET) - await env.get_current_time())
    proposal = await pool.fetchrow(
        "SELECT r.status, r.reason FROM communication_recipients r JOIN communications c ON c.id = r.communication_id"
        " WHERE c.step LIKE '%/proposal' AND r.address = $1", SPONSOR)
    assert proposal["status"] == "suppressed" and "unsubscribed (lifecycle" in proposal["reason"]
    task = await pool.fetchrow("SELECT title, detail, owner_email, priority FROM tasks WHERE step LIKE '%/reach-out'")
    assert task["owner_email"] == "casey.morgan@tai.example" and task["priority"] == "P1"
    assert "another way" in task["title"] and SPONSOR in task["detail"]
    # The CSM's own copy went; the customer got nothing; the countdown carries on.
    assert not any(SPONSOR in m.rcpt_to for m in sink.messages)
    st = await handle.query(RenewalCountdown.status)
    assert "step/renewal_proposal" not in st.failed_steps and st.next_action.startswith(("step/", "risk/"))


async def test_the_weekly_cap_defers_an_email_to_the_next_allowed_slot(env, pool, settings, sink):
    capped = settings.model_copy(update={"email_weekly_cap": 1})
    async with build_worker(env.client, pool, capped, capped.task_queue):
        start = await skip_to_next_monday(env)
        handle = await launch_onboarding(env.client, pool, capped, DEMO_ACCOUNT_ID, "test", capped.task_queue)
        # The welcome (Monday) filled the sponsor's week: Friday's status waits until a week after it.
        cal = us_calendar(start)
        friday = cal.at_hour(cal.roll_forward(start.date() + timedelta(days=4)), 10)
        await env.sleep(friday - await env.get_current_time())
        weekly = await pool.fetchrow("SELECT status, deferred_until, reason FROM communications"
                                     " WHERE step LIKE 'email/weekly_status/%'")
        welcome_at = await pool.fetchval("SELECT sent_at FROM communications WHERE step = 'email/welcome'")
        assert weekly["status"] == "deferred" and "weekly cap of 1" in weekly["reason"]
        assert weekly["deferred_until"] == welcome_at + timedelta(days=7)
        st = await handle.query("status")
        assert st["next_action_at"] is not None  # the play waits durably, visibly
        await env.sleep(weekly["deferred_until"] + timedelta(hours=1) - await env.get_current_time())
        after = await pool.fetchrow("SELECT status, sent_at FROM communications WHERE step LIKE 'email/weekly_status/%'")
        assert after["status"] == "sent" and after["sent_at"] >= weekly["deferred_until"]
        assert len([m for m in sink.messages if m.step.startswith("email/weekly_status/")]) == 1


async def test_a_meeting_email_invites_at_working_hours_in_the_accounts_zone(env, worker, pool, settings, sink):
    paris = demo_account(date.today()).model_copy(update={"id": "paris", "name": "Paris SAS", "timezone": "Europe/Paris",
                                                         "country": "FR"})
    await upsert_account(pool, paris)
    handle, renewal = await renewal_in(env, pool, settings, 125, "paris")
    await env.sleep(datetime.combine(renewal - timedelta(days=118), time(12), tzinfo=ET) - await env.get_current_time())
    invite = next(m for m in sink.messages if m.step.endswith("/qbr_invite"))
    parts = {p.get_content_type(): p for p in invite.message.walk()}
    assert parts["text/calendar"].get_param("method") == "REQUEST" and "application/ics" in parts
    event = icalendar.Calendar.from_ical(parts["text/calendar"].get_content()).walk("VEVENT")[0]
    start = event.decoded("dtstart")
    fr = work_calendar(CalendarPlace(tz="Europe/Paris", country="FR"), renewal - timedelta(days=200))
    assert str(start.tzinfo) == "Europe/Paris" and 9 <= start.hour and start.hour + 1 <= 17
    assert fr.is_working_day(start.date())
    sent_on = invite.message["Date"].datetime.astimezone(ZoneInfo("Europe/Paris")).date()
    assert start.date() > sent_on
    assert str(event["organizer"]) == "mailto:casey.morgan@tai.example"
    assert f"Proposed time: {start:%a %d %b %Y %H:%M}" in invite.text


async def test_nps_invites_a_tokyo_contact_at_09_00_tokyo_time(env, worker, pool, settings, sink):
    tokyo = demo_account(date.today()).model_copy(update={
        "id": "tokyo", "name": "Tokyo KK", "status": "active", "timezone": "Asia/Tokyo", "country": "JP",
        "contacts": [c.model_copy(update={"email": c.email.replace("acme", "tokyo")})
                     for c in demo_account(date.today()).contacts]})
    await upsert_account(pool, tokyo)
    await pool.execute("UPDATE contacts SET email_opt_out = true WHERE email = 'sam.ortiz@acme.example'")
    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ('lee.park@acme.example', 'survey', 'unsubscribed', 'one-click', 'test')")
    await skip_to_next_monday(env)  # 10:00 New York: 00:00 Tuesday in Tokyo
    handle = await env.client.start_workflow(NpsCycle.run, CycleInput(cycle_id="2026-10", playbook=load_named("nps")),
                                             id="nps-cycle-2026-10", task_queue=settings.task_queue)
    progress = await eventually(lambda: _sending_done(handle), "the first pass of the cycle")
    assert progress.sent == 0 and progress.suppressed == 2 and progress.deferred_until is not None
    assert progress.deferred_until.astimezone(ZoneInfo("Asia/Tokyo")).hour == 9
    assert not [m for m in sink.messages if m.step.startswith("survey/")]
    suppressed = await pool.fetch("SELECT step, status FROM communications WHERE status = 'suppressed'")
    assert {r["step"] for r in suppressed} == {"survey/2026-10/lee.park@acme.example",
                                               "survey/2026-10/sam.ortiz@acme.example"}
    await env.sleep(progress.deferred_until + timedelta(minutes=5) - await env.get_current_time())
    rows = await pool.fetch("SELECT step, sent_at FROM communications WHERE status = 'sent' AND step LIKE 'survey/%'")
    assert {r["step"] for r in rows} == {"survey/2026-10/lee.park@tokyo.example", "survey/2026-10/sam.ortiz@tokyo.example"}
    jp = work_calendar(CalendarPlace(tz="Asia/Tokyo", country="JP"), progress.deferred_until.date() - timedelta(days=7))
    for r in rows:
        local = r["sent_at"].astimezone(ZoneInfo("Asia/Tokyo"))
        assert local.hour == 9 and jp.is_working_day(local.date())
    assert await pool.fetchval("SELECT count(*) FROM nps_invitations WHERE deferred_until IS NOT NULL") == 0


async def _sending_done(handle):
    progress = await handle.query(NpsCycle.status)
    return progress if progress.phase != "sending" else None


async def test_sla_ticket_updates_are_transactional_day_and_night(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env, hour=22)  # late evening in New York
    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ($1, 'all', 'unsubscribed', 'one-click', 'test')", SPONSOR)
    await open_ticket(env.client, pool, settings, "T-NIGHT", DEMO_ACCOUNT_ID, "P0", "Down", start, "test",
                      settings.task_queue, now=start)
    await env.sleep(timedelta(minutes=65))
    updates = [m for m in sink.copies if m.step.startswith("p0-update/") and m.rcpt_to == (SPONSOR,)]
    assert updates, "the unsubscribed sponsor still gets ticket updates, at night"
    assert all(m.message["List-Unsubscribe"] is None and "Unsubscribe" not in m.text for m in updates)
    assert await pool.fetchval("SELECT DISTINCT category FROM communications WHERE step LIKE 'p0-update/%'") == \
        "transactional"
