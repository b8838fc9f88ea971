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

import html
import re
from dataclasses import dataclass
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

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
    name, addr = parseaddr(settings.mail_from)
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
    msg = EmailMessage(policy=UTF8_POLICY if smtputf8 else ASCII_POLICY)
    msg["From"] = sender_address(settings).header(smtputf8)
    for kind in ("to", "cc"):
        people = [entry.address.header(smtputf8) for entry in listed if entry.kind == kind]
        if people:
            msg[kind.capitalize()] = people
    msg["Subject"] = row["subject"]
    msg["Message-ID"] = row["message_id"]
    msg["Date"] = format_datetime(row["created_at"])
    msg["X-Playbook-Workflow"] = row["workflow_id"]
    msg["X-Playbook-Step"] = row["step"]
    if row["reply_token"]:
        from_name = sender_address(settings).name
        msg["Reply-To"] = parse_address(inbound_address(settings, "reply", row["reply_token"]), from_name).header(False)
    text, body_html = row["body_text"], row["body_html"]
    if recipient["customer"] and row["category"] in CATEGORY_WORDS:
        url, mailto = unsubscribe_urls(settings, row, recipient)
        msg["List-Unsubscribe"] = f"<{url}>, <{mailto}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text += _footer_text(recipient["address"], row["category"], url)
        body_html = with_html_footer(body_html, _footer_html(recipient["address"], row["category"], url))
    msg.set_content(text)
    msg.add_alternative(body_html, subtype="html")
    if row["calendar"]:
        ics = row["calendar"]
        msg.add_alternative(ics, subtype="calendar", params={"method": "REQUEST"})
        msg.add_attachment(ics.encode("utf-8"), maintype="application", subtype="ics", filename="invite.ics")
    verp = parse_address(inbound_address(settings, "bounce", recipient["token"]))
    entry = next(e for e in listed if e.address.key == recipient["address_key"])
    return Copy(sender=verp.envelope(False), recipient=entry.address.envelope(smtputf8), data=msg.as_bytes(),
                smtputf8=smtputf8)
