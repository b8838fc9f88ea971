"""Reading what comes back (`activities/dsn.py`) in the shapes common MTAs send (tests/fixtures/mail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.dsn import body_text, is_automatic, parse_message, read_report, sender_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mail"
TO, RCPT = "bounce+abcdefghijklmnopqrst@reply.tai.example", "lee.park@acme.example"


def shape(name: str, to: str = TO, rcpt: str = RCPT) -> bytes:
    text = (FIXTURES / name).read_text()
    for key, value in {"to": to, "rcpt": rcpt, "message_id": "<0123456789abcdef@tai.example>",
                       "subject": "Acme Logistics renewal proposal"}.items():
        text = text.replace("{{%s}}" % key, value)
    return text.replace("\n", "\r\n").encode()


@pytest.mark.parametrize(("name", "kind", "status", "says"), [
    ("postfix_user_unknown.eml", "bounce", "5.1.1", "User unknown in virtual mailbox table"),
    ("exchange_online_recipient_not_found.eml", "bounce", "5.1.10", "RESOLVER.ADR.RecipientNotFound"),
    ("gmail_no_such_user.eml", "bounce", "5.1.1", "does not exist"),
    ("gmail_delayed.eml", "delay", "4.4.1", "did not accept our requests"),
    ("postfix_mailbox_full_gave_up.eml", "soft", "4.2.2", "Mailbox full"),
])
def test_delivery_status_notifications(name, kind, status, says):
    report = read_report(parse_message(shape(name)))
    assert report is not None and report.kind == "dsn"
    block = report.recipients[0]
    assert (block.recipient, block.kind, block.status) == (RCPT, kind, status)
    assert says in block.diagnostic


@pytest.mark.parametrize("name", ["yahoo_arf_complaint.eml", "outlook_com_jmrp_complaint.eml"])
def test_complaints(name):
    report = read_report(parse_message(shape(name)))
    assert report is not None and report.kind == "feedback" and report.feedback_type == "abuse"
    assert report.original_recipient == RCPT


def test_a_reply_and_an_out_of_office():
    reply = parse_message(shape("outlook_reply.eml", to="reply+abcdefghijklmnopqrst@reply.tai.example"))
    assert read_report(reply) is None and not is_automatic(reply)
    assert sender_of(reply) == ("Dana Reyes", RCPT)
    assert "expect our signature next week" in body_text(reply)
    ooo = parse_message(shape("outlook_out_of_office.eml"))
    assert is_automatic(ooo)


def test_a_plain_text_bounce_from_an_old_mta_is_still_read():
    raw = (b"From: Mail Delivery Subsystem <MAILER-DAEMON@old.acme.example>\r\nTo: " + TO.encode() +
           b"\r\nSubject: Returned mail: User unknown\r\n\r\n----- The following addresses had permanent fatal errors"
           b" -----\r\n<lee.park@acme.example>\r\n    (reason: 550 5.1.1 User unknown)\r\n")
    report = read_report(parse_message(raw))
    assert report.kind == "plain_bounce" and report.recipients[0].status == "5.1.1"
    assert read_report(parse_message(b"From: someone@acme.example\r\nSubject: hello\r\n\r\nhi\r\n")) is None
