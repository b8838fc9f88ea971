"""Salesforce Outbound Messages as Salesforce sends them: the shared message byte for byte, the
acknowledgement it expects, an Opportunity won before its Account is in the book, Accounts and
Contacts written through the mapping, Cases on the SLA clock, duplicates and stale messages."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from starter.adapters.salesforce import ACK
from starter.steering import renewal_status, sla_status
from tests.conftest import eventually
from tests.starter.webhooks.vendors import outbound, real, salesforce, sf_time

ACCOUNT = "0015g000009X4veAAC"  # the shared opportunity's AccountId
OPPORTUNITY = "0065g0000078XRgAAM"


async def event_rows(pool):
    return [tuple(r) for r in await pool.fetch("SELECT event_id, status, outcome FROM crm_events ORDER BY occurred_at,"
                                               " event_id")]


def account_fields(name: str = "Northwind Traders Ltd", **extra) -> dict:
    return {"Id": ACCOUNT, "Name": name, "OwnerId": "0055g00000XAyJ4AAL", "BillingCountry": "United Kingdom",
            "Industry": "Logistics", "Type": "Customer - Direct", "ARR__c": "120000.0",
            "LastModifiedDate": sf_time(), **extra}


async def test_the_shared_message_is_acknowledged_as_salesforce_expects_and_waits_for_its_account(env, http, pool):
    response = await salesforce(http, real("salesforce/outbound/opportunity_closed_won.xml"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content == ACK == real("salesforce/outbound/ack_response.xml")
    rows = await event_rows(pool)
    assert rows == [("salesforce:00D5g000004XqLm:04l5g000003TBGgAAO", "waiting",
                     f"waiting: company {ACCOUNT} is not in the book yet")]
    # Salesforce retries until acknowledged; a retry of the same notification is a duplicate.
    again = await salesforce(http, real("salesforce/outbound/opportunity_closed_won.xml"))
    assert again.content == ACK and await event_rows(pool) == rows
    # The Account arrives by its own Outbound Message: the account is made, the won deal acts.
    made = await salesforce(http, outbound(("04l5g000003TBH1AAO", "Account", account_fields())))
    assert made.content == ACK
    rows = dict((r[0], r[1:]) for r in await event_rows(pool))
    assert rows["salesforce:00D5g000004XqLm:04l5g000003TBH1AAO"][1].startswith("account northwind-traders-ltd created")
    assert rows["salesforce:00D5g000004XqLm:04l5g000003TBGgAAO"] == (
        "done", "closed_won_starts_onboarding: started onboarding-northwind-traders-ltd")
    account = await pool.fetchrow("SELECT * FROM accounts WHERE id = 'northwind-traders-ltd'")
    assert (account["csm_email"], account["country"], account["arr"], account["status"]) == (
        "avery.lindqvist@tai.example", "GB", 120000, "active")
    assert await pool.fetchval("SELECT account_id FROM crm_links WHERE connection = 'salesforce'"
                               " AND object_type = 'deal' AND crm_id = $1", OPPORTUNITY) == "northwind-traders-ltd"


async def test_an_account_message_moves_the_renewal_and_an_older_one_does_not_undo_it(env, http, pool):
    renewal = date.today() + timedelta(days=300)
    now = datetime.now(timezone.utc)
    first = outbound(("04l5g0000000001AAA", "Account",
                      account_fields(Renewal_Date__c=renewal.isoformat(), LastModifiedDate=sf_time(now))))
    assert (await salesforce(http, first)).content == ACK
    assert (await renewal_status(env.client, "northwind-traders-ltd")).renewal_date == renewal
    older = outbound(("04l5g0000000002AAA", "Account", account_fields(
        Renewal_Date__c=(renewal + timedelta(days=9)).isoformat(), LastModifiedDate=sf_time(now - timedelta(hours=1)))))
    await salesforce(http, older)
    assert (await pool.fetchval("SELECT outcome FROM crm_events WHERE event_id LIKE '%04l5g0000000002AAA'")
            ) == "stale: a newer message about this company was applied"
    assert (await renewal_status(env.client, "northwind-traders-ltd")).renewal_date == renewal
    # The whole record comes each time: only what changed acts (here the NPS custom field).
    nps = outbound(("04l5g0000000003AAA", "Account", account_fields(
        Renewal_Date__c=renewal.isoformat(), NPS__c="20", LastModifiedDate=sf_time(now + timedelta(minutes=1)))))
    await salesforce(http, nps)
    outcome = await pool.fetchval("SELECT outcome FROM crm_events WHERE event_id LIKE '%04l5g0000000003AAA'")
    assert outcome == "account northwind-traders-ltd unchanged; risk_metric_changed: signalled churn-northwind-traders-ltd"


async def test_contacts_and_cases_from_outbound_messages(env, http, pool):
    await salesforce(http, outbound(("04l5g0000000010AAA", "Account", account_fields())))
    contact = {"Id": "0035g00000AbCdEAAV", "AccountId": ACCOUNT, "FirstName": "Oliver", "LastName": "Hughes",
               "Email": "oliver.hughes@northwind.example", "Title": "Head of Operations", "HasOptedOutOfEmail": "true",
               "LastModifiedDate": sf_time()}
    await salesforce(http, outbound(("04l5g0000000011AAA", "Contact", contact)))
    row = await pool.fetchrow("SELECT * FROM contacts WHERE crm_key = 'salesforce:0035g00000AbCdEAAV'")
    assert (row["account_id"], row["name"], row["email_opt_out"]) == ("northwind-traders-ltd", "Oliver Hughes", True)
    case = {"Id": "5005g00000Q1w2eAAB", "AccountId": ACCOUNT, "CaseNumber": "00001026", "Subject": "Sync fails",
            "Priority": "High", "Status": "New", "CreatedDate": sf_time(), "LastModifiedDate": sf_time()}
    await salesforce(http, outbound(("04l5g0000000012AAA", "Case", case)))
    ticket = "SF-5005g00000Q1w2eAAB"
    st = await sla_status(env.client, ticket)
    assert (st.priority, st.account_id) == ("P1", "northwind-traders-ltd")
    async def subject():
        return await pool.fetchval("SELECT subject FROM sla_tickets WHERE ticket_id = $1", ticket)
    assert await eventually(subject, "the ticket's row in sla_tickets") == "Sync fails"
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    await salesforce(http, outbound(("04l5g0000000013AAA", "Case", {
        **case, "Priority": "Critical", "Status": "Working", "LastModifiedDate": sf_time(later)})))
    outcome = await pool.fetchval("SELECT outcome FROM crm_events WHERE event_id LIKE '%04l5g0000000013AAA'")
    assert outcome == (f"ticket_priority_changed: signalled sla-{ticket}; ticket_acknowledged: signalled sla-{ticket}")
    await env.sleep(timedelta(seconds=1))
    st = await sla_status(env.client, ticket)
    assert (st.priority, st.status) == ("P0", "acknowledged")
    await salesforce(http, outbound(("04l5g0000000014AAA", "Case", {
        **case, "Priority": "Critical", "Status": "Closed", "LastModifiedDate": sf_time(later + timedelta(seconds=5))})))
    await env.sleep(timedelta(seconds=1))
    assert (await sla_status(env.client, ticket)).status == "resolved"


async def test_an_import_releases_what_waits_for_its_accounts(env, http, pool, settings):
    """The importer's hook: after an import, events waiting for its accounts are acted on."""
    from playbooks.crm_mapping import CurrenciesContent, Mapping, TeamContent
    from playbooks.loader import _load_config
    from starter.book.records import account_record, by_properties
    from starter.book.store import Book
    from starter.book.waiting import resolve_waiting
    from starter.events.context import crm_dir

    await salesforce(http, real("salesforce/outbound/opportunity_closed_won.xml"))
    folder = crm_dir(settings)
    mapping = _load_config(folder / "salesforce.yaml", Mapping)
    book = Book(pool, mapping, _load_config(folder / "team.yaml", TeamContent),
                _load_config(folder / "currencies.yaml", CurrenciesContent), apply=True)
    [made] = await book.accounts([account_record(mapping, by_properties({"Id": ACCOUNT, "Name": "Northwind Traders"}),
                                                 "extract_Account.csv:2")])
    assert made.action == "created"
    assert await resolve_waiting(pool, "salesforce", "company", [ACCOUNT], env.client, settings) == 1
    assert await pool.fetchval("SELECT outcome FROM crm_events") == (
        "closed_won_starts_onboarding: started onboarding-northwind-traders")
    assert await resolve_waiting(pool, "salesforce", "company", [ACCOUNT]) == 0  # nothing waits any more
