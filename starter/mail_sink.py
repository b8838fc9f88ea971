"""A local SMTP sink (aiosmtpd) that keeps every message it receives.

Messages are kept in memory (for tests) and, when given a folder, in a
Maildir there, so `csplay mail` can list what the product has sent.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass, replace
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
    envelope_from: str = ""
    raw: bytes = b""

    @property
    def message(self) -> EmailMessage:
        """The whole message, parsed again (headers as objects: `message["To"].addresses`)."""
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]

    @classmethod
    def parse(cls, raw: bytes, rcpt_to: tuple[str, ...] = (), envelope_from: str = "") -> "ReceivedMail":
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
            envelope_from=envelope_from,
            raw=raw,
        )


def fold_copies(copies: list[ReceivedMail]) -> list[ReceivedMail]:
    """One entry per message: the product sends each recipient their own copy (its own return path,
    their own unsubscribe link), all with the same Message-ID; `rcpt_to` gathers every copy's."""
    folded: dict[str, ReceivedMail] = {}
    order: list[str] = []
    for n, mail in enumerate(copies):
        key = mail.message_id or f"#{n}"
        if key in folded:
            first = folded[key]
            folded[key] = replace(first, rcpt_to=first.rcpt_to + tuple(r for r in mail.rcpt_to if r not in first.rcpt_to))
        else:
            folded[key] = mail
            order.append(key)
    return [folded[k] for k in order]


class MailSink:
    """aiosmtpd handler: accepts everything, stores everything, delivers nothing. `copies` holds every
    copy as it came (one per recipient), `messages` one entry per message. `refuse` maps an address
    (lower-cased) to the reply its RCPT gets instead, as a relay refusing it would."""

    def __init__(self, maildir: Path | None = None):
        self.copies: list[ReceivedMail] = []
        self.refuse: dict[str, str] = {}
        self._maildir = mailbox.Maildir(maildir, create=True) if maildir else None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        self.copies.append(ReceivedMail.parse(raw, tuple(envelope.rcpt_tos), envelope.mail_from or ""))
        if self._maildir is not None:
            self._maildir.add(raw)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[ReceivedMail]:
        return fold_copies(self.copies)

    def clear(self) -> None:
        """Forget what came in and whom to refuse (between tests)."""
        self.copies.clear()
        self.refuse.clear()


def start_sink(host: str, port: int, maildir: Path | None = None, smtputf8: bool = True) -> tuple[Controller, MailSink]:
    """The sink on host:port; like most relays today it offers SMTPUTF8 (RFC 6531) unless told not to."""
    sink = MailSink(maildir)
    controller = Controller(sink, hostname=host, port=port, enable_SMTPUTF8=smtputf8,
                            decode_data=False)
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
    return fold_copies(mails)
