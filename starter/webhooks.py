"""Webhook endpoints: the generic CRM event and the real vendors' own formats.

- `POST /webhooks/crm`: our generic HubSpot-style event naming our account (adapters/generic.py);
  a delivery in HubSpot's own shape (portalId, objectId, no accountId) is read as /webhooks/hubspot.
- `POST /webhooks/hubspot`: HubSpot app webhooks, signature v1, v2 or v3 (adapters/hubspot.py).
- `POST /webhooks/salesforce/<secret>`: Salesforce Outbound Messages, answered with the SOAP
  acknowledgement (adapters/salesforce.py).
- `POST /webhooks/zendesk`: Zendesk trigger and event webhooks (adapters/zendesk.py).

A delivery is checked whole first (size counted as it streams, signature or path secret, shape,
sender): a refusal is a 4xx whose `detail` names the field, and nothing is written. Then the
pipeline (starter/events) claims each event once and acts on it; an event whose object the book
does not have yet is acknowledged and waits for it (the console's Waiting page lists them).
A vendor delivery is acted on for WEBHOOK_ACT_SECONDS before the answer; the rest is queued and
acted on by the sweeper, so the vendor never times out and retries.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from core.logs import get_logger
from core.metrics import count
from core.settings import Settings
from playbooks.loader import PlaybookError
from starter.adapters import generic, hubspot, salesforce, zendesk
from starter.adapters.common import WebhookRefused, parse_json, read_body, same_secret
from starter.adapters.hubspot_signature import SIGNATURE, TIMESTAMP, check_signature, sign  # noqa: F401 (re-exported)
from starter.events.context import Context, current_connections
from starter.events.pipeline import Handled, receive
from starter.events.routing import current_triggers

log = get_logger("webhooks")
router = APIRouter()
REFUSALS = {401: {"description": "missing, bad or stale signature"}, 403: {"description": "sender not configured"},
            413: {"description": "body too large"}, 422: {"description": "malformed delivery; names the field"},
            503: {"description": "this vendor's webhooks are not configured here"}}


def deps(request: Request):
    """The service's shared parts (settings, pool, Temporal client)."""
    return request.app.state


def _refused(source: str, exc: WebhookRefused) -> JSONResponse:
    log.warning("webhook.refused", source=source, status=exc.status, reason=exc.detail)
    count("webhook_refused", vendor=source, status=exc.status)
    return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status)


def _connections(settings: Settings):
    try:
        return current_connections(settings)
    except PlaybookError as exc:
        raise WebhookRefused(503, f"the webhook configuration is invalid: {str(exc).splitlines()[0]}") from None


def _vendor_results(handled: list[Handled]) -> list[dict]:
    return [{"event": h.inc.key, "type": h.inc.name, "object": f"{h.inc.object_type} {h.inc.object_id}",
             "outcome": h.outcome, **({"status": h.result.status} if h.result else {}),
             **({"first_outcome": (h.earlier or {}).get("outcome")} if h.claim == "duplicate" else {})}
            for h in handled]


@router.post("/webhooks/crm", status_code=202, responses=REFUSALS,
             summary="Generic CRM events (HubSpot-style, signed like HubSpot) naming our account")
async def crm_webhook(request: Request, state=Depends(deps)):
    """Generic CRM events naming our account (or HubSpot's own shape). 202 with each event's outcome."""
    settings: Settings = state.settings
    try:
        body = await read_body(request, settings.crm_webhook_max_bytes)
        check_signature(request, body, settings.crm_webhook_secret.get_secret_value(),
                        set(settings.hubspot_signature_versions.split(",")), settings.crm_webhook_max_age_seconds,
                        settings.public_base_url)
        if hubspot.is_native(parse_json(body, settings.webhook_max_json_depth)):
            # A HubSpot app pointed here rather than at /webhooks/hubspot: read as HubSpot sends it.
            native = hubspot.parse_delivery(body, _connections(settings), settings)
        else:
            native = None
            try:
                incs, plans = generic.parse_delivery(body, settings, current_triggers(settings))
            except PlaybookError as exc:
                raise WebhookRefused(503, f"the playbooks are invalid: {str(exc).splitlines()[0]}") from None
    except WebhookRefused as exc:
        return _refused("generic", exc)
    if native is not None:
        handled = await receive(Context(state.client, state.pool, settings), native, settings.webhook_act_seconds)
        return JSONResponse({"results": _vendor_results(handled)}, status_code=202)
    handled = await receive(Context(state.client, state.pool, settings), incs)
    results = []
    for h, p in zip(handled, plans):
        row = {"eventId": h.inc.key, "trigger": p.trigger_name, "workflow_id": p.workflow_id, "outcome": h.outcome}
        if h.claim == "duplicate" and h.earlier:
            row.update(first_outcome=h.earlier.get("outcome"), workflow_id=h.earlier.get("workflow_id"))
        elif h.result is not None:
            row["status"] = h.result.status
        results.append(row)
    return JSONResponse({"results": results}, status_code=202)


@router.post("/webhooks/hubspot", responses=REFUSALS,
             summary="HubSpot app webhooks as HubSpot sends them (signature v1, v2 or v3)")
async def hubspot_webhook(request: Request, state=Depends(deps)):
    """HubSpot app webhooks. 200 with each event's outcome (waiting ones included)."""
    settings: Settings = state.settings
    try:
        body = await read_body(request, settings.crm_webhook_max_bytes)
        hubspot.check(request, body, settings)
        incs = hubspot.parse_delivery(body, _connections(settings), settings)
    except WebhookRefused as exc:
        return _refused("hubspot", exc)
    handled = await receive(Context(state.client, state.pool, settings), incs, settings.webhook_act_seconds)
    return JSONResponse({"results": _vendor_results(handled)}, status_code=200)


@router.post("/webhooks/salesforce/{secret}", responses=REFUSALS,
             summary="Salesforce Outbound Messages (SOAP); the path carries SALESFORCE_OUTBOUND_SECRET")
async def salesforce_webhook(secret: str, request: Request, state=Depends(deps)):
    """Salesforce Outbound Messages. 200 with the SOAP acknowledgement Salesforce expects."""
    settings: Settings = state.settings
    try:
        configured = settings.salesforce_outbound_secret.get_secret_value() if settings.salesforce_outbound_secret \
            else ""
        if not configured:
            raise WebhookRefused(503, "Salesforce Outbound Messages are not configured here: set "
                                      "SALESFORCE_OUTBOUND_SECRET")
        if not same_secret(secret, configured):
            raise WebhookRefused(403, "path secret: not the SALESFORCE_OUTBOUND_SECRET of this endpoint")
        body = await read_body(request, settings.crm_webhook_max_bytes)
        _, incs = salesforce.parse_message(body, _connections(settings))
    except WebhookRefused as exc:
        return _refused("salesforce", exc)
    handled = await receive(Context(state.client, state.pool, settings), incs, settings.webhook_act_seconds)
    log.info("webhook.salesforce_acknowledged", notifications=len(handled),
             outcomes=[h.outcome[:200] for h in handled][:20])
    return Response(salesforce.ACK, media_type="text/xml; charset=utf-8")


@router.post("/webhooks/zendesk", responses=REFUSALS,
             summary="Zendesk trigger and event webhooks (X-Zendesk-Webhook-Signature)")
async def zendesk_webhook(request: Request, state=Depends(deps)):
    """Zendesk trigger and event webhooks. 200 with the outcome."""
    settings: Settings = state.settings
    try:
        body = await read_body(request, settings.crm_webhook_max_bytes)
        zendesk.check(request, body, settings)
        incs = zendesk.parse_delivery(request, body, _connections(settings), settings)
    except WebhookRefused as exc:
        return _refused("zendesk", exc)
    handled = await receive(Context(state.client, state.pool, settings), incs, settings.webhook_act_seconds)
    return JSONResponse({"results": _vendor_results(handled)}, status_code=200)
