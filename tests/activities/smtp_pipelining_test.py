"""The pipelined SMTP session (activities/smtp.py) against aiosmtpd offering PIPELINING: copies arrive
whole and dot-stuffed right, a refusal reads as aiosmtplib's and leaves the session usable, and a relay
that does not offer PIPELINING is spoken to by aiosmtplib as before."""

from __future__ import annotations

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from activities.smtp import PipelinedSession, SmtpConnections, refusal_of
from core.settings import Settings
from starter.mail_sink import MailSink, start_sink
from tests.conftest import free_port

MESSAGE = (b"From: a@tai.example\r\nTo: b@acme.example\r\nSubject: hi\r\nMessage-ID: <m@tai.example>\r\n\r\n"
           b"first line\r\n.a line that starts with a dot\r\n..two dots\r\nlast line\r\n")


class PipeliningSink(MailSink):
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture
def relay():
    sink, port = PipeliningSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, decode_data=False, enable_SMTPUTF8=True)
    controller.start()
    yield port, sink
    controller.stop()


def connections(port: int) -> SmtpConnections:
    return SmtpConnections(Settings(_env_file=None, smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_seconds=30), 2)


async def test_copies_go_pipelined_and_a_refused_one_leaves_the_session_usable(relay):
    port, sink = relay
    smtp = connections(port)
    await smtp.sendmail("bounce+aaaa@reply.tai.example", "one@acme.example", MESSAGE)
    assert smtp._pipelining is True and isinstance(smtp._idle[0], PipelinedSession)
    sink.refuse["two@acme.example"] = "550 5.1.1 <two@acme.example>: Recipient address rejected: User unknown"
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await smtp.sendmail("bounce+bbbb@reply.tai.example", "two@acme.example", MESSAGE)
    refusal = refusal_of(refused.value)
    assert (refusal.code, refusal.status, refusal.mailbox_gone) == (550, "5.1.1", True)
    await smtp.sendmail("bounce+cccc@reply.tai.example", "zoë@acme.example", MESSAGE, smtputf8=True)
    assert [(m.rcpt_to, m.envelope_from) for m in sink.copies] == [
        (("one@acme.example",), "bounce+aaaa@reply.tai.example"), (("zoë@acme.example",), "bounce+cccc@reply.tai.example")]
    assert all(m.raw.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n") for m in sink.copies)
    assert len(smtp._idle) == 1  # one session carried all three


async def test_a_dropped_session_is_replaced_once(relay):
    port, sink = relay
    smtp = connections(port)
    await smtp.sendmail("bounce+aaaa@reply.tai.example", "one@acme.example", MESSAGE)
    smtp._idle[0]._transport.abort()  # the relay (or a NAT box) dropped the idle session
    await smtp.sendmail("bounce+bbbb@reply.tai.example", "two@acme.example", MESSAGE)
    assert [m.rcpt_to for m in sink.copies] == [("one@acme.example",), ("two@acme.example",)]


async def test_a_relay_without_pipelining_gets_aiosmtplib():
    port = free_port()
    controller, sink = start_sink("127.0.0.1", port)
    try:
        smtp = connections(port)
        await smtp.sendmail("bounce+aaaa@reply.tai.example", "one@acme.example", MESSAGE)
        assert smtp._pipelining is False and isinstance(smtp._idle[0], aiosmtplib.SMTP)
        assert [m.rcpt_to for m in sink.copies] == [("one@acme.example",)]
    finally:
        controller.stop()
