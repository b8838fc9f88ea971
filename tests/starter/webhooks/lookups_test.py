"""CRM lookups against a local server that follows HubSpot's and Salesforce's documented read
endpoints: retries with back-off, 429 Retry-After, 5xx, timeouts, a bad token; and the webhooks
that use them (a closed-won deal with no association, an Opportunity whose Account the book lacks)."""

from __future__ import annotations

import pytest
import pytest_asyncio
from pydantic import SecretStr

from starter.lookups import CrmLookups, LookupFailed
from tests.starter.webhooks.fake_crm import TOKEN, FakeCrm, Fault, serve, stop
from tests.starter.webhooks.vendors import hs_prop, hubspot, real, salesforce

COMPANY = {"name": "Northwind Traders Ltd", "country": "United Kingdom", "industry": "Logistics",
           "current_arr": "120000", "hubspot_owner_id": "9104417", "lifecyclestage": "customer"}
SF_ACCOUNT = {"Name": "Northwind Traders Ltd", "OwnerId": "0055g00000XAyJ4AAL", "BillingCountry": "United Kingdom",
              "Type": "Customer - Direct", "Industry": "Logistics"}


@pytest_asyncio.fixture
async def fake(settings):
    crm = FakeCrm()
    server, task = await serve(crm)
    settings.hubspot_access_token = SecretStr(TOKEN)
    settings.hubspot_api_url = crm.url
    settings.salesforce_access_token = SecretStr(TOKEN)
    settings.salesforce_instance_url = crm.url
    settings.crm_lookup_attempts = 4
    yield crm
    await stop(server, task)


async def test_retries_429_with_retry_after_and_5xx_then_answers(fake, settings):
    fake.hubspot[("companies", "1")] = COMPANY
    fake.faults = [Fault(429, {"Retry-After": "1"}), Fault(503), Fault(502)]
    found = await CrmLookups(settings).hubspot_object("companies", "1", ["name", "country"])
    assert found == {"name": "Northwind Traders Ltd", "country": "United Kingdom", "hs_object_id": "1"}
    times = [t for t, path, _ in fake.requests]
    assert len(times) == 4 and times[1] - times[0] >= 0.95  # the Retry-After second was waited
    assert "properties=country%2Cname" in fake.requests[0][2]


async def test_gives_up_after_its_attempts_and_on_a_long_retry_after(fake, settings):
    fake.faults = [Fault(503)] * 4
    with pytest.raises(LookupFailed, match="gave up after 4 attempts: 503"):
        await CrmLookups(settings).hubspot_associations("deals", "9", "companies")
    fake.faults = [Fault(429, {"Retry-After": "3600"})]
    with pytest.raises(LookupFailed, match="Retry-After 3600 s is longer than 30 s"):
        await CrmLookups(settings).salesforce_record("Account", "0015g000009X4veAAC", ["Name"])


async def test_a_timeout_is_retried(fake, settings):
    settings.crm_lookup_timeout_seconds = 2.0
    fake.salesforce[("Account", "0015g000009X4veAAC")] = SF_ACCOUNT
    fake.faults = [Fault(200, delay=8.0)]  # answers after the client gave up
    found = await CrmLookups(settings).salesforce_record("Account", "0015g000009X4veAAC", ["Name", "Type"])
    assert found == {"Name": "Northwind Traders Ltd", "Type": "Customer - Direct", "Id": "0015g000009X4veAAC"}
    assert len(fake.requests) >= 2 and not fake.faults


async def test_a_bad_token_fails_at_once_and_a_missing_record_is_none(fake, settings):
    settings.hubspot_access_token = SecretStr("not-the-token")
    with pytest.raises(LookupFailed, match="401 Unauthorized"):
        await CrmLookups(settings).hubspot_object("deals", "1", ["dealstage"])
    assert len(fake.requests) == 1
    settings.hubspot_access_token = SecretStr(TOKEN)
    assert await CrmLookups(settings).hubspot_object("deals", "404", ["dealstage"]) is None
    assert await CrmLookups(settings).salesforce_record("Case", "5005g00000Q1w2eAAB", ["Subject"]) is None


def test_lookups_are_off_unless_configured(settings):
    lookups = CrmLookups(settings)
    assert not lookups.enabled("hubspot") and not lookups.enabled("salesforce") and not lookups.enabled("zendesk")


async def test_a_closed_won_deal_without_an_association_finds_its_company_by_lookup(env, http, pool, fake):
    fake.associations[("deals", "20563118842")] = [("18413070045", True)]
    fake.hubspot[("companies", "18413070045")] = COMPANY
    won = await hubspot(http, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json"))
    assert won.json()["results"][0]["outcome"] == (
        "closed_won_starts_onboarding: started onboarding-northwind-traders-ltd")
    account = await pool.fetchrow("SELECT * FROM accounts WHERE id = 'northwind-traders-ltd'")
    assert (account["country"], account["csm_email"], account["arr"]) == ("GB", "avery.lindqvist@tai.example", 120000)
    assert list(dict.fromkeys(path for _, path, _ in fake.requests)) == [
        "/crm/v4/objects/deals/20563118842/associations/companies", "/crm/v3/objects/companies/18413070045"]


async def test_an_opportunity_whose_account_the_book_lacks_reads_it_from_salesforce(env, http, pool, fake):
    fake.salesforce[("Account", "0015g000009X4veAAC")] = SF_ACCOUNT
    await salesforce(http, real("salesforce/outbound/opportunity_closed_won.xml"))
    assert await pool.fetchval("SELECT outcome FROM crm_events") == (
        "closed_won_starts_onboarding: started onboarding-northwind-traders-ltd")


async def test_a_failed_lookup_waits_and_is_tried_again_later(env, http, pool, fake, settings):
    from starter.events.context import Context
    from starter.events.pipeline import sweep_once

    fake.faults = [Fault(503)] * 4
    won = await hubspot(http, [hs_prop("deal", 42, "dealstage", "closedwon")])
    outcome = won.json()["results"][0]["outcome"]
    assert outcome.startswith("waiting: deal 42: its company could not be looked up: gave up after 4 attempts")
    row = await pool.fetchrow("SELECT status, next_attempt_at > now() AS later FROM crm_events")
    assert tuple(row) == ("waiting", True)  # a minute from now, doubling each time
    fake.associations[("deals", "42")] = [("7", True)]
    fake.hubspot[("companies", "7")] = {**COMPANY, "name": "Initech"}
    await pool.execute("UPDATE crm_events SET next_attempt_at = now()")
    assert await sweep_once(Context(env.client, pool, settings)) == 1
    assert await pool.fetchval("SELECT outcome FROM crm_events") == "closed_won_starts_onboarding: started onboarding-initech"
