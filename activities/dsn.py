"""Reading the mail that comes back: delivery status notifications, feedback reports, replies.

Parsed with the standard `email` package, never by hand:
- A DSN (RFC 3464) is `multipart/report; report-type=delivery-status` with a
  `message/delivery-status` part: per-message fields (Reporting-MTA), then one block per
  recipient (Final-Recipient, Action, Status, Diagnostic-Code). Postfix, Exchange Online
  and Gmail all send this shape; their human-readable parts differ and are not relied on.
  A few MTAs send a plain-text bounce instead: it counts when it comes from a mailer daemon
  and names an RFC 3463 status code.
- A feedback report (RFC 5965, ARF) is `multipart/report; report-type=feedback-report` with a
  `message/feedback-report` part (Feedback-Type: abuse, ...): a spam complaint. Outlook.com's
  JMRP reports attach the message with an X-HmXmrOriginalRecipient header instead.
- A reply is anything else sent to a reply address; an automatic one (out of office, RFC 3834
  Auto-Submitted, the usual X- and Precedence markers) is told apart.

What a report says is classified: Action `failed` with a 5.x.x status is a hard bounce, with
4.x.x a soft one (the remote side gave up on a temporary problem); `delayed` is news, not a
bounce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_DAEMONS = ("mailer-daemon", "postmaster", "mail delivery", "microsoftexchange")
_AUTO_SUBJECTS = re.compile(r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?reply|autoreply|"
                            r"abwesenheit|absence|r[ée]ponse automatique|on vacation)", re.I)
MAX_TEXT = 20_000


class NotUnderstood(ValueError):
    """The message is not what its address expects (no report, no recipient): said in the SMTP reply."""


@dataclass
class DeliveryReport:
    """One recipient's block of a DSN."""

    recipient: str
    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # 5.1.1
    diagnostic: str = ""
    remote_mta: str = ""

    @property
    def kind(self) -> str:
        """bounce (failed, 5.x.x), soft (failed, 4.x.x), delay, or other."""
        if self.action == "failed":
            return "bounce" if self.status.startswith("5") else "soft"
        return "delay" if self.action == "delayed" else "other"


@dataclass
class Report:
    kind: str  # dsn, feedback, plain_bounce
    reporting_mta: str = ""
    recipients: list[DeliveryReport] = field(default_factory=list)
    feedback_type: str = ""
    original_recipient: str = ""


def parse_message(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def _fields(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses delivery-status into blocks
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else part.get_payload(decode=True).decode("utf-8", "replace")
    return [message_from_bytes(block.strip().encode(), policy=policy.default)
            for block in re.split(r"\r?\n\s*\r?\n", text) if block.strip()]


def _value(block: Message, name: str) -> str:
    value = block.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _address(typed: str) -> str:
    """'rfc822; zoe@acme.example' -> 'zoe@acme.example'."""
    return typed.split(";", 1)[-1].strip().strip("<>")


def read_report(msg: EmailMessage) -> Report | None:
    """The DSN or feedback report in `msg`, or None when it holds neither."""
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").lower()
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype == "message/delivery-status" or (report_type == "delivery-status"
                                                     and ctype == "text/plain" and part is not msg
                                                     and "Final-Recipient" in str(part.get_payload())):
                return _dsn(part)
            if ctype == "message/feedback-report":
                return _feedback(part)
    jmrp = _jmrp(msg)
    return jmrp if jmrp is not None else _plain_bounce(msg)


def _jmrp(msg: EmailMessage) -> Report | None:
    """Microsoft's complaint format (JMRP, Outlook.com): the reported message attached as
    message/rfc822, marked with X-HmXmrOriginalRecipient; no feedback-report part."""
    marker = msg.get("X-HmXmrOriginalRecipient")
    for part in msg.walk():
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message) and inner.get("X-HmXmrOriginalRecipient") is not None:
                marker = marker or inner.get("X-HmXmrOriginalRecipient")
    if marker is None:
        return None
    return Report(kind="feedback", feedback_type="abuse", reporting_mta="Outlook.com JMRP",
                  original_recipient=_address(str(marker)))


def _dsn(part: Message) -> Report:
    blocks = _fields(part)
    if not blocks:
        raise NotUnderstood("5.6.0 the delivery-status part is empty")
    report = Report(kind="dsn", reporting_mta=_address(_value(blocks[0], "Reporting-MTA")))
    for block in blocks[1:] if not _value(blocks[0], "Final-Recipient") else blocks:
        final = _value(block, "Final-Recipient") or _value(block, "Original-Recipient")
        if not final:
            continue
        status = STATUS_RE.search(_value(block, "Status"))
        report.recipients.append(DeliveryReport(
            recipient=_address(final), action=_value(block, "Action").lower(),
            status=status.group(0) if status else "",
            diagnostic=_value(block, "Diagnostic-Code").split(";", 1)[-1].strip()[:1000],
            remote_mta=_address(_value(block, "Remote-MTA")),
        ))
    if not report.recipients:
        raise NotUnderstood("5.6.0 the delivery status names no recipient")
    return report


def _feedback(part: Message) -> Report:
    blocks = _fields(part)
    if not blocks:
        raise NotUnderstood("5.6.0 the feedback report is empty")
    block = blocks[0]
    return Report(kind="feedback", feedback_type=(_value(block, "Feedback-Type") or "abuse").lower(),
                  reporting_mta=_value(block, "User-Agent"),
                  original_recipient=_address(_value(block, "Original-Rcpt-To")))


def _plain_bounce(msg: EmailMessage) -> Report | None:
    """An old-style bounce: from a mailer daemon, with a status code and an address in its text."""
    sender = str(msg.get("From", "")).lower()
    if not any(d in sender for d in _DAEMONS):
        return None
    text = body_text(msg)
    status = STATUS_RE.search(text)
    address = re.search(r"<?([^\s<>@]+@[^\s<>]+\.[^\s<>.]+)>?", text)
    if not status or not address:
        return None
    code = status.group(0)
    return Report(kind="plain_bounce", recipients=[DeliveryReport(
        recipient=address.group(1), action="failed", status=code,
        diagnostic=text[max(0, status.start() - 200):status.end() + 200].strip()[:1000])])


def is_automatic(msg: EmailMessage) -> bool:
    """An automatic reply (RFC 3834 Auto-Submitted, vendor markers, out-of-office subjects)."""
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    if auto and auto != "no":
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None:
        return True
    if str(msg.get("Precedence", "")).strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    return bool(_AUTO_SUBJECTS.match(str(msg.get("Subject", ""))))


def body_text(msg: EmailMessage) -> str:
    """The plain-text body (or the HTML one, stripped of tags), cut to MAX_TEXT characters."""
    from playbooks.rendering import html_to_text

    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        content = part.get_payload(decode=True).decode("utf-8", "replace") if part.get_payload(decode=True) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        content = html_to_text(content)
    return content[:MAX_TEXT]


def sender_of(msg: EmailMessage) -> tuple[str, str]:
    """(display name, address) of the From header."""
    try:
        addresses = msg["From"].addresses if msg["From"] is not None else ()
    except (AttributeError, IndexError, ValueError):
        addresses = ()
    if not addresses:
        return "", ""
    return addresses[0].display_name, addresses[0].addr_spec
