"""Which vendor account is which CRM connection (`playbooks/crm/connections.yaml`).

A vendor webhook names its sender: HubSpot's `portalId`, Salesforce's `OrganizationId`, Zendesk's
account id (`account_id`, header `X-Zendesk-Account-Id`) or subdomain (a trigger's ticket URL).
This file says which connection each one is, and which mapping file of the same folder reads its
payloads; the mapping's `connection` is the name its record ids are kept under (`crm_links`).
A sender not listed is refused (403). Problems are reported as `file:line: field: message`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from playbooks.crm_mapping import Mapping
from playbooks.schema import Content

CONNECTIONS_FILE = "connections.yaml"
MAPPING_FILE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,80}\.yaml$"
Source = Literal["hubspot", "salesforce", "zendesk"]


class HubSpotPortal(Content):
    """A HubSpot account the app is installed in, and the mapping that reads its events."""
    portal_id: int = Field(gt=0, description="the HubSpot account (portalId) the app is installed in")
    mapping: str = Field(pattern=MAPPING_FILE)


class SalesforceOrg(Content):
    """A Salesforce org whose Outbound Messages are taken, and its mapping."""
    organization_id: str = Field(pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$",
                                 description="the org's id, 15 or 18 characters (Setup > Company Information)")
    mapping: str = Field(pattern=MAPPING_FILE)

    @property
    def org15(self) -> str:
        return self.organization_id[:15]


class ZendeskAccount(Content):
    """A Zendesk account (by id, subdomain or both), and its mapping."""
    account_id: int | None = Field(None, gt=0, description="the Zendesk account id event webhooks name")
    subdomain: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
                                  description="<subdomain>.zendesk.com, as a trigger's ticket URL shows it")
    mapping: str = Field(pattern=MAPPING_FILE)

    @model_validator(mode="after")
    def _named(self) -> "ZendeskAccount":
        if self.account_id is None and self.subdomain is None:
            raise ValueError("account_id: give the Zendesk account id, its subdomain, or both")
        return self


class ConnectionsContent(Content):
    """`connections.yaml`: the HubSpot portals, Salesforce orgs and Zendesk accounts taken, each listed once."""
    version: Literal[1] = 1
    hubspot: list[HubSpotPortal] = []
    salesforce: list[SalesforceOrg] = []
    zendesk: list[ZendeskAccount] = []

    @model_validator(mode="after")
    def _unique(self) -> "ConnectionsContent":
        for what, keys in (("hubspot", [p.portal_id for p in self.hubspot]),
                           ("salesforce", [o.org15 for o in self.salesforce]),
                           ("zendesk", [z.account_id for z in self.zendesk if z.account_id]
                            + [z.subdomain for z in self.zendesk if z.subdomain])):
            seen = set()
            for i, key in enumerate(keys):
                if key in seen:
                    raise ValueError(f"{what}[{i}]: {key} is listed twice")
                seen.add(key)
        return self


@dataclass(frozen=True)
class Connection:
    """One configured sender: its vendor, the connection name its ids are kept under, its mapping."""

    source: Source
    name: str
    mapping: Mapping = field(compare=False)


class Connections:
    """The senders of `connections.yaml`, looked up by what a webhook names."""

    def __init__(self, content: ConnectionsContent, mappings: dict[str, Mapping]):
        self.content = content
        self._hubspot = {p.portal_id: self._make("hubspot", mappings[p.mapping]) for p in content.hubspot}
        self._salesforce = {o.org15: self._make("salesforce", mappings[o.mapping]) for o in content.salesforce}
        self._zendesk_ids = {z.account_id: self._make("zendesk", mappings[z.mapping])
                             for z in content.zendesk if z.account_id}
        self._zendesk_subdomains = {z.subdomain: self._make("zendesk", mappings[z.mapping])
                                    for z in content.zendesk if z.subdomain}
        self.by_name: dict[str, Connection] = {}
        for c in (*self._hubspot.values(), *self._salesforce.values(), *self._zendesk_ids.values(),
                  *self._zendesk_subdomains.values()):
            self.by_name[c.name] = c

    @staticmethod
    def _make(source: str, mapping: Mapping) -> Connection:
        return Connection(source, mapping.connection, mapping)  # type: ignore[arg-type]

    def hubspot(self, portal_id: int) -> Connection | None:
        return self._hubspot.get(portal_id)

    def salesforce(self, organization_id: str) -> Connection | None:
        return self._salesforce.get(organization_id[:15])

    def zendesk(self, account_id: int | None, subdomain: str | None) -> Connection | None:
        """By account id, else subdomain, else the only Zendesk connection there is."""
        if account_id is not None and account_id in self._zendesk_ids:
            return self._zendesk_ids[account_id]
        if subdomain and subdomain in self._zendesk_subdomains:
            return self._zendesk_subdomains[subdomain]
        if account_id is None and not subdomain:
            every = {c.name: c for c in (*self._zendesk_ids.values(), *self._zendesk_subdomains.values())}
            if len(every) == 1:
                return next(iter(every.values()))
        return None


def load_connections(crm_dir: Path) -> Connections:
    """connections.yaml and every mapping it names, validated. Raises PlaybookError
    (file:line: field: message) for either."""
    from playbooks.loader import PlaybookError, _load_config, _node_at, _line, _read_yaml

    path = Path(crm_dir) / CONNECTIONS_FILE
    content: ConnectionsContent = _load_config(path, ConnectionsContent)
    _, _, root, _ = _read_yaml(path)
    mappings: dict[str, Mapping] = {}
    problems = []
    for source in ("hubspot", "salesforce", "zendesk"):
        for i, entry in enumerate(getattr(content, source)):
            at = (str(path), _line(_node_at(root, (source, i, "mapping"))), f"{source}[{i}].mapping")
            file = Path(crm_dir) / entry.mapping
            if not file.is_file():
                problems.append((*at, f"no mapping file {entry.mapping!r} in {crm_dir}"))
                continue
            try:
                mapping = mappings.get(entry.mapping) or _load_config(file, Mapping)
            except PlaybookError as exc:
                problems.extend(exc.problems)
                continue
            if mapping.source != source:
                problems.append((*at, f"{entry.mapping} is a {mapping.source} mapping, not {source}"))
            elif mapping.webhooks is None:
                problems.append((*at, f"{entry.mapping} has no webhooks: section (ticket_prefix, value maps)"))
            mappings[entry.mapping] = mapping
    if problems:
        raise PlaybookError(problems)
    return Connections(content, mappings)
