"""The generic CRM event (`POST /webhooks/crm`): our own HubSpot-style shape naming our account.

Signed like HubSpot (starter/adapters/hubspot_signature.py, CRM_WEBHOOK_SECRET). A delivery is one
event or an array of up to 100, each with `eventId` (the dedupe key), `subscriptionType`,
`occurredAt` (ms), `accountId` and as needed `propertyName` / `propertyValue`, `ticketId`,
`priority`, `subject`. Everything is checked before anything is written: the fields, the value a
trigger rule maps (a renewal date that is not a date, or in the past), so a refused delivery
(422) starts and writes nothing. An account the book does not have yet is not a refusal: the
event waits for it (starter/events).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from core.text import error_message
from core.settings import Settings
from playbooks.triggers import TriggersContent
from starter import steering
from starter.adapters.common import Incoming, WebhookRefused, parse_json
from starter.events.routing import CrmEvent, Plan, plan

MAX_EVENTS = 100


def parse_events(body: bytes, settings: Settings) -> list[CrmEvent]:
    """Every event of the delivery, or a 422 naming the first failing `event N: field` (all of
    them under `errors`)."""
    data = parse_json(body, settings.webhook_max_json_depth)
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
                {"event": i, "field": ".".join(str(p) for p in e["loc"]) or "(event)", "message": error_message(e)}
                for e in exc.errors()
            )
    if errors:
        first = errors[0]
        raise WebhookRefused(422, f"event {first['event']}: {first['field']}: {first['message']}", errors=errors)
    return events


def preflight(p: Plan, settings: Settings) -> None:
    """What starting the play would refuse, refused now (before anything is written): a renewal
    date in the past or further ahead than the renewal playbook allows."""
    if p.trigger is None or p.trigger.start is None or p.trigger.start.playbook != "renewal":
        return
    content = steering.playbook_snapshot(settings, "renewal").content
    today = datetime.now(ZoneInfo(content.timezone)).date()
    renewal: date = p.args["renewal_date"]
    source = p.trigger.start.input["renewal_date"]
    if renewal < today:
        raise WebhookRefused(422, f"{source}: renewal date {renewal.isoformat()} is in the past "
                                  f"(today is {today.isoformat()})")
    if renewal > today + timedelta(days=content.max_days_ahead):
        raise WebhookRefused(422, f"{source}: renewal date {renewal.isoformat()} is more than "
                                  f"{content.max_days_ahead} days ahead")


def parse_delivery(body: bytes, settings: Settings, triggers: TriggersContent) -> tuple[list[Incoming], list[Plan]]:
    """The checked delivery as Incoming events (one per event, keyed by its eventId) and their plans."""
    events = parse_events(body, settings)
    plans = []
    for i, e in enumerate(events):
        try:
            p = plan(e, triggers)
            preflight(p, settings)
        except WebhookRefused as exc:
            raise WebhookRefused(exc.status, exc.detail if len(events) == 1 else f"event {i}: {exc.detail}") from None
        plans.append(p)
    incs = [Incoming(key=e.eventId, source="generic", connection="generic", name=e.subscriptionType[:200],
                     action="route", object_type="account", object_id=e.accountId, occurred_at=e.occurred,
                     event=e.model_dump(mode="json")) for e in events]
    return incs, plans
