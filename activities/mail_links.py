"""Signed unsubscribe links and the opaque tokens of return and reply addresses.

An unsubscribe token is `base64url(payload).base64url(HMAC-SHA256(secret, payload))`; the
payload names the address, the kind of e-mail (survey, lifecycle) and the account, and
carries its own expiry, so `/unsubscribe/{token}` needs no session and no lookup to refuse a
forged or stale link (RFC 8058 one-click: the POST carries no cookie).

Return-path (VERP) and Reply-To addresses carry a random token stored with the recipient or
the message, never an id: `bounce+<token>@<inbound domain>`, `reply+<token>@...`. Tokens are
lower-case base32, so a mail system that lower-cases local parts cannot break them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# RFC 8058 asks that a one-click link keep working; a year and a month covers a yearly renewal mail.
UNSUBSCRIBE_LINK_DAYS = 400
TOKEN_RE = re.compile(r"^[a-z2-7]{20}$")
LOCAL_RE = re.compile(r"^(bounce|reply|unsubscribe)\+([a-z2-7]{20})$")


def new_token() -> str:
    """20 characters of lower-case base32: 100 random bits."""
    return base64.b32encode(secrets.token_bytes(13)).decode("ascii").lower()[:20]


def mailbox_token(local_part: str) -> tuple[str, str] | None:
    """('bounce' | 'reply' | 'unsubscribe', token) of an inbound address's local part, or None."""
    match = LOCAL_RE.match(local_part.lower())
    return (match.group(1), match.group(2)) if match else None


class LinkRefused(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail
        super().__init__(detail)


@dataclass(frozen=True)
class UnsubscribeLink:
    address_key: str
    category: str  # survey, lifecycle
    account_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_unsubscribe(secret: str, link: UnsubscribeLink) -> str:
    payload = json.dumps(["u1", link.address_key, link.category, link.account_id, int(link.expires_at.timestamp())],
                         separators=(",", ":"), ensure_ascii=False).encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def unsubscribe_link_for(secret: str, address_key: str, category: str, account_id: str,
                         issued_at: datetime) -> str:
    expires = issued_at.astimezone(timezone.utc) + timedelta(days=UNSUBSCRIBE_LINK_DAYS)
    return sign_unsubscribe(secret, UnsubscribeLink(address_key, category, account_id or "", expires))


def verify_unsubscribe(secret: str, token: str, now: datetime) -> UnsubscribeLink:
    """The link, or LinkRefused: 403 for a forged or damaged token, 410 once expired."""
    damaged = LinkRefused(403, "token: this unsubscribe link is damaged or was not issued by us")
    if len(token) > 2000:
        raise damaged
    try:
        payload_part, mac_part = token.split(".")
        payload, mac = _unb64(payload_part), _unb64(mac_part)
    except (ValueError, TypeError):
        raise damaged from None
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise damaged
    try:
        version, address, category, account_id, expires = json.loads(payload)
    except (ValueError, TypeError):
        raise damaged from None
    if version != "u1" or category not in ("survey", "lifecycle"):
        raise damaged
    link = UnsubscribeLink(address, category, account_id, datetime.fromtimestamp(expires, tz=timezone.utc))
    if now >= link.expires_at:
        raise LinkRefused(410, f"token: this unsubscribe link expired on {link.expires_at:%Y-%m-%d}; "
                               "use the link in a more recent e-mail, or reply to it")
    return link
