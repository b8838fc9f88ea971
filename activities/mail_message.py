"""One recipient's copy of a stored e-mail, as MIME bytes.

Every recipient of a message gets the same message (same Message-ID, same To and Cc, one
conversation), in a transaction of its own whose return path names that recipient (VERP,
`bounce+<token>@<inbound domain>`). A non-transactional copy to a customer also carries that
person's unsubscribe: `List-Unsubscribe` with a signed one-click link and a mailto address,
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and a visible link at the
foot of the text and HTML parts. A meeting e-mail carries its iCalendar invitation (RFC 6047
iMIP: a `text/calendar; method=REQUEST` alternative, and the same as an .ics attachment).
"""

from __future__ import annotations

import hashlib
import html
import quopri
import re
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from activities.addresses import MailAddress, parse_address
from activities.mail_links import unsubscribe_link_for
from core.settings import Settings

class _HeaderClasses(HeaderRegistry):
    """The standard header registry, remembering the class it builds for each header name: the
    stock one builds a new class for every header of every message, a third of the cost of a
    survey e-mail."""

    def __init__(self):
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name):
        key = name.lower()
        if key not in self._classes:
            self._classes[key] = super().__getitem__(name)
        return self._classes[key]


# Headers fold at 998 octets (RFC 5322's limit), not 78: a long one-click URL must stay one word,
# not become encoded words that no mail client would follow.
ASCII_POLICY = policy.SMTP.clone(max_line_length=998, header_factory=_HeaderClasses())
UTF8_POLICY = policy.SMTPUTF8.clone(max_line_length=998, header_factory=_HeaderClasses())
CATEGORY_WORDS = {"lifecycle": "account and renewal e-mails", "survey": "survey e-mails"}
_BODY_END = re.compile(r"</body\s*>", re.I)


@dataclass(frozen=True)
class Listed:
    """A recipient as the message's To or Cc lists them."""

    kind: str  # to, cc
    address: MailAddress


@dataclass(frozen=True)
class Copy:
    sender: str  # envelope MAIL FROM
    recipient: str  # envelope RCPT TO
    data: bytes
    smtputf8: bool


def sender_address(settings: Settings) -> MailAddress:
    return _sender(settings.mail_from)


@lru_cache(maxsize=16)
def _sender(mail_from: str) -> MailAddress:
    name, addr = parseaddr(mail_from)
    return parse_address(addr, name)


def inbound_address(settings: Settings, kind: str, token: str) -> str:
    return f"{kind}+{token}@{settings.inbound_mail_domain}"


def unsubscribe_urls(settings: Settings, row, recipient) -> tuple[str, str]:
    """(https one-click URL, mailto URI) for one recipient of a non-transactional e-mail."""
    token = unsubscribe_link_for(settings.email_link_secret.get_secret_value(), recipient["address_key"],
                                 row["category"], row["account_id"] or "", row["created_at"])
    url = f"{settings.survey_base_url}/unsubscribe/{token}"
    mailto = f"mailto:{inbound_address(settings, 'unsubscribe', recipient['token'])}?subject=unsubscribe"
    return url, mailto


def _footer_text(address: str, category: str, url: str) -> str:
    return (f"\n\n-- \nYou receive {CATEGORY_WORDS[category]} from us at {address}.\n"
            f"Unsubscribe: {url}\n")


def _footer_html(address: str, category: str, url: str) -> str:
    return ('<div class="unsubscribe" style="margin-top:24px;font-size:12px;color:#666">'
            f"You receive {html.escape(CATEGORY_WORDS[category])} from us at {html.escape(address)}. "
            f'<a href="{html.escape(url, quote=True)}">Unsubscribe</a></div>')


def with_html_footer(body: str, footer: str) -> str:
    match = None
    for match in _BODY_END.finditer(body):
        pass  # the last </body>
    if match is None:
        return body + footer
    return body[:match.start()] + footer + body[match.start():]


def build_copy(row, recipient, listed: list[Listed], settings: Settings, smtputf8: bool) -> Copy:
    """The MIME bytes of `row` (a communications row) for `recipient` (its recipients row)."""
    text, body_html = row["body_text"], row["body_html"]
    extra: list[tuple[str, str]] = []
    if recipient["customer"] and row["category"] in CATEGORY_WORDS:
        url, mailto = unsubscribe_urls(settings, row, recipient)
        extra = [("List-Unsubscribe", f"<{url}>, <{mailto}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        text += _footer_text(recipient["address"], row["category"], url)
        body_html = with_html_footer(body_html, _footer_html(recipient["address"], row["category"], url))
    headers = _headers(row, listed, settings, smtputf8) + extra
    if row["calendar"]:
        data = _library_bytes(headers, text, body_html, row["calendar"], smtputf8)
    else:
        data = _fast_bytes(headers, text, body_html, row["message_id"], smtputf8)
    verp = parse_address(inbound_address(settings, "bounce", recipient["token"]))
    entry = next(e for e in listed if e.address.key == recipient["address_key"])
    return Copy(sender=verp.envelope(False), recipient=entry.address.envelope(smtputf8), data=data, smtputf8=smtputf8)


def _headers(row, listed: list[Listed], settings: Settings, smtputf8: bool) -> list[tuple[str, object]]:
    """The message's headers, addresses as `Address` objects (the library encodes and quotes them)."""
    headers: list[tuple[str, object]] = [("From", [sender_address(settings).header(smtputf8)])]
    for kind in ("to", "cc"):
        people = [entry.address.header(smtputf8) for entry in listed if entry.kind == kind]
        if people:
            headers.append((kind.capitalize(), people))
    headers += [("Subject", row["subject"]), ("Message-ID", row["message_id"]),
                ("Date", format_datetime(row["created_at"])), ("X-Playbook-Workflow", row["workflow_id"]),
                ("X-Playbook-Step", row["step"])]
    if row["reply_token"]:
        reply_to = parse_address(inbound_address(settings, "reply", row["reply_token"]), sender_address(settings).name)
        headers.append(("Reply-To", [reply_to.header(False)]))
    return headers


def _library_bytes(headers, text: str, body_html: str, ics: str, smtputf8: bool) -> bytes:
    """The message built by the e-mail library (used for meeting invitations: the full MIME tree)."""
    msg = EmailMessage(policy=UTF8_POLICY if smtputf8 else ASCII_POLICY)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text)
    msg.add_alternative(body_html, subtype="html")
    msg.add_alternative(ics, subtype="calendar", params={"method": "REQUEST"})
    msg.add_attachment(ics.encode("utf-8"), maintype="application", subtype="ics", filename="invite.ics")
    return msg.as_bytes()


_PLAIN = re.compile(r"^[\x20-\x7e]{0,900}$")
# RFC 5322 atoms: a display name made of them (single spaces between) needs no quoting nor encoding,
# and a dot-atom mailbox at an ASCII host name is written as it is.
_ATOMS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_HOST = re.compile(r"^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


def _plain_addresses(value) -> str | None:
    """`Name <local@domain>, ...` when every address of the list is plain ASCII atoms (what the library
    writes for them, without its parser), else None."""
    out = []
    for a in value:
        if not isinstance(a, Address) or not _DOT_ATOM.match(a.username) or not _HOST.match(a.domain):
            return None
        if not a.display_name:
            out.append(f"{a.username}@{a.domain}")
        elif _ATOMS.match(a.display_name) and "=?" not in a.display_name:  # not read as an encoded word
            out.append(f"{a.display_name} <{a.username}@{a.domain}>")
        else:
            return None
    return ", ".join(out)


def _header_line(name: str, value, pol) -> bytes:
    """One header as the e-mail library folds it; a short plain-ASCII value of ours, or a list of plain
    addresses, as it is (the same bytes the library would write, at a fraction of the cost: a survey
    batch writes thousands)."""
    if isinstance(value, list):
        plain = _plain_addresses(value)
        if plain is not None:
            value = plain
    if isinstance(value, str) and _PLAIN.match(value) and len(name) + len(value) < 900:
        return f"{name}: {value}\r\n".encode("ascii")
    return pol.header_factory(name, value).fold(policy=pol).encode("utf-8")


def _body_part(content: str, subtype: str) -> bytes:
    """One text/* part: 7bit when it is short-lined ASCII, else quoted-printable UTF-8 (RFC 2045)."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if content.isascii() and all(len(line) <= 998 for line in lines):
        body, cte = "\r\n".join(lines).encode("ascii"), "7bit"
    else:
        body = quopri.encodestring("\n".join(lines).encode("utf-8")).replace(b"\n", b"\r\n")
        cte = "quoted-printable"
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
            .encode("ascii") + body)


def _fast_bytes(headers, text: str, body_html: str, message_id: str, smtputf8: bool) -> bytes:
    """multipart/alternative (text, then HTML), written directly: headers folded by the library
    (addresses, Subject), bodies encoded per RFC 2045. The boundary comes from the Message-ID, so a
    resent copy is the same bytes."""
    pol = UTF8_POLICY if smtputf8 else ASCII_POLICY
    boundary = "=_" + hashlib.sha256(message_id.encode()).hexdigest()[:28]
    out = [_header_line(name, value, pol) for name, value in headers]
    out.append(f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
               .encode("ascii"))
    for content, subtype in ((text, "plain"), (body_html, "html")):
        out.append(f"--{boundary}\r\n".encode("ascii") + _body_part(content, subtype))
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)
