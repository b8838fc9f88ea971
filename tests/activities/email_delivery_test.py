"""The Mailer against real PostgreSQL and the SMTP sink: addresses done right, one outcome per
recipient, suppressions and the weekly cap checked at send time, unsubscribe headers."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlparse

import pytest
from temporalio.exceptions import ApplicationError

from activities.accounts import fetch_account, fetch_staff, upsert_account
from activities.email import Mailer, resolve_roles
from core.models import Contact, EmailTemplate, Person, PlayRef
from starter.demo import demo_account
from starter.mail_sink import start_sink
from tests.conftest import free_port

BODY = "<html><body><p>Hello {{ recipient.name }}, welcome {{ account.name }}.</p></body></html>"


def template(category: str = "lifecycle", **kw) -> EmailTemplate:
    return EmailTemplate(name="test/hello.html.j2", subject="Hello {{ account.name }}", body=BODY, category=category,
                         **kw)


PEOPLE = [
    Contact(name="Müller, Hans", email="hans@münchen.example", role="user"),
    Contact(name='Dana "DJ" Reyes', email="dj@acme.example", role="user"),
    Contact(name="Zoë 🚀 Ops", email="zoe@acme.example", role="user"),
]


async def account_with(pool, contacts, account_id="intl"):
    account = demo_account(date.today()).model_copy(update={"id": account_id, "name": "Intl GmbH",
                                                           "contacts": contacts})
    await upsert_account(pool, account)
    return await fetch_account(pool, account_id)


async def send(pool, settings, account, step="email/hello", tmpl=None, roles=("contacts",), cc=("csm",), **kw):
    staff = await fetch_staff(pool)
    play = PlayRef(workflow_id=f"test-{account.id}", play_id="run1", account_id=account.id)
    to = resolve_roles(list(roles), account, staff)
    return await Mailer(pool, settings).deliver(play, step, tmpl or template(), to, resolve_roles(list(cc), account, staff),
                                                {}, account, staff, **kw)


def by_rcpt(sink) -> dict[str, object]:
    """Each recipient's own copy, by envelope recipient."""
    return {m.rcpt_to[0]: m for m in sink.copies}


async def test_display_names_with_commas_quotes_accents_and_emoji_stay_one_address_each(pool, settings, sink):
    account = await account_with(pool, PEOPLE)
    result = await send(pool, settings, account)
    assert result.outcome == "sent"
    copies = by_rcpt(sink)
    # The IDN domain went out in its IDNA 2008 A-label form; each copy is the same message.
    assert set(copies) == {"hans@xn--mnchen-3ya.example", "dj@acme.example", "zoe@acme.example",
                           "casey.morgan@tai.example"}
    assert len(sink.messages) == 1 and len(sink.copies) == 4
    for m in sink.copies:
        to = m.message["To"].addresses
        assert [(a.display_name, a.addr_spec) for a in to] == [
            ("Müller, Hans", "hans@xn--mnchen-3ya.example"), ('Dana "DJ" Reyes', "dj@acme.example"),
            ("Zoë 🚀 Ops", "zoe@acme.example")]
        assert [a.addr_spec for a in m.message["Cc"].addresses] == ["casey.morgan@tai.example"]
    rows = await pool.fetch("SELECT address, status FROM communication_recipients ORDER BY position")
    assert [(r["address"], r["status"]) for r in rows] == [
        ("hans@münchen.example", "sent"), ("dj@acme.example", "sent"), ("zoe@acme.example", "sent"),
        ("casey.morgan@tai.example", "sent")]


async def test_every_copy_has_its_own_return_path_and_the_message_a_reply_address(pool, settings, sink):
    account = await account_with(pool, PEOPLE[1:])
    await send(pool, settings, account)
    tokens = {r["address"]: r["token"] for r in await pool.fetch("SELECT address, token FROM communication_recipients")}
    reply_token = await pool.fetchval("SELECT reply_token FROM communications")
    domain = settings.inbound_mail_domain
    for m in sink.copies:
        address = m.rcpt_to[0]
        assert m.envelope_from == f"bounce+{tokens[address]}@{domain}"
        assert m.message["Reply-To"].addresses[0].addr_spec == f"reply+{reply_token}@{domain}"


async def test_customer_copies_carry_one_click_unsubscribe_and_a_visible_link(pool, settings, sink):
    account = await account_with(pool, PEOPLE[1:2])
    await send(pool, settings, account)
    customer, csm = by_rcpt(sink)["dj@acme.example"], by_rcpt(sink)["casey.morgan@tai.example"]
    header = customer.message["List-Unsubscribe"]
    https, mailto = [part.strip(" <>") for part in str(header).split(",")]
    assert urlparse(https).path.startswith("/unsubscribe/") and https.startswith(settings.survey_base_url)
    assert mailto.startswith("mailto:unsubscribe+") and mailto.endswith(f"@{settings.inbound_mail_domain}?subject=unsubscribe")
    assert customer.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"Unsubscribe: {https}" in customer.text and f'href="{https}"' in customer.html
    assert "dj@acme.example" in customer.text
    # Our own CSM's copy has none: it is not an unsubscribe of theirs.
    assert csm.message["List-Unsubscribe"] is None and "Unsubscribe" not in csm.text


async def test_transactional_mail_has_no_unsubscribe_and_reaches_an_unsubscribed_contact(pool, settings, sink):
    account = await account_with(pool, PEOPLE[1:2])
    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ('dj@acme.example', 'all', 'unsubscribed', 'one-click', 'test')")
    result = await send(pool, settings, account, tmpl=template("transactional"))
    assert result.outcome == "sent"
    copy = by_rcpt(sink)["dj@acme.example"]
    assert copy.message["List-Unsubscribe"] is None and "Unsubscribe" not in copy.text


async def test_suppressed_and_crm_opted_out_contacts_are_left_out_and_recorded(pool, settings, sink):
    account = await account_with(pool, PEOPLE[1:])
    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ('dj@acme.example', 'lifecycle', 'unsubscribed', 'one-click', 'test')")
    await pool.execute("UPDATE contacts SET email_opt_out = true WHERE email = 'zoe@acme.example'")
    result = await send(pool, settings, account)
    assert set(by_rcpt(sink)) == {"casey.morgan@tai.example"}
    outcomes = {r.address: (r.status, r.reason) for r in result.recipients}
    assert outcomes["dj@acme.example"][0] == "suppressed" and "unsubscribed (lifecycle" in outcomes["dj@acme.example"][1]
    assert outcomes["zoe@acme.example"] == ("suppressed", "opted out in the CRM")
    assert [r.address for r in result.unreached_customers()] == ["dj@acme.example", "zoe@acme.example"]
    # Suppressed people are not listed in the To header of the copies that went.
    assert by_rcpt(sink)["casey.morgan@tai.example"].message["To"] is None
    # A survey is held back by the CRM opt-out too; a survey-only unsubscribe does not stop lifecycle mail.
    await pool.execute("UPDATE suppressions SET category = 'survey'")
    again = await send(pool, settings, account, step="email/again")
    assert {r.address: r.status for r in again.recipients}["dj@acme.example"] == "sent"


async def test_a_refused_recipient_is_recorded_and_the_others_still_get_their_copy(pool, settings, sink):
    account = await account_with(pool, PEOPLE[1:])
    sink.refuse["zoe@acme.example"] = "550 5.1.1 <zoe@acme.example>: Recipient address rejected: User unknown"
    try:
        result = await send(pool, settings, account)
    finally:
        sink.refuse.clear()
    assert set(by_rcpt(sink)) == {"dj@acme.example", "casey.morgan@tai.example"}
    zoe = next(r for r in result.recipients if r.address == "zoe@acme.example")
    assert zoe.status == "refused" and "550 5.1.1" in zoe.reason and result.outcome == "sent"
    # A mailbox that does not exist is a hard bounce: suppressed for everything, and the CSM is told.
    sup = await pool.fetchrow("SELECT category, reason, source FROM suppressions WHERE address_key = 'zoe@acme.example'")
    assert dict(sup) == {"category": "undeliverable", "reason": "hard_bounce", "source": "smtp"}
    task = await pool.fetchrow("SELECT title, owner_email FROM tasks WHERE step LIKE 'bounce/%'")
    assert "zoe@acme.example" in task["title"] and task["owner_email"] == "casey.morgan@tai.example"


async def test_a_soft_refusal_defers_that_recipient_with_backoff(pool, settings, sink):
    account = await account_with(pool, PEOPLE[1:2])
    sink.refuse["dj@acme.example"] = "452 4.2.2 Mailbox full"
    try:
        result = await send(pool, settings, account)
    finally:
        sink.refuse.clear()
    assert result.outcome == "deferred" and "soft bounce 452 4.2.2" in result.reason
    now = datetime.now(timezone.utc)
    assert timedelta(minutes=14) < result.deferred_until - now <= timedelta(minutes=15)
    assert set(by_rcpt(sink)) == {"casey.morgan@tai.example"}
    # Asked again once the back-off has passed, only the deferred recipient gets it.
    await pool.execute("UPDATE communication_recipients SET retry_at = now() WHERE status = 'deferred'")
    sink.clear()
    again = await send(pool, settings, account)
    assert again.outcome == "sent" and set(by_rcpt(sink)) == {"dj@acme.example"}


async def test_an_address_that_cannot_be_written_fails_alone_and_nobody_reachable_fails_for_good(pool, settings, sink):
    account = await account_with(pool, PEOPLE[1:2])
    # The first is not a valid IDNA 2008 name; the second needs SMTPUTF8 (tested below without it).
    staff = await fetch_staff(pool)
    bad = [Person.model_construct(name="Bad", email="x@exa_mple.example"), Person(name="Dana", email="dj@acme.example")]
    play = PlayRef(workflow_id="test-intl", play_id="run1", account_id=account.id)
    result = await Mailer(pool, settings).deliver(play, "email/x", template(), bad, [], {}, account, staff)
    refused = next(r for r in result.recipients if r.address == "x@exa_mple.example")
    assert refused.status == "refused" and "IDNA 2008" in refused.reason
    assert set(by_rcpt(sink)) == {"dj@acme.example"}
    with pytest.raises(ApplicationError) as failed:
        await Mailer(pool, settings).deliver(play, "email/y", template(), bad[:1], [], {}, account, staff)
    assert failed.value.non_retryable and "nobody could be reached" in failed.value.message
    status = await pool.fetchval("SELECT status FROM communications WHERE step = 'email/y'")
    assert status == "failed"


async def test_a_non_ascii_mailbox_name_goes_with_smtputf8_or_is_refused_without_it(pool, settings, sink):
    account = await account_with(pool, [Contact(name="Jörg", email="jörg@münchen.example"),
                                        Contact(name="Dana", email="dj@acme.example")])
    result = await send(pool, settings, account, cc=())
    assert result.outcome == "sent"
    assert "jörg@münchen.example" in by_rcpt(sink)  # the sink offers SMTPUTF8: Unicode all the way
    port = free_port()
    controller, plain = start_sink("127.0.0.1", port, smtputf8=False)
    try:
        other = settings.model_copy(update={"smtp_port": port})
        result = await send(pool, other, account, step="email/plain", cc=())
    finally:
        controller.stop()
    outcomes = {r.address: (r.status, r.reason) for r in result.recipients}
    assert outcomes["jörg@münchen.example"][0] == "refused" and "SMTPUTF8" in outcomes["jörg@münchen.example"][1]
    assert [m.rcpt_to[0] for m in plain.copies] == ["dj@acme.example"]
    assert all(a.addr_spec != "jörg@münchen.example" for a in plain.messages[0].message["To"].addresses)


async def test_weekly_cap_defers_lifecycle_mail_and_never_transactional(pool, settings, sink):
    capped = settings.model_copy(update={"email_weekly_cap": 2})
    account = await account_with(pool, PEOPLE[1:2])
    first = await send(pool, capped, account, step="email/1", cc=())
    await send(pool, capped, account, step="email/2", cc=())
    third = await send(pool, capped, account, step="email/3", cc=())
    assert third.outcome == "deferred" and "weekly cap of 2" in third.reason
    sent_first = await pool.fetchval("SELECT sent_at FROM communications WHERE id = $1", first.communication_id)
    assert abs(third.deferred_until - (sent_first + timedelta(days=7))) < timedelta(seconds=1)
    urgent = await send(pool, capped, account, step="email/ticket", tmpl=template("transactional"), cc=())
    assert urgent.outcome == "sent"
    # A survey waits behind the lifecycle e-mail that is waiting for room.
    survey = await send(pool, capped, account, step="email/survey", tmpl=template("survey"), cc=())
    assert survey.outcome == "deferred" and survey.deferred_until > third.deferred_until
    assert [m.step for m in sink.messages] == ["email/1", "email/2", "email/ticket"]


async def test_a_stored_address_that_is_not_one_leaves_the_others_reachable(pool, settings, sink):
    """The issue's IDN case, whole: the welcome to sponsor, contacts and CSM reaches everybody once,
    even when a contact's stored address cannot be used; nobody waits for a retry that cannot help."""
    account = await account_with(pool, PEOPLE)
    await pool.execute("INSERT INTO contacts (account_id, name, email) VALUES ('intl', 'Broken', 'broken@@acme')")
    account = await fetch_account(pool, "intl")  # the unusable contact is left out, not fatal
    assert {str(c.email) for c in account.contacts} == {"hans@münchen.example", "dj@acme.example", "zoe@acme.example"}
    result = await send(pool, settings, account, roles=("sponsor", "contacts"))
    assert result.outcome == "sent" and {r.status for r in result.recipients} == {"sent"}
    assert len(sink.copies) == 5 and len(sink.messages) == 1


def test_the_copy_writer_produces_what_the_email_library_reads_back():
    """Survey batches write their copies directly (headers still folded by the library): every
    tricky part must read back exactly as meant."""
    from datetime import datetime, timezone

    from activities.addresses import parse_address
    from activities.mail_message import Listed, build_copy
    from core.settings import Settings

    settings = Settings(_env_file=None)
    text = "Grüße = ok \nline with trailing space \r\n.leading dot\n" + "long " * 300
    html = "<html><body><p>" + "é" * 1200 + "</p><p>a=b</p></body></html>"
    row = {"mail_from": settings.mail_from, "subject": "Zoë 🚀: ça va? " + "x" * 120, "message_id": "<m1@tai.example>",
           "created_at": datetime(2027, 1, 4, 15, tzinfo=timezone.utc), "workflow_id": "nps-cycle-x",
           "step": "survey/x/hans@münchen.example", "reply_token": "abcdefghijklmnopqrst", "body_text": text,
           "body_html": html, "category": "survey", "account_id": "acct-1", "calendar": None}
    rcpt = {"customer": True, "address_key": "hans@münchen.example", "address": "hans@münchen.example",
            "token": "bcdefghijklmnopqrstu"}
    listed = [Listed("to", parse_address("hans@münchen.example", "Müller, Hans")),
              Listed("cc", parse_address("casey.morgan@tai.example", "Casey Morgan"))]
    copy = build_copy(row, rcpt, listed, settings, False)
    assert copy.data.isascii() and all(len(line) <= 998 for line in copy.data.split(b"\r\n"))
    from email import message_from_bytes, policy

    msg = message_from_bytes(copy.data, policy=policy.default)
    assert msg["Subject"] == row["subject"] and msg["X-Playbook-Step"] == row["step"]
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [("Müller, Hans", "hans@xn--mnchen-3ya.example")]
    assert msg["Reply-To"].addresses[0].addr_spec == f"reply+abcdefghijklmnopqrst@{settings.inbound_mail_domain}"
    assert msg.get_content_type() == "multipart/alternative" and not msg.defects
    plain, rich = msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()
    assert plain.replace("\r\n", "\n").startswith(text.replace("\r\n", "\n").rstrip())
    assert f"Unsubscribe: {settings.survey_base_url}/unsubscribe/" in plain and "é" * 1200 in rich and "a=b" in rich
    assert build_copy(row, rcpt, listed, settings, False).data == copy.data  # a resent copy: the same bytes


@pytest.mark.parametrize(("name", "address"), [
    ("Lee Park", "lee.park@acct-000001.example"), ("", "ops@acme.example"), ("O'Neil J-P", "o'neil+x@a-b.example"),
    ("Park, Lee", "lee@acme.example"), ('Dana "DJ" Reyes', "dj@acme.example"), ("Zoë 🚀 Ops", "zoe@acme.example"),
    ("Dr. Who", "who@acme.example"), ("=?utf-8?q?x?=", "x@acme.example"), ("Hans", "hans@münchen.example"),
    ("Lee  Park", "lee@acme.example"), (" Lee", "lee@acme.example"), ("x" * 300, "long@acme.example"),
])
def test_address_headers_written_directly_are_what_the_library_writes(name, address):
    """The copy writer writes a plain `Name <address>` itself and leaves every other one to the library:
    either way the bytes are the library's."""
    from activities.addresses import parse_address
    from activities.mail_message import ASCII_POLICY, UTF8_POLICY, _header_line

    for pol, utf8 in ((ASCII_POLICY, False), (UTF8_POLICY, True)):
        parsed = parse_address(address, name)
        value = [parsed.header(utf8), parse_address("casey.morgan@tai.example", "Casey Morgan").header(utf8)]
        library = pol.header_factory("To", value).fold(policy=pol).encode("utf-8")
        assert _header_line("To", value, pol) == library, (name, address, utf8)
