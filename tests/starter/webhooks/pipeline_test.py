"""The shared webhook pipeline under real load and faults: a 100-event mixed HubSpot batch with a
retry duplicate and events out of order, a delivery queued past its time and acted on by the
sweeper, an event left claimed by a process that died, a transient failure retried, and twelve
concurrent deliveries on a pool of two connections (no handler holds one while waiting for another)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import date, timedelta

from activities.db import create_pool
from starter.events.context import Context
from starter.events.pipeline import sweep_once
from starter.steering import renewal_status, sla_status
from tests.conftest import DEADLINE_SECONDS, eventually
from tests.starter.webhooks.vendors import epoch_ms, hs, hs_assoc, hs_prop, hubspot


def mixed_batch(base: int) -> tuple[list[dict], dict]:
    """100 events: 5 companies (creation, name, industry, two renewal dates of which the older
    arrives last), 5 contacts (creation, e-mail, name, association), 5 deals (association from the
    company's side, closed-won before it), 5 tickets (creation, association, priority), things the
    product ignores, and one event delivered twice (a retry)."""
    now = int(time.time() * 1000) - 600_000
    renewal = date.today() + timedelta(days=150)
    events, expect = [], {"renewal": renewal + timedelta(days=20)}
    for i in range(5):
        company, contact, deal, ticket = base + i, base + 100 + i, base + 200 + i, base + 300 + i
        t = now + i * 10_000
        events += [
            hs("company.creation", company, at=t, changeFlag="CREATED"),
            hs_prop("company", company, "name", f"Batch Company {i}", at=t + 1),
            hs_prop("company", company, "industry", "Logistics", at=t + 2),
            hs_prop("company", company, "renewal_date", epoch_ms(expect["renewal"]), at=t + 4),
            hs_prop("company", company, "renewal_date", epoch_ms(renewal), at=t + 3),  # older, arrives after
            hs("contact.creation", contact, at=t + 5, changeFlag="CREATED"),
            hs_prop("contact", contact, "email", f"person{i}@batch{i}.example", at=t + 6),
            hs_prop("contact", contact, "firstname", f"Person {i}", at=t + 6),
            hs_assoc("contact", contact, company, at=t + 7),
            hs_prop("deal", deal, "dealstage", "closedwon", at=t + 9),
            hs_assoc("deal", deal, company, at=t + 8, from_company=True),
            hs("ticket.creation", ticket, at=t + 10, changeFlag="CREATED"),
            hs_assoc("ticket", ticket, company, at=t + 11),
            hs_prop("ticket", ticket, "hs_ticket_priority", "HIGH", at=t + 12),
            hs("line_item.creation", base + 400 + i, at=t + 13),
            hs_prop("deal", deal, "amount", "52500.0", at=t + 14),
            hs_prop("deal", deal, "closedate", epoch_ms(date.today()), at=t + 15),
            hs("conversation.creation", base + 500 + i, at=t + 16),
            hs_prop("company", company, "domain", f"batch{i}.example", at=t + 17),
        ]
    retried = {**events[9], "attemptNumber": 1}  # the closed-won of company 0, delivered again
    events += [retried, hs("product.creation", base + 600, at=now), hs("deal.creation", base + 200, at=now),
               hs("company.restore", base + 700, at=now), hs("contact.deletion", base + 800, at=now)]
    assert len(events) == 100
    random.Random(7).shuffle(events)
    return events, expect


async def test_a_100_event_mixed_batch_with_a_retry_duplicate_and_events_out_of_order(env, http, pool):
    base = 90_000_000_000
    events, expect = mixed_batch(base)
    response = await hubspot(http, events)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 100
    assert [r["outcome"] for r in results].count("duplicate") == 1
    assert await pool.fetchval("SELECT count(*) FROM crm_events") == 99
    assert await pool.fetchval("SELECT count(*) FROM crm_events WHERE status IN ('waiting', 'pending')") == 0, \
        [tuple(r) for r in await pool.fetch("SELECT event_id, outcome FROM crm_events WHERE status <> 'done'")]
    for i in range(5):
        account = f"batch-company-{i}"
        row = await pool.fetchrow("SELECT * FROM accounts WHERE id = $1", account)
        assert (row["vertical"], row["domain"], row["renewal_date"]) == ("Logistics", f"batch{i}.example",
                                                                       expect["renewal"])
        assert (await renewal_status(env.client, account)).renewal_date == expect["renewal"]
        desc = await env.client.get_workflow_handle(f"onboarding-{account}").describe()
        assert desc.status.name == "RUNNING"
        assert (await sla_status(env.client, f"HS-{base + 300 + i}")).account_id == account
        contact = await pool.fetchrow("SELECT * FROM contacts WHERE crm_key = $1", f"hubspot:{base + 100 + i}")
        assert (contact["account_id"], contact["email"], contact["name"]) == (
            account, f"person{i}@batch{i}.example", f"Person {i}")
    # Each company's older renewal date came after the newer one in the delivery: acted on in the
    # order they happened (started at the older date, then moved to the newer), never the reverse.
    moved = await pool.fetch("SELECT outcome FROM crm_events WHERE outcome LIKE '%renewal_date_set%'")
    assert sorted(r["outcome"].split("; ")[-1].split(":")[1].split()[0] for r in moved) == ["started"] * 5 + \
        ["updated"] * 5
    await env.sleep(timedelta(seconds=1))
    assert {(await sla_status(env.client, f"HS-{base + 300 + i}")).priority for i in range(5)} == {"P1"}
    # The whole delivery again (HubSpot's retry after a timeout): every event a duplicate, nothing new.
    plays_before = await pool.fetchval("SELECT count(*) FROM crm_events")
    again = await hubspot(http, events)
    assert {r["outcome"] for r in again.json()["results"]} == {"duplicate"}
    assert await pool.fetchval("SELECT count(*) FROM crm_events") == plays_before


async def test_a_delivery_past_its_time_is_acknowledged_and_acted_on_in_the_background(env, http, pool, settings):
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'company', '777', 'acme')")
    settings.webhook_act_seconds = 0
    try:
        response = await hubspot(http, [hs_assoc("deal", 555, 777), hs_prop("deal", 555, "dealstage", "closedwon")])
    finally:
        settings.webhook_act_seconds = DEADLINE_SECONDS
    assert response.status_code == 200
    assert {r["outcome"] for r in response.json()["results"]} == {"accepted: acted on in the background"}

    async def started():
        return await pool.fetchval("SELECT outcome FROM crm_events WHERE event_id LIKE '%dealstage%'"
                                   " AND status = 'done'")
    assert await eventually(started, "the closed-won acted on") == "closed_won_starts_onboarding: started onboarding-acme"


async def test_events_released_for_the_sweeper_are_acted_on_by_it(env, http, pool, settings):
    from starter.adapters.hubspot import parse_delivery
    from starter.events import ledger
    from starter.events.context import current_connections

    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'deal', '558', 'acme')")
    body = json.dumps([hs_prop("deal", 558, "dealstage", "closedwon")]).encode()
    incs = parse_delivery(body, current_connections(settings), settings)
    await ledger.claim(pool, incs, 600)
    await ledger.release(pool, [i.key for i in incs])  # e.g. a service stopping with work left
    assert await sweep_once(Context(env.client, pool, settings)) == 1
    assert await pool.fetchval("SELECT outcome FROM crm_events") == "closed_won_starts_onboarding: started onboarding-acme"


async def test_an_event_claimed_by_a_process_that_died_is_taken_up_again(env, http, pool, settings):
    from starter.adapters.hubspot import parse_delivery
    from starter.events import ledger
    from starter.events.context import current_connections

    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'deal', '556', 'acme')")
    delivery = [hs_prop("deal", 556, "dealstage", "closedwon")]
    [inc] = parse_delivery(json.dumps(delivery).encode(), current_connections(settings), settings)
    # Another process claimed it, then died before acting.
    assert [c.state for c in await ledger.claim(pool, [inc], 600)] == ["fresh"]
    busy = await hubspot(http, delivery)  # HubSpot retries while the claim holds: not acted on twice
    assert busy.json()["results"][0]["outcome"].startswith("in progress")
    await pool.execute("UPDATE crm_events SET next_attempt_at = now() - interval '1 second'")
    retried = await hubspot(http, delivery)  # the claim ran out: the retry acts on it
    assert retried.json()["results"][0]["outcome"] == "closed_won_starts_onboarding: started onboarding-acme"
    assert await pool.fetchval("SELECT attempts FROM crm_events") == 2


async def test_a_transient_failure_is_retried_after_a_back_off(env, http, pool, settings, monkeypatch):
    from temporalio.service import RPCError, RPCStatusCode

    from starter import steering

    real_launch, calls = steering.launch_onboarding, []

    async def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RPCError("Temporal is unavailable", RPCStatusCode.UNAVAILABLE, b"")
        return await real_launch(*args, **kwargs)

    monkeypatch.setattr(steering, "launch_onboarding", flaky)
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'deal', '557', 'acme')")
    response = await hubspot(http, [hs_prop("deal", 557, "dealstage", "closedwon")])
    assert response.status_code == 200  # acknowledged: the product retries, not HubSpot
    assert response.json()["results"][0]["outcome"].startswith("will retry in 2 s: RPCError")
    row = await pool.fetchrow("SELECT status, last_error, next_attempt_at > now() AS later FROM crm_events")
    assert (row["status"], row["later"]) == ("pending", True) and "unavailable" in row["last_error"]
    await pool.execute("UPDATE crm_events SET next_attempt_at = now()")  # the back-off has passed
    assert await sweep_once(Context(env.client, pool, settings)) == 1
    assert await pool.fetchval("SELECT outcome FROM crm_events") == "closed_won_starts_onboarding: started onboarding-acme"


async def test_twelve_concurrent_deliveries_on_a_pool_of_two_connections(env, http, pool, settings, db_url):
    small = await create_pool(db_url, max_size=2)
    app = http._transport.app
    app.state.pool = small
    try:
        for i in range(12):
            await pool.execute("INSERT INTO accounts (id, name, csm_name, csm_email) VALUES ($1, $2, 'Casey Morgan',"
                               " 'casey.morgan@tai.example')", f"conc-{i}", f"Concurrent {i}")
            await pool.execute("INSERT INTO contacts (account_id, name, email) VALUES ($1, 'Pat', $2)",
                               f"conc-{i}", f"pat@conc{i}.example")
            await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                               " VALUES ('hubspot', 'deal', $1, $2)", str(6000 + i), f"conc-{i}")
        sends = [hubspot(http, [hs_prop("deal", 6000 + i, "dealstage", "closedwon")]) for i in range(12)]
        responses = await asyncio.wait_for(asyncio.gather(*sends), DEADLINE_SECONDS)
    finally:
        app.state.pool = pool
        await small.close()
    assert all(r.status_code == 200 for r in responses)
    assert sorted(r.json()["results"][0]["outcome"] for r in responses) == sorted(
        f"closed_won_starts_onboarding: started onboarding-conc-{i}" for i in range(12))
