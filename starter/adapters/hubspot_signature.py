"""HubSpot request signatures, v1, v2 and v3, exactly as HubSpot computes them.

- v1 (`X-HubSpot-Signature`, `X-HubSpot-Signature-Version: v1`): hex SHA-256 of
  client secret + body.
- v2 (same headers, version v2): hex SHA-256 of client secret + method + URI + body.
- v3 (`X-HubSpot-Signature-v3`, `X-HubSpot-Request-Timestamp` in ms): base64 HMAC-SHA256, keyed
  with the client secret, of method + URI + body + timestamp; refused when the timestamp is more
  than 5 minutes off. The URI is the full URL with only these escapes decoded before signing:
  %3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B (developers.hubspot.com, "Validate requests
  using the v3 request signature"); every other escape stays as sent.

HubSpot's published vectors are tests (tests/starter/adapters/hubspot_signature_test.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

from fastapi import Request

from starter.adapters.common import WebhookRefused, header_text, same_secret, signed_url

SIGNATURE = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
SIGNATURE_V1_V2 = "X-HubSpot-Signature"
SIGNATURE_VERSION = "X-HubSpot-Signature-Version"

_DECODED_IN_V3 = {"3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$", "27": "'", "28": "(",
                  "29": ")", "2A": "*", "2C": ",", "3B": ";"}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def v3_uri(uri: str) -> str:
    """The URI as HubSpot signs it for v3: only the listed escapes decoded (either case)."""
    return _ESCAPE.sub(lambda m: _DECODED_IN_V3.get(m.group(1).upper(), m.group(0)), uri)


def sign(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """Signature v3 of a request (`uri` as sent; the v3 decoding is applied here)."""
    message = method.encode() + v3_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def sign_v1(secret: str, body: bytes) -> str:
    """Signature v1: hex SHA-256 of client secret + body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    """Signature v2: hex SHA-256 of client secret + method + URI (as sent) + body."""
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def check_signature(request: Request, body: bytes, secret: str, versions: set[str], max_age_seconds: int,
                    public_base_url: str | None, now_ms: int | None = None) -> str:
    """Check whichever signature the request carries (v3 when it has one); returns the version.
    Raises WebhookRefused(401) naming the header: missing, not accepted, stale or wrong."""
    v3, timestamp = header_text(request, SIGNATURE), header_text(request, TIMESTAMP)
    uri = signed_url(request, public_base_url)
    if v3:
        if "v3" not in versions:
            raise WebhookRefused(401, f"{SIGNATURE}: signature v3 is not accepted here")
        if not timestamp:
            raise WebhookRefused(401, f"missing {TIMESTAMP} header (signature v3 needs it)")
        if not timestamp.isdigit():
            raise WebhookRefused(401, f"{TIMESTAMP} is not a number of milliseconds")
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        age = (now_ms - int(timestamp)) / 1000
        if abs(age) > max_age_seconds:
            raise WebhookRefused(401, f"stale request: timestamp is {age:.0f} s off (limit {max_age_seconds} s)")
        if not same_secret(v3, sign(secret, request.method, uri, body, timestamp)):
            raise WebhookRefused(401, "bad signature")
        return "v3"
    older = header_text(request, SIGNATURE_V1_V2)
    if not older:
        raise WebhookRefused(401, f"missing {SIGNATURE} or {TIMESTAMP} header")
    version = (header_text(request, SIGNATURE_VERSION) or "v1").lower()
    if version not in ("v1", "v2"):
        raise WebhookRefused(401, f"{SIGNATURE_VERSION}: {version!r} is not v1, v2 or v3")
    if version not in versions:
        raise WebhookRefused(401, f"{SIGNATURE_VERSION}: signature {version} is not accepted here "
                                  "(HUBSPOT_SIGNATURE_VERSIONS)")
    expected = sign_v1(secret, body) if version == "v1" else sign_v2(secret, request.method, uri, body)
    if not same_secret(older.lower(), expected):
        raise WebhookRefused(401, "bad signature")
    return version
