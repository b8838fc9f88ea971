"""One module per vendor turning its webhook payload into `Incoming` events (common.py): the
generic CRM event, HubSpot, Salesforce Outbound Messages, Zendesk. Each checks a whole delivery
(signature, size, shape, sender) before anything is written."""

from __future__ import annotations


def vendor_fields(source: str, object_type: str) -> dict[str, str]:
    """The vendor's names for what the pipeline reads of a deal, ticket or contact."""
    from starter.adapters import hubspot, salesforce, zendesk

    return {"hubspot": hubspot.FIELDS, "salesforce": salesforce.FIELDS, "zendesk": zendesk.FIELDS}.get(
        source, {}).get(object_type, {})
