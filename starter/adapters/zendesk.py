"""Zendesk webhooks (`POST /webhooks/zendesk`): trigger webhooks and ticket event webhooks.

Both are signed: `X-Zendesk-Webhook-Signature` = base64 HMAC-SHA256, keyed with the webhook's
signing secret (ZENDESK_WEBHOOK_SECRET), of `X-Zendesk-Webhook-Signature-Timestamp` + body
(developer.zendesk.com, "Verifying webhook authenticity"); a timestamp more than
ZENDESK_WEBHOOK_MAX_AGE_SECONDS off is refused, so a captured request cannot be replayed later.

- An event webhook (`type` like `zen:event-type:ticket.created`, ids as strings, enums in upper
  case) carries the ticket as it is after the event (`detail`); its `id` is the dedupe key.
- A trigger webhook is JSON the admin wrote with placeholders (labels, not enums); it must hold a
  `ticket` object with at least its `id` (playbooks/crm/zendesk.yaml says which placeholders).
  It has no event id: the dedupe key is the ticket and a digest of the body, which a retry repeats.

Both become one `Incoming` upsert of the ticket with its whole state; the pipeline compares it
with what it knew to find the change (created, priority changed, solved, reopened, on hold).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.text import error_message
from core.settings import Settings
from playbooks.crm_connections import Connections
from starter.adapters.common import Incoming, WebhookRefused, event_key, header_text, parse_json, same_secret

SIGNATURE = "X-Zendesk-Webhook-Signature"
TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
ACCOUNT = "X-Zendesk-Account-Id"
DELETED = ("ticket.soft_deleted", "ticket.permanently_deleted", "ticket.marked_as_spam")
Text = str | int | None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's webhook signature: base64 HMAC-SHA256(secret, timestamp + body)."""
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


def check(request: Request, body: bytes, settings: Settings, now: datetime | None = None) -> None:
    """Signature and freshness; raises WebhookRefused 401 (503 when no secret is configured)."""
    if settings.zendesk_webhook_secret is None or not settings.zendesk_webhook_secret.get_secret_value():
        raise WebhookRefused(503, "Zendesk webhooks are not configured here: set ZENDESK_WEBHOOK_SECRET")
    signature, timestamp = header_text(request, SIGNATURE), header_text(request, TIMESTAMP)
    if not signature or not timestamp:
        raise WebhookRefused(401, f"missing {SIGNATURE} or {TIMESTAMP} header")
    try:
        sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRefused(401, f"{TIMESTAMP}: {timestamp[:40]!r} is not an ISO 8601 time") from None
    if sent.tzinfo is None:
        raise WebhookRefused(401, f"{TIMESTAMP}: needs a time zone (Z)")
    age = ((now or datetime.now(timezone.utc)) - sent).total_seconds()
    if abs(age) > settings.zendesk_webhook_max_age_seconds:
        raise WebhookRefused(401, f"stale request: {TIMESTAMP} is {age:.0f} s off "
                                  f"(limit {settings.zendesk_webhook_max_age_seconds} s)")
    if not same_secret(signature, sign(settings.zendesk_webhook_secret.get_secret_value(), timestamp, body)):
        raise WebhookRefused(401, "bad signature")


def _as_text(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    return str(v) if isinstance(v, int) else v


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("id", "external_id", "organization_id", mode="before", check_fields=False)
    @classmethod
    def _ids_as_text(cls, v: Any) -> Any:
        """Zendesk writes ids as numbers in some payloads and as strings in others."""
        return _as_text(v)


class Organization(_Model):
    """A trigger's `ticket.organization`: its Zendesk id, name and external_id (ours: a CRM company id)."""
    id: Text = None
    name: str | None = Field(None, max_length=500)
    external_id: Text = None


class TriggerTicket(_Model):
    """The `ticket` object of a trigger webhook's JSON (labels as placeholders render them)."""
    id: str = Field(pattern=r"^\d{1,20}$")
    subject: str | None = Field(None, max_length=5000)
    status: str | None = Field(None, max_length=100)
    priority: str | None = Field(None, max_length=100)
    created_at: str | None = Field(None, max_length=40)
    updated_at: str | None = Field(None, max_length=40)
    url: str | None = Field(None, max_length=2000)
    organization: Organization | None = None
    organization_id: Text = None

    @field_validator("organization", mode="before")
    @classmethod
    def _organization_as_id(cls, v: Any) -> Any:
        """A trigger may write the organisation as its id alone ({{ticket.organization.id}})."""
        return {"id": v} if isinstance(v, (str, int)) and not isinstance(v, bool) else v



class TriggerBody(_Model):
    """A trigger webhook's body: whatever the admin wrote, holding a `ticket`."""
    ticket: TriggerTicket


class EventDetail(_Model):
    """An event webhook's `detail`: the ticket after the event (ids as strings, enums in upper case)."""
    id: str = Field(pattern=r"^\d{1,20}$")
    subject: str | None = Field(None, max_length=5000)
    status: str | None = Field(None, max_length=100)
    priority: str | None = Field(None, max_length=100)
    organization_id: str | None = Field(None, max_length=40)
    external_id: str | None = Field(None, max_length=500)
    created_at: str | None = Field(None, max_length=40)
    updated_at: str | None = Field(None, max_length=40)



class EventBody(_Model):
    """An event webhook's body (`zen:event-type:...`, its unique `id`, the Zendesk `account_id`, `time`)."""
    type: str = Field(pattern=r"^zen:event-type:[a-z_]{1,40}\.[a-z_]{1,60}$")
    id: str = Field(min_length=1, max_length=100)
    account_id: int = Field(gt=0)
    time: str = Field(max_length=40)
    subject: str | None = Field(None, max_length=200)
    detail: dict[str, Any]


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _blank(value: str | None) -> str | None:
    """A placeholder that rendered nothing ('' or '-') is no value."""
    return None if value is None or value.strip() in ("", "-") else value.strip()


def _refused(exc: ValidationError, prefix: str) -> WebhookRefused:
    err = exc.errors()[0]
    return WebhookRefused(422, f"{prefix}{'.'.join(str(p) for p in err['loc']) or '(body)'}: {error_message(err)}")


def parse_delivery(request: Request, body: bytes, connections: Connections, settings: Settings) -> list[Incoming]:
    """One Incoming for the ticket the delivery is about (or an ignore for other events).
    Raises WebhookRefused: 422 naming the field, 403 for a Zendesk account not configured."""
    data = parse_json(body, settings.webhook_max_json_depth)
    if not isinstance(data, dict):
        raise WebhookRefused(422, "body: must be a JSON object")
    header_account = header_text(request, ACCOUNT)
    if data.get("type") is not None or "detail" in data:
        return [_event(data, connections, header_account)]
    return [_trigger(data, body, connections, header_account)]


def _connection(connections: Connections, account: str | int | None, subdomain: str | None):
    account_id = int(account) if account is not None and str(account).isdigit() else None
    connection = connections.zendesk(account_id, subdomain)
    if connection is None:
        who = f"account {account_id}" if account_id is not None else f"subdomain {subdomain!r}"
        raise WebhookRefused(403, f"account_id: Zendesk {who} is not in playbooks/crm/connections.yaml")
    return connection


def _event(data: dict, connections: Connections, header_account: str | None) -> Incoming:
    try:
        event = EventBody.model_validate(data)
    except ValidationError as exc:
        raise _refused(exc, "") from None
    connection = _connection(connections, event.account_id, None)
    occurred = _moment(event.time)
    if occurred is None:
        raise WebhookRefused(422, f"time: {event.time!r} is not an ISO 8601 time")
    kind = event.type.removeprefix("zen:event-type:")
    base = dict(key=event_key("zendesk", event.account_id, event.id), source="zendesk", connection=connection.name,
                name=event.type, occurred_at=occurred)
    if not kind.startswith("ticket."):
        return Incoming(action="ignore", object_type="other", object_id=event.id,
                        note=f"{kind} events are not acted on", **base)
    try:
        detail = EventDetail.model_validate(event.detail)
    except ValidationError as exc:
        raise _refused(exc, "detail.") from None
    if kind in DELETED:
        return Incoming(action="delete", object_type="ticket", object_id=detail.id, **base)
    properties = {"subject": _blank(detail.subject), "status": _blank(detail.status),
                  "priority": _blank(detail.priority),
                  "organization_id": detail.organization_id if detail.organization_id not in (None, "0") else None,
                  "created_at": detail.created_at}
    return Incoming(action="upsert", object_type="ticket", object_id=detail.id, properties=properties, whole=True,
                    created=kind == "ticket.created", **base)


def _trigger(data: dict, body: bytes, connections: Connections, header_account: str | None) -> Incoming:
    if not isinstance(data.get("ticket"), dict):
        raise WebhookRefused(422, "ticket: missing (a trigger's JSON must hold the ticket: id, subject, status, "
                                  "priority, organization)")
    try:
        ticket = TriggerBody.model_validate(data).ticket
    except ValidationError as exc:
        raise _refused(exc, "") from None
    host = urlsplit(ticket.url).hostname if ticket.url else None
    subdomain = host.split(".")[0] if host and host.endswith(".zendesk.com") else None
    connection = _connection(connections, header_account, subdomain)
    org = ticket.organization or Organization()
    org_id = org.id or ticket.organization_id
    properties = {"subject": _blank(ticket.subject), "status": _blank(ticket.status),
                  "priority": _blank(ticket.priority), "organization_id": _blank(org_id),
                  "organization_external_id": _blank(org.external_id), "organization_name": _blank(org.name),
                  "created_at": ticket.created_at}
    occurred = _moment(ticket.updated_at) or _moment(ticket.created_at) or datetime.now(timezone.utc)
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Incoming(key=event_key("zendesk", "trigger", connection.name, ticket.id, digest), source="zendesk",
                    connection=connection.name, name="trigger", action="upsert", object_type="ticket",
                    object_id=ticket.id, properties=properties, whole=True, occurred_at=occurred)


# What a ticket's properties are called once read (both shapes are put in these words above).
FIELDS = {
    "ticket": {"priority": "priority", "stage": "status", "subject": "subject", "opened": "created_at",
               "organization": "organization_id", "organization_external_id": "organization_external_id",
               "organization_name": "organization_name"},
}
