"""CRM webhooks: signed HubSpot-style events start and steer plays.

A request is checked whole before anything happens: signature (HubSpot v3),
age, size, JSON, every event's fields, every account, every mapped input.
A refused request starts no workflow and writes no row. Then each event is
acted on once: its id is claimed in `crm_events` in the same transaction
that acts, so a duplicate or replayed delivery finds the claim and does
nothing, and an event older than the last applied change of the same
property (`crm_property_state`) is recorded as stale instead of undoing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from temporalio.client import Client, WorkflowUpdateFailedError

from activities.accounts import fetch_account
from activities.churn import signal_watch
from core.logs import get_logger
from core.models import Priority
from core.settings import Settings
from playbooks.loader import TRIGGERS_FILE, load_triggers
from playbooks.triggers import Trigger, TriggersContent
from starter import steering
from starter.steering import SteeringError
from workflows import messages
from workflows.churn_messages import IndicatorFlag, MetricsReading, churn_workflow_id
from workflows.onboarding_messages import onboarding_workflow_id
from workflows.renewal_messages import ChangeRenewalDate, Churned, Renewed, renewal_workflow_id
from workflows.sla_messages import (
    TICKET_ID, Acknowledged, OnHold, PriorityChanged, Reopened, Resolved, Resumed, sla_workflow_id,
)

log = get_logger("webhooks")
router = APIRouter()
SIGNATURE = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
MAX_EVENTS = 100

class MetricChange(messages.Message):
    """One metric as the CRM sends it; becomes a reading for the churn watch."""

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    value: float
    source: str = "crm"


SIGNAL_MODELS: dict[str, type[messages.Message]] = {
    "flag_indicator": IndicatorFlag, "read_metrics": MetricChange,
    "renewed": Renewed, "churned": Churned, "acknowledged": Acknowledged, "priority_changed": PriorityChanged,
    "on_hold": OnHold, "resumed": Resumed, "resolved": Resolved, "reopened": Reopened,
}


class WebhookRefused(Exception):
    def __init__(self, status: int, detail: str, **extra: Any):
        self.status, self.detail, self.extra = status, detail, extra
        super().__init__(detail)


class CrmEvent(BaseModel):
    """One HubSpot-style event. Fields the CRM adds (portalId, attemptNumber, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    eventId: str = Field(min_length=1, max_length=100)
    subscriptionType: str = Field(min_length=1, max_length=100)
    occurredAt: int = Field(gt=0, description="milliseconds since the epoch")
    accountId: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    objectId: str | None = None
    propertyName: str | None = Field(None, max_length=100)
    propertyValue: str | None = Field(None, max_length=1000)
    ticketId: str | None = Field(None, pattern=TICKET_ID)
    priority: Priority | None = None
    subject: str | None = Field(None, max_length=500)

    @field_validator("eventId", "objectId", mode="before")
    @classmethod
    def _id_as_text(cls, v):
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurredAt / 1000, tz=timezone.utc)

    def value_of(self, source: str) -> Any:
        if source.startswith("="):
            return source[1:]
        return self.occurred if source == "occurredAt" else getattr(self, source)


# -- signature ---------------------------------------------------------------
def sign(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot signature v3: base64 of HMAC-SHA256 over method + URI + body + timestamp."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def check_signature(request: Request, body: bytes, settings: Settings, now_ms: int | None = None) -> None:
    signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
    if not signature or not timestamp:
        raise WebhookRefused(401, f"missing {SIGNATURE} or {TIMESTAMP} header")
    try:
        sent_ms = int(timestamp)
    except ValueError:
        raise WebhookRefused(401, f"{TIMESTAMP} is not a number of milliseconds") from None
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    age = (now_ms - sent_ms) / 1000
    if abs(age) > settings.crm_webhook_max_age_seconds:
        raise WebhookRefused(401, f"stale request: timestamp is {age:.0f} s off (limit "
                                  f"{settings.crm_webhook_max_age_seconds} s)")
    uri = str(request.url)
    if settings.public_base_url:
        query = f"?{request.url.query}" if request.url.query else ""
        uri = settings.public_base_url.rstrip("/") + request.url.path + query
    expected = sign(settings.crm_webhook_secret.get_secret_value(), request.method, uri, body, timestamp)
    if not hmac.compare_digest(expected, signature):
        raise WebhookRefused(401, "bad signature")


# -- parsing and planning (no side effects) -------------------------------------
def parse_events(body: bytes) -> list[CrmEvent]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRefused(422, f"body is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookRefused(422, f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > MAX_EVENTS:
        raise WebhookRefused(422, f"expected 1 to {MAX_EVENTS} events, got {len(items)}")
    events, errors = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"event": i, "field": "(event)", "message": "must be a JSON object"})
            continue
        try:
            events.append(CrmEvent.model_validate(item))
        except ValidationError as exc:
            errors.extend(
                {"event": i, "field": ".".join(str(p) for p in e["loc"]) or "(event)", "message": e["msg"]}
                for e in exc.errors()
            )
    if errors:
        first = errors[0]
        raise WebhookRefused(422, f"event {first['event']}: {first['field']}: {first['message']}", errors=errors)
    return events


@dataclass
class Plan:
    """What one event will do, decided before anything is done."""

    event: CrmEvent
    trigger: Trigger | None
    workflow_id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    update_args: dict[str, Any] = field(default_factory=dict)
    property_key: str | None = None


def _mapped(event: CrmEvent, mapping: dict[str, str], what: str) -> dict[str, Any]:
    out = {}
    for target, source in mapping.items():
        value = event.value_of(source)
        if value is None:
            raise WebhookRefused(422, f"{source}: missing, and trigger {what} needs it for {target}")
        out[target] = value
    return out


def _typed(model: type[BaseModel], args: dict[str, Any], event: CrmEvent, mapping: dict[str, str]) -> BaseModel:
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        target = str(err["loc"][0]) if err["loc"] else "(input)"
        source = mapping.get(target, target)
        raise WebhookRefused(422, f"{source}: {err['msg']} (for {target})") from None


def plan(event: CrmEvent, triggers: TriggersContent) -> Plan:
    trigger = triggers.route(event.subscriptionType, event.propertyName, event.propertyValue)
    if trigger is None:
        return Plan(event, None)
    p = Plan(event, trigger)
    if trigger.start is not None:
        start = trigger.start
        p.args = _mapped(event, start.input, trigger.name)
        if start.playbook == "renewal":
            p.args["renewal_date"] = _as_date(p.args["renewal_date"], start.input["renewal_date"])
            p.workflow_id = renewal_workflow_id(event.accountId)
        elif start.playbook == "sla":
            if not steering.valid_ticket_id(str(p.args["ticket_id"])):
                raise WebhookRefused(422, f"{start.input['ticket_id']}: not a ticket id")
            if p.args["priority"] not in ("P0", "P1", "P2", "P3"):
                raise WebhookRefused(422, f"{start.input['priority']}: must be P0, P1, P2 or P3")
            p.workflow_id = sla_workflow_id(p.args["ticket_id"])
        else:
            p.workflow_id = onboarding_workflow_id(event.accountId)
        if start.if_running is not None:
            p.update_args = _mapped(event, start.if_running.args, trigger.name)
            _typed(ChangeRenewalDate, p.update_args, event, start.if_running.args)
    else:
        sig = trigger.signal
        p.args = _mapped(event, sig.args, trigger.name)
        _typed(SIGNAL_MODELS[sig.name], p.args, event, sig.args)
        if sig.playbook == "sla":
            ticket = event.value_of(sig.ticket)
            if ticket is None:
                raise WebhookRefused(422, f"{sig.ticket}: missing, and trigger {trigger.name} needs the ticket")
            p.workflow_id = sla_workflow_id(str(ticket))
        elif sig.playbook == "renewal":
            p.workflow_id = renewal_workflow_id(event.accountId)
        elif sig.playbook == "churn":
            p.workflow_id = churn_workflow_id(event.accountId)
        else:
            p.workflow_id = onboarding_workflow_id(event.accountId)
    if event.propertyName:
        p.property_key = f"{p.workflow_id}:{event.propertyName}"
    return p


def _as_date(value: Any, source: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise WebhookRefused(422, f"{source}: {value!r} is not a date (YYYY-MM-DD)") from None


# -- acting -------------------------------------------------------------------------
async def _act(p: Plan, client: Client, pool: asyncpg.Pool, settings: Settings) -> str:
    t, e = p.trigger, p.event
    if t.start is not None:
        try:
            if t.start.playbook == "onboarding":
                await steering.launch_onboarding(client, pool, settings, e.accountId, f"crm:{e.eventId}")
            elif t.start.playbook == "renewal":
                await steering.launch_renewal(client, pool, settings, e.accountId, f"crm:{e.eventId}",
                                              p.args["renewal_date"])
            else:
                await steering.open_ticket(client, pool, settings, p.args["ticket_id"], e.accountId,
                                           p.args["priority"], p.args["subject"], p.args.get("opened_at"),
                                           f"crm:{e.eventId}")
            return "started"
        except SteeringError as exc:
            if exc.status != 409:
                raise
        if t.start.if_running is None:
            return "already running"
        try:
            await client.get_workflow_handle(p.workflow_id).execute_update(
                t.start.if_running.name, ChangeRenewalDate.model_validate(p.update_args))
        except WorkflowUpdateFailedError as exc:
            message = getattr(exc.cause, "message", None) or str(exc)
            if "already" in message:
                return "unchanged"
            raise SteeringError(message, 422) from None
        return "updated"
    sig = t.signal
    arg = SIGNAL_MODELS[sig.name].model_validate(p.args)
    if sig.playbook == "churn":
        if isinstance(arg, MetricChange):
            arg = MetricsReading(values={arg.metric: arg.value}, source=arg.source)
        await signal_watch(client, settings, e.accountId, sig.name, arg, f"crm:{e.eventId}")
        return "signalled"
    try:
        await steering.signal_play(client, p.workflow_id, sig.name, arg)
    except SteeringError as exc:
        # Reordered delivery (an update before the creation): refuse, write nothing; the CRM retries.
        raise SteeringError(f"{exc}; the event is not recorded, retry after the play starts", 409) from None
    return "signalled"


async def handle_event(p: Plan, client: Client, pool: asyncpg.Pool, settings: Settings) -> dict:
    e = p.event
    result = {"eventId": e.eventId, "trigger": p.trigger.name if p.trigger else None, "workflow_id": p.workflow_id}
    async with pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            """
            INSERT INTO crm_events (event_id, subscription, account_id, occurred_at, trigger_name, outcome, workflow_id)
            VALUES ($1, $2, $3, $4, $5, 'pending', $6) ON CONFLICT (event_id) DO NOTHING RETURNING event_id
            """,
            e.eventId, e.subscriptionType, e.accountId, e.occurred, result["trigger"], p.workflow_id,
        )
        if claimed is None:
            earlier = await conn.fetchrow("SELECT outcome, workflow_id FROM crm_events WHERE event_id = $1", e.eventId)
            return {**result, "outcome": "duplicate", "first_outcome": earlier["outcome"],
                    "workflow_id": earlier["workflow_id"]}
        if p.trigger is None:
            outcome = "ignored: no trigger matches"
        elif p.property_key and await _is_stale(conn, p):
            outcome = "stale: a newer change of the same property was applied"
        else:
            outcome = await _act(p, client, pool, settings)
        await conn.execute("UPDATE crm_events SET outcome = $2 WHERE event_id = $1", e.eventId, outcome)
    log.info("webhook.event", event_id=e.eventId, subscription=e.subscriptionType, account_id=e.accountId,
             trigger=result["trigger"], outcome=outcome, workflow_id=p.workflow_id)
    return {**result, "outcome": outcome}


async def _is_stale(conn: asyncpg.Connection, p: Plan) -> bool:
    """Claim the property for this event unless a newer change already did (row-locked, so concurrent
    deliveries of the same property are decided one after the other)."""
    e = p.event
    row = await conn.fetchrow("SELECT occurred_at FROM crm_property_state WHERE object_key = $1 FOR UPDATE",
                              p.property_key)
    if row is not None and row["occurred_at"] > e.occurred:
        return True
    await conn.execute(
        """
        INSERT INTO crm_property_state (object_key, occurred_at, value, event_id) VALUES ($1, $2, $3, $4)
        ON CONFLICT (object_key) DO UPDATE SET occurred_at = EXCLUDED.occurred_at, value = EXCLUDED.value,
            event_id = EXCLUDED.event_id
        """,
        p.property_key, e.occurred, e.propertyValue, e.eventId,
    )
    return False


# -- the endpoint -----------------------------------------------------------------------
_triggers_cache: dict[Path, tuple[float, TriggersContent]] = {}


def current_triggers(settings: Settings) -> TriggersContent:
    """triggers.yaml as it is now: edits apply to the next event without a restart."""
    path = Path(settings.playbooks_dir) / TRIGGERS_FILE
    mtime = path.stat().st_mtime
    cached = _triggers_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, load_triggers(path))
        _triggers_cache[path] = cached
    return cached[1]


def deps(request: Request):
    return request.app.state


@router.post(
    "/webhooks/crm",
    status_code=202,
    summary="CRM events (HubSpot v3 signature) that start or steer plays",
    responses={401: {"description": "missing, bad or stale signature"}, 404: {"description": "unknown account"},
               409: {"description": "the play an update is for has not started yet"},
               413: {"description": "body too large"}, 422: {"description": "malformed event, names the field"}},
)
async def crm_webhook(request: Request, state=Depends(deps)):
    settings: Settings = state.settings
    try:
        declared = int(request.headers.get("content-length") or 0)
        if declared > settings.crm_webhook_max_bytes:
            raise WebhookRefused(413, f"body larger than {settings.crm_webhook_max_bytes} bytes")
        body = await request.body()
        if len(body) > settings.crm_webhook_max_bytes:
            raise WebhookRefused(413, f"body larger than {settings.crm_webhook_max_bytes} bytes")
        check_signature(request, body, settings)
        events = parse_events(body)
        triggers = current_triggers(settings)
        plans = [plan(e, triggers) for e in events]
        for account_id in sorted({e.accountId for e in events}):
            try:
                await fetch_account(state.pool, account_id)
            except LookupError:
                raise WebhookRefused(404, f"accountId: unknown account {account_id!r}") from None
    except WebhookRefused as exc:
        log.warning("webhook.refused", status=exc.status, reason=exc.detail)
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status)
    results = []
    for p in plans:
        try:
            results.append(await handle_event(p, state.client, state.pool, settings))
        except SteeringError as exc:
            log.warning("webhook.event_refused", event_id=p.event.eventId, status=exc.status, reason=str(exc))
            return JSONResponse({"detail": f"event {p.event.eventId}: {exc}", "done": results}, status_code=exc.status)
    return JSONResponse({"results": results}, status_code=202)
