"""Deliveries as the vendors send them, signed with the tests' secrets (tests/conftest.py), and
the shared real payloads (../shared/real-inputs) read byte for byte."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from starter.adapters.hubspot_signature import SIGNATURE, SIGNATURE_V1_V2, SIGNATURE_VERSION, TIMESTAMP, sign, \
    sign_v1, sign_v2
from starter.adapters.zendesk import SIGNATURE as ZD_SIGNATURE, TIMESTAMP as ZD_TIMESTAMP, sign as zendesk_sign

REAL = Path(__file__).resolve().parents[4] / "shared" / "real-inputs"
HUBSPOT_SECRET = "local-demo-secret"  # CRM_WEBHOOK_SECRET's default: the tests' HubSpot app secret
SF_SECRET = "test-salesforce-path-secret"
ZD_SECRET = "test-zendesk-signing-secret"
PORTAL = 24681357
SF_ORG = "00D5g000004XqLmEAK"
ZD_ACCOUNT = 27461093
HUBSPOT_URL = "http://test/webhooks/hubspot"


def real(path: str) -> bytes:
    return (REAL / path).read_bytes()


def hubspot_headers(body: bytes, *, secret: str = HUBSPOT_SECRET, uri: str = HUBSPOT_URL, version: str = "v3",
                    age_ms: int = 0, method: str = "POST") -> dict:
    if version == "v1":
        return {SIGNATURE_V1_V2: sign_v1(secret, body), SIGNATURE_VERSION: "v1", "content-type": "application/json"}
    if version == "v2":
        return {SIGNATURE_V1_V2: sign_v2(secret, method, uri, body), SIGNATURE_VERSION: "v2",
                "content-type": "application/json"}
    timestamp = str(int(time.time() * 1000) - age_ms)
    return {SIGNATURE: sign(secret, method, uri, body, timestamp), TIMESTAMP: timestamp,
            "content-type": "application/json"}


async def hubspot(http: httpx.AsyncClient, payload, **kw) -> httpx.Response:
    """POST a HubSpot delivery (a list of events, or raw bytes as they travel), signed."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return await http.post("/webhooks/hubspot", content=body, headers=hubspot_headers(body, **kw))


_ids = iter(range(1_300_000_000, 1_400_000_000))


def hs(subscription: str, object_id: int | None = None, *, at: int | None = None, **fields) -> dict:
    """One HubSpot event with a fresh eventId; `at`: occurredAt in ms (default: now)."""
    event = {"eventId": next(_ids), "subscriptionId": 2847551, "portalId": PORTAL, "appId": 3109456,
             "occurredAt": at or int(time.time() * 1000), "subscriptionType": subscription, "attemptNumber": 0,
             "changeSource": "CRM_UI", **fields}
    if object_id is not None:
        event["objectId"] = object_id
    return event


def hs_prop(kind: str, object_id: int, name: str, value: str | None, *, at: int | None = None) -> dict:
    return hs(f"{kind}.propertyChange", object_id, at=at, propertyName=name, propertyValue=value)


def hs_assoc(kind: str, object_id: int, company: int, *, removed: bool = False, primary: bool = True,
             at: int | None = None, from_company: bool = False) -> dict:
    """An association change as HubSpot sends it, from the object's side (or the company's)."""
    if from_company:
        return hs("company.associationChange", at=at, associationType=f"COMPANY_TO_{kind.upper()}",
                  fromObjectId=company, toObjectId=object_id, associationRemoved=removed,
                  isPrimaryAssociation=primary)
    return hs(f"{kind}.associationChange", at=at, associationType=f"{kind.upper()}_TO_COMPANY",
              fromObjectId=object_id, toObjectId=company, associationRemoved=removed, isPrimaryAssociation=primary)


def epoch_ms(day) -> str:
    """A date as HubSpot sends a date property: epoch milliseconds at midnight UTC, as a string."""
    return str(int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000))


# -- Salesforce ---------------------------------------------------------------------------------------
def outbound(*notifications: tuple[str, str, dict], org: str = SF_ORG) -> bytes:
    """An Outbound Message: (notification id, sObject type, fields) each; None is xsi:nil."""
    from xml.sax.saxutils import escape

    parts = []
    for notification_id, kind, fields in notifications:
        body = "".join(f'<sf:{k} xsi:nil="true"/>' if v is None else f"<sf:{k}>{escape(str(v))}</sf:{k}>"
                       for k, v in fields.items())
        parts.append(f'<Notification><Id>{notification_id}</Id><sObject xsi:type="sf:{kind}" '
                     f'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{body}</sObject></Notification>')
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
            f'<OrganizationId>{org}</OrganizationId><ActionId>04k5g0000022qs1AAA</ActionId>'
            '<SessionId xsi:nil="true"/><EnterpriseUrl>https://example-org.my.salesforce.com/services/Soap/c/62.0'
            '</EnterpriseUrl><PartnerUrl>https://example-org.my.salesforce.com/services/Soap/u/62.0</PartnerUrl>'
            + "".join(parts) + '</notifications></soapenv:Body></soapenv:Envelope>').encode()


async def salesforce(http: httpx.AsyncClient, body: bytes, secret: str = SF_SECRET) -> httpx.Response:
    return await http.post(f"/webhooks/salesforce/{secret}", content=body,
                           headers={"content-type": "text/xml; charset=utf-8", "SOAPAction": '""'})


def sf_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# -- Zendesk -----------------------------------------------------------------------------------------------
def zendesk_headers(body: bytes, *, secret: str = ZD_SECRET, age: timedelta = timedelta(0),
                    account: int | None = ZD_ACCOUNT) -> dict:
    timestamp = (datetime.now(timezone.utc) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {ZD_SIGNATURE: zendesk_sign(secret, timestamp, body), ZD_TIMESTAMP: timestamp,
               "content-type": "application/json", "x-zendesk-webhook-id": "01F1KRFQ6BG29CNWFR60NK5FNY"}
    if account is not None:
        headers["x-zendesk-account-id"] = str(account)
    return headers


async def zendesk(http: httpx.AsyncClient, payload, **kw) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await http.post("/webhooks/zendesk", content=body, headers=zendesk_headers(body, **kw))


def zd_event(kind: str, ticket_id: str, *, event: dict | None = None, at: datetime | None = None, **detail) -> dict:
    """A Zendesk ticket event webhook body (ids as strings, enums in upper case)."""
    at = at or datetime.now(timezone.utc)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    base = {"actor_id": "21007788210", "assignee_id": None, "brand_id": "360001944512", "created_at": stamp,
            "id": ticket_id, "organization_id": "18300144927", "priority": "NORMAL", "requester_id": "20461957731",
            "status": "NEW", "subject": "Export fails", "updated_at": stamp, "via": {"channel": "email"}}
    return {"account_id": ZD_ACCOUNT, "detail": {**base, **detail}, "event": event or {},
            "id": f"{kind}-{ticket_id}-{next(_ids)}", "subject": f"zen:ticket:{ticket_id}",
            "time": at.isoformat().replace("+00:00", "Z"), "type": f"zen:event-type:{kind}",
            "zendesk_event_version": "2022-11-06"}
