"""Salesforce Outbound Messages (`POST /webhooks/salesforce/<secret>`): SOAP, as Salesforce sends them.

A message holds up to 100 `Notification`s, each with its own `Id` (the dedupe key: Salesforce
retries a message it got no acknowledgement for, for 24 hours, and not in order) and an `sObject`
with the fields the outbound message was set up with (xsi:nil for an empty one). Outbound
Messages are not signed: the guards are the secret in the endpoint URL (SALESFORCE_OUTBOUND_SECRET,
compared in constant time), the `OrganizationId` (one of playbooks/crm/connections.yaml) and TLS.
The body is parsed with defusedxml: a DTD, an entity (the billion laughs) or an external
reference is refused before anything is expanded.

| sObject     | becomes                                                        |
|-------------|----------------------------------------------------------------|
| Account     | upsert company (the whole record: fields by salesforce.yaml)  |
| Contact     | upsert contact (AccountId is its company)                       |
| Opportunity | upsert deal (AccountId is its company; IsWon -> closed-won)     |
| Case        | upsert ticket (AccountId; Priority, Status, Subject)            |
| Task        | task_status (Status, IsClosed): a Task the product created, completed in Salesforce, completes ours |
| others      | ignore                                                          |

The answer Salesforce expects (else it retries) is `ACK`, byte for byte the shape of its WSDL.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from playbooks.crm_connections import Connections
from starter.adapters.common import Incoming, WebhookRefused, event_key
from starter.book.values import BadValue, salesforce_id

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
MAX_FIELDS = 500
MAX_VALUE = 131_072  # a Long Text Area holds up to 131,072 characters
OBJECTS = {"Account": "company", "Contact": "contact", "Opportunity": "deal", "Case": "ticket"}
ACK = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
       b' <soapenv:Body>\n'
       b'  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
       b'   <Ack>true</Ack>\n'
       b'  </notificationsResponse>\n'
       b' </soapenv:Body>\n'
       b'</soapenv:Envelope>\n')
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(parent, name: str, ns: str = OUTBOUND) -> str | None:
    node = parent.find(f"{{{ns}}}{name}")
    return None if node is None or node.text is None else node.text.strip()


def _parse_xml(body: bytes):
    try:
        return fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise WebhookRefused(422, f"XML: {type(exc).__name__}: DTDs, entities and external references are "
                                  "refused") from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        raise WebhookRefused(422, f"malformed XML: {exc.msg if hasattr(exc, 'msg') else exc} "
                                  f"(line {line}, column {column})") from None


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _sobject(node, i: int) -> tuple[str, dict[str, str | None]]:
    kind = node.get(f"{{{XSI}}}type") or ""
    kind = kind.rsplit(":", 1)[-1]
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}", kind):
        raise WebhookRefused(422, f"Notification {i}: sObject: xsi:type must name the object (sf:Opportunity)")
    fields: dict[str, str | None] = {}
    children = list(node)
    if len(children) > MAX_FIELDS:
        raise WebhookRefused(422, f"Notification {i}: sObject: more than {MAX_FIELDS} fields")
    for child in children:
        name = _local(child.tag)
        if not _FIELD_NAME.match(name) or len(child):
            raise WebhookRefused(422, f"Notification {i}: sObject.{name[:80]}: not a field")
        if child.get(f"{{{XSI}}}nil") == "true":
            fields[name] = None
            continue
        text = child.text or ""
        if len(text) > MAX_VALUE:
            raise WebhookRefused(422, f"Notification {i}: sObject.{name}: longer than {MAX_VALUE} characters")
        fields[name] = text
    return kind, fields


def parse_message(body: bytes, connections: Connections) -> tuple[str, list[Incoming]]:
    """(the org's connection name, one Incoming per notification). Raises WebhookRefused: 422 for
    XML that is not an outbound message (naming the element), 403 for an org not configured."""
    root = _parse_xml(body)
    if root.tag != f"{{{SOAP}}}Envelope":
        raise WebhookRefused(422, "XML: not a SOAP Envelope")
    notifications = root.find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notifications")
    if notifications is None:
        raise WebhookRefused(422, "XML: Body.notifications: missing (not an Outbound Message)")
    org = _text(notifications, "OrganizationId")
    if not org:
        raise WebhookRefused(422, "OrganizationId: missing")
    try:
        org = salesforce_id(org)
    except BadValue:
        raise WebhookRefused(422, f"OrganizationId: {org[:40]!r} is not a Salesforce id") from None
    connection = connections.salesforce(org)
    if connection is None:
        raise WebhookRefused(403, f"OrganizationId: {org} is not a Salesforce org of playbooks/crm/connections.yaml")
    items = notifications.findall(f"{{{OUTBOUND}}}Notification")
    if not items or len(items) > MAX_NOTIFICATIONS:
        raise WebhookRefused(422, f"Notification: expected 1 to {MAX_NOTIFICATIONS}, got {len(items)}")
    received = datetime.now(timezone.utc)
    out = []
    for i, item in enumerate(items):
        notification_id = _text(item, "Id")
        if not notification_id or not re.fullmatch(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?", notification_id):
            raise WebhookRefused(422, f"Notification {i}: Id: missing or not a Salesforce id")
        node = item.find(f"{{{OUTBOUND}}}sObject")
        if node is None:
            raise WebhookRefused(422, f"Notification {i}: sObject: missing")
        kind, fields = _sobject(node, i)
        try:
            record_id = salesforce_id(fields.get("Id") or "")
        except BadValue:
            record_id = None
        if not record_id:
            raise WebhookRefused(422, f"Notification {i}: sObject.Id: missing or not a Salesforce id")
        fields["Id"] = record_id
        occurred = _when(fields.get("LastModifiedDate")) or _when(fields.get("SystemModstamp")) or received
        base = dict(key=event_key("salesforce", org[:15], notification_id), source="salesforce",
                    connection=connection.name, name=f"Outbound Message: {kind}", occurred_at=occurred)
        if kind == "Task":
            out.append(Incoming(action="task_status", object_type="task", object_id=record_id, properties=fields,
                                whole=True, **base))
            continue
        if kind not in OBJECTS:
            out.append(Incoming(action="ignore", object_type="other", object_id=record_id,
                                note=f"{kind} notifications are not acted on", **base))
            continue
        out.append(Incoming(action="upsert", object_type=OBJECTS[kind], object_id=record_id, properties=fields,
                            whole=True, **base))
    return connection.name, out


# The fields the pipeline reads, per object (Account and Contact fields come from the mapping,
# playbooks/crm/salesforce.yaml). `company` names the Account a record belongs to.
FIELDS = {
    "deal": {"stage": "StageName", "won": "IsWon", "amount": "Amount", "close_date": "CloseDate",
             "company": "AccountId"},
    "ticket": {"priority": "Priority", "stage": "Status", "subject": "Subject", "opened": "CreatedDate",
               "company": "AccountId"},
    "contact": {"company": "AccountId"},
}
SOBJECTS = {"company": "Account", "contact": "Contact", "deal": "Opportunity", "ticket": "Case"}
