"""Mail that comes back, through the real inbound SMTP listener, its InboundMail plays on the
time-skipping server, PostgreSQL and the SMTP sink: each DSN shape, complaints, replies, refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from activities.accounts import fetch_account, fetch_staff
from activities.email import Mailer, resolve_roles
from core.models import EmailTemplate, PlayRef
from tests.conftest import deliver_to, eventually
from tests.inbound.dsn_test import shape

MAIL = "<html><body><p>Hello {{ recipient.name }}</p></body></html>"
LEE = "lee.park@acme.example"


def template(category: str = "lifecycle") -> EmailTemplate:
    return EmailTemplate(name="t/hello.html.j2", subject="Acme Logistics renewal proposal", body=MAIL,
                         category=category)


async def send(pool, settings, step="email/proposal", category="lifecycle", **kw):
    account = await fetch_account(pool, "acme")
    staff = await fetch_staff(pool)
    play = PlayRef(workflow_id="renewal-acme", play_id="run1", account_id="acme")
    to = [c for c in resolve_roles(["contacts"], account, staff) if str(c.email) == LEE]
    return await Mailer(pool, settings).deliver(play, step, template(category), to, [account.csm], {}, account,
                                                staff, **kw)


async def tokens(pool, address: str = LEE) -> tuple[str, str, str]:
    """(recipient token, reply token, Message-ID) of the newest e-mail to `address`."""
    row = await pool.fetchrow(
        "SELECT r.token, c.reply_token, c.message_id FROM communication_recipients r"
        " JOIN communications c ON c.id = r.communication_id WHERE r.address = $1 ORDER BY r.id DESC LIMIT 1", address)
    return row["token"], row["reply_token"], row["message_id"]


async def bounce_back(port, settings, pool, fixture: str) -> tuple[int, str]:
    token, _, message_id = await tokens(pool)
    to = f"bounce+{token}@{settings.inbound_mail_domain}"
    raw = shape(fixture, to=to).replace(b"<0123456789abcdef@tai.example>", message_id.encode())
    return await deliver_to(port, "", to, raw)


async def processed(pool, kind: str):
    async def check():
        return await pool.fetchrow("SELECT * FROM inbound_mail WHERE kind = $1 AND processed_at IS NOT NULL", kind)
    return await eventually(check, f"an {kind} to be acted on")


@pytest.mark.parametrize("fixture", ["postfix_user_unknown.eml", "exchange_online_recipient_not_found.eml",
                                     "gmail_no_such_user.eml"])
async def test_a_hard_bounce_suppresses_the_address_and_tells_the_csm(inbound, pool, settings, sink, fixture):
    await send(pool, settings)
    code, text = await bounce_back(inbound, settings, pool, fixture)
    assert code == 250, text
    row = await processed(pool, "bounce")
    assert row["status_code"].startswith("5.1.") and "hard bounce" in row["outcome"]
    recipient = await pool.fetchrow("SELECT status, reason FROM communication_recipients WHERE address = $1", LEE)
    assert recipient["status"] == "bounced" and row["status_code"] in recipient["reason"]
    sup = await pool.fetchrow("SELECT category, reason, source FROM suppressions WHERE address_key = $1", LEE)
    assert dict(sup) == {"category": "undeliverable", "reason": "hard_bounce", "source": "dsn"}
    task = await pool.fetchrow("SELECT title, owner_email, account_id FROM tasks WHERE step LIKE 'bounce/%'")
    assert LEE in task["title"] and task["owner_email"] == "casey.morgan@tai.example" and task["account_id"] == "acme"
    # Nothing goes to that address any more, not even a transactional e-mail; the CSM's copy still does.
    sink.clear()
    after = await send(pool, settings, step="email/ticket", category="transactional")
    lee = next(r for r in after.recipients if r.address == LEE)
    assert lee.status == "suppressed" and "bounced" in lee.reason
    assert [m.rcpt_to for m in sink.copies] == [("casey.morgan@tai.example",)]


async def test_a_delay_notice_is_noted_and_changes_no_list(inbound, pool, settings):
    await send(pool, settings)
    code, _ = await bounce_back(inbound, settings, pool, "gmail_delayed.eml")
    assert code == 250
    row = await processed(pool, "delay")
    assert row["status_code"] == "4.4.1" and "still trying" in row["outcome"]
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0
    assert await pool.fetchval("SELECT status FROM communication_recipients WHERE address = $1", LEE) == "sent"


async def test_a_soft_bounce_is_sent_again_after_a_back_off(env, inbound, pool, settings, sink):
    await send(pool, settings)
    code, _ = await bounce_back(inbound, settings, pool, "postfix_mailbox_full_gave_up.eml")
    assert code == 250
    row = await processed(pool, "bounce")
    assert row["status_code"] == "4.2.2" and "soft bounce: sent again at" in row["outcome"]
    assert await pool.fetchval("SELECT status FROM communication_recipients WHERE address = $1", LEE) == "deferred"
    sink.clear()
    await env.sleep(timedelta(minutes=16))  # the first back-off is 15 minutes

    async def resent():
        return [m for m in sink.copies if m.rcpt_to == (LEE,)]
    copies = await eventually(resent, "the soft-bounced copy to be sent again")
    assert len(copies) == 1 and copies[0].message_id == (await tokens(pool))[2]
    recipient = await pool.fetchrow("SELECT status, attempts FROM communication_recipients WHERE address = $1", LEE)
    assert dict(recipient) == {"status": "sent", "attempts": 2}
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0


@pytest.mark.parametrize("fixture", ["yahoo_arf_complaint.eml", "outlook_com_jmrp_complaint.eml"])
async def test_a_complaint_suppresses_non_transactional_mail_and_tells_the_csm(inbound, pool, settings, sink, fixture):
    await send(pool, settings)
    code, _ = await bounce_back(inbound, settings, pool, fixture)
    assert code == 250
    row = await processed(pool, "complaint")
    assert row["action"] == "abuse"
    sup = await pool.fetchrow("SELECT category, reason, source FROM suppressions WHERE address_key = $1", LEE)
    assert dict(sup) == {"category": "all", "reason": "complaint", "source": "arf"}
    assert await pool.fetchval("SELECT priority FROM tasks WHERE step LIKE 'complaint/%'") == "P1"
    survey = await send(pool, settings, step="email/survey", category="survey")
    assert next(r for r in survey.recipients if r.address == LEE).status == "suppressed"
    ticket = await send(pool, settings, step="email/ticket", category="transactional")
    assert next(r for r in ticket.recipients if r.address == LEE).status == "sent"


async def test_a_reply_goes_on_the_timeline_to_the_csm_and_stops_follow_ups(inbound, pool, settings, sink):
    await send(pool, settings)
    _, reply_token, message_id = await tokens(pool)
    to = f"reply+{reply_token}@{settings.inbound_mail_domain}"
    raw = shape("outlook_reply.eml", to=to).replace(b"<0123456789abcdef@tai.example>", message_id.encode())
    sink.clear()
    code, _ = await deliver_to(inbound, LEE, to, raw)
    assert code == 250
    row = await processed(pool, "reply")
    assert (row["from_address"], row["account_id"]) == (LEE, "acme") and "signature next week" in row["body_text"]
    assert row["outcome"] == "reply recorded; CSM told"
    notice = await eventually(lambda: _first(sink, "inbound/"), "the CSM's notice of the reply")
    assert notice.rcpt_to == ("casey.morgan@tai.example",) and "Reply from Dana Reyes" in notice.subject
    assert "expect our signature next week" in notice.text
    # A follow-up of the e-mail replied to is stopped at send time, and says why.
    follow_up = await send(pool, settings, step="email/proposal/follow-up/1", stop_if_replied=["email/proposal"])
    assert follow_up.outcome == "stopped" and "replied" in follow_up.recipients[0].reason


async def _first(sink, prefix):
    return next((m for m in sink.messages if m.step.startswith(prefix)), None)


async def test_an_out_of_office_is_noted_but_neither_tells_the_csm_nor_stops_anything(inbound, pool, settings, sink):
    await send(pool, settings)
    _, reply_token, _ = await tokens(pool)
    to = f"reply+{reply_token}@{settings.inbound_mail_domain}"
    code, _ = await deliver_to(inbound, LEE, to, shape("outlook_out_of_office.eml", to=to))
    assert code == 250
    assert (await processed(pool, "reply"))["outcome"] == "automatic reply"
    follow_up = await send(pool, settings, step="email/proposal/follow-up/1", stop_if_replied=["email/proposal"])
    assert follow_up.outcome == "sent"
    assert await _first(sink, "inbound/") is None


async def test_an_unsubscribe_by_mail(inbound, pool, settings):
    await send(pool, settings)
    token, _, _ = await tokens(pool)
    to = f"unsubscribe+{token}@{settings.inbound_mail_domain}"
    code, _ = await deliver_to(inbound, LEE, to, b"From: lee.park@acme.example\r\nSubject: unsubscribe\r\n\r\n\r\n")
    assert code == 250
    assert (await processed(pool, "unsubscribe"))["outcome"] == "unsubscribed from lifecycle e-mail"
    sup = await pool.fetchrow("SELECT category, reason, source FROM suppressions WHERE address_key = $1", LEE)
    assert dict(sup) == {"category": "lifecycle", "reason": "unsubscribed", "source": "mailto"}


async def test_the_same_report_delivered_twice_is_acted_on_once(inbound, env, pool, settings):
    await send(pool, settings)
    for _ in range(2):
        code, _ = await bounce_back(inbound, settings, pool, "postfix_user_unknown.eml")
        assert code == 250
    await processed(pool, "bounce")
    assert await pool.fetchval("SELECT count(*) FROM inbound_mail") == 1
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE step LIKE 'bounce/%'") == 1
