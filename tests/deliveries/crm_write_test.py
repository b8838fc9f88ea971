"""CRM write-back against local HubSpot and Salesforce stand-ins: tasks on the company, completion
both ways, e-mails logged on the contact, account properties, outages and lost answers."""

from __future__ import annotations

from datetime import datetime, timezone

from activities.crm_write import TASK_TO_COMPANY, record_key
from starter.steering import complete_task, launch_onboarding
from tests.conftest import eventually, first_tasks
from tests.deliveries.conftest import (
    HS_COMPANY, HS_CONTACT, SF_ACCOUNT, SF_CONTACT, Running, Service, deliveries, link_acme, notify_settings, settled,
)
from tests.deliveries.fake_crm_write import FakeSalesforce, hs_rate_limited, sf_limit_exceeded
from tests.deliveries.fakes import Fault
from tests.starter.webhooks import vendors
from workflows.onboarding import OnboardingPlan


async def onboarding(env, pool, s):
    """Onboarding for acme, until it sleeps: its first tasks and the welcome e-mail exist."""
    handle = await launch_onboarding(env.client, pool, s, "acme", "test", s.task_queue)
    return handle, await first_tasks(env, pool, handle.id, "acme's first onboarding tasks")


def hs_task_event(crm_id: str, value: str = "COMPLETED") -> dict:
    """HubSpot's generic webhook for a task property change (objectTypeId 0-27)."""
    return vendors.hs("object.propertyChange", int(crm_id), objectTypeId="0-27", propertyName="hs_task_status",
                      propertyValue=value)


async def test_hubspot_tasks_emails_properties_and_completion_both_ways(env, pool, settings, servers):
    hub = servers["hubspot"]
    s = notify_settings(settings, servers)
    await link_acme(pool, hubspot=True)
    async with Running(env, pool, s):
        handle, tasks = await onboarding(env, pool, s)
        await settled(pool, "the onboarding's HubSpot writes", len(tasks) + 1, destination="hubspot")
        rows = await deliveries(pool, destination="hubspot")
        assert {r["status"] for r in rows} == {"delivered"}, [(r["summary"], r["last_error"]) for r in rows]
        # One HubSpot task per task, on the company, carrying its idempotency value.
        assert len(hub.objects["tasks"]) == len(tasks)
        by_key = {t["cs_playbook_key"]: (oid, t) for oid, t in hub.objects["tasks"].items()}
        for task in tasks:
            oid, props = by_key[record_key(task["idem_key"])]
            assert props["hs_task_subject"] == task["title"] and props["hs_task_status"] == "NOT_STARTED"
            assert hub.associations[("tasks", oid)] == [(HS_COMPANY, "HUBSPOT_DEFINED", TASK_TO_COMPANY)]
        # The welcome e-mail, logged on Lee Park (a HubSpot contact) and the company; the sponsor is no contact there.
        (email_id, email), = hub.objects["emails"].items()
        assert email["hs_email_subject"].startswith("Welcome to TAI") and email["hs_email_direction"] == "EMAIL"
        assert set(hub.associations[("emails", email_id)]) == {(HS_CONTACT, "HUBSPOT_DEFINED", 198),
                                                               (HS_COMPANY, "HUBSPOT_DEFINED", 186)}
        company = hub.objects["companies"][HS_COMPANY]
        phase = (await handle.query(OnboardingPlan.status)).phase
        assert company["cs_play_phase"] == f"onboarding: {phase}" and company["cs_health_score"] == 72

        # Completed in the console: completed in HubSpot.
        first, second = tasks[0], tasks[1]
        await complete_task(env.client, pool, first["id"], "casey.morgan@tai.example")
        await settled(pool, "the completion written back", idem_key=f"crm/hubspot/task/{first['idem_key']}/completed")
        assert by_key[record_key(first["idem_key"])][1]["hs_task_status"] == "COMPLETED"

        # Completed in HubSpot: completed here, the play told, nothing written back.
        crm_id = by_key[record_key(second["idem_key"])][0]
        async with Service(env, pool, s) as http:
            answer = await vendors.hubspot(http, [hs_task_event(crm_id)])
            again = await vendors.hubspot(http, [hs_task_event(crm_id)])
        assert answer.status_code == 200, answer.text
        assert f"completed task {second['id']}" in answer.json()["results"][0]["outcome"]
        assert "already completed" in again.json()["results"][0]["outcome"]
        row = await pool.fetchrow("SELECT status, completed_by FROM tasks WHERE id = $1", second["id"])
        assert row["status"] == "completed" and row["completed_by"] == "hubspot (CRM)"

        async def told():
            st = await handle.query(OnboardingPlan.status)
            return second["step"] not in {t.step for t in st.open_tasks}
        await eventually(told, "the play to learn the task was completed in HubSpot")
        await settled(pool, "every delivery settled", destination="hubspot")
    assert not await deliveries(pool, idem_key=f"crm/hubspot/task/{second['idem_key']}/completed")
    assert len(hub.objects["tasks"]) == len(tasks)


async def test_a_hubspot_outage_of_429s_and_500s_delays_and_loses_nothing(env, pool, settings, servers):
    hub = servers["hubspot"]
    hub.start_outage([hs_rate_limited(1), Fault(500, {}, {"status": "error", "message": "internal error"}),
                      Fault(502, {}, {"status": "error", "message": "bad gateway"})])
    s = notify_settings(settings, servers)
    await link_acme(pool, hubspot=True)
    async with Running(env, pool, s):
        _, tasks = await onboarding(env, pool, s)

        async def refused_plenty():
            codes = [r["status_code"] for r in await pool.fetch(
                "SELECT status_code FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id"
                " WHERE d.destination = 'hubspot'")]
            return codes.count(429) >= 5 and codes.count(500) >= 5 and codes.count(502) >= 3
        await eventually(refused_plenty, "HubSpot to refuse writes with 429, 500 and 502 for a while")
        hub.recover()
        rows = await settled(pool, "every write delivered after the outage", len(tasks) + 1, destination="hubspot")
    assert {r["status"] for r in rows} == {"delivered"}
    assert len(hub.objects["tasks"]) == len(tasks) and len(hub.objects["emails"]) == 1
    # Each 429 was waited out: the next attempt of that delivery came no sooner than its Retry-After.
    attempts = await pool.fetch("SELECT * FROM delivery_attempts ORDER BY id")
    for a in (a for a in attempts if a["status_code"] == 429):
        later = [b for b in attempts if b["delivery_id"] == a["delivery_id"] and b["id"] > a["id"]]
        assert later and (later[0]["started_at"] - a["finished_at"]).total_seconds() >= 0.9


async def test_a_lost_answer_never_makes_a_second_hubspot_record(env, pool, settings, servers):
    hub = servers["hubspot"]
    hub.slow = [5.0]      # the first create is written, its answer comes after our 3 s timeout
    hub.search_lag = 1.0  # and HubSpot's search shows it a second later
    s = notify_settings(settings, servers, crm_search_settle_seconds=1.5)
    await link_acme(pool, hubspot=True)
    async with Running(env, pool, s):
        _, tasks = await onboarding(env, pool, s)
        rows = await settled(pool, "the HubSpot writes", len(tasks) + 1, destination="hubspot")
    assert {r["status"] for r in rows} == {"delivered"}
    assert len(hub.objects["tasks"]) == len(tasks) and len(hub.objects["emails"]) == 1
    outcomes = [r["outcome"] for r in await pool.fetch("SELECT outcome FROM delivery_attempts ORDER BY id")]
    assert outcomes.count("unknown") == 1 and outcomes.count("found") == 1, outcomes


async def test_salesforce_tasks_upserted_emails_on_the_contact_and_completion_from_salesforce(env, pool, settings,
                                                                                                servers):
    sf = servers["salesforce"]
    sf.faults = [sf_limit_exceeded()]
    s = notify_settings(settings, servers)
    await link_acme(pool, hubspot=False, salesforce=True)
    async with Running(env, pool, s):
        handle, tasks = await onboarding(env, pool, s)
        rows = await settled(pool, "the onboarding's Salesforce writes", len(tasks) + 1, destination="salesforce")
        assert {r["status"] for r in rows} == {"delivered"}, [(r["summary"], r["last_error"]) for r in rows]
        plain = {tid: t for tid, t in sf.tasks.items() if t.get("TaskSubtype") != "Email"}
        emails = [t for t in sf.tasks.values() if t.get("TaskSubtype") == "Email"]
        assert len(plain) == len(tasks) and all(t["WhatId"] == SF_ACCOUNT for t in plain.values())
        assert {t["CS_Playbook_Key__c"] for t in plain.values()} == {record_key(t["idem_key"]) for t in tasks}
        (email,) = emails
        assert email["WhoId"] == SF_CONTACT and email["Status"] == "Completed" and email["Subject"].startswith("Email: ")
        phase = (await handle.query(OnboardingPlan.status)).phase
        assert sf.accounts[SF_ACCOUNT]["CS_Play_Phase__c"] == f"onboarding: {phase}"
        limited = await pool.fetchval("SELECT count(*) FROM delivery_attempts WHERE status_code = 403 AND outcome = 'retry'"
                                      " AND detail LIKE '%REQUEST_LIMIT_EXCEEDED%'")
        assert limited == 1

        # Closed in Salesforce (an Outbound Message on Task): completed here.
        task = tasks[0]
        crm_id = next(tid for tid, t in plain.items() if t["CS_Playbook_Key__c"] == record_key(task["idem_key"]))
        message = vendors.outbound(("04l5g000003TBH1AAO", "Task", {
            "Id": crm_id, "Status": "Completed", "IsClosed": "true", "LastModifiedDate": vendors.sf_time()}))
        async with Service(env, pool, s) as http:
            answer = await vendors.salesforce(http, message)
        assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content
        assert await pool.fetchval("SELECT completed_by FROM tasks WHERE id = $1", task["id"]) == "salesforce (CRM)"


async def test_salesforce_refusals_fail_that_write_only(env, pool, settings, servers):
    servers["salesforce"].account_fields = {"Name"}  # the admin never created our fields on Account
    s = notify_settings(settings, servers)
    await link_acme(pool, hubspot=False, salesforce=True)
    async with Running(env, pool, s):
        _, tasks = await onboarding(env, pool, s)
        # The tasks and at least one account update (play events recorded together, as batched plays
        # record them since issue 18, are routed together: one update of the account's values).
        rows = await settled(pool, "the Salesforce writes", len(tasks) + 1, destination="salesforce")
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and {r["operation"] for r in failed} == {"update_account"}
    assert all("INVALID_FIELD No such column 'CS_" in r["last_error"] for r in failed)
    assert sum(1 for r in rows if r["operation"] == "create_task" and r["status"] == "delivered") == len(tasks)


async def test_off_until_configured(env, pool, settings, servers):
    """Nothing named in CRM_WRITE_BACK, no chat URL, no bot token, no subscription secret: no delivery."""
    await link_acme(pool, hubspot=True)
    async with Running(env, pool, settings):
        await onboarding(env, pool, settings)

        async def routed():
            return await pool.fetchval("SELECT count(*) FROM play_events WHERE routed_at IS NULL") == 0
        await eventually(routed, "every play event routed")
    assert await pool.fetchval("SELECT count(*) FROM play_events") > 0
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
    assert not servers["hubspot"].requests and not FakeSalesforce().requests


async def test_a_privacy_deletion_scrubs_deliveries_and_stops_those_not_made(env, pool, settings, servers):
    from starter.book.privacy import erase_contact

    hub = servers["hubspot"]
    hub.start_outage([Fault(503, {}, {"status": "error", "message": "maintenance"})])  # nothing goes out yet
    s = notify_settings(settings, servers)
    await link_acme(pool, hubspot=True)
    async with Running(env, pool, s):
        _, tasks = await onboarding(env, pool, s)

        async def waiting():
            row = await pool.fetchrow("SELECT * FROM deliveries WHERE operation = 'log_email'")
            return row if row and row["attempts"] >= 1 else None
        log = await eventually(waiting, "the welcome e-mail's CRM log to wait out HubSpot's maintenance")
        assert "lee.park@acme.example" in str(log["payload"])
        done = await erase_contact(pool, "hubspot", "501", "privacy-1", datetime.now(timezone.utc))
        hub.recover()
        rows = await settled(pool, "every HubSpot write", len(tasks) + 1, destination="hubspot")
    assert done["deliveries"] >= 1 and done["play_events"] >= 1
    erased = next(r for r in rows if r["operation"] == "log_email")
    assert erased["status"] == "failed" and erased["last_error"].startswith("erased:")
    assert "lee.park" not in str(erased["payload"]).lower() and not hub.objects["emails"]
    dump = str([tuple(r) for r in await pool.fetch("SELECT * FROM play_events")])
    assert "lee.park" not in dump.lower() and "Lee Park" not in dump
