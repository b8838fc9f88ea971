"""Signed NPS survey links: who (account, contact), which cycle, until when.

The token is `base64url(payload).base64url(HMAC-SHA256(secret, payload))`;
nothing in it can be changed without the secret, and it carries its own
expiry, so the endpoint needs no lookup to refuse a forged or stale link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone


class LinkRefused(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail
        super().__init__(detail)


@dataclass(frozen=True)
class SurveyLink:
    cycle_id: str
    account_id: str
    contact_email: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(secret: str, link: SurveyLink) -> str:
    payload = json.dumps([link.cycle_id, link.account_id, link.contact_email, int(link.expires_at.timestamp())],
                         separators=(",", ":")).encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify_link(secret: str, token: str, now: datetime) -> SurveyLink:
    """The link, or LinkRefused: 403 for a forged or damaged token, 410 once expired."""
    try:
        payload_part, mac_part = token.split(".")
        payload, mac = _unb64(payload_part), _unb64(mac_part)
    except (ValueError, TypeError):
        raise LinkRefused(403, "this survey link is damaged or was not issued by us") from None
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise LinkRefused(403, "this survey link is damaged or was not issued by us")
    cycle_id, account_id, email, expires = json.loads(payload)
    link = SurveyLink(cycle_id, account_id, email, datetime.fromtimestamp(expires, tz=timezone.utc))
    if now >= link.expires_at:
        raise LinkRefused(410, f"this survey closed on {link.expires_at:%Y-%m-%d}; thank you all the same")
    return link
