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
from tests.conftest import asleep_on_timer, deliver_to, free_port
from tests.inbound.dsn_test import FIXTURES
from tests.starter.webhook_test import CLOSED_WON, SECRET, URL, event
from tests.workflows.nps_test import CONTACTS, token_for

Send = Callable[[httpx.AsyncClient, object], Awaitable[httpx.Response]]
# Every play an input in this catalogue could start or move.
PLAYS = ["onboarding-acme", "renewal-acme", "churn-acme", "sla-T-9", "onboarding-nobody",
         f"nps-2026-10-{CONTACTS[0]}", "nps-cycle-2026-10", "inbound-1"]


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


def unsubscribe_token(settings, days_ago: int = 0) -> str:
    from datetime import datetime, timezone

    from activities.mail_links import unsubscribe_link_for

    issued = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return unsubscribe_link_for(settings.email_link_secret.get_secret_value(), "lee.park@acme.example", "lifecycle",
                                "acme", issued)


def unsubscribe(token_of: Callable, body: bytes = b"List-Unsubscribe=One-Click",
                ctype: str = "application/x-www-form-urlencoded", method: str = "POST") -> Send:
    async def send(http, settings):
        url = f"/unsubscribe/{token_of(settings)}"
        if method == "GET":
            return await http.get(url)
        return await http.post(url, content=body, headers={"content-type": ctype})
    return send


def past(days: int = 30) -> str:
    return (date.today() - timedelta(days=days)).isoformat()


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
    "webhook unknown account": Case(webhook([{**CLOSED_WON, "accountId": "nobody"}]), 404,
                                    "unknown account 'nobody'"),
    "webhook one bad event spoils the batch": Case(
        webhook([CLOSED_WON, {**CLOSED_WON, "eventId": 9, "accountId": "nobody"}]), 404, "unknown account"),
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
    "nps negative reminder offset": Broken("nps.yaml", "reminder_after_days: 4", "reminder_after_days: -4",
                                           "reminder_after_days: Input should be greater than 0"),
    "nps YAML colon in a value": Broken("nps.yaml", "expires_after_days: 7", "expires_after_days: 7: days",
                                        "YAML syntax: mapping values are not allowed here"),
    "churn YAML syntax": Broken("churn.yaml", "version: 1\n", "version: 1\n  bad: [\n", "YAML syntax", at="bad: ["),
    "scoring threshold not a number": Broken("churn_scoring.yaml", "  - {band: YELLOW, up_to: 40}",
                                             "  - {band: YELLOW, up_to: \"forty\"}", "bands[1].up_to"),
    "triggers unknown playbook": Broken("triggers.yaml", "      playbook: onboarding\n",
                                        "      playbook: onbording\n", "triggers[0].start.playbook"),
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


def test_the_catalogue_has_at_least_thirty_cases():
    assert len(HTTP_CASES) + len(PLAYBOOK_CASES) + len(MAIL_CASES) + 1 >= 30
