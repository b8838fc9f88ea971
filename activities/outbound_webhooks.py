"""Outbound webhooks, signed per Standard Webhooks (standardwebhooks.com, "Standard Webhooks
specification"): other tools subscribe to play events in playbooks/notifications.yaml.

Each delivery is one POST of a JSON body `{"type": <event>, "timestamp": <ISO 8601 UTC>, "data":
{...}}` with three headers: `webhook-id` (the message id: the same on every retry and replay, so
a receiver drops what it has seen), `webhook-timestamp` (integer seconds since the epoch, of this
attempt) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the
subscription's secret, `whsec_` + base64 key, from OUTBOUND_WEBHOOK_SECRETS). The signing is the
specification's reference library (`standardwebhooks`).

Answers: any 2xx is delivered. 410 Gone is a refusal (the receiver wants no more: failed,
replayable once it changes its mind). Everything else (3xx, which is not followed; 4xx; 5xx;
timeouts) is retried with back-off for WEBHOOK_GIVE_UP_HOURS (a day), honouring a 429's
Retry-After. At most 4 KB of an answer is read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timezone

import httpx
from standardwebhooks.webhooks import Webhook

from activities.delivery_http import Refused, Retry, Sent, host_of, retry_after_seconds

USER_AGENT = "cs-playbooks-webhooks/1"
MAX_ANSWER_BYTES = 4096


class BadSecret(ValueError):
    """A subscription secret that is not `whsec_` + base64 of 24 to 64 bytes."""


def check_secret(secret: str) -> None:
    """Raise BadSecret unless the secret reads as Standard Webhooks says (whsec_ + base64, 24-64 bytes)."""
    if not secret.startswith("whsec_"):
        raise BadSecret("must start with whsec_")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret("the part after whsec_ is not base64") from None
    if not 24 <= len(key) <= 64:
        raise BadSecret(f"the key is {len(key)} bytes; 24 to 64 expected")


def message_id(delivery_key: str) -> str:
    """The webhook-id of a delivery: stable for it, unique across deliveries."""
    return "msg_" + hashlib.sha256(delivery_key.encode()).hexdigest()[:32]


def signed_headers(secret: str, msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (the exact text sent)."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, moment, body)}


async def post_webhook(http: httpx.AsyncClient, url: str, secret: str, msg_id: str, body: str) -> Sent:
    """POST one signed delivery; raises Retry or Refused."""
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               **signed_headers(secret, msg_id, body)}
    what = f"webhook to {host_of(url)}"
    try:
        async with http.stream("POST", url, content=body.encode(), headers=headers) as response:
            chunks = b""
            async for chunk in response.aiter_bytes():
                chunks += chunk
                if len(chunks) >= MAX_ANSWER_BYTES:
                    break
    except httpx.ConnectError as exc:
        raise Retry(f"{what}: cannot connect ({type(exc).__name__})") from None
    except httpx.TimeoutException as exc:
        raise Retry(f"{what}: no answer in time ({type(exc).__name__})",
                    maybe_sent=not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))) from None
    except httpx.TransportError as exc:
        raise Retry(f"{what}: {type(exc).__name__}", maybe_sent=True) from None
    code = response.status_code
    text = "".join(c if c.isprintable() else " " for c in chunks[:300].decode("utf-8", "replace")).strip()
    if 200 <= code < 300:
        return Sent(status_code=code, detail=text)
    if code == 410:
        raise Refused(f"{what}: 410 Gone (the receiver wants no more of these) {text}", code)
    after = retry_after_seconds(response.headers.get("Retry-After")) if code in (429, 503) else None
    raise Retry(f"{what}: {code} {response.reason_phrase} {text}".strip(), code, after)
