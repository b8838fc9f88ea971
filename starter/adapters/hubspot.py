"""HubSpot app webhooks (`POST /webhooks/hubspot`) as HubSpot sends them.

A delivery is a JSON array of up to 100 events of mixed types, each naming HubSpot's own ids
(`portalId`, `objectId`), never ours, with every property value a string (`"closedwon"`, epoch
milliseconds for dates, `""` when cleared). Delivered at least once (a retry repeats the event
with a higher `attemptNumber`), not in time order. `eventId` alone is not unique (HubSpot says
so): the dedupe key is portal + eventId + type + object + property + occurredAt, which a retry
repeats exactly.

Each event becomes one `Incoming` (starter/adapters/common.py):

| subscriptionType                         | action          | object                     |
|------------------------------------------|-----------------|----------------------------|
| company/contact/deal/ticket.creation     | upsert, created | objectId                   |
| company/contact/deal/ticket.propertyChange | upsert        | objectId, {propertyName: propertyValue} |
| company/contact/deal/ticket.deletion     | delete          | objectId                   |
| company/contact/deal/ticket.restore      | restore         | objectId                   |
| company/contact/deal/ticket.merge        | merge           | primaryObjectId <- mergedObjectIds |
| contact.privacyDeletion                  | privacy_delete  | objectId                   |
| X.associationChange, company.associationChange (X_TO_COMPANY or back) | associate | X with its company |
| object.propertyChange of a task (objectTypeId 0-27) | task_status | objectId, {propertyName: propertyValue} |
| anything else (conversation.*, line_item.*, product.*, other object.*, other associations) | ignore | |

Tasks arrive through HubSpot's generic webhook subscriptions (`object.propertyChange` with
`objectTypeId` 0-27, subscribe to `hs_task_status`): a task the product created (CRM write-back)
that is completed in HubSpot completes ours and tells its play.
"""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.text import error_message
from core.settings import Settings
from playbooks.crm_connections import Connections
from starter.adapters.common import Incoming, WebhookRefused, event_key, parse_json, utc_from_ms
from starter.adapters.hubspot_signature import check_signature

MAX_EVENTS = 100
TASK_TYPE_ID = "0-27"  # HubSpot's object type id of tasks (generic webhook subscriptions)
OBJECTS = ("company", "contact", "deal", "ticket")
ACTIONS = {"creation": "upsert", "propertyChange": "upsert", "deletion": "delete", "restore": "restore",
           "merge": "merge", "associationChange": "associate", "privacyDeletion": "privacy_delete"}
HubSpotId = int


class HubSpotEvent(BaseModel):
    """One event of a delivery, with the fields HubSpot documents; others are ignored."""

    model_config = ConfigDict(extra="ignore")

    eventId: int = Field(ge=0)
    subscriptionId: int | None = None
    portalId: int = Field(gt=0)
    appId: int | None = None
    occurredAt: int = Field(gt=0, le=253_402_300_799_999,  # up to 9999-12-31T23:59:59.999Z
                            description="milliseconds since the epoch")
    subscriptionType: str = Field(pattern=r"^[a-z_]{1,40}\.[A-Za-z]{1,40}$")
    attemptNumber: int = Field(0, ge=0)
    objectId: HubSpotId | None = Field(None, gt=0)
    propertyName: str | None = Field(None, min_length=1, max_length=200)
    propertyValue: str | None = Field(None, max_length=65_536)
    changeSource: str | None = Field(None, max_length=100)
    changeFlag: str | None = Field(None, max_length=100)
    sourceId: str | None = Field(None, max_length=200)
    associationType: str | None = Field(None, pattern=r"^[A-Z_]{1,80}$")
    fromObjectId: HubSpotId | None = Field(None, gt=0)
    toObjectId: HubSpotId | None = Field(None, gt=0)
    associationRemoved: bool | None = None
    isPrimaryAssociation: bool | None = None
    primaryObjectId: HubSpotId | None = Field(None, gt=0)
    mergedObjectIds: list[HubSpotId] | None = Field(None, max_length=100)
    newObjectId: HubSpotId | None = Field(None, gt=0)
    objectTypeId: str | None = Field(None, pattern=r"^\d{1,4}-\d{1,12}$")

    @field_validator("propertyName")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and not v.isprintable():
            raise ValueError("must be printable")
        return v


def _incoming(e: HubSpotEvent, connection: str, i: int) -> Incoming:
    kind, _, verb = e.subscriptionType.partition(".")
    base = dict(source="hubspot", connection=connection, name=e.subscriptionType, occurred_at=utc_from_ms(e.occurredAt))
    key_parts = [e.portalId, e.eventId, e.subscriptionType]
    action = ACTIONS.get(verb) if kind in OBJECTS else None
    if action == "privacy_delete" and kind != "contact":
        action = None
    if action == "associate":
        return _association(e, base, key_parts, i)
    if kind == "object" and e.objectTypeId == TASK_TYPE_ID and verb == "propertyChange":
        if e.objectId is None or e.propertyName is None:
            raise WebhookRefused(422, f"event {i}: objectId and propertyName: a task's property change names both")
        return Incoming(key=event_key("hubspot", *key_parts, e.objectTypeId, e.objectId, e.propertyName,
                                      e.occurredAt), action="task_status", object_type="task",
                        object_id=str(e.objectId), properties={e.propertyName: e.propertyValue}, **base)
    if action == "merge":
        if e.primaryObjectId is None or not e.mergedObjectIds:
            raise WebhookRefused(422, f"event {i}: primaryObjectId and mergedObjectIds: a merge names both")
        return Incoming(key=event_key("hubspot", *key_parts, e.primaryObjectId, e.occurredAt), action="merge",
                        object_type=kind, object_id=str(e.primaryObjectId),
                        related={"merged": [str(m) for m in e.mergedObjectIds],
                                 "new": str(e.newObjectId) if e.newObjectId else None}, **base)
    if action is None:
        return Incoming(key=event_key("hubspot", *key_parts, e.objectId, e.occurredAt), action="ignore",
                        object_type=kind if kind in OBJECTS else "other", object_id=str(e.objectId or e.eventId),
                        note=f"{e.subscriptionType} is not an event the product acts on", **base)
    if e.objectId is None:
        raise WebhookRefused(422, f"event {i}: objectId: Field required")
    properties = {}
    if verb == "propertyChange":
        if e.propertyName is None:
            raise WebhookRefused(422, f"event {i}: propertyName: Field required")
        properties = {e.propertyName: e.propertyValue}
    return Incoming(key=event_key("hubspot", *key_parts, e.objectId, e.propertyName, e.occurredAt), action=action,
                    object_type=kind, object_id=str(e.objectId), properties=properties,
                    created=verb == "creation", **base)


def _association(e: HubSpotEvent, base: dict, key_parts: list, i: int) -> Incoming:
    if e.associationType is None or e.fromObjectId is None or e.toObjectId is None:
        raise WebhookRefused(422, f"event {i}: associationType, fromObjectId and toObjectId: an association "
                                  "change names all three")
    left, _, right = e.associationType.lower().partition("_to_")
    key = event_key("hubspot", *key_parts, e.associationType, e.fromObjectId, e.toObjectId, e.occurredAt)
    if right == "company" and left in ("deal", "contact", "ticket"):
        obj, obj_id, company = left, e.fromObjectId, e.toObjectId
    elif left == "company" and right in ("deal", "contact", "ticket"):
        obj, obj_id, company = right, e.toObjectId, e.fromObjectId
    else:
        return Incoming(key=key, action="ignore", object_type="other", object_id=str(e.fromObjectId),
                        note=f"association {e.associationType} is not one the product follows", **base)
    return Incoming(key=key, action="associate", object_type=obj, object_id=str(obj_id),
                    related={"company": str(company), "removed": bool(e.associationRemoved),
                             "primary": bool(e.isPrimaryAssociation)}, **base)


def is_native(data: object) -> bool:
    """A delivery in HubSpot's own shape (portalId and HubSpot's object ids, no accountId of ours):
    what a HubSpot app pointed at the generic /webhooks/crm sends."""
    items = data if isinstance(data, list) else [data]
    return bool(items) and all(
        isinstance(e, dict) and "accountId" not in e and "portalId" in e
        and any(k in e for k in ("objectId", "fromObjectId", "primaryObjectId")) for e in items)


def parse_delivery(body: bytes, connections: Connections, settings: Settings) -> list[Incoming]:
    """A whole delivery, checked: a JSON array (or one object) of 1 to 100 events from configured
    portals. Raises WebhookRefused naming `event N: field`."""
    data = parse_json(body, settings.webhook_max_json_depth)
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > MAX_EVENTS:
        raise WebhookRefused(422, f"expected 1 to {MAX_EVENTS} events, got {len(items)}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise WebhookRefused(422, f"event {i}: (event): must be a JSON object")
        try:
            event = HubSpotEvent.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise WebhookRefused(422, f"event {i}: {'.'.join(str(p) for p in err['loc']) or '(event)'}: "
                                      f"{error_message(err)}") from None
        connection = connections.hubspot(event.portalId)
        if connection is None:
            raise WebhookRefused(403, f"event {i}: portalId: {event.portalId} is not a HubSpot portal of "
                                      "playbooks/crm/connections.yaml")
        out.append(_incoming(event, connection.name, i))
    return out


def check(request: Request, body: bytes, settings: Settings) -> str:
    """The delivery's signature (v1, v2 or v3 as HUBSPOT_SIGNATURE_VERSIONS allows); raises 401."""
    return check_signature(request, body, settings.crm_webhook_secret.get_secret_value(),
                           set(settings.hubspot_signature_versions.split(",")),
                           settings.crm_webhook_max_age_seconds, settings.public_base_url)


# The HubSpot properties the pipeline reads, per object (company and contact fields come from the
# mapping, playbooks/crm/hubspot.yaml). A deal's and a ticket's company come from associations.
FIELDS = {
    "deal": {"stage": "dealstage", "amount": "amount", "close_date": "closedate"},
    "ticket": {"priority": "hs_ticket_priority", "stage": "hs_pipeline_stage", "subject": "subject",
               "opened": "createdate"},
}
# HubSpot's object type names in its CRM API paths.
API_OBJECTS = {"company": "companies", "contact": "contacts", "deal": "deals", "ticket": "tickets"}
