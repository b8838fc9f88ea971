"""Merges, deletions and privacy deletions from the CRM, against real plays: the surviving account
keeps its plays and takes over the merged one's; a privacy deletion erases the person from every
table, records what it erased, and the plays running for their account keep working."""

from __future__ import annotations

from datetime import date, timedelta

from activities.accounts import fetch_account
from starter import steering
from tests.round_the_clock import round_the_clock
from tests.conftest import asleep_on_timer, eventually
from tests.starter.webhooks.vendors import hs, hs_prop, hubspot

SURVIVOR, MERGED = 111, 222


def outcomes(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["outcome"] for r in response.json()["results"]]


async def state(env, workflow_id: str) -> str:
    return (await env.client.get_workflow_handle(workflow_id).describe()).status.name


async def test_a_company_merge_keeps_the_survivors_plays_and_moves_the_merged_ones(env, http, pool, settings):
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'company', $1, 'acme')", str(SURVIVOR))
    assert outcomes(await hubspot(http, [hs_prop("company", MERGED, "name", "Acme Europe")]))[0].startswith(
        "account acme-europe created")
    await pool.execute("INSERT INTO contacts (account_id, name, email, crm_key) VALUES"
                       " ('acme-europe', 'Greta Lind', 'greta@acme-europe.example', 'hubspot:3001'),"
                       " ('acme-europe', 'Lee Park', 'LEE.PARK@acme.example', 'hubspot:3002')")
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'deal', '4001', 'acme-europe')")
    renewal = date.today() + timedelta(days=200)
    for account in ("acme", "acme-europe"):
        await steering.launch_onboarding(env.client, pool, settings, account, "test")
    await steering.launch_renewal(env.client, pool, settings, "acme-europe", "test", renewal)
    # (A cancel that reaches an onboarding play during its first e-mail is lost by the play: see the report.)
    await asleep_on_timer(env.client, "onboarding-acme-europe")
    merge = hs("company.merge", SURVIVOR, primaryObjectId=SURVIVOR, mergedObjectIds=[MERGED], newObjectId=SURVIVOR,
               numberOfPropertiesMoved=4)
    said = outcomes(await hubspot(http, [merge]))
    assert said == ["merged acme-europe into acme (1 contacts, 2 CRM links moved); onboarding-acme-europe cancelled "
                    "(acme runs onboarding-acme); renewal-acme-europe carries on for acme"]
    assert await pool.fetchval("SELECT merged_into FROM accounts WHERE id = 'acme-europe'") == "acme"
    links = {(r["object_type"], r["crm_id"]): r["account_id"] for r in await pool.fetch("SELECT * FROM crm_links")}
    assert links == {("company", str(SURVIVOR)): "acme", ("company", str(MERGED)): "acme", ("deal", "4001"): "acme"}
    people = {r["email"].lower(): r["account_id"] for r in await pool.fetch("SELECT * FROM contacts")}
    assert people["greta@acme-europe.example"] == "acme" and list(people).count("lee.park@acme.example") == 1
    async def cancelled():
        return await state(env, "onboarding-acme-europe") == "CANCELED"
    await eventually(cancelled, "the merged account's duplicate onboarding to end as cancelled")
    assert (await state(env, "onboarding-acme"), await state(env, "renewal-acme-europe")) == ("RUNNING", "RUNNING")
    # The merged account's countdown now works for the survivor: its people, its CSM.
    account = await fetch_account(pool, "acme-europe")
    assert account.id == "acme" and "greta@acme-europe.example" in {str(c.email) for c in account.contacts}
    merged = await pool.fetchrow("SELECT * FROM account_merges")
    assert (merged["merged_id"], merged["into_id"], merged["moved"]["contacts"]) == ("acme-europe", "acme", 1)
    # Events about the merged company reach the survivor from now on; the merge again changes nothing.
    assert outcomes(await hubspot(http, [hs_prop("deal", 4001, "dealstage", "closedwon")])) == [
        "closed_won_starts_onboarding: already running onboarding-acme"]
    assert outcomes(await hubspot(http, [{**merge, "eventId": merge["eventId"] + 1}])) == ["account acme unchanged"]


async def test_a_privacy_deletion_erases_the_person_everywhere_and_plays_keep_working(env, http, pool, settings, sink):
    person = 901
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'company', '111', 'acme')")
    await pool.execute("INSERT INTO contacts (account_id, name, first_name, last_name, email, role, crm_key) VALUES"
                       " ('acme', 'Dana Reyes', 'Dana', 'Reyes', 'dana.reyes@acme.example', 'sponsor', $1)",
                       f"hubspot:{person}")
    told = outcomes(await hubspot(http, [hs_prop("contact", person, "phone", "+1 555 0100")]))
    assert told == ["contact of acme updated (phone)"]
    settings.playbooks_dir = round_the_clock(settings.data_dir)  # the welcome goes at once, whatever the hour
    await steering.launch_onboarding(env.client, pool, settings, "acme", "test")
    await asleep_on_timer(env.client, "onboarding-acme")  # the welcome e-mail went to Dana and the contacts
    await pool.execute("INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at)"
                       " VALUES ('2026-10', 'acme', 'dana.reyes@acme.example', 'Dana Reyes', now())")
    await pool.execute("INSERT INTO nps_responses (cycle_id, account_id, contact_email, score, category, comment)"
                       " VALUES ('2026-10', 'acme', 'dana.reyes@acme.example', 4, 'detractor', 'Dana hates the UI')")
    await pool.execute("UPDATE tasks SET detail = 'Agree the charter with Dana Reyes (dana.reyes@acme.example)'"
                       " WHERE id = (SELECT min(id) FROM tasks)")
    said = outcomes(await hubspot(http, [hs("contact.privacyDeletion", person)]))
    assert said == ["erased contact 901: contacts 1, account_sponsors 1, outbox_sent_erased 1, outbox_recipients 1, "
                    "nps_invitations 1, "
                    "nps_responses 1, tasks 1, crm_properties 2, crm_events 1, play_events 1"]
    dump = ""
    for table in ("contacts", "accounts", "communications", "nps_invitations", "nps_responses", "tasks",
                  "escalations", "crm_object_properties", "crm_events", "privacy_erasures", "play_events",
                  "deliveries", "communication_recipients", "inbound_mail"):
        dump += "\n".join(str(tuple(r)) for r in await pool.fetch(f"SELECT * FROM {table}"))
    for personal in ("dana", "Dana", "Reyes", "555 0100", "hates"):
        assert personal not in dump, personal
    erased = await pool.fetchrow("SELECT * FROM privacy_erasures")
    assert (erased["connection"], erased["crm_id"], erased["erased"]["contacts"]) == ("hubspot", "901", 1)
    assert await pool.fetchval("SELECT score FROM nps_responses") == 4  # the score still counts, anonymously
    # The onboarding play keeps working: the next weekly status goes to the new first contact.
    await env.sleep(timedelta(days=8))

    async def weekly():
        return await pool.fetchval("SELECT to_addrs FROM communications WHERE template LIKE '%weekly%' ORDER BY id"
                                   " LIMIT 1")
    to = await eventually(weekly, "the first weekly status e-mail after the erasure")
    assert to == ["Lee Park <lee.park@acme.example>"]
    assert await state(env, "onboarding-acme") == "RUNNING"


async def test_deletions_and_restores_in_the_order_they_happened(env, http, pool):
    import time

    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'company', '111', 'acme')")
    await pool.execute("UPDATE contacts SET crm_key = 'hubspot:71' WHERE email = 'lee.park@acme.example'")
    now = int(time.time() * 1000)
    said = outcomes(await hubspot(http, [hs("company.deletion", 111, at=now), hs("contact.deletion", 71, at=now)]))
    assert said == ["account acme marked deleted in the CRM (its plays go on)", "contact 71 marked deleted (1 rows)"]
    assert await pool.fetchval("SELECT crm_deleted_at IS NOT NULL FROM accounts WHERE id = 'acme'")
    account = await fetch_account(pool, "acme")
    assert "lee.park@acme.example" not in {str(c.email) for c in account.contacts}  # plays leave Lee out
    # A restore that happened before the deletion, delivered late, does not undo it.
    late = outcomes(await hubspot(http, [hs("company.restore", 111, at=now - 60_000)]))
    assert late == ["stale: a newer deletion or restore was applied"]
    back = outcomes(await hubspot(http, [hs("company.restore", 111, at=now + 1), hs("contact.restore", 71, at=now + 1)]))
    assert back == ["account acme marked restored in the CRM (its plays go on)", "contact 71 marked restored (1 rows)"]
    assert "lee.park@acme.example" in {str(c.email) for c in (await fetch_account(pool, "acme")).contacts}


async def test_a_contact_merge_keeps_one_row_per_account_under_the_survivors_key(env, http, pool):
    await pool.execute("UPDATE contacts SET crm_key = 'hubspot:81' WHERE email = 'lee.park@acme.example'")
    await pool.execute("UPDATE contacts SET crm_key = 'hubspot:82' WHERE email = 'sam.ortiz@acme.example'")
    said = outcomes(await hubspot(http, [hs("contact.merge", 81, primaryObjectId=81, mergedObjectIds=[82],
                                            newObjectId=81)]))
    assert said == ["contacts 82 merged into 81 (0 rows re-keyed, 1 duplicates removed)"]
    keys = [r["crm_key"] for r in await pool.fetch("SELECT crm_key FROM contacts WHERE account_id = 'acme'"
                                                   " AND crm_key IS NOT NULL")]
    assert keys == ["hubspot:81"]
