"""The bad-input catalogue: every way in, refused with a clear error that changes nothing.

Each HTTP case runs against the real service (in-process), a real test
server, worker and PostgreSQL. It must answer its 4xx naming what is wrong
(no stack trace), and afterwards every table must hold exactly what it held
before (a digest of every row) and no play may have started or moved on
(each play the input could reach is described). Each playbook case breaks a
copy of the shipped `playbooks/` folder and must be reported as
file:line: field, and a launch from that folder must start nothing.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Awaitable, Callable

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode

from playbooks.loader import PLAYBOOKS_DIR, PlaybookError, validate_all
from starter.steering import launch_onboarding
from starter.webhooks import SIGNATURE, TIMESTAMP, sign
from tests.conftest import asleep_on_timer, deliver_to, free_port
from tests.inbound.dsn_test import FIXTURES
from tests.starter.webhook_test import CLOSED_WON, SECRET, URL, event
from tests.starter.webhooks import vendors
from tests.workflows.nps_test import CONTACTS, token_for

# Every play an input in this catalogue could start or move.
PLAYS = ["onboarding-acme", "renewal-acme", "churn-acme", "sla-T-9", "onboarding-nobody", "sla-ZD-48213",
         "sla-ZD-1", "onboarding-northwind-traders-ltd",
         f"nps-2026-10-{CONTACTS[0]}", "nps-cycle-2026-10", "inbound-1"]
PASSWORD = "correct horse battery staple"


@dataclass
class Ctx:
    """What a case may use: the service with an admin token (`http`) and without (`anonymous`),
    a console browser session prepared before the digests (`console`, `csrf`), and the parts."""

    http: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    settings: object
    pool: object
    env: object
    console: httpx.AsyncClient | None = None
    csrf: str = ""


Send = Callable[[Ctx], Awaitable[httpx.Response]]


@dataclass
class Case:
    send: Send
    status: int
    says: str  # the words (usually the field) the answer must contain
    # Runs before the digests are taken: what it changes is the scene, not the case's doing.
    prepare: Callable[[Ctx], Awaitable[None]] | None = None


def webhook(payload, *, secret: str = SECRET, age_ms: int = 0, uri: str = URL, headers: dict | None = None,
            body: bytes | None = None, chunked: bool = False) -> Send:
    """A CRM delivery: `payload` signed as HubSpot would, with the given faults."""
    async def send(ctx):
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        timestamp = str(int(time.time() * 1000) - age_ms)
        signed = {SIGNATURE: sign(secret, "POST", uri, raw, timestamp), TIMESTAMP: timestamp,
                  "content-type": "application/json"}
        content = raw if body is None else body
        return await ctx.anonymous.post("/webhooks/crm", content=stream(content) if chunked else content,
                                        headers={**signed, **(headers or {})})
    return send


def stream(data: bytes, size: int = 65_536):
    """A body sent in chunks with no Content-Length (Transfer-Encoding: chunked)."""
    async def chunks():
        for i in range(0, len(data), size):
            yield data[i:i + size]
    return chunks()


def api(method: str, path: str, *, client: str = "http", **kw) -> Send:
    async def send(ctx):
        return await getattr(ctx, client).request(method, path, **kw)
    return send


def with_token(method: str, path: str, token_of: Callable[[Ctx], Awaitable[str]], **kw) -> Send:
    async def send(ctx):
        token = await token_of(ctx)
        return await ctx.anonymous.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
    return send


def token_scoped(*scopes: str):
    async def make(ctx):
        from starter.security.tokens import create_token

        return (await create_token(ctx.pool, "scoped-" + "-".join(scopes), list(scopes), "catalogue"))[0]
    return make


async def prepare_revoked(ctx):
    from starter.security.tokens import create_token, revoke_token

    ctx.revoked = (await create_token(ctx.pool, "old-crm", ["admin"], "catalogue"))[0]
    await revoke_token(ctx.pool, "old-crm", "catalogue")


async def prepare_scoped(ctx):
    from starter.security.tokens import create_token

    ctx.read_only = (await create_token(ctx.pool, "reporting", ["read"], "catalogue"))[0]


def survey(token_of: Callable, data: dict | None = None, **kw) -> Send:
    async def send(ctx):
        return await ctx.anonymous.post(f"/nps/{token_of(ctx.settings)}",
                                        data=data if data is not None else {"score": "9"}, **kw)
    return send


def survey_raw(token_of: Callable, content: bytes, content_type: str, chunked: bool = False) -> Send:
    async def send(ctx):
        return await ctx.anonymous.post(f"/nps/{token_of(ctx.settings)}", headers={"content-type": content_type},
                                        content=stream(content) if chunked else content)
    return send


def csat_of(days: int = 7, ticket: str = "T-9", nps: bool = False) -> Callable:
    """A CSAT link's token for the demo sponsor (or, with `nps`, an NPS token offered to /csat)."""
    def token(settings):
        from activities.sla_comms import csat_token

        if nps:
            return token_for(settings, "dana.reyes@acme.example")
        return csat_token(settings, ticket, 0, "acme", "dana.reyes@acme.example",
                          datetime.now(timezone.utc) + timedelta(days=days))
    return token


def csat(token_of: Callable, data: dict | None = None) -> Send:
    async def send(ctx):
        return await ctx.anonymous.post(f"/csat/{token_of(ctx.settings)}", data=data if data is not None else {"score": "4"})
    return send


async def csat_answered(ctx):
    await ctx.pool.execute("INSERT INTO csat_responses (ticket_id, round, account_id, contact_email, score)"
                           " VALUES ('T-9', 0, 'acme', 'dana.reyes@acme.example', 5)")


async def invited(ctx, closed: bool = False):
    await ctx.pool.execute(
        "INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at, closed_at)"
        " VALUES ('2026-10', 'acme', $1, 'Lee Park', now() + interval '7 days', $2)",
        CONTACTS[0], datetime.now(timezone.utc) if closed else None)


async def closed_invitation(ctx):
    await invited(ctx, closed=True)


async def cancelled_cycle(ctx):
    """A real survey cycle for acme, sent, then cancelled by the CS team."""
    from starter.steering import launch_nps_cycle
    from tests.conftest import eventually
    from temporalio.client import WorkflowExecutionStatus

    handle = await launch_nps_cycle(ctx.env.client, ctx.pool, ctx.settings, "2026-10", ["acme"],
                                    task_queue=ctx.settings.task_queue)
    await asleep_on_timer(ctx.env.client, handle.id)
    await handle.cancel()

    async def cancelled():
        return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    await eventually(cancelled, "the survey cycle to end as cancelled")


def console_as(role: str, email: str = "pat.lee@tai.example"):
    """Log a console user with `role` in (a browser session with its CSRF token) before the digests."""
    async def prepare(ctx):
        from starter.console.auth import add_user
        from starter.http import app

        await add_user(ctx.pool, email, "Pat Lee", PASSWORD, role)
        ctx.console = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        form = await ctx.console.get("/console/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)[1]
        done = await ctx.console.post("/console/login", data={"email": email, "password": PASSWORD,
                                                              "csrf_token": csrf, "next": "/console/"})
        assert done.status_code == 303, done.text
        page = await ctx.console.get("/console/accounts/acme")
        ctx.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    return prepare


def console_post(path: str, **data) -> Send:
    async def send(ctx):
        return await ctx.console.post(path, data={"csrf_token": ctx.csrf, "account_id": "acme", **data})
    return send


def console_get(path: str) -> Send:
    async def send(ctx):
        return await ctx.console.get(path)
    return send


def unsubscribe_token(settings, days_ago: int = 0) -> str:
    from datetime import datetime, timezone

    from activities.mail_links import unsubscribe_link_for

    issued = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return unsubscribe_link_for(settings.email_link_secret.get_secret_value(), "lee.park@acme.example", "lifecycle",
                                "acme", issued)


def unsubscribe(token_of: Callable, body: bytes = b"List-Unsubscribe=One-Click",
                ctype: str = "application/x-www-form-urlencoded", method: str = "POST") -> Send:
    async def send(ctx):  # a customer's mail client: no token, no session
        url = f"/unsubscribe/{token_of(ctx.settings)}"
        if method == "GET":
            return await ctx.anonymous.get(url)
        return await ctx.anonymous.post(url, content=body, headers={"content-type": ctype})
    return send


def past(days: int = 30) -> str:
    return (date.today() - timedelta(days=days)).isoformat()


def vendor(path: str, body: bytes, headers_of: Callable[[bytes], dict] = lambda b: {}, chunked: bool = False) -> Send:
    """A delivery to a vendor endpoint: `body` with the headers `headers_of(body)` gives (its
    signature, usually); chunked: streamed with no Content-Length."""
    async def send(ctx):
        return await ctx.anonymous.post(path, content=stream(body) if chunked else body, headers=headers_of(body))
    return send


def hubspot(payload, **sign_kw) -> Send:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return vendor("/webhooks/hubspot", raw, lambda b: vendors.hubspot_headers(b, **sign_kw))


def salesforce(body: bytes, secret: str = vendors.SF_SECRET) -> Send:
    return vendor(f"/webhooks/salesforce/{secret}", body, lambda b: {"content-type": "text/xml"})


def zendesk(payload, **sign_kw) -> Send:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return vendor("/webhooks/zendesk", raw, lambda b: vendors.zendesk_headers(b, **sign_kw))


HS_WON = [vendors.hs_prop("deal", 20563118842, "dealstage", "closedwon")]
SF_WON = vendors.outbound(("04l5g000003TBGgAAO", "Opportunity", {"Id": "0065g0000078XRgAAM", "IsWon": "true"}))
ZD_TICKET = vendors.real("zendesk/trigger_ticket_created.json")
NESTED = b"[" * 100 + b"]" * 100
BOMB = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><soapenv:Envelope xmlns:soapenv='
        b'"http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol3;</soapenv:Body></soapenv:Envelope>')
XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
       b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&secret;'
       b'</soapenv:Body></soapenv:Envelope>')
HUGE = b"[" + b" " * 1_100_000 + b"]"


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


NO_SIGNATURE = {SIGNATURE: ""}
HTTP_CASES: dict[str, Case] = {
    # -- CRM webhook: who is calling ---------------------------------------------------
    "webhook wrong secret": Case(webhook([CLOSED_WON], secret="not-ours"), 401, "bad signature"),
    "webhook stale timestamp": Case(webhook([CLOSED_WON], age_ms=6 * 60_000), 401, "timestamp"),
    "webhook timestamp from the future": Case(webhook([CLOSED_WON], age_ms=-6 * 60_000), 401, "timestamp"),
    "webhook missing signature": Case(webhook([CLOSED_WON], headers=NO_SIGNATURE), 401,
                                      "missing X-HubSpot-Signature-v3"),
    "webhook timestamp not a number": Case(webhook([CLOSED_WON], headers={TIMESTAMP: "yesterday"}), 401,
                                           "X-HubSpot-Request-Timestamp is not a number"),
    "webhook signed for another URL": Case(webhook([CLOSED_WON], uri="http://test/webhooks/other"), 401,
                                           "bad signature"),
    "webhook body changed after signing": Case(
        webhook([CLOSED_WON], body=json.dumps([{**CLOSED_WON, "accountId": "acmf"}]).encode()), 401,
        "bad signature"),
    # -- CRM webhook: what it says ------------------------------------------------------
    "webhook malformed JSON": Case(webhook(b"[{not json"), 422, "malformed JSON"),
    "webhook body not UTF-8": Case(webhook(b"\xff\xfe[\x00]"), 422, "not UTF-8"),
    "webhook huge body": Case(webhook(b"[" + b" " * 1_100_000 + b"]"), 413, "body larger than 1000000 bytes"),
    "webhook empty batch": Case(webhook([]), 422, "expected 1 to 100 events"),
    "webhook event missing its type": Case(webhook({"eventId": 1}), 422, "event 0: subscriptionType: Field required"),
    "webhook eventId of the wrong type": Case(webhook([{**CLOSED_WON, "eventId": {"id": 1}}]), 422,
                                              "event 0: eventId"),
    "webhook occurredAt not a time": Case(webhook([{**CLOSED_WON, "occurredAt": "yesterday"}]), 422,
                                          "event 0: occurredAt"),
    "webhook accountId missing": Case(webhook([{k: v for k, v in CLOSED_WON.items() if k != "accountId"}]), 422,
                                      "event 0: accountId: Field required"),
    "webhook account id malformed": Case(webhook([{**CLOSED_WON, "accountId": "Nobody <b>"}]), 422,
                                         "event 0: accountId"),
    "webhook one bad event spoils the batch": Case(
        webhook([CLOSED_WON, event(9, "ticket.creation", ticketId="T-9", priority="urgent", subject="x")]), 422,
        "event 1: priority"),
    "webhook renewal date not a date": Case(
        webhook([event(3, "company.propertyChange", propertyName="renewal_date", propertyValue="next year")]), 422,
        "propertyValue: 'next year' is not a date"),
    "webhook renewal date in the past": Case(
        webhook([event(3, "company.propertyChange", propertyName="renewal_date", propertyValue=past())]), 422,
        "in the past"),
    "webhook ticket priority unknown": Case(
        webhook([event(4, "ticket.creation", ticketId="T-9", priority="P7", subject="x")]), 422, "priority"),
    "webhook ticket without subject": Case(
        webhook([event(5, "ticket.creation", ticketId="T-9", priority="P1")]), 422, "subject: missing"),
    "webhook body streamed past 1 MB (chunked, no Content-Length)": Case(
        vendor("/webhooks/crm", HUGE, lambda b: {}, chunked=True), 413, "body larger than 1000000 bytes"),
    "webhook JSON nested 100 deep": Case(webhook(NESTED), 422, "nested deeper than 32 levels"),
    # -- HubSpot: who is calling, and what it says ------------------------------------------
    "hubspot wrong secret": Case(hubspot(HS_WON, secret="not-ours"), 401, "bad signature"),
    "hubspot v1 wrong secret": Case(hubspot(HS_WON, secret="not-ours", version="v1"), 401, "bad signature"),
    "hubspot v2 signed for another URL": Case(hubspot(HS_WON, version="v2", uri="http://test/other"), 401,
                                              "bad signature"),
    "hubspot stale timestamp": Case(hubspot(HS_WON, age_ms=6 * 60_000), 401, "stale request"),
    "hubspot unknown signature version": Case(
        vendor("/webhooks/hubspot", json.dumps(HS_WON).encode(),
               lambda b: {"X-HubSpot-Signature": "00", "X-HubSpot-Signature-Version": "v9"}), 401,
        "X-HubSpot-Signature-Version: 'v9' is not v1, v2 or v3"),
    "hubspot signature header not ASCII": Case(
        vendor("/webhooks/hubspot", json.dumps(HS_WON).encode(),
               lambda b: {"X-HubSpot-Signature-v3": "signé".encode("latin-1"), "X-HubSpot-Request-Timestamp": "1"}),
        400, "x-hubspot-signature-v3: must be printable ASCII"),
    "hubspot portal not configured": Case(hubspot([{**HS_WON[0], "portalId": 99}]), 403,
                                          "event 0: portalId: 99 is not a HubSpot portal"),
    "hubspot malformed JSON": Case(hubspot(b"[{nope"), 422, "malformed JSON"),
    "hubspot JSON nested 100 deep": Case(hubspot(NESTED), 422, "nested deeper than 32 levels"),
    "hubspot 101 events": Case(hubspot(HS_WON * 101), 422, "expected 1 to 100 events, got 101"),
    "hubspot propertyValue a number": Case(hubspot([{**HS_WON[0], "propertyValue": 5}]), 422,
                                           "event 0: propertyValue: Input should be a valid string"),
    "hubspot property change without objectId": Case(
        hubspot([{k: v for k, v in HS_WON[0].items() if k != "objectId"}]), 422, "event 0: objectId: Field required"),
    "hubspot merge without merged ids": Case(hubspot([vendors.hs("company.merge", primaryObjectId=1)]), 422,
                                             "primaryObjectId and mergedObjectIds"),
    "hubspot huge body": Case(hubspot(HUGE), 413, "body larger than 1000000 bytes"),
    "hubspot body streamed past 1 MB": Case(vendor("/webhooks/hubspot", HUGE, vendors.hubspot_headers, chunked=True),
                                            413, "body larger than 1000000 bytes"),
    # -- Salesforce Outbound Messages ------------------------------------------------------
    "salesforce wrong path secret": Case(salesforce(SF_WON, secret="guess"), 403, "path secret"),
    "salesforce org not configured": Case(salesforce(vendors.outbound(
        ("04l5g000003TBGgAAO", "Opportunity", {"Id": "0065g0000078XRgAAM"}), org="00D000000000001EAA")), 403,
        "OrganizationId: 00D000000000001EAA is not a Salesforce org"),
    "salesforce malformed XML": Case(salesforce(b"<soapenv:Envelope><unclosed>"), 422, "malformed XML"),
    "salesforce XML bomb": Case(salesforce(BOMB), 422, "DTDs, entities and external references are refused"),
    "salesforce external entity": Case(salesforce(XXE), 422, "DTDs, entities and external references are refused"),
    "salesforce not an outbound message": Case(salesforce(
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body/>'
        b'</soapenv:Envelope>'), 422, "Body.notifications: missing"),
    "salesforce notification without its Id": Case(salesforce(SF_WON.replace(b"<Id>04l5g000003TBGgAAO</Id>", b"")),
                                                   422, "Notification 0: Id"),
    "salesforce sObject id not a Salesforce id": Case(salesforce(SF_WON.replace(b"0065g0000078XRgAAM", b"x'; --")),
                                                      422, "Notification 0: sObject.Id"),
    "salesforce 101 notifications": Case(salesforce(vendors.outbound(*[
        (f"04l5g000003T{i:03d}AAO", "Opportunity", {"Id": "0065g0000078XRgAAM"}) for i in range(101)])), 422,
        "Notification: expected 1 to 100, got 101"),
    "salesforce huge body": Case(vendor(f"/webhooks/salesforce/{vendors.SF_SECRET}", HUGE, chunked=True), 413,
                                 "body larger than 1000000 bytes"),
    # -- Zendesk -----------------------------------------------------------------------------
    "zendesk wrong secret": Case(zendesk(ZD_TICKET, secret="not-ours"), 401, "bad signature"),
    "zendesk stale timestamp": Case(zendesk(ZD_TICKET, age=timedelta(minutes=6)), 401, "stale request"),
    "zendesk missing signature": Case(vendor("/webhooks/zendesk", ZD_TICKET), 401,
                                      "missing X-Zendesk-Webhook-Signature"),
    "zendesk account not configured": Case(zendesk(vendors.zd_event("ticket.created", "1") | {"account_id": 5}), 403,
                                           "account_id: Zendesk account 5"),
    "zendesk malformed JSON": Case(zendesk(b'{"ticket": '), 422, "malformed JSON"),
    "zendesk trigger without its ticket": Case(zendesk({"source": "zendesk-trigger"}), 422, "ticket: missing"),
    "zendesk ticket id not a number": Case(zendesk(vendors.zd_event("ticket.created", "1 OR 1=1")), 422,
                                           "detail.id: String should match pattern"),
    "zendesk body streamed past 1 MB": Case(vendor("/webhooks/zendesk", HUGE, vendors.zendesk_headers, chunked=True),
                                            413, "body larger than 1000000 bytes"),
    # -- CRM task completions (write-back's other way) ---------------------------------------
    "hubspot task change without propertyName": Case(
        hubspot([vendors.hs("object.propertyChange", 70000000001, objectTypeId="0-27")]), 422,
        "objectId and propertyName"),
    "hubspot objectTypeId not an object type id": Case(
        hubspot([vendors.hs("object.propertyChange", 70000000001, objectTypeId="0-27; drop", propertyName="x",
                            propertyValue="COMPLETED")]), 422, "event 0: objectTypeId"),
    "salesforce Task notification without an Id": Case(salesforce(vendors.outbound(
        ("04l5g000003TBH1AAO", "Task", {"Status": "Completed"}))), 422, "Notification 0: sObject.Id"),
    # -- the HTTP API ---------------------------------------------------------------------
    "api unknown account": Case(api("POST", "/plays/onboarding", json={"account_id": "nobody"}), 404,
                                "unknown account 'nobody'"),
    "api malformed account id": Case(api("POST", "/plays/onboarding", json={"account_id": "ACME <b>"}), 422,
                                     "account_id"),
    "api account id of the wrong type": Case(api("POST", "/plays/onboarding", json={"account_id": 42}), 422,
                                             "account_id"),
    "api body not JSON": Case(api("POST", "/plays/onboarding", content=b"account=acme",
                                  headers={"content-type": "application/json"}), 422, "JSON"),
    "api unknown playbook": Case(api("POST", "/plays/upsell", json={"account_id": "acme"}), 404, "Not Found"),
    "api renewal date in the past": Case(api("POST", "/plays/renewal",
                                             json={"account_id": "acme", "renewal_date": past()}), 422,
                                         "is in the past"),
    "api renewal date impossible": Case(api("POST", "/plays/renewal",
                                            json={"account_id": "acme", "renewal_date": "2027-02-30"}), 422,
                                        "renewal_date"),
    "api renewal date beyond three years": Case(
        api("POST", "/plays/renewal", json={"account_id": "acme",
                                            "renewal_date": (date.today() + timedelta(days=2000)).isoformat()}),
        422, "days ahead"),
    "api unknown task": Case(api("POST", "/tasks/999999/complete"), 404, "999999"),
    "api task completed by nobody": Case(api("POST", "/tasks/1/complete", json={"completed_by": ""}), 422,
                                         "completed_by"),  # the actor is the token's name now
    "api steering a play that does not run": Case(api("POST", "/plays/renewal/acme/renewed",
                                                      json={"signed_by": "Dana"}), 404, "no renewal countdown"),
    # -- survey links ---------------------------------------------------------------------
    "survey link tampered": Case(survey(lambda s: token_for(s, CONTACTS[0])[:-4] + "AAAA"), 403,
                                 "not issued by us"),
    "survey link garbage": Case(survey(lambda s: "hello"), 403, "damaged"),
    "survey link expired": Case(survey(lambda s: token_for(s, CONTACTS[0], days=-1)), 410, "survey closed"),
    "survey score out of range": Case(survey(lambda s: token_for(s, CONTACTS[0]), {"score": "11"}), 422, "score"),
    "survey score not a number": Case(survey(lambda s: token_for(s, CONTACTS[0]), {"score": "nine"}), 422,
                                      "score"),
    # -- unsubscribe links (RFC 8058 one-click) ---------------------------------------------
    "unsubscribe link forged": Case(unsubscribe(lambda s: unsubscribe_token(s)[:-4] + "AAAA"), 403,
                                    "token: this unsubscribe link is damaged or was not issued by us"),
    "unsubscribe link garbage": Case(unsubscribe(lambda s: "not-a-token"), 403, "token: this unsubscribe link is damaged"),
    "unsubscribe link page forged": Case(unsubscribe(lambda s: "x.y", method="GET"), 403, "damaged"),
    "unsubscribe link expired": Case(unsubscribe(lambda s: unsubscribe_token(s, days_ago=401)), 410,
                                     "token: this unsubscribe link expired"),
    "unsubscribe without the one-click body": Case(unsubscribe(unsubscribe_token, body=b"unsubscribe=yes"), 422,
                                                   "List-Unsubscribe: send List-Unsubscribe=One-Click"),
    "unsubscribe with a JSON body": Case(
        unsubscribe(unsubscribe_token, body=b'{"List-Unsubscribe": "One-Click"}', ctype="application/json"), 422,
        "List-Unsubscribe"),
    "unsubscribe with a huge body": Case(unsubscribe(unsubscribe_token, body=b"List-Unsubscribe=One-Click&" + b"x" * 20_000),
                                         422, "List-Unsubscribe"),
    # -- the console ------------------------------------------------------------------------
    "console login without its CSRF token": Case(
        api("POST", "/console/login", client="anonymous",
            data={"email": "diana.hoang@tai.example", "password": "x" * 12}), 403, "expired"),
    # -- who may call the API (issue 16) ----------------------------------------------------
    "api launch without a token": Case(api("POST", "/plays/onboarding", client="anonymous",
                                           json={"account_id": "acme"}), 401, "Authorization"),
    "api churned without a token": Case(api("POST", "/plays/renewal/acme/churned", client="anonymous",
                                            json={"reason": "budget"}), 401, "Authorization"),
    "api task completion without a token": Case(api("POST", "/tasks/1/complete", client="anonymous"), 401,
                                                "Authorization"),
    "api accounts without a token": Case(api("GET", "/accounts", client="anonymous"), 401, "bearer token"),
    "api outbox without a token": Case(api("GET", "/outbox", client="anonymous"), 401, "bearer token"),
    "api docs without a login": Case(api("GET", "/openapi.json", client="anonymous"), 401, "console login"),
    "api made-up token": Case(api("POST", "/plays/onboarding", client="anonymous", json={"account_id": "acme"},
                                  headers={"Authorization": "Bearer csp_made-up"}), 401, "unknown, revoked"),
    "api revoked token": Case(with_token("POST", "/plays/onboarding", lambda ctx: _get(ctx, "revoked"),
                                         json={"account_id": "acme"}), 401, "revoked", prepare_revoked),
    "api read-only token launching": Case(with_token("POST", "/plays/onboarding", lambda ctx: _get(ctx, "read_only"),
                                                     json={"account_id": "acme"}), 403, "needs 'launch'",
                                          prepare_scoped),
    "api read-only token completing a task": Case(
        with_token("POST", "/tasks/1/complete", lambda ctx: _get(ctx, "read_only")), 403, "needs 'steer'",
        prepare_scoped),
    "api token header not ASCII": Case(api("GET", "/accounts", client="anonymous",
                                           headers={"Authorization": "Bearer csp_\u00e9t\u00e9".encode("utf-8")}),
                                       400, "authorization: must be printable ASCII"),
    "api another Host (DNS rebinding)": Case(api("GET", "/accounts", headers={"Host": "evil.example"}), 400,
                                             "Host: 'evil.example' is not served here"),
    "api actor given in the body": Case(api("POST", "/tasks/1/complete", json={"completed_by": "someone else"}), 422,
                                        "completed_by: Extra inputs are not permitted"),
    # -- sizes, depth and values that break things ---------------------------------------------
    "api body over the limit": Case(api("POST", "/plays/onboarding", json={"account_id": "acme", "x": "y" * 70_000}),
                                    413, "body larger than 65536 bytes"),
    "api 3 MB completed_by": Case(api("POST", "/tasks/1/complete", json={"completed_by": "x" * 3_000_000}), 413,
                                  "body larger than 65536 bytes"),
    "api chunked body over the limit": Case(api("POST", "/plays/onboarding", content=stream(b" " * 200_000),
                                                headers={"content-type": "application/json"}), 413,
                                            "body larger than 65536 bytes"),
    "api deeply nested JSON": Case(api("POST", "/plays/onboarding", content=deep(5_000),
                                       headers={"content-type": "application/json"}), 422,
                                   "JSON nested deeper than 32 levels"),
    "api reason with a line break": Case(api("POST", "/plays/renewal/acme/renewal-date",
                                             json={"renewal_date": "2030-01-01", "reason": "ok\r\nBcc: x@evil"}),
                                         422, "reason contains control"),
    "api signer with a bidi override": Case(api("POST", "/plays/renewal/acme/renewed",
                                                json={"signed_by": "Dana \u202eyeR"}), 422, "U+202E"),
    "api renewal signed to 2099": Case(api("POST", "/plays/renewal/acme/renewed",
                                           json={"signed_by": "Dana", "new_renewal_date": "2099-12-31"}), 422,
                                       "more than 5 years ahead"),
    "api task id beyond 64 bits": Case(api("POST", f"/tasks/{2**70}/complete"), 422, "task_id"),
    "api outbox limit out of range": Case(api("GET", "/outbox?limit=100000"), 422, "limit"),
    "api account id of 5000 characters in the path": Case(api("POST", "/plays/renewal/" + "a" * 5000 + "/churned",
                                                              json={"reason": "x"}), 422, "account_id"),
    # -- NUL (U+0000), which PostgreSQL text cannot hold: refused at the door, never a 500 ------
    "console account page with a NUL in its id": Case(console_get("/console/accounts/a%00b"), 400, "NUL",
                                                      console_as("viewer")),
    "console outbox search with a NUL": Case(console_get("/console/outbox?q=%00"), 400, "NUL", console_as("viewer")),
    "console suppression note with a NUL": Case(console_post("/console/suppressions", address="lee@acme.example",
                                                             category="survey", note="x\x00y"), 422, "NUL",
                                                console_as("cs_manager")),
    "webhook event id with a NUL": Case(webhook([{**CLOSED_WON, "eventId": "e\x00"}]), 422, "NUL"),
    "webhook ticket subject with a NUL": Case(webhook([event(9, "ticket.creation", ticketId="T-NUL", priority="P1",
                                                             subject="down\x00")]), 422, "NUL"),
    "webhook time past year 9999": Case(webhook([{**CLOSED_WON, "occurredAt": 10**20}]), 422, "occurredAt"),
    "survey answer without a score on a forged link": Case(survey(lambda s: "forged.link", {}), 403, "damaged"),
    "console play id that is no workflow id": Case(console_post("/console/plays/" + "x" * 300 + "/cancel"), 422,
                                                   "workflow_id", console_as("cs_manager")),
    "webhook chunked body over 1 MB": Case(webhook(b"[" + b" " * 1_100_000 + b"]", chunked=True), 413,
                                           "body larger than 1000000 bytes"),
    "webhook deeply nested JSON": Case(webhook(deep(3_000)), 422, "JSON nested deeper"),
    "webhook signature not ASCII": Case(webhook([CLOSED_WON], headers={SIGNATURE: "\u00e9t\u00e9".encode("utf-8")}),
                                        400, "x-hubspot-signature-v3: must be printable ASCII"),
    "survey body over the limit": Case(survey(lambda s: token_for(s, CONTACTS[0]), {"score": "9", "comment": "x" * 20_000}),
                                       413, "body larger than 16384 bytes"),
    "survey chunked body over the limit": Case(survey_raw(lambda s: token_for(s, CONTACTS[0]), b"score=9&comment=" +
                                                          b"x" * 40_000, "application/x-www-form-urlencoded",
                                                          chunked=True), 413, "body larger than 16384 bytes"),
    "survey deeply nested JSON": Case(survey_raw(lambda s: token_for(s, CONTACTS[0]), deep(5_000),
                                                 "application/json"), 422, "JSON nested deeper"),
    # -- survey links that were never sent or whose cycle ended -----------------------------------
    "survey link never sent (forged with the secret)": Case(
        survey(lambda s: token_for(s, "anyone@elsewhere.example")), 403, "not issued by us"),
    "survey link whose invitation closed": Case(survey(lambda s: token_for(s, CONTACTS[0])), 410, "survey closed",
                                                closed_invitation),
    "survey link of a cancelled cycle": Case(survey(lambda s: token_for(s, CONTACTS[0])), 410, "cancelled",
                                             cancelled_cycle),
    # -- the support CSAT survey (issue 19, ticket communications) ------------------------------
    "csat link tampered": Case(csat(lambda s: csat_of()(s)[:-4] + "AAAA"), 403, "damaged"),
    "csat link garbage": Case(csat(lambda s: "hello"), 403, "damaged"),
    "csat link expired": Case(csat(csat_of(days=-1)), 410, "survey closed"),
    "csat link that is an NPS link": Case(csat(csat_of(nps=True)), 403, "not issued by us"),
    "csat score above 5": Case(csat(csat_of(), {"score": "6"}), 422, "score: 6 is not between 1 and 5"),
    "csat score 0": Case(csat(csat_of(), {"score": "0"}), 422, "score: 0 is not between 1 and 5"),
    "csat score not a number": Case(csat(csat_of(), {"score": "good"}), 422, "score"),
    "csat score missing": Case(csat(csat_of(), {"comment": "fine"}), 422, "score"),
    "csat comment too long": Case(csat(csat_of(), {"score": "4", "comment": "x" * 5001}), 422, "comment"),
    "csat answer after the ticket's play ended": Case(csat(csat_of()), 410, "has ended"),
    "csat body over the limit": Case(csat(csat_of(), {"score": "4", "comment": "x" * 20_000}), 413,
                                     "body larger than 16384 bytes"),
    "csat answer replayed": Case(csat(csat_of(), {"score": "1"}), 409, "already answered", csat_answered),
    # -- the console, role by role ------------------------------------------------------------
    "console viewer cancelling a play": Case(console_post("/console/plays/onboarding-acme/cancel"), 403,
                                             "needs the CSM role or above", console_as("viewer")),
    "console viewer completing a task": Case(console_post("/console/tasks/1/complete"), 403, "CSM role or above",
                                             console_as("viewer")),
    "console CSM pausing another CSM's account": Case(console_post("/console/plays/onboarding-acme/pause"), 403,
                                                      "not in your book", console_as("csm")),
    "console CSM launching another CSM's account": Case(console_post("/console/launch", playbook="renewal",
                                                                     account="acme"), 403, "not in your book",
                                                        console_as("csm")),
    "console CS manager opening the token page": Case(console_get("/console/admin/tokens"), 403, "Admin role",
                                                      console_as("cs_manager")),
    "console form without its CSRF token": Case(
        lambda ctx: ctx.console.post("/console/plays/onboarding-acme/cancel", data={"account_id": "acme"}), 403,
        "did not come from the console", console_as("cs_manager")),
    "console huge page number": Case(console_get(f"/console/outbox?page_no={10**30}"), 422, "page_no",
                                     console_as("viewer")),
    "console task id beyond 64 bits": Case(console_post(f"/console/tasks/{2**70}/complete"), 422, "task_id",
                                           console_as("cs_manager")),
    "console audit filter not a date": Case(console_get("/console/audit?since=last+week"), 422,
                                            "is not a date (YYYY-MM-DD)", console_as("cs_manager")),
    "console admin demoting themselves": Case(console_post("/console/admin/users/pat.lee@tai.example/role",
                                                           role="viewer"), 409, "cannot take the admin role",
                                              console_as("admin")),
    "console single sign-on not configured": Case(console_get("/console/sso/callback?code=x&state=y"), 404,
                                                  "not configured", console_as("viewer")),
    "api basic credentials instead of a token": Case(api("GET", "/accounts", client="anonymous",
                                                         headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401,
                                                     "a bearer token is required"),
}


def _get(ctx, name: str) -> Awaitable[str]:
    async def value():
        return getattr(ctx, name)
    return value()


# The audit log records refusals by design (checked apart: only refusals may be added), and a
# token's or browser's last use is bookkeeping, not a change the input made.
NOT_DIGESTED = {"audit_log"}
BOOKKEEPING = {"last_used_at"}


async def table_digests(pool) -> dict[str, str]:
    """Every table's rows, digested: equal digests, equal contents."""
    tables = [r["table_name"] for r in await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    digests = {}
    for t in tables:
        if t in NOT_DIGESTED:
            continue
        columns = [r["column_name"] for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1"
            " ORDER BY ordinal_position", t) if r["column_name"] not in BOOKKEEPING]
        row = "row(" + ", ".join(f'x."{c}"' for c in columns) + ")::text"
        digests[t] = await pool.fetchval(
            f"SELECT md5(coalesce(string_agg({row}, '|' ORDER BY {row}), '')) FROM \"{t}\" x")
    return digests


async def audit_after(pool, last_id: int) -> list[str]:
    return [r["outcome"] for r in await pool.fetch("SELECT outcome FROM audit_log WHERE id > $1", last_id)]


async def plays(env) -> dict[str, tuple[str, int] | None]:
    """Each reachable play's run and history length; None when it does not exist."""
    found = {}
    for wid in PLAYS:
        handle = env.client.get_workflow_handle(wid)
        try:
            desc = await handle.describe()
            found[wid] = (desc.run_id, len((await handle.fetch_history()).events))
        except RPCError as exc:
            assert exc.status == RPCStatusCode.NOT_FOUND
            found[wid] = None
    return found


@pytest.mark.parametrize("case", HTTP_CASES.values(), ids=HTTP_CASES.keys())
async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(env, http, anonymous, pool, settings, case):
    # A play already running is the harder case: nothing may reach it either.
    await http.post("/plays/onboarding", json={"account_id": "acme"})
    # Until the play has done what it does at once (the welcome e-mail, the first tasks) and
    # sleeps on its timer, its own steps would change the digests.
    await asleep_on_timer(env.client, "onboarding-acme")
    ctx = Ctx(http=http, anonymous=anonymous, settings=settings, pool=pool, env=env)
    try:
        if case.prepare is not None:
            await case.prepare(ctx)
        before_rows, before_plays = await table_digests(pool), await plays(env)
        last_audit = await pool.fetchval("SELECT coalesce(max(id), 0) FROM audit_log")
        response = await case.send(ctx)
    finally:
        if ctx.console is not None:
            await ctx.console.aclose()
    assert response.status_code == case.status, response.text[:500]
    assert case.says in response.text and "Traceback" not in response.text
    assert await table_digests(pool) == before_rows
    assert await plays(env) == before_plays
    assert set(await audit_after(pool, last_audit)) <= {"refused"}  # a refusal may be recorded, nothing else


async def test_a_duplicate_event_is_acknowledged_and_changes_nothing(env, http, anonymous, pool, settings):
    ctx = Ctx(http=http, anonymous=anonymous, settings=settings, pool=pool, env=env)
    first = await webhook([CLOSED_WON])(ctx)
    assert first.json()["results"][0]["outcome"] == "started"
    # Until the play has done what it does at once (the welcome e-mail, the first tasks) and
    # sleeps on its timer, its own steps would change the digests.
    await asleep_on_timer(env.client, "onboarding-acme")
    before_rows, before_plays = await table_digests(pool), await plays(env)
    again = await webhook([CLOSED_WON])(ctx)
    assert again.status_code == 202 and again.json()["results"][0]["outcome"] == "duplicate"
    assert await table_digests(pool) == before_rows
    assert await plays(env) == before_plays


# -- mail to the inbound SMTP listener ---------------------------------------------------------
@dataclass
class Mail:
    rcpt: Callable[[object, str], str]  # (settings, a real recipient token) -> RCPT TO
    raw: bytes
    code: int
    says: str


DSN = (FIXTURES / "postfix_user_unknown.eml").read_bytes()
NOT_A_REPORT = b"From: someone@elsewhere.example\r\nSubject: hello\r\n\r\nJust saying hello.\r\n"
MAIL_CASES: dict[str, Mail] = {
    "inbound mailbox of another domain": Mail(lambda s, t: f"bounce+{t}@elsewhere.example", DSN, 550,
                                              "5.7.1 relaying denied"),
    "inbound unknown bounce token": Mail(lambda s, t: f"bounce+{'a' * 20}@{s.inbound_mail_domain}", DSN, 550,
                                         "5.1.1 no such mailbox"),
    "inbound unknown reply token": Mail(lambda s, t: f"reply+{'b' * 20}@{s.inbound_mail_domain}", NOT_A_REPORT, 550,
                                        "5.1.1 no such mailbox"),
    "inbound mailbox without a token": Mail(lambda s, t: f"info@{s.inbound_mail_domain}", NOT_A_REPORT, 550,
                                            "5.1.1 no such mailbox"),
    "inbound token of the wrong shape": Mail(lambda s, t: f"bounce+{t}x@{s.inbound_mail_domain}", DSN, 550,
                                             "5.1.1 no such mailbox"),
    "inbound bounce address given a non-report": Mail(lambda s, t: f"bounce+{t}@{s.inbound_mail_domain}", NOT_A_REPORT,
                                                      550, "5.6.0 this address only takes delivery status"),
    "inbound message over the size limit": Mail(lambda s, t: f"bounce+{t}@{s.inbound_mail_domain}",
                                                DSN + (b"x" * 70 + b"\r\n") * 400, 552, "Too much mail data"),
}


async def a_sent_email(pool, settings) -> str:
    """A recipient token of an e-mail sent to a contact (whatever the hour: no send window here)."""
    from activities.accounts import fetch_account, fetch_staff
    from activities.email import Mailer, resolve_roles
    from core.models import EmailTemplate, PlayRef

    account, staff = await fetch_account(pool, "acme"), await fetch_staff(pool)
    await Mailer(pool, settings).deliver(
        PlayRef(workflow_id="renewal-acme", play_id="run1", account_id="acme"), "email/hello",
        EmailTemplate(name="t.html.j2", subject="Hello", body="<html><body>Hi</body></html>", category="lifecycle"),
        resolve_roles(["contacts"], account, staff), [], {}, account, staff)
    return await pool.fetchval("SELECT r.token FROM communication_recipients r JOIN communications c"
                               " ON c.id = r.communication_id WHERE c.step = 'email/hello' ORDER BY r.id LIMIT 1")


@pytest.mark.parametrize("case", MAIL_CASES.values(), ids=MAIL_CASES.keys())
async def test_bad_mail_to_the_inbound_listener_is_refused_and_changes_nothing(env, http, pool, settings, case):
    from starter.inbound_mail import start_listener

    await http.post("/plays/onboarding", json={"account_id": "acme"})
    await asleep_on_timer(env.client, "onboarding-acme")
    port = free_port()
    server = await start_listener(pool, env.client, settings.model_copy(update={"inbound_max_bytes": 20_000}),
                                  "127.0.0.1", port, settings.task_queue)
    try:
        token = await a_sent_email(pool, settings)
        before_rows, before_plays = await table_digests(pool), await plays(env)
        code, text = await deliver_to(port, "", case.rcpt(settings, token), case.raw)
    finally:
        server.close()
        await server.wait_closed()
    assert code == case.code and case.says in text, (code, text)
    assert await table_digests(pool) == before_rows
    assert await plays(env) == before_plays


# -- playbook files --------------------------------------------------------------------------
@dataclass
class Broken:
    file: str  # under playbooks/
    old: str
    new: str
    says: str  # field and message after "file:line: "
    at: str | None = None  # the line the error must name: the first line containing this (default: `new`)


PLAYBOOK_CASES: dict[str, Broken] = {
    "onboarding negative day": Broken("onboarding.yaml", "        day: 2\n", "        day: -2\n",
                                      "phases[0].tasks[1].day: Input should be greater than 0"),
    "onboarding YAML syntax": Broken("onboarding.yaml", "    first_day: 4\n", "    first_day: [4\n", "YAML syntax",
                                     at="    last_day: 8"),
    "onboarding unknown priority": Broken("onboarding.yaml", "        priority: P1\n", "        priority: urgent\n",
                                          "phases[0].tasks[0].priority"),
    "renewal negative offset": Broken("renewal.yaml", "    days_before: 180\n", "    days_before: -180\n",
                                      "countdown[0].days_before: Input should be greater than or equal to 0"),
    "renewal YAML tab indent": Broken("renewal.yaml", "max_days_ahead: 1095\n", "max_days_ahead:\t1095\n\t- x\n",
                                      "YAML syntax", at="max_days_ahead"),
    "sla YAML syntax": Broken("sla.yaml", "response: {amount: 30, unit: minutes}",
                              "response: {amount: 30, unit: minutes", "YAML syntax",
                              at="resolution: {amount: 4, unit: hours}"),
    "sla negative target": Broken("sla.yaml", "response: {amount: 30, unit: minutes}",
                                  "response: {amount: -30, unit: minutes}", "amount"),
    "sla names a tier the profile does not have": Broken(
        "sla.yaml", "  Starter:\n    targets:", "  Basic:\n    targets:", "tiers.Basic: 'Basic' is not a tier of profile tai",
        at="  Basic:"),
    "sla names a priority the profile does not have": Broken(
        "sla.yaml", "      P3:\n        response: {amount: 8, unit: business_hours}",
        "      P4:\n        response: {amount: 8, unit: business_hours}",
        "tiers.Enterprise.targets.P4: 'P4' is not a priority of profile tai", at="      P4:"),
    "sla ladder rule names a role the profile does not declare": Broken(
        "sla.yaml", "    role: vp_engineering\n", "    role: vp_enginering\n",
        "ladder[3].role: 'vp_enginering' is not a role of profile tai"),
    "sla tier ladder names a role the profile does not declare": Broken(
        "sla.yaml", "    ladder: [support_team, csm, cs_manager]\n", "    ladder: [support_team, csm, cfo]\n",
        "tiers.Starter.ladder[2]: 'cfo' is not a role of profile tai"),
    "sla rule that does nothing": Broken(
        "sla.yaml", "    open_hours: 24\n    level: 2\n", "    open_hours: 24\n",
        "ladder[7].level: the rule does nothing", at="  - label: P2 unresolved 24 hours"),
    "profile staff role that is an account role": Broken(
        "profiles/tai/profile.yaml", "  coo: COO\n", "  coo: COO\n  csm: CSM\n",
        "staff_roles.csm: csm is an account role", at="  csm: CSM"),
    "profile opening hours not HH:MM": Broken(
        "profiles/tai/profile.yaml", '      monday: ["09:00-18:00"]', '      monday: ["09:00-25:00"]',
        "support_regions[0].hours.monday[0]: '09:00-25:00' is not HH:MM-HH:MM"),
    "profile open spells overlap": Broken(
        "profiles/tai/profile.yaml", '      tuesday: ["09:00-18:00"]', '      tuesday: ["09:00-18:00", "17:00-20:00"]',
        "open spells overlap"),
    "profile holidays of an unknown country": Broken(
        "profiles/tai/profile.yaml", "    holidays: US\n", "    holidays: ZZ\n",
        "support_regions[0].holidays: the holidays package has no calendar for country 'ZZ'"),
    "profile tier bounds rising": Broken(
        "profiles/tai/profile.yaml", "      at_least: 25000\n", "      at_least: 250000\n",
        "tiers.levels[1].at_least: bounds must fall from the first tier to the last"),
    "profile priority key with a space": Broken(
        "profiles/tai/profile.yaml", "  - key: P3\n", "  - key: P 3\n", "priorities[3].key: String should match pattern"),
    "profile help-desk priority map names an unknown priority": Broken(
        "profiles/tai/profile.yaml", "staff_roles:\n",
        "ticket_priorities:\n  map: {urgent: P9}\n  default: P2\nstaff_roles:\n",
        "ticket_priorities.map.urgent: 'P9' is not a priority of this profile", at="  map: {urgent: P9}"),
    "sla update cadence for an urgent priority": Broken(
        "sla.yaml", "      P1: {amount: 4, unit: hours}\n", "      P0: {amount: 4, unit: hours}\n",
        "communications.updates.every: P0 already get p0_updates", at="    every:"),
    "sla target of more than a year": Broken("sla.yaml", "resolution: {amount: 4, unit: hours}           # with",
                                             "resolution: {amount: 1e308, unit: hours}           # with",
                                             "amount: 1e+308 hours is more than a year"),
    "sla ladder multiple of the target too large": Broken("sla.yaml", "    at_sla: 2.0\n", "    at_sla: 1e308\n",
                                                          "Input should be less than or equal to 100"),
    "sla ladder open hours too large": Broken("sla.yaml", "    open_hours: 8\n", "    open_hours: 1e308\n",
                                              "Input should be less than or equal to 8760"),
    "sla P0 updates more often than every 5 minutes": Broken("sla.yaml", "  every_minutes: 30\n", "  every_minutes: 0\n",
                                                              "every_minutes: Input should be greater than or equal to 5"),
    "sla update cadence under a quarter hour": Broken(
        "sla.yaml", "      P1: {amount: 4, unit: hours}\n", "      P1: {amount: 0.005, unit: hours}\n",
        "an update every 0.005 hours: give 0.25 to 8,760 hours", at="      P1: {amount: 0.005"),
    "profile business day of under an hour": Broken(
        "profiles/tai/profile.yaml", "    business_day_hours: 9\n", "    business_day_hours: 0.000000001\n",
        "business_day_hours: Input should be greater than or equal to 1"),
    "sla template name longer than a file name": Broken(
        "sla.yaml", "  template: sla/breach_notice.html.j2\n", "  template: sla/" + "b" * 300 + ".html.j2\n",
        "template", at="  template: sla/bbb"),
    "sla nested too deeply": Broken("sla.yaml", "version: 1\n", "version: 1\ndeep: " + "[" * 5000 + "]" * 5000 + "\n",
                                    "YAML nested too deeply", at="deep: [[["),
    "sla approaching fraction over 1": Broken("sla.yaml", "    at_fraction: 0.75", "    at_fraction: 1.5",
                                              "communications.approaching.at_fraction"),
    "nps negative reminder offset": Broken("nps.yaml", "reminder_after_days: 4", "reminder_after_days: -4",
                                           "reminder_after_days: Input should be greater than 0"),
    "nps YAML colon in a value": Broken("nps.yaml", "expires_after_days: 7", "expires_after_days: 7: days",
                                        "YAML syntax: mapping values are not allowed here"),
    "churn YAML syntax": Broken("churn.yaml", "version: 1\n", "version: 1\n  bad: [\n", "YAML syntax", at="bad: ["),
    "scoring threshold not a number": Broken("churn_scoring.yaml", "  - {band: YELLOW, up_to: 40}",
                                             "  - {band: YELLOW, up_to: \"forty\"}", "bands[1].up_to"),
    "triggers unknown playbook": Broken("triggers.yaml", "      playbook: onboarding\n",
                                        "      playbook: onbording\n", "triggers[0].start.playbook"),
    "webhook connections portal id not a number": Broken(
        "crm/connections.yaml", "portal_id: 24681357", "portal_id: twenty", "hubspot[0].portal_id"),
    "webhook connections mapping file missing": Broken(
        "crm/connections.yaml", "mapping: zendesk.yaml", "mapping: zendsk.yaml",
        "zendesk[0].mapping: no mapping file 'zendsk.yaml'"),
    "webhook mapping ticket stage unknown": Broken(
        "crm/hubspot.yaml", '"4": closed', '"4": done', "webhooks.ticket_stages: 'done' is not a ticket stage"),
    # -- CRM content (playbooks/crm/): what an import reads ---------------------------------
    "crm mapping reads ARR as a date": Broken(
        "crm/hubspot.yaml", "property: current_arr, type: money}", "property: current_arr, type: date}",
        "accounts.fields.arr.type: arr is read as money, not date"),
    "crm mapping of a field we do not have": Broken(
        "crm/salesforce.yaml", "    vertical: {columns: [INDUSTRY], property: Industry}\n",
        "    verticals: {columns: [INDUSTRY], property: Industry}\n",
        "accounts.fields.verticals: not a field of an account"),
    "crm mapping YAML syntax": Broken("crm/salesforce.yaml", "connection: salesforce\n", "connection: [salesforce\n",
                                      "YAML syntax", at="default_currency: USD"),
    "crm example mapping maps a tier we do not have": Broken(
        "crm/examples/cs_template.yaml", "values: {Strategic: Enterprise,", "values: {Strategic: Platinum,",
        "accounts.fields.tier.values: 'Platinum' is not a tier"),
    "crm team default CSM not on the team": Broken("crm/team.yaml", "default_csm: casey.morgan@tai.example",
                                                   "default_csm: nobody@tai.example",
                                                   "default_csm: must be one of the csms listed"),
    "crm currency rate negative": Broken("crm/currencies.yaml", "  EUR: 1.08", "  EUR: -1.08",
                                         "usd_per_unit: EUR: a rate must be positive", at="usd_per_unit:"),
    "notifications route to an unknown destination": Broken(
        "notifications.yaml", "    to: [escalations, role]\n", "    to: [escalation, role]\n",
        "routes[0].to: no destination 'escalation'"),
    "notifications unknown event": Broken(
        "notifications.yaml", "    events: [ticket.incident]\n", "    events: [ticket.incidents]\n",
        "routes[3].events[0]: Input should be"),
    "notifications Slack channel by name": Broken(
        "notifications.yaml", "critical-alerts: {slack_channel: C0CRITALRT}", 'critical-alerts: {slack_channel: "#crit"}',
        "destinations.critical-alerts.slack_channel: String should match pattern"),
    "notifications webhook over plain http": Broken(
        "notifications.yaml", "webhooks: []\n",
        "webhooks:\n  - name: tools\n    url: http://hooks.example.com/cs\n    events: [play.started]\n",
        "webhooks[0].url: must be https", at="    url: http://hooks.example.com/cs"),
    "notifications role that does not exist": Broken(
        "notifications.yaml", "  csm: [cs-alerts]\n", "  cms: [cs-alerts]\n", "roles.cms: not a role"),
    "mapping writes back a property it also reads": Broken(
        "crm/salesforce.yaml", "health_score: CS_Health_Score__c", "health_score: Health_Score__c",
        "write_back.properties.health_score: Health_Score__c is also read from this CRM"),
    "send window time not HH:MM": Broken("onboarding.yaml", 'send_window: {opens: "09:00", closes: "17:00"}',
                                         'send_window: {opens: "9am", closes: "17:00"}', "send_window",
                                         at="send_window:"),
    "customer e-mail classed internal": Broken(
        "renewal.yaml", "        reach_another_way: true\n        # Reminders",
        "        reach_another_way: true\n        category: internal\n        # Reminders",
        "cannot be internal", at="category: internal"),
    "follow-ups out of order": Broken("renewal.yaml", "          - after_working_days: 10",
                                      "          - after_working_days: 3",
                                      "follow_ups: must be in rising order", at="follow_ups:"),
    "meeting without lead time": Broken("churn.yaml", "lead_working_days: 2", "lead_working_days: 0",
                                        "lead_working_days: Input should be greater than or equal to 1",
                                        at="meeting: {title"),
    "team holidays of an unknown country": Broken("onboarding.yaml", "team_country: US", "team_country: ZZ",
                                                  "team_country: the holidays package has no calendar"),
    "template unknown variable": Broken("templates/onboarding/health_check.html.j2", "{{ account.name }}",
                                        "{{ account.nickname }}", "has no attribute 'nickname'"),
    "template escaping the sandbox via __class__": Broken(
        "templates/onboarding/health_check.html.j2", "{{ account.name }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "access to attribute '__class__' of 'str' object is unsafe"),
    "template escaping the sandbox via globals": Broken(
        "templates/onboarding/health_check.html.j2", "{{ account.name }}",
        "{{ cycler.__init__.__globals__.os.system('id') }}",
        "access to attribute '__init__' of 'type' object is unsafe"),
}


@pytest.mark.parametrize("case", PLAYBOOK_CASES.values(), ids=PLAYBOOK_CASES.keys())
async def test_a_broken_playbook_names_file_line_and_field_and_launches_nothing(env, pool, settings, folder, case):
    path = folder / case.file
    text = path.read_text()
    assert case.old in text, f"the shipped {case.file} changed: update this case"
    text = text.replace(case.old, case.new, 1)
    path.write_text(text)
    # A YAML file's problems start with its path; a template's name the template and its line
    # after the YAML line that uses it.
    named = str(path) if path.suffix == ".yaml" else str(path.relative_to(folder / "templates"))
    problems = [p for p in validate_all(folder) if named in p]
    assert problems, f"{case.file} was accepted"
    marker = (case.at or case.new).strip()
    line = next(n for n, content in enumerate(text.splitlines(), 1) if marker in content)
    wanted = re.compile(rf"{re.escape(named)}:{line}: .*{re.escape(case.says)}")
    assert any(wanted.search(p) for p in problems), problems
    assert all("Traceback" not in p for p in problems)
    if case.file.startswith(("onboarding", "templates/onboarding")):
        before = await table_digests(pool)
        with pytest.raises(PlaybookError):
            await launch_onboarding(env.client, pool, settings.model_copy(update={"playbooks_dir": folder}), "acme",
                                    "catalogue")
        assert await table_digests(pool) == before
        assert (await plays(env))["onboarding-acme"] is None


def test_the_catalogue_has_at_least_a_hundred_and_fifty_cases():
    assert len(HTTP_CASES) + len(PLAYBOOK_CASES) + len(IMPORT_CASES) + len(UPLOAD_CASES) + len(MAIL_CASES) + 1 >= 150


# -- CRM imports: files and mappings that cannot be imported -------------------------------------
CRM_DIR = PLAYBOOKS_DIR / "crm"
IMPORT_FIXTURES = Path(__file__).parent / "starter" / "book" / "fixtures"


@dataclass
class BadImport:
    dialect: str
    accounts: bytes | None  # the file's content (None: no such file given)
    contacts: bytes | None = None
    says: str = ""
    mapping: str | None = None  # a mapping file's content instead of the shipped one


def _hubspot(name: str) -> bytes:
    return (IMPORT_FIXTURES / "hubspot" / name).read_bytes()


IMPORT_CASES: dict[str, BadImport] = {
    "import file not UTF-8": BadImport("hubspot", _hubspot("companies.csv").replace(
        "Königsbach".encode(), "Königsbach".encode("cp1252")), says="accounts.csv:3: not UTF-8 text"),
    "import quote never closed, to the end of a big file": BadImport(
        "hubspot", _hubspot("companies.csv") + b'"30000000099","' + b"x" * 140_000,
        says="accounts.csv:11: a value runs on for more than 131,072 characters: a quote is not closed"),
    "import contacts export given as companies": BadImport(
        "salesforce", (IMPORT_FIXTURES / "salesforce" / "extract_Contact.csv").read_bytes().replace(b'"ID"', b'"SFID"'),
        says="accounts.csv:1: no column for the record id"),
    "import companies export given as contacts": BadImport(
        "hubspot", None, _hubspot("companies.csv"), says="contacts.csv:1: no column for the contacts' companies"),
    "import Excel 97-2003 workbook": BadImport("hubspot", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512,
                                               says="accounts.csv:1: an Excel 97-2003 workbook (.xls)"),
    "import a ZIP that is no workbook": BadImport("hubspot", b"PK\x03\x04" + b"\0" * 64,
                                                  says="accounts.csv:1: not an XLSX workbook"),
    "import binary garbage": BadImport("hubspot", bytes(range(256)) * 8,
                                       says="accounts.csv:1: this is not a text file"),
    "import too many columns": BadImport("hubspot", (",".join(f"c{i}" for i in range(600)) + "\n").encode(),
                                         says="accounts.csv:1: 600 columns; at most 500 are read"),
    "import empty file": BadImport("hubspot", b"", says="accounts.csv:1: the file is empty"),
    "import mapping of another CRM": BadImport("csv", _hubspot("companies.csv"),
                                               mapping=(CRM_DIR / "hubspot.yaml").read_text(),
                                               says="mapping.yaml:1: source: this mapping reads hubspot files"),
    "import mapping with a field we do not have": BadImport(
        "csv", _hubspot("companies.csv"), says="accounts.fields.nickname: not a field of an account",
        mapping=(CRM_DIR / "examples" / "cs_template.yaml").read_text().replace(
            "    domain: {columns: [Website, Domain, Site web]}", "    nickname: {columns: [Website]}")),
    "import mapping without a contacts section": BadImport(
        "csv", None, _hubspot("contacts.csv"), says="has no contacts section",
        mapping="version: 1\nsource: csv\nconnection: mine\naccounts:\n  id: {columns: [Id]}\n"
                "  fields: {name: {columns: [Name]}}\n"),
}


@pytest.mark.parametrize("case", IMPORT_CASES.values(), ids=IMPORT_CASES.keys())
async def test_an_unusable_import_says_file_line_and_writes_nothing(env, pool, tmp_path, case):
    from starter.book.importer import (
        ImportFile, ImportProblem, load_mapping, load_rates, load_team, run_import,
    )

    files = {}
    for kind, content in (("accounts", case.accounts), ("contacts", case.contacts)):
        if content is not None:
            (tmp_path / f"{kind}.csv").write_bytes(content)
            files[kind] = ImportFile(tmp_path / f"{kind}.csv")
    before_rows, before_plays = await table_digests(pool), await plays(env)
    with pytest.raises((ImportProblem, PlaybookError)) as refused:
        path = CRM_DIR / f"{case.dialect}.yaml"
        if case.mapping is not None:
            path = tmp_path / "mapping.yaml"
            path.write_text(case.mapping)
        mapping = load_mapping(path, case.dialect)
        await run_import(pool, mapping, dialect=case.dialect, **files, team=load_team(CRM_DIR / "team.yaml"),
                         rates=load_rates(CRM_DIR / "currencies.yaml"), apply=True, run_by="catalogue")
    assert case.says in str(refused.value) and "Traceback" not in str(refused.value)
    assert await table_digests(pool) == before_rows
    assert await plays(env) == before_plays


# -- the console's Import page: uploads refused at once, nothing kept ----------------------------
def _upload(files: dict, data: dict | None = None, csrf: bool = True, content_length: int | None = None) -> Callable:
    async def send(http, csrf_token):
        form = {"mapping": "hubspot", **(data or {})}
        if csrf:
            form["csrf_token"] = csrf_token
        request = http.build_request("POST", "/console/imports", data=form, files=files)
        if content_length is not None:
            request.headers["content-length"] = str(content_length)
        return await http.send(request)
    return send


UPLOAD_CASES: dict[str, Case] = {
    "upload without its CSRF token": Case(_upload({"accounts": ("companies.csv", _hubspot("companies.csv"))},
                                                  csrf=False), 403, "did not come from the console"),
    "upload of no file": Case(_upload({"accounts": ("", b"")}), 422, "files: choose the accounts"),
    "upload of the wrong export": Case(_upload({"accounts": ("contacts.csv", _hubspot("companies.csv")
                                                             .replace(b"Record ID", b"Id"))}), 422,
                                       "contacts.csv:1: no column for the record id"),
    "upload of a binary file": Case(_upload({"accounts": ("ARR.csv", bytes(range(256)) * 8)}), 422,
                                    "ARR.csv:1: this is not a text file"),
    "upload larger than allowed": Case(_upload({"accounts": ("big.csv", b"Record ID\n" + b"1\n" * 700_000)}), 413,
                                       "larger than the 1 MB"),
    "upload that says it is small and is not": Case(
        _upload({"accounts": ("big.csv", b"Record ID\n" + b"1\n" * 700_000)}, content_length=1000), 413,
        "larger than the 1 MB"),
    "upload with an unknown mapping": Case(_upload({"accounts": ("c.csv", _hubspot("companies.csv"))},
                                                   {"mapping": "../../etc/passwd"}), 422, "mapping: choose one"),
    "upload with a broken mapping of one's own": Case(_upload(
        {"accounts": ("c.csv", _hubspot("companies.csv")),
         "mapping_file": ("my-mapping.yaml", b"version: 1\nsource: [\n")},
        {"mapping": "upload"}), 422, "my-mapping.yaml:3: YAML syntax"),
    "confirm an import that does not exist": Case(
        lambda http, csrf: http.post("/console/imports/AAAAAAAAAAAAAAAAAAAAAA/apply", data={"csrf_token": csrf}),
        404, "There is no such import"),
    "confirm with a path for a token": Case(
        lambda http, csrf: http.post("/console/imports/..%2F..%2Fpg/apply", data={"csrf_token": csrf}), 404, ""),
}


@pytest.mark.parametrize("case", UPLOAD_CASES.values(), ids=UPLOAD_CASES.keys())
async def test_a_bad_upload_gets_a_clear_4xx_and_keeps_nothing(env, http, pool, settings, case):
    from starter.console.auth import SESSION_COOKIE, add_user, log_in, session_user

    settings.import_upload_max_mb = 1
    await add_user(pool, "ops@tai.example", "Ops", "a long enough password", role="cs_manager")  # imports: CS managers
    token = (await log_in(pool, settings, "ops@tai.example", "a long enough password")).token
    http.cookies.set(SESSION_COOKIE, token)
    csrf = (await session_user(pool, token)).csrf_token
    before_rows, before_plays = await table_digests(pool), await plays(env)
    response = await case.send(http, csrf)
    assert response.status_code == case.status, response.text[:500]
    assert case.says in response.text and "Traceback" not in response.text
    assert await table_digests(pool) == before_rows
    assert await plays(env) == before_plays
    uploads = settings.data_dir / "imports"
    assert not uploads.exists() or not any(uploads.iterdir())
