"""Zendesk webhooks as Zendesk sends them: the shared trigger and event bodies byte for byte,
signed; a ticket whose organisation is not linked yet waits; an organisation found through its
external_id (a Salesforce Account); created, priority changed, solved and reopened on the SLA clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from starter.steering import sla_status
from tests.starter.webhooks.vendors import real, zd_event, zendesk

ORG, EXTERNAL = "18300144927", "0015g00000Xe7KIAAZ"  # the shared bodies' organisation and its external_id


def outcomes(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["outcome"] for r in response.json()["results"]]


async def link(pool, account_id, connection, object_type, crm_id):
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id) VALUES ($1, $2, $3, $4)",
                       connection, object_type, crm_id, account_id)


async def test_the_shared_trigger_body_waits_for_its_organisations_account_then_starts_the_clock(env, http, pool,
                                                                                              settings):
    body = real("zendesk/trigger_ticket_created.json")
    first = outcomes(await zendesk(http, body))
    assert first == [f"waiting: organisation Müller & Söhne Präzisionstechnik GmbH: company {EXTERNAL} of salesforce "
                     "is not in the book yet"]
    # The Salesforce Account the organisation's external_id names comes into the book (an import
    # calls resolve_waiting): the ticket's clock starts and the organisation is remembered.
    await link(pool, "acme", "salesforce", "company", EXTERNAL)
    from starter.book.waiting import resolve_waiting
    assert await resolve_waiting(pool, "salesforce", "company", [EXTERNAL]) == 1
    from starter.events.context import Context
    from starter.events.pipeline import sweep_once
    assert await sweep_once(Context(env.client, pool, settings)) >= 1
    outcome = await pool.fetchval("SELECT outcome FROM crm_events WHERE source = 'zendesk'")
    assert outcome == "ticket_opened: started sla-ZD-48213"
    assert await pool.fetchval("SELECT account_id FROM crm_links WHERE connection = 'zendesk'"
                               " AND object_type = 'organization' AND crm_id = $1", ORG) == "acme"
    st = await sla_status(env.client, "ZD-48213")
    assert (st.priority, st.account_id) == ("P2", "acme")
    # The same body again (Zendesk retries a delivery it got no 2xx for) is a duplicate.
    assert outcomes(await zendesk(http, body)) == ["duplicate"]


async def test_event_webhooks_drive_the_clock_created_priority_solved_reopened(env, http, pool):
    await link(pool, "acme", "zendesk", "organization", ORG)
    created = outcomes(await zendesk(http, real("zendesk/event_ticket.created.json")))
    assert created == ["ticket_opened: started sla-ZD-48213"]
    now = datetime.now(timezone.utc)
    steps = [
        ("ticket.priority_changed", {"priority": "URGENT"}, {"current": "URGENT", "previous": "NORMAL"},
         "ticket_priority_changed: signalled sla-ZD-48213", ("P0", "open")),
        ("ticket.status_changed", {"priority": "URGENT", "status": "OPEN"}, {"current": "OPEN", "previous": "NEW"},
         "ticket_acknowledged: signalled sla-ZD-48213", ("P0", "acknowledged")),
        ("ticket.status_changed", {"priority": "URGENT", "status": "SOLVED"}, {"current": "SOLVED", "previous": "OPEN"},
         "ticket_resolved: signalled sla-ZD-48213", ("P0", "resolved")),
        ("ticket.status_changed", {"priority": "URGENT", "status": "OPEN"}, {"current": "OPEN", "previous": "SOLVED"},
         "ticket_reopened: signalled sla-ZD-48213", ("P0", "acknowledged")),
    ]
    for i, (kind, detail, change, said, (priority, status)) in enumerate(steps, start=1):
        body = zd_event(kind, "48213", event=change, at=now + timedelta(seconds=i), **detail)
        assert outcomes(await zendesk(http, body)) == [said]
        await env.sleep(timedelta(seconds=1))
        st = await sla_status(env.client, "ZD-48213")
        assert (st.priority, st.status) == (priority, status), kind
    # An older status change arriving late (SOLVED after the reopen) changes nothing.
    late = zd_event("ticket.status_changed", "48213", at=now + timedelta(seconds=2), status="SOLVED", priority="URGENT")
    assert outcomes(await zendesk(http, late)) == ["stale: a newer message about this ticket was applied"]
    assert (await sla_status(env.client, "ZD-48213")).status == "acknowledged"


async def test_other_zendesk_events_are_acknowledged_and_ignored(env, http, pool):
    body = {"account_id": 27461093, "detail": {"id": "6596848315901"}, "event": {"current": False, "previous": True},
            "id": "2b24ef10-19d4-4740-93cf-8f98ec4776c0", "subject": "zen:user:6596848315901",
            "time": "2099-07-04T05:33:18Z", "type": "zen:event-type:user.active_changed",
            "zendesk_event_version": "2022-06-20"}
    assert outcomes(await zendesk(http, body)) == ["ignored: user.active_changed events are not acted on"]


async def test_a_ticket_without_an_organisation_is_acknowledged_and_ignored(env, http, pool):
    body = zd_event("ticket.created", "5001", organization_id=None)
    assert outcomes(await zendesk(http, body)) == ["ignored: the ticket has no organisation"]
