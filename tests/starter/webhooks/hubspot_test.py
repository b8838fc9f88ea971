"""HubSpot webhooks as HubSpot sends them, against a real test server, worker and PostgreSQL: the
shared deliveries byte for byte, a closed-won deal finding its company through associations in
either order, companies and contacts written to the book, tickets on the SLA clock, stale and
duplicate deliveries."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import pytest

from starter.steering import renewal_status, sla_status
from tests.starter.webhooks.vendors import REAL, epoch_ms, hs_assoc, hs_prop, hubspot, real

DEAL, COMPANY = 20563118842, 18413070045  # the shared association and closed-won files


async def link(pool, account_id: str, crm_id: str, connection: str = "hubspot", object_type: str = "company"):
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id) VALUES ($1, $2, $3, $4)",
                       connection, object_type, crm_id, account_id)


async def outcome_of(pool, event_id_part: str) -> tuple[str, str]:
    row = await pool.fetchrow("SELECT status, outcome FROM crm_events WHERE event_id LIKE $1", f"%{event_id_part}%")
    return row["status"], row["outcome"]


def outcomes(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["outcome"] for r in response.json()["results"]]


async def test_the_shared_closed_won_delivery_starts_onboarding_once_its_company_is_known(env, http, pool):
    await link(pool, "acme", str(COMPANY))
    both_ways = outcomes(await hubspot(http, real("hubspot/webhooks/deal.associationChange.deal_to_company.json")))
    assert both_ways == [f"deal {DEAL} belongs to account acme", f"deal {DEAL} belongs to account acme (unchanged)"]
    won = outcomes(await hubspot(http, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json")))
    assert won == ["closed_won_starts_onboarding: started onboarding-acme"]
    assert (await env.client.get_workflow_handle("onboarding-acme").describe()).status.name == "RUNNING"
    # HubSpot delivers at least once: the same delivery again is a duplicate and starts nothing.
    again = await hubspot(http, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json"))
    assert outcomes(again) == ["duplicate"] and again.json()["results"][0]["first_outcome"].endswith("onboarding-acme")


async def test_a_closed_won_deal_before_its_company_waits_and_is_acted_on_when_the_association_arrives(env, http, pool):
    won = outcomes(await hubspot(http, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json")))
    assert won == [f"waiting: deal {DEAL}: which company it belongs to is not known yet"]
    # The association names a company the book does not have yet: that waits too.
    assoc = outcomes(await hubspot(http, real("hubspot/webhooks/deal.associationChange.deal_to_company.json")))
    assert assoc == [f"waiting: company {COMPANY} is not in the book yet"] * 2
    assert await pool.fetchval("SELECT count(*) FROM crm_events WHERE status = 'waiting'") == 3
    # The company arrives by webhook (its name): the account is made, then everything waiting acts.
    name = outcomes(await hubspot(http, [hs_prop("company", COMPANY, "name", "Northwind Traders Ltd")]))
    assert name == ["account northwind-traders-ltd created; warning: owner: no owner: assigned to the default CSM "
                    "Casey Morgan"]
    assert await pool.fetchval("SELECT count(*) FROM crm_events WHERE status = 'waiting'") == 0
    status, outcome = await outcome_of(pool, "deal.propertyChange")
    assert (status, outcome) == ("done", "closed_won_starts_onboarding: started onboarding-northwind-traders-ltd")
    handle = env.client.get_workflow_handle("onboarding-northwind-traders-ltd")
    assert (await handle.describe()).status.name == "RUNNING"


async def test_a_company_is_added_once_its_name_is_known_and_its_properties_drive_plays(env, http, pool):
    company = 18413126135  # the shared company.creation file
    created = outcomes(await hubspot(http, real("hubspot/webhooks/company.creation.json")))
    assert created == ["recorded: the account is added to the book once the company's name is known"]
    renewal = date.today() + timedelta(days=200)
    now = int(time.time() * 1000)
    # Properties before the name wait; the name brings them all in; property values are strings.
    first = outcomes(await hubspot(http, [
        hs_prop("company", company, "renewal_date", epoch_ms(renewal), at=now - 3000),
        hs_prop("company", company, "current_arr", "$180,000", at=now - 2000),
        hs_prop("company", company, "country", "Deutschland", at=now - 1000),
    ]))
    assert all(o.startswith(f"waiting: company {company}: its name is not known yet") for o in first), first
    named = outcomes(await hubspot(http, [hs_prop("company", company, "name", "Müller & Söhne GmbH", at=now)]))
    assert named[0].startswith("account muller-sohne-gmbh created")
    row = await pool.fetchrow("SELECT * FROM accounts WHERE id = 'muller-sohne-gmbh'")
    assert (row["renewal_date"], row["arr"], row["country"], row["timezone"], row["language"], row["source"]) == (
        renewal, 180000, "DE", "Europe/Berlin", "de", "hubspot")
    st = await renewal_status(env.client, "muller-sohne-gmbh")
    assert st.renewal_date == renewal
    status, outcome = await outcome_of(pool, f"{company}:renewal_date")
    assert status == "done" and "renewal_date_set: started renewal-muller-sohne-gmbh" in outcome
    # A cleared property ("") clears the field and starts nothing.
    cleared = outcomes(await hubspot(http, [hs_prop("company", company, "current_arr", "")]))
    assert cleared == ["account muller-sohne-gmbh updated (arr)"]
    # An older change arriving late never undoes a newer one.
    late = outcomes(await hubspot(http, [hs_prop("company", company, "renewal_date",
                                                 epoch_ms(renewal + timedelta(days=30)), at=now - 10_000)]))
    assert late == ["stale: a newer change of renewal_date was applied"]
    assert (await renewal_status(env.client, "muller-sohne-gmbh")).renewal_date == renewal
    moved = renewal + timedelta(days=31)
    newer = outcomes(await hubspot(http, [hs_prop("company", company, "renewal_date", epoch_ms(moved))]))
    assert newer == ["account muller-sohne-gmbh updated (renewal_date); renewal_date_set: updated "
                     "renewal-muller-sohne-gmbh"]
    assert (await renewal_status(env.client, "muller-sohne-gmbh")).renewal_date == moved


async def test_contacts_join_their_company_and_their_email_opt_out_is_stored(env, http, pool):
    await link(pool, "acme", str(COMPANY))
    contact = 51237194279  # the shared hs_email_optout file
    opt_out = outcomes(await hubspot(http, real("hubspot/webhooks/contact.propertyChange.hs_email_optout.json")))
    assert opt_out == [f"waiting: contact {contact}: its company is not known yet"]
    told = outcomes(await hubspot(http, [hs_prop("contact", contact, "email", "Ines.Barros@Acme.Example"),
                                         hs_prop("contact", contact, "firstname", "Inês"),
                                         hs_assoc("contact", contact, COMPANY)]))
    assert told[:2] == [f"waiting: contact {contact}: its company is not known yet"] * 2
    assert told[2] == "contact of acme created"
    row = await pool.fetchrow("SELECT * FROM contacts WHERE crm_key = $1", f"hubspot:{contact}")
    assert (row["account_id"], row["email"], row["first_name"], row["email_opt_out"]) == (
        "acme", "Ines.Barros@acme.example", "Inês", True)
    assert await pool.fetchval("SELECT count(*) FROM crm_events WHERE status = 'waiting'") == 0
    # A later change updates the same row.
    title = outcomes(await hubspot(http, [hs_prop("contact", contact, "jobtitle", "VP Operations")]))
    assert title == ["contact of acme updated (title)"]


async def test_a_ticket_runs_its_sla_clock_from_creation_to_close_and_reopens(env, http, pool):
    await link(pool, "acme", str(COMPANY))
    ticket = 3487201956  # the shared ticket files
    created = outcomes(await hubspot(http, real("hubspot/webhooks/ticket.creation.json")))
    assert created == [f"waiting: ticket {ticket}: which company it belongs to is not known yet"]
    assoc = outcomes(await hubspot(http, [hs_assoc("ticket", ticket, COMPANY)]))
    assert assoc == [f"ticket {ticket} belongs to account acme"]
    status, outcome = await outcome_of(pool, "ticket.creation")
    assert status == "done" and outcome == f"ticket_opened: started sla-HS-{ticket}"
    priority = outcomes(await hubspot(http, real("hubspot/webhooks/ticket.propertyChange.hs_ticket_priority.json")))
    assert priority == [f"ticket_priority_changed: signalled sla-HS-{ticket}"]
    await env.sleep(timedelta(seconds=1))
    st = await sla_status(env.client, f"HS-{ticket}")
    assert (st.priority, st.status, st.account_id) == ("P1", "open", "acme")
    closed = outcomes(await hubspot(http, [hs_prop("ticket", ticket, "hs_pipeline_stage", "4")]))
    assert closed == [f"ticket_resolved: signalled sla-HS-{ticket}"]
    await env.sleep(timedelta(seconds=1))
    assert (await sla_status(env.client, f"HS-{ticket}")).status == "resolved"
    reopened = outcomes(await hubspot(http, [hs_prop("ticket", ticket, "hs_pipeline_stage", "1")]))
    assert reopened == [f"ticket_reopened: signalled sla-HS-{ticket}"]
    await env.sleep(timedelta(seconds=1))
    assert (await sla_status(env.client, f"HS-{ticket}")).status == "open"


async def test_the_primary_association_wins_and_a_removed_one_is_dropped(env, http, pool):
    await link(pool, "acme", "1")
    await pool.execute("INSERT INTO accounts (id, name, csm_name, csm_email) VALUES ('globex', 'Globex',"
                       " 'Casey Morgan', 'casey.morgan@tai.example')")
    await link(pool, "globex", "2")
    now = int(time.time() * 1000)
    said = outcomes(await hubspot(http, [hs_assoc("deal", 77, 2, primary=False, at=now),
                                         hs_assoc("deal", 77, 1, primary=True, at=now + 1)]))
    assert said == ["deal 77 belongs to account globex", "deal 77 belongs to account acme"]
    removed = outcomes(await hubspot(http, [hs_assoc("deal", 77, 1, removed=True, at=now + 2)]))
    assert removed == ["deal 77 belongs to account globex"]
    gone = outcomes(await hubspot(http, [hs_assoc("deal", 77, 2, removed=True, at=now + 3)]))
    assert gone == ["deal 77 has no company now"]
    assert await pool.fetchval("SELECT count(*) FROM crm_links WHERE object_type = 'deal'") == 0
    # An addition older than the removal, delivered late, is stale.
    late = outcomes(await hubspot(http, [hs_assoc("deal", 77, 2, at=now + 2, from_company=True)]))
    assert late == ["stale: a newer change of this association was applied"]


async def test_a_company_name_cleared_in_the_crm_is_kept(env, http, pool):
    await link(pool, "acme", "9")
    assert outcomes(await hubspot(http, [hs_prop("company", 9, "name", "")])) == ["account acme unchanged"]
    assert await pool.fetchval("SELECT name FROM accounts WHERE id = 'acme'") == "Acme Logistics"


@pytest.mark.parametrize("name", sorted(p.name for p in (REAL / "hubspot" / "webhooks").glob("*.json")
                                        if p.name != "signature_vectors_official.json"))
async def test_every_shared_delivery_is_accepted_byte_for_byte(env, http, pool, name):
    response = await hubspot(http, real(f"hubspot/webhooks/{name}"))
    assert response.status_code == 200, response.text
    events = json.loads(real(f"hubspot/webhooks/{name}"))
    assert len(response.json()["results"]) == len(events)
    assert await pool.fetchval("SELECT count(*) FROM crm_events WHERE source = 'hubspot'") == len(events)
