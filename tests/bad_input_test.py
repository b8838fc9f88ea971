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
from datetime import date, timedelta
from typing import Awaitable, Callable

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode

from playbooks.loader import PlaybookError, validate_all
from starter.steering import launch_onboarding
from starter.webhooks import SIGNATURE, TIMESTAMP, sign
from tests.conftest import asleep_on_timer
from tests.starter.webhook_test import CLOSED_WON, SECRET, URL, event
from tests.starter.webhooks import vendors
from tests.workflows.nps_test import CONTACTS, token_for

Send = Callable[[httpx.AsyncClient, object], Awaitable[httpx.Response]]
# Every play an input in this catalogue could start or move.
PLAYS = ["onboarding-acme", "renewal-acme", "churn-acme", "sla-T-9", "onboarding-nobody", "sla-ZD-48213",
         "sla-ZD-1", "onboarding-northwind-traders-ltd",
         f"nps-2026-10-{CONTACTS[0]}", "nps-cycle-2026-10"]


@dataclass
class Case:
    send: Send
    status: int
    says: str  # the words (usually the field) the answer must contain


def webhook(payload, *, secret: str = SECRET, age_ms: int = 0, uri: str = URL, headers: dict | None = None,
            body: bytes | None = None) -> Send:
    """A CRM delivery: `payload` signed as HubSpot would, with the given faults."""
    async def send(http, _settings):
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        timestamp = str(int(time.time() * 1000) - age_ms)
        signed = {SIGNATURE: sign(secret, "POST", uri, raw, timestamp), TIMESTAMP: timestamp,
                  "content-type": "application/json"}
        return await http.post("/webhooks/crm", content=raw if body is None else body,
                               headers={**signed, **(headers or {})})
    return send


def api(method: str, path: str, **kw) -> Send:
    async def send(http, _settings):
        return await http.request(method, path, **kw)
    return send


def survey(token_of: Callable, data: dict | None = None, **kw) -> Send:
    async def send(http, settings):
        return await http.post(f"/nps/{token_of(settings)}", data=data if data is not None else {"score": "9"}, **kw)
    return send


def past(days: int = 30) -> str:
    return (date.today() - timedelta(days=days)).isoformat()


def vendor(path: str, body: bytes, headers_of: Callable[[bytes], dict] = lambda b: {}, chunked: bool = False) -> Send:
    """A delivery to a vendor endpoint: `body` with the headers `headers_of(body)` gives (its
    signature, usually); chunked: streamed with no Content-Length."""
    async def send(http, _settings):
        async def chunks():
            for i in range(0, len(body), 65_536):
                yield body[i:i + 65_536]
        return await http.post(path, content=chunks() if chunked else body, headers=headers_of(body))
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
        401,
        "not printable ASCII"),
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
        ("04l5g000003TBGgAAO", "Opportunity", {"Id": "0065g0000078XRgAAM"}), org="00D000000000001AAA")), 403,
        "OrganizationId: 00D000000000001AAA is not a Salesforce org"),
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
    "api unknown task": Case(api("POST", "/tasks/999999/complete", json={"completed_by": "casey"}), 404, "999999"),
    "api task completed by nobody": Case(api("POST", "/tasks/1/complete", json={"completed_by": ""}), 422,
                                         "completed_by"),
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
    # -- the console ------------------------------------------------------------------------
    "console login without its CSRF token": Case(
        api("POST", "/console/login", data={"email": "diana.hoang@tai.example", "password": "x" * 12}), 403,
        "expired"),
}


async def table_digests(pool) -> dict[str, str]:
    """Every table's rows, digested: equal digests, equal contents."""
    tables = [r["table_name"] for r in await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    return {t: await pool.fetchval(
        f'SELECT md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) FROM "{t}" x') for t in tables}


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
async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(env, http, pool, settings, case):
    # A play already running is the harder case: nothing may reach it either.
    await http.post("/plays/onboarding", json={"account_id": "acme"})
    # Until the play has done what it does at once (the welcome e-mail, the first tasks) and
    # sleeps on its timer, its own steps would change the digests.
    await asleep_on_timer(env.client, "onboarding-acme")
    before_rows, before_plays = await table_digests(pool), await plays(env)
    response = await case.send(http, settings)
    assert response.status_code == case.status, response.text[:500]
    assert case.says in response.text and "Traceback" not in response.text
    assert await table_digests(pool) == before_rows
    assert await plays(env) == before_plays


async def test_a_duplicate_event_is_acknowledged_and_changes_nothing(env, http, pool, settings):
    first = await webhook([CLOSED_WON])(http, settings)
    assert first.json()["results"][0]["outcome"] == "started"
    # Until the play has done what it does at once (the welcome e-mail, the first tasks) and
    # sleeps on its timer, its own steps would change the digests.
    await asleep_on_timer(env.client, "onboarding-acme")
    before_rows, before_plays = await table_digests(pool), await plays(env)
    again = await webhook([CLOSED_WON])(http, settings)
    assert again.status_code == 202 and again.json()["results"][0]["outcome"] == "duplicate"
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


def test_the_catalogue_has_at_least_thirty_cases():
    assert len(HTTP_CASES) + len(PLAYBOOK_CASES) + 1 >= 30
