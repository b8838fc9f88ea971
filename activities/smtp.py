"""SMTP sessions to the relay, reused from one e-mail to the next, and what a refusal means.

A new connection per message was a third of the cost of a 1,000-contact survey batch, so
sessions are kept. Each copy of a message goes in its own transaction (one recipient, its own
VERP return path). A refused recipient leaves the session usable (aiosmtplib resets the
envelope); a dropped session is replaced once; a second failure is the activity's to retry.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiosmtplib

from core.settings import Settings

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Refusal:
    """The relay refused one recipient (or the message for it)."""

    code: int
    message: str
    status: str  # enhanced status code (RFC 3463) when the reply gives one, else "5.0.0" / "4.0.0"

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def mailbox_gone(self) -> bool:
        """5.1.x: the address itself is bad (no such user, bad domain): a hard bounce."""
        return self.permanent and self.status.startswith("5.1.")

    def __str__(self) -> str:
        return f"{self.code} {self.message}".strip()


def refusal_of(exc: BaseException) -> Refusal | None:
    """The Refusal an aiosmtplib error stands for, or None when it is no answer about the recipient
    (the connection broke: the whole attempt is retried)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError)):
        text = " ".join(str(exc.message).split())[:500]
        found = _ENHANCED.search(text)
        status = found.group(0) if found else ("5.0.0" if exc.code >= 500 else "4.0.0")
        return Refusal(exc.code, text, status)
    return None


class SmtpConnections:
    """Open sessions to the relay, at most `size` at a time."""

    def __init__(self, settings: Settings, size: int = 8):
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)
        self._smtputf8: bool | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                                 password=s.smtp_password, start_tls=s.smtp_starttls, timeout=s.smtp_timeout_seconds)
        await client.connect()
        if not client.esmtp_extensions:
            await client.ehlo()
        self._smtputf8 = client.supports_extension("smtputf8")
        return client

    async def offers_smtputf8(self) -> bool:
        """Whether the relay takes SMTPUTF8 (RFC 6531) addresses: learnt from its EHLO."""
        if self._smtputf8 is None:
            async with self._slots:
                client = self._idle.pop() if self._idle else await self._connect()
                self._idle.append(client)
        return bool(self._smtputf8)

    async def sendmail(self, sender: str, recipient: str, message: bytes, smtputf8: bool = False) -> None:
        """One transaction. Raises aiosmtplib's refusals (see `refusal_of`) and connection errors."""
        options = ["SMTPUTF8"] if smtputf8 else []
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            for attempt in (1, 2):
                fresh = client is None
                if fresh:
                    client = await self._connect()
                try:
                    await client.sendmail(sender, [recipient], message, mail_options=options)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError):
                    client.close()
                    client = None
                    if fresh or attempt == 2:
                        raise
                    continue
                except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError):
                    self._idle.append(client)  # the envelope was reset: the session goes on
                    raise
                except Exception:
                    client.close()  # a refused message leaves the session in an unknown state
                    raise
                self._idle.append(client)
                return
