"""A local SMTP sink (aiosmtpd) that keeps every message it receives.

Messages are kept in memory (for tests) and, when given a folder, in a
Maildir there, so `csplay mail` can list what the product has sent.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMail:
    message_id: str
    workflow_id: str
    step: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    subject: str
    text: str
    html: str
    date: str

    @classmethod
    def parse(cls, raw: bytes, rcpt_to: tuple[str, ...] = ()) -> "ReceivedMail":
        msg: EmailMessage = message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        return cls(
            message_id=str(msg.get("Message-ID", "")),
            workflow_id=str(msg.get("X-Playbook-Workflow", "")),
            step=str(msg.get("X-Playbook-Step", "")),
            mail_from=str(msg.get("From", "")),
            rcpt_to=rcpt_to or tuple(str(a) for a in (msg.get_all("To", []) + msg.get_all("Cc", []))),
            subject=str(msg.get("Subject", "")),
            text=text.get_content() if text else "",
            html=html.get_content() if html else "",
            date=str(msg.get("Date", "")),
        )


class MailSink:
    """aiosmtpd handler: accepts everything, stores everything, delivers nothing. Addresses in
    `refused` are answered `550 5.1.1` at RCPT TO, as a real server refuses an unknown mailbox
    (RFC 5321 section 4.2.2), so tests can see what a permanent refusal does."""

    def __init__(self, maildir: Path | None = None):
        self.messages: list[ReceivedMail] = []
        self.refused: set[str] = set()
        self._maildir = mailbox.Maildir(maildir, create=True) if maildir else None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.lower() in self.refused:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        self.messages.append(ReceivedMail.parse(raw, tuple(envelope.rcpt_tos)))
        if self._maildir is not None:
            self._maildir.add(raw)
        return "250 Message accepted for delivery"


def start_sink(host: str, port: int, maildir: Path | None = None) -> tuple[Controller, MailSink]:
    sink = MailSink(maildir)
    controller = Controller(sink, hostname=host, port=port)
    controller.start()
    return controller, sink


def read_maildir(path: Path) -> list[ReceivedMail]:
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    mails = []
    # Maildir keys start with the delivery time, so they sort chronologically.
    for key in sorted(box.keys()):
        with box.get_file(key) as fh:
            mails.append(ReceivedMail.parse(fh.read()))
    return mails
