"""What every delivery (chat message, CRM write, outbound webhook) shares: the outcome of one
call in three words, Sent / Retry / Refused, and an HTTP client that turns a vendor's answer
into one of them.

- `Sent`: the vendor has it (`remote_id`: its id for it; `found`: it was already there, found
  by the lookup a retry makes after an attempt whose answer was lost).
- `Retry`: try again later: a timeout, a connection error, a 5xx, a 429 (its `Retry-After`,
  seconds or an HTTP date, is honoured), a configuration the vendor refuses today (a revoked
  token: retried slowly, so that fixing it delivers). `maybe_sent`: the request may have
  reached the vendor (a timeout after sending), so the next attempt looks before sending again.
- `Refused`: the vendor said no for good (a bad payload, a channel that no longer exists):
  the delivery is marked failed, with the vendor's words, and can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

# How long to wait before retrying a configuration problem (bad token, missing scope): long
# enough not to hammer the vendor, short enough that a fix is felt within the hour.
SETUP_RETRY_SECONDS = 600.0


@dataclass
class Sent:
    remote_id: str | None = None
    status_code: int | None = None
    found: bool = False
    detail: str = ""


class DeliveryError(Exception):
    def __init__(self, detail: str, status_code: int | None = None):
        super().__init__(detail)
        self.detail, self.status_code = detail[:1000], status_code


class Retry(DeliveryError):
    """Try again: after `retry_after` seconds if the vendor said so (else the back-off). `ours`: the
    delay is our own estimate (a configuration problem, an API limit), capped by
    DELIVERY_RETRY_MAX_SECONDS; a vendor's Retry-After is honoured as given."""

    def __init__(self, detail: str, status_code: int | None = None, retry_after: float | None = None,
                 maybe_sent: bool = False, ours: bool = False):
        super().__init__(detail, status_code)
        self.retry_after, self.maybe_sent, self.ours = retry_after, maybe_sent, ours


class Refused(DeliveryError):
    """The vendor refused it for good: failed, replayable."""


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (RFC 9110 section 10.2.3: seconds, or an HTTP date) in seconds from now;
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def host_of(url: str) -> str:
    """The host of a URL, for messages (never the path: a webhook URL's path is its secret)."""
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, TypeError):
        return "?"


async def call(http: httpx.AsyncClient, method: str, url: str, what: str, **kw) -> httpx.Response:
    """One request; a timeout or a transport error becomes Retry (`maybe_sent` when the request
    may have been sent before it failed). `what` names the call in messages (no secrets)."""
    try:
        return await http.request(method, url, **kw)
    except httpx.ConnectError as exc:
        raise Retry(f"{what}: cannot connect to {host_of(url)} ({type(exc).__name__})") from None
    except httpx.TimeoutException as exc:
        sent = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        raise Retry(f"{what}: no answer from {host_of(url)} in time ({type(exc).__name__})", maybe_sent=sent) from None
    except httpx.TransportError as exc:
        raise Retry(f"{what}: {type(exc).__name__} talking to {host_of(url)}", maybe_sent=True) from None


def common_retry(response: httpx.Response, what: str) -> None:
    """Raise Retry for the answers every vendor means as "later": 429 (with its Retry-After) and 5xx."""
    code = response.status_code
    if code == 429:
        after = retry_after_seconds(response.headers.get("Retry-After"))
        raise Retry(f"{what}: 429 Too Many Requests" + (f", Retry-After {after:.0f} s" if after is not None else ""),
                    code, after)
    if code >= 500:
        raise Retry(f"{what}: {code} {response.reason_phrase} from {host_of(str(response.url))}", code,
                    retry_after_seconds(response.headers.get("Retry-After")))


def excerpt(response: httpx.Response, limit: int = 300) -> str:
    """The start of an answer's body, printable, for the delivery log."""
    text = response.text[:limit]
    return "".join(c if c.isprintable() else " " for c in text).strip()
