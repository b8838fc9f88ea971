"""SMTP sessions to the relay, reused from one e-mail to the next, and what a refusal means.

A new connection per message was a third of the cost of a 1,000-contact survey batch, so
sessions are kept. Each copy of a message goes in its own transaction (one recipient, its own
VERP return path). A refused recipient leaves the session usable (the envelope is reset); a
dropped session is replaced once; a second failure is the activity's to retry.

A relay reached without STARTTLS nor AUTH (one on the local network) that offers PIPELINING
(RFC 2920) is spoken to by `PipelinedSession`: MAIL, RCPT and DATA of a copy in one write, the
message in a second, two round trips instead of aiosmtplib's four, and none of its per-command
bookkeeping (a survey batch sends thousands of copies). Any other relay: aiosmtplib.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import deque
from dataclasses import dataclass
from functools import cache

import aiosmtplib
from aiosmtplib import (
    SMTPDataError, SMTPRecipientRefused, SMTPRecipientsRefused, SMTPResponse, SMTPSenderRefused, SMTPServerDisconnected,
)

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
        self._idle: list[aiosmtplib.SMTP | PipelinedSession] = []
        self._slots = asyncio.Semaphore(size)
        self._smtputf8: bool | None = None
        self._pipelining: bool | None = None  # whether the relay offers it, once known

    async def _connect(self) -> aiosmtplib.SMTP | PipelinedSession:
        s = self.settings
        if not s.smtp_starttls and not s.smtp_username and self._pipelining is not False:
            session = PipelinedSession(s.smtp_host, s.smtp_port, s.smtp_timeout_seconds)
            self._pipelining = await session.connect()
            if self._pipelining:
                self._smtputf8 = session.supports_extension("smtputf8")
                return session
            session.close()  # no PIPELINING: aiosmtplib from now on
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
                except BaseException:
                    client.close()  # a refused message (or a cancelled send) leaves the session in an unknown state
                    raise
                self._idle.append(client)
                return


@cache
def _local_name() -> str:
    return socket.getfqdn() or "localhost"


_LINE_ENDS = re.compile(rb"\r\n|\n|\r")
_LEADING_DOT = re.compile(rb"(?m)^\.")


class PipelinedSession(asyncio.Protocol):
    """One plain SMTP session to a relay that offers PIPELINING (RFC 2920): MAIL, RCPT and DATA of a
    copy go in one write and their replies are read in order. Its failures are aiosmtplib's exceptions
    (a refusal: SMTPSenderRefused, SMTPRecipientsRefused, SMTPDataError, after which the session goes
    on; a lost connection: SMTPServerDisconnected; no answer in time: TimeoutError), so that callers
    and `refusal_of` read both clients alike. One transaction at a time (SmtpConnections lends a
    session to one sender)."""

    MAX_REPLY = 64 * 1024

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.extensions: dict[str, str] = {}
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._waiting: deque[asyncio.Future] = deque()

    # -- asyncio.Protocol: each complete reply (its last line "ddd text") answers the oldest command
    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self.MAX_REPLY:
            self._fail(SMTPServerDisconnected("the relay's reply is too long"))
            return
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end + 1])
            del self._buffer[:end + 1]
            self._lines.append(line)
            if line[3:4] == b"-":
                continue
            lines, self._lines = self._lines, []
            if not line[:3].isdigit():
                self._fail(SMTPServerDisconnected(f"the relay's reply is not SMTP: {line[:80]!r}"))
                return
            code = int(line[:3])
            text = "\n".join(part[4:].strip().decode("utf-8", "replace") for part in lines)
            if self._waiting:  # a reply nobody asked for is dropped, never paired with a later command
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(SMTPResponse(code, text))

    def connection_lost(self, exc) -> None:
        self._transport = None
        self._fail(SMTPServerDisconnected("the relay closed the connection" + (f": {exc}" if exc else "")))

    def _fail(self, exc: Exception) -> None:
        if self._transport is not None:
            self._transport.close()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: a caller that stopped at an earlier reply never awaits it

    def _send(self, data: bytes, replies: int) -> list[asyncio.Future]:
        if self._transport is None or self._transport.is_closing():
            raise SMTPServerDisconnected("not connected to the relay")
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(replies)]
        self._waiting.extend(waiters)
        self._transport.write(data)
        return waiters

    # -- the session
    async def connect(self) -> bool:
        """Connect, read the greeting, EHLO; True when the relay offers PIPELINING. Raises
        aiosmtplib.SMTPConnectResponseError or SMTPHeloError on a refusal, OSError or TimeoutError."""
        loop = asyncio.get_running_loop()
        greeting = loop.create_future()
        self._waiting.append(greeting)
        async with asyncio.timeout(self.timeout):
            await loop.create_connection(lambda: self, self.host, self.port)
            reply = await greeting
            if reply.code != 220:
                self.close()
                raise aiosmtplib.SMTPConnectResponseError(reply.code, reply.message)
            hostname = await asyncio.to_thread(_local_name)
            (ehlo,) = self._send(f"EHLO {hostname}\r\n".encode("ascii", "replace"), 1)
            reply = await ehlo
        if reply.code != 250:
            self.close()
            raise aiosmtplib.SMTPHeloError(reply.code, reply.message)
        for line in reply.message.split("\n")[1:]:
            name, _, params = line.partition(" ")
            self.extensions[name.lower()] = params
        return "pipelining" in self.extensions

    def supports_extension(self, name: str) -> bool:
        return name.lower() in self.extensions

    async def sendmail(self, sender: str, recipients: list[str], message: bytes,
                       mail_options: list[str] | None = None) -> None:
        """One transaction to one recipient (the caller's envelope addresses are checked already)."""
        (recipient,) = recipients
        if any(c in sender + recipient for c in "\r\n<>"):
            raise ValueError("an envelope address holds a line break or angle bracket")
        options = list(mail_options or [])
        data = _LINE_ENDS.sub(b"\r\n", message)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        if "size" in self.extensions:
            options.insert(0, f"SIZE={len(data)}")
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        envelope = (f"MAIL FROM:<{sender}>{''.join(' ' + o for o in options)}\r\n"
                    f"RCPT TO:<{recipient}>\r\nDATA\r\n").encode(encoding)
        async with asyncio.timeout(self.timeout):
            mail, rcpt, start = self._send(envelope, 3)
            mail, rcpt, start = await mail, await rcpt, await start
            if start.code == 354 and mail.code == 250 and rcpt.code in (250, 251):
                (done,) = self._send(_LEADING_DOT.sub(b"..", data) + b".\r\n", 1)
                done = await done
                if done.code != 250:
                    raise SMTPDataError(done.code, done.message)
                return
            if start.code == 354:  # DATA taken though the envelope was refused: end it empty
                await self._send(b".\r\n", 1)[0]
            await self._send(b"RSET\r\n", 1)[0]  # the next copy starts from a clean envelope
        if mail.code != 250:
            raise SMTPSenderRefused(mail.code, mail.message, sender)
        if rcpt.code not in (250, 251):
            raise SMTPRecipientsRefused([SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)])
        raise SMTPDataError(start.code, start.message)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
