"""What every webhook adapter shares: refusals, reading a body within its limit, JSON within its
depth, the URL as the sender signed it, and `Incoming`, the checked vendor event every adapter
produces and the pipeline (starter/events) acts on.

Nothing here writes anything: an adapter checks a whole delivery (signature, size, shape, sender)
before the pipeline sees any of it, so a refused delivery changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from core.text import error_message
from starter.security.limits import json_too_deep

Source = Literal["generic", "hubspot", "salesforce", "zendesk"]
# What the pipeline does with an event (starter/events/pipeline.py dispatches on it).
Action = Literal["route", "upsert", "associate", "merge", "delete", "restore", "privacy_delete", "task_status",
                 "ignore"]
OBJECT_TYPES = ("company", "contact", "deal", "ticket", "account")


class WebhookRefused(Exception):
    """A delivery refused whole: `status` (4xx, or 503 for our own configuration), and `detail`
    naming the field. Nothing was written."""

    def __init__(self, status: int, detail: str, **extra: Any):
        self.status, self.detail, self.extra = status, detail, extra
        super().__init__(detail)


class Incoming(BaseModel):
    """One vendor event, checked and put in our words, before it is resolved to our accounts.

    `key`: what the vendor's retries of this event repeat (the dedupe key, `crm_events.event_id`).
    `object_type` / `object_id`: the CRM object it is about (company, contact, deal, ticket; for the
    generic shape `account` and our account id). `properties`: CRM property names and raw values
    as sent (strings; None when cleared); `whole`: they are the whole record (Salesforce and Zendesk
    send the record, HubSpot one changed property). `related`: an association's other side
    (`company`, `removed`, `primary`) or a merge's ids (`primary`, `merged`). `event`: the generic
    event as given. `occurred_at` is UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=300)
    source: Source
    connection: str = Field(min_length=1, max_length=60)
    name: str = Field(min_length=1, max_length=200, description="the vendor's name for the event")
    action: Action
    object_type: str = Field(pattern=r"^[a-z_]{1,40}$")
    object_id: str = Field(min_length=1, max_length=200)
    occurred_at: datetime
    properties: dict[str, str | None] = {}
    whole: bool = False
    created: bool = False
    related: dict[str, Any] = {}
    event: dict[str, Any] | None = None
    note: str = ""


def event_key(source: str, *parts: object) -> str:
    """A readable dedupe key; a long one becomes its SHA-256 so it fits the column."""
    key = ":".join([source, *(str(p) for p in parts if p is not None and p != "")])
    return key if len(key) <= 200 else f"{source}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


# -- the body --------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes. Counts what is
    streamed, so a chunked body (no Content-Length) or a lying Content-Length cannot slip past."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise WebhookRefused(400, "Content-Length: not a number of bytes")
        if int(declared) > limit:
            raise WebhookRefused(413, f"body larger than {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise WebhookRefused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, max_depth: int) -> Any:
    """UTF-8 JSON within `max_depth`, else a 422 saying where it breaks."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRefused(422, f"body is not UTF-8 (byte {exc.start})") from None
    if json_too_deep(body, max_depth):
        raise WebhookRefused(422, f"body: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookRefused(422, f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise WebhookRefused(422, "body: JSON nested too deep") from None


def pydantic_problem(exc, prefix: str = "") -> str:
    """The first error of a pydantic ValidationError as `field: message`."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(event)"
    return f"{prefix}{where}: {error_message(err)}"


# -- who signed what ----------------------------------------------------------------------------
def signed_url(request: Request, public_base_url: str | None) -> str:
    """The URL as the sender called it: PUBLIC_BASE_URL (when a proxy changes what we see) or the
    request's scheme and host, then the path and query exactly as sent (still percent-encoded)."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.split(b"?")[0].decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    if public_base_url:
        base = public_base_url.rstrip("/")
    else:
        base = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
    return base + path + (f"?{query}" if query else "")


def same_secret(given: str | bytes | None, expected: str | bytes) -> bool:
    """Constant-time comparison of a signature or secret (a missing one is simply wrong)."""
    if given is None:
        return False
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def header_text(request: Request, name: str) -> str | None:
    """A header as text, or None; a header with characters outside printable ASCII is refused
    (401: signatures and timestamps are ASCII), never a 500."""
    value = request.headers.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isprintable():
        raise WebhookRefused(401, f"{name}: not printable ASCII")
    return value.strip()


def utc_from_ms(ms: int) -> datetime:
    """A HubSpot-style time (milliseconds since the epoch) as an aware UTC datetime."""
    from datetime import timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
