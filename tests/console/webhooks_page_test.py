"""The console's Webhooks page in a real Chromium against the product as ./run.sh starts it: a
HubSpot closed-won that arrives before its company waits there, with what it waits for and why,
and leaves the page once the company arrives and onboarding starts."""

from __future__ import annotations

import json
import time

import httpx
from playwright.sync_api import expect

from starter.adapters.hubspot_signature import SIGNATURE, TIMESTAMP, sign
from tests.console.conftest import shot
from tests.starter.webhooks.vendors import real



def deliver(stack, body: bytes) -> dict:
    url = stack.base_url + "/webhooks/hubspot"
    timestamp = str(int(time.time() * 1000))
    headers = {SIGNATURE: sign(stack.env["CRM_WEBHOOK_SECRET"], "POST", url, body, timestamp), TIMESTAMP: timestamp,
               "content-type": "application/json"}
    response = httpx.post(url, content=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_waiting_event_is_listed_with_its_reason_until_its_company_arrives(console, console_stack):
    said = deliver(console_stack, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json"))
    assert said["results"][0]["outcome"] == "waiting: deal 20563118842: which company it belongs to is not known yet"
    console.click("header >> text=Webhooks")
    row = console.locator("#waiting tr[data-event*='20563118842']")
    expect(row).to_contain_text("which company it belongs to is not known yet")
    expect(row).to_contain_text("hubspot deal 20563118842")
    shot(console, "webhooks-waiting")
    deliver(console_stack, real("hubspot/webhooks/deal.associationChange.deal_to_company.json"))
    now = int(time.time() * 1000)
    deliver(console_stack, json.dumps([{
        "eventId": 77, "subscriptionId": 1, "portalId": 24681357, "appId": 3109456, "occurredAt": now,
        "subscriptionType": "company.propertyChange", "attemptNumber": 0, "objectId": 18413070045,
        "propertyName": "name", "propertyValue": "Northwind Traders (console)", "changeSource": "CRM_UI"}]).encode())
    console.reload()
    expect(console.locator("#waiting")).to_contain_text("Nothing is waiting.")
    shot(console, "webhooks-resolved")
    console.goto(console_stack.base_url + "/console/accounts/northwind-traders-console")
    expect(console.locator("#play-onboarding-northwind-traders-console")).to_be_visible()
