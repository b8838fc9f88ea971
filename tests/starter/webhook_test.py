"""CRM webhooks in-process (httpx over ASGI) against a real test server, PostgreSQL and worker:
the HubSpot v3 signature, refusals that start and write nothing, duplicates and reordered events."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode

from starter.steering import renewal_status, sla_status
from starter.webhooks import SIGNATURE, TIMESTAMP, sign

URL = "http://test/webhooks/crm"
SECRET = "local-demo-secret"


def event(n: int, subscription: str, account: str = "acme", **fields) -> dict:
    return {"eventId": n, "subscriptionType": subscription, "accountId": account,
            "occurredAt": int(time.time() * 1000) - 60_000 + n, "portalId": 62515, "attemptNumber": 0, **fields}


def signed(body: bytes, secret: str = SECRET, age_ms: int = 0, uri: str = URL) -> dict:
    timestamp = str(int(time.time() * 1000) - age_ms)
    return {SIGNATURE: sign(secret, "POST", uri, body, timestamp), TIMESTAMP: timestamp,
            "content-type": "application/json"}


async def post(http, payload, **sign_kw) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await http.post("/webhooks/crm", content=body, headers=signed(body, **sign_kw))


async def nothing_happened(env, pool, *workflow_ids: str) -> None:
    assert await pool.fetchval("SELECT count(*) FROM crm_events") == 0
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0
    for wid in workflow_ids:
        with pytest.raises(RPCError) as missing:
            await env.client.get_workflow_handle(wid).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND


CLOSED_WON = event(1, "deal.propertyChange", propertyName="dealstage", propertyValue="closedwon")


async def test_closed_won_starts_onboarding_once_even_when_delivered_three_times(env, http, pool):
    for _ in range(3):
        response = await post(http, [CLOSED_WON])
        assert response.status_code == 202, response.text
    outcomes = [r["outcome"] for r in response.json()["results"]]
    assert outcomes == ["duplicate"] and response.json()["results"][0]["workflow_id"] == "onboarding-acme"
    # Another closed-won (a new event id) while the play runs starts nothing either.
    again = await post(http, [{**CLOSED_WON, "eventId": 2}])
    assert again.json()["results"][0]["outcome"] == "already running"
    rows = await pool.fetch("SELECT event_id, outcome FROM crm_events ORDER BY event_id")
    assert [(r["event_id"], r["outcome"]) for r in rows] == [("1", "started"), ("2", "already running")]
    desc = await env.client.get_workflow_handle("onboarding-acme").describe()
    assert desc.status.name == "RUNNING"


@pytest.mark.parametrize(("case", "headers_of"), [
    ("wrong secret", lambda body: signed(body, secret="not-the-secret")),
    ("stale timestamp", lambda body: signed(body, age_ms=6 * 60_000)),
    ("signed for another URL", lambda body: signed(body, uri="http://test/webhooks/other")),
    ("missing signature", lambda body: {TIMESTAMP: str(int(time.time() * 1000))}),
    ("timestamp not a number", lambda body: {**signed(body), TIMESTAMP: "yesterday"}),
])
async def test_bad_signatures_are_401_and_change_nothing(env, http, pool, case, headers_of):
    body = json.dumps([CLOSED_WON]).encode()
    response = await http.post("/webhooks/crm", content=body, headers=headers_of(body))
    assert response.status_code == 401, (case, response.text)
    assert "Traceback" not in response.text
    await nothing_happened(env, pool, "onboarding-acme")


async def test_tampered_body_is_401(env, http, pool):
    body = json.dumps([CLOSED_WON]).encode()
    headers = signed(body)
    tampered = body.replace(b'"acme"', b'"acmf"')
    response = await http.post("/webhooks/crm", content=tampered, headers=headers)
    assert response.status_code == 401 and response.json()["detail"] == "bad signature"
    await nothing_happened(env, pool, "onboarding-acme")


@pytest.mark.parametrize(("payload", "status", "text"), [
    (b"{not json", 422, "malformed JSON"),
    (b"\xff\xfe[]", 422, "not UTF-8"),
    ([], 422, "expected 1 to 100 events"),
    ([{**CLOSED_WON, "occurredAt": "yesterday"}], 422, "event 0: occurredAt"),
    ([{k: v for k, v in CLOSED_WON.items() if k != "accountId"}], 422, "event 0: accountId: Field required"),
    ([event(3, "company.propertyChange", propertyName="renewal_date", propertyValue="next year")], 422,
     "propertyValue: 'next year' is not a date"),
    ([event(4, "ticket.creation", ticketId="T-9", priority="P7", subject="x")], 422, "event 0: priority"),
    ([event(5, "ticket.creation", ticketId="T-9", priority="P1")], 422, "subject: missing"),
    ([CLOSED_WON] * 101, 422, "expected 1 to 100 events"),
])
async def test_malformed_events_get_a_4xx_naming_the_field_and_start_nothing(env, http, pool, payload, status, text):
    response = await post(http, payload)
    assert response.status_code == status, response.text
    assert text in response.text and "Traceback" not in response.text
    await nothing_happened(env, pool, "onboarding-acme", "renewal-acme", "sla-T-9")


async def test_huge_body_is_413(env, http, pool):
    response = await post(http, b"[" + b" " * 1_100_000 + b"]")
    assert response.status_code == 413
    await nothing_happened(env, pool)


async def test_renewal_date_changes_apply_in_event_order_not_delivery_order(env, http, pool):
    today = date.today()
    first, second = (today + timedelta(days=d) for d in (200, 230))
    newer = event(11, "company.propertyChange", propertyName="renewal_date", propertyValue=first.isoformat())
    older = event(10, "company.propertyChange", propertyName="renewal_date", propertyValue=second.isoformat())
    older["occurredAt"] = newer["occurredAt"] - 30_000
    assert (await post(http, [newer])).json()["results"][0]["outcome"] == "started"
    late = await post(http, [older])
    assert late.json()["results"][0]["outcome"].startswith("stale")
    assert (await renewal_status(env.client, "acme")).renewal_date == first
    # A newer change moves the running countdown by its update.
    moved = event(12, "company.propertyChange", propertyName="renewal_date", propertyValue=second.isoformat())
    assert (await post(http, [moved])).json()["results"][0]["outcome"] == "updated"
    assert (await renewal_status(env.client, "acme")).renewal_date == second


async def test_ticket_events_drive_the_sla_clock_and_an_early_update_waits_for_the_clock(env, http, pool):
    stage = event(21, "ticket.propertyChange", ticketId="T-77", propertyName="hs_pipeline_stage",
                  propertyValue="acknowledged")
    early = await post(http, [stage])
    # Acknowledged (the CRM does not retry it for a day), kept as waiting for the clock.
    assert early.status_code == 202 and early.json()["results"][0]["outcome"] == "waiting: sla-T-77 has not started yet"
    row = await pool.fetchrow("SELECT status, wait_object_type, wait_crm_id, account_id FROM crm_events"
                              " WHERE event_id = '21'")
    assert tuple(row) == ("waiting", "play", "sla-T-77", "acme")
    opened = event(20, "ticket.creation", ticketId="T-77", priority="P2", subject="Export fails")
    assert (await post(http, [opened])).json()["results"][0]["outcome"] == "started"
    # The waiting event is acted on as soon as the clock runs, without the CRM sending it again.
    assert await pool.fetchval("SELECT outcome FROM crm_events WHERE event_id = '21'") == "signalled"
    again = await post(http, [stage])
    assert again.json()["results"][0]["outcome"] == "duplicate"
    priority = event(22, "ticket.propertyChange", ticketId="T-77", propertyName="hs_ticket_priority",
                     propertyValue="P1")
    assert (await post(http, [priority, priority])).json()["results"][1]["outcome"] == "duplicate"
    await env.sleep(timedelta(seconds=1))
    st = await sla_status(env.client, "T-77")
    assert st.priority == "P1" and st.status == "acknowledged"


async def test_an_event_for_an_account_not_in_the_book_waits_for_it(env, http, pool, settings):
    from starter.events.context import Context
    from starter.events.pipeline import sweep_once

    early = {**CLOSED_WON, "eventId": 9, "accountId": "globex"}
    response = await post(http, [early])
    assert response.status_code == 202
    assert response.json()["results"][0]["outcome"] == "waiting: account 'globex' is not in the book yet"
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = 'globex'") == 0
    # The account arrives (an import, the console, a CRM webhook): the next sweep acts on the event.
    await pool.execute("INSERT INTO accounts (id, name, csm_name, csm_email) VALUES ('globex', 'Globex',"
                       " 'Casey Morgan', 'casey.morgan@tai.example')")
    await pool.execute("INSERT INTO contacts (account_id, name, email) VALUES ('globex', 'Hank Scorpio',"
                       " 'hank@globex.example')")
    assert await sweep_once(Context(env.client, pool, settings)) == 1
    assert await pool.fetchval("SELECT outcome FROM crm_events WHERE event_id = '9'") == "started"
    assert (await env.client.get_workflow_handle("onboarding-globex").describe()).status.name == "RUNNING"


async def test_events_without_a_trigger_are_acknowledged_and_recorded(env, http, pool):
    health = event(30, "company.propertyChange", propertyName="industry", propertyValue="logistics")
    response = await post(http, [health])
    assert response.status_code == 202
    assert response.json()["results"][0]["outcome"] == "ignored: no trigger matches"
    assert await pool.fetchval("SELECT outcome FROM crm_events WHERE event_id = '30'") == "ignored: no trigger matches"


async def test_risk_events_start_and_feed_the_churn_watch(env, http, pool):
    from starter.steering import churn_status

    nps = event(40, "company.propertyChange", propertyName="nps", propertyValue="20")
    left = event(41, "contact.propertyChange", propertyName="stakeholder_status", propertyValue="departed")
    response = await post(http, [nps, left])
    assert [r["outcome"] for r in response.json()["results"]] == ["signalled", "signalled"]
    assert {r["workflow_id"] for r in response.json()["results"]} == {"churn-acme"}
    await env.sleep(timedelta(minutes=1))
    st = await churn_status(env.client, "acme")
    assert (st.score, st.band) == (45, "ORANGE") and st.flags == {"key_stakeholder_departed": "crm"}
    bad = event(42, "company.propertyChange", propertyName="nps", propertyValue="lots")
    refused = await post(http, [bad])
    assert refused.status_code == 422 and "propertyValue" in refused.json()["detail"]


async def test_a_real_hubspot_delivery_to_the_generic_endpoint_is_read_as_hubspot_sends_it(env, http, pool):
    """The issue's first complaint: HubSpot's own closed-won, posted where the generic events go."""
    from tests.starter.webhooks.vendors import real

    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'deal', '20563118842', 'acme')")
    response = await post(http, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json"))
    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["outcome"] == "closed_won_starts_onboarding: started onboarding-acme"


async def test_a_v3_signature_over_a_url_with_escaped_characters(env, http, pool):
    """The issue's second complaint: HubSpot decodes %3A %2F %40 (and a few more) before signing."""
    path = "/webhooks/crm?source=hubspot%3Aeu&back=https%3A%2F%2Fcs.example%2Fhook%40acme"
    body = json.dumps([CLOSED_WON]).encode()
    timestamp = str(int(time.time() * 1000))
    decoded = "http://test/webhooks/crm?source=hubspot:eu&back=https://cs.example/hook@acme"
    import base64
    import hashlib
    import hmac
    digest = hmac.new(SECRET.encode(), b"POST" + decoded.encode() + body + timestamp.encode(), hashlib.sha256)
    headers = {SIGNATURE: base64.b64encode(digest.digest()).decode(), TIMESTAMP: timestamp}
    response = await http.post(path, content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["outcome"] == "started"
