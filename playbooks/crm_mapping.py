"""The schema of a CRM mapping (`playbooks/crm/*.yaml`): which column of an export, or which
property of a webhook, holds which field of our accounts and contacts, and how to read it.

A mapping is configuration, not code: which CRM field is ARR, renewal date, tier or health;
the header labels of every language the CRM's users export in; value maps (tier names,
lifecycle stages, country names in another language); the default currency. Errors are
reported as `file:line: field: message` like the playbooks (see playbooks/loader.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import EmailStr, Field, ValidationInfo, field_validator, model_validator

from core.models import MappedPriority
from playbooks.schema import Content, context_profile

ValueType = Literal["text", "money", "date", "int", "percent", "bool", "country", "region", "timezone",
                    "language", "currency", "email", "tier", "status", "owner", "id", "salesforce_id", "ids"]

# Our fields, and the types a mapping may read them as.
ACCOUNT_FIELDS: dict[str, set[str]] = {
    "name": {"text"}, "arr": {"money"}, "arr_currency": {"currency"}, "renewal_date": {"date"},
    "tier": {"tier"}, "health": {"int", "percent"}, "status": {"status"}, "vertical": {"text"},
    "country": {"country"}, "region": {"region"}, "timezone": {"timezone"}, "language": {"language"},
    "owner": {"owner"}, "domain": {"text"}, "sponsor_email": {"email"}, "deleted": {"bool"},
}
CONTACT_FIELDS: dict[str, set[str]] = {
    "first_name": {"text"}, "last_name": {"text"}, "name": {"text"}, "email": {"email"}, "title": {"text"},
    "phone": {"text"}, "role": {"text"}, "opt_out": {"bool"}, "owner": {"owner"},
}
STATUSES = ("prospect", "onboarding", "active", "at-risk", "churned")


class FieldRule(Content):
    """Where one field comes from. `columns`: header labels of a file export, in any of the
    languages its users export in (matched ignoring case and surrounding spaces). `property`:
    the CRM's property name, for webhooks and API reads. `values`: a value map applied before
    reading (e.g. {"Kunde": "active"}), matched ignoring case; a value not in a non-empty map of
    a `tier` or `status` field is refused."""

    columns: list[str] = []
    property: str | None = None
    type: ValueType = "text"
    values: dict[str, str] = {}
    separator: str = Field(";", min_length=1, max_length=3, description="for type ids: how values are joined")

    @model_validator(mode="after")
    def _somewhere(self, info: ValidationInfo) -> "FieldRule":
        if not self.columns and not self.property:
            raise ValueError("columns: give the file columns, the CRM property, or both")
        if self.type == "tier":
            # The tiers of the profile the mapping is validated in (else the active profile's).
            profile = context_profile(info)
            if profile is None:
                from playbooks.profiles import active_profile

                profile = active_profile().content
            tiers = profile.tier_names
            bad = sorted(v for v in self.values.values() if v not in tiers)
            if bad:
                raise ValueError(f"values: {bad[0]!r} is not a tier ({', '.join(tiers)})")
        if self.type == "status":
            bad = sorted(v for v in self.values.values() if v not in STATUSES)
            if bad:
                raise ValueError(f"values: {bad[0]!r} is not an account status ({', '.join(STATUSES)})")
        return self

    def mapped(self, text: str | None) -> str | None:
        """The value after the value map (case-insensitive); unchanged when not in it."""
        if text is None or not self.values:
            return text
        # The lower-cased map, made once per rule (an import maps millions of cells); kept with its
        # rule so that the rule's id cannot be another's while it is cached.
        entry = _LOWERED.get(id(self))
        if entry is None or entry[0] is not self:
            if len(_LOWERED) > 4096:
                _LOWERED.clear()
            entry = _LOWERED[id(self)] = (self, {k.lower(): v for k, v in self.values.items()})
        return entry[1].get(text.lower(), text)


_LOWERED: dict[int, tuple[FieldRule, dict[str, str]]] = {}


def _check_fields(fields: dict[str, FieldRule], allowed: dict[str, set[str]], what: str) -> None:
    for name, rule in fields.items():
        if name not in allowed:
            raise ValueError(f"fields.{name}: not a field of {what} (one of: {', '.join(sorted(allowed))})")
        if rule.type not in allowed[name]:
            raise ValueError(f"fields.{name}.type: {name} is read as {' or '.join(sorted(allowed[name]))}, "
                             f"not {rule.type}")


class FileLayout(Content):
    """Where the records are in an export file: the XLSX sheet (the first when not named) and
    the row that names the columns (a spreadsheet template often has a title above it)."""

    sheet: str | None = Field(None, min_length=1, max_length=31, description="XLSX sheet name")
    header_row: int = Field(1, ge=1, le=50)


class AccountsMapping(FileLayout):
    """Companies (HubSpot), Accounts (Salesforce), organisations, or rows of a spreadsheet."""

    id: FieldRule = Field(description="the CRM's record id: the key of every re-import and webhook")
    fields: dict[str, FieldRule]

    @model_validator(mode="after")
    def _fields(self) -> "AccountsMapping":
        _check_fields(self.fields, ACCOUNT_FIELDS, "an account")
        if "name" not in self.fields:
            raise ValueError("fields.name: an account needs its name")
        return self


class ContactsMapping(FileLayout):
    """People of the accounts: each names the CRM ids of its companies (one or several)."""

    id: FieldRule
    fields: dict[str, FieldRule]
    companies: FieldRule = Field(description="the company (account) ids of the CRM a contact belongs to")

    @model_validator(mode="after")
    def _fields(self) -> "ContactsMapping":
        _check_fields(self.fields, CONTACT_FIELDS, "a contact")
        if "name" not in self.fields and "last_name" not in self.fields:
            raise ValueError("fields.name: a contact needs its name (name, or first_name and last_name)")
        return self


class SponsorRule(Content):
    """How the sponsor is found among an account's contacts when the CRM names none: the first
    contact whose role is one of `roles`, else whose title contains one of `titles`."""

    roles: list[str] = ["sponsor", "executive_sponsor"]
    titles: list[str] = []


# Ticket stages the trigger rules know (playbooks/triggers.yaml, hs_pipeline_stage); "reopened" is
# not mapped: it is a move from resolved or closed back to any other stage.
TICKET_STAGES = ("new", "acknowledged", "in_progress", "on_hold", "waiting_on_customer", "customer_replied",
                 "resolved", "closed")


class WebhooksMapping(Content):
    """How this CRM's webhooks read as the internal events of playbooks/triggers.yaml (HubSpot's
    vocabulary: `deal.propertyChange dealstage=closedwon`, `ticket.propertyChange hs_ticket_priority=P1`).

    `properties`: CRM property -> the property name trigger rules use, for properties that are
    not fields above (a mapped field is named after our field: `Renewal_Date__c` -> renewal_date).
    `deal_stages`, `ticket_priorities`, `ticket_stages`: value maps, matched ignoring case.
    `ticket_prefix`: our ticket id is `<prefix>-<the CRM's ticket id>` (ZD-48213).
    `organization_external_id`: (Zendesk) the connection whose company ids an organisation's
    `external_id` holds, so an organisation finds its account."""

    properties: dict[str, str] = {}
    deal_stages: dict[str, str] = {}
    ticket_priorities: dict[str, MappedPriority] = {}  # values: the profile's priorities (unless it maps them)
    ticket_default_priority: MappedPriority = "P2"
    ticket_stages: dict[str, str] = {}
    ticket_prefix: str = Field(pattern=r"^[A-Z]{2,4}$")
    organization_external_id: str | None = Field(None, pattern=r"^[a-z][a-z0-9_:-]{0,40}$")

    @field_validator("ticket_stages")
    @classmethod
    def _stages(cls, stages: dict[str, str]) -> dict[str, str]:
        for value in stages.values():
            if value not in TICKET_STAGES:
                raise ValueError(f"{value!r} is not a ticket stage ({', '.join(TICKET_STAGES)})")
        return stages

    @staticmethod
    def lookup(values: dict[str, str], raw: str | None) -> str | None:
        """`raw` through a value map, ignoring case; None when it is not in the map."""
        if raw is None:
            return None
        return {k.lower(): v for k, v in values.items()}.get(raw.strip().lower())


WriteBackProperty = Literal["risk_band", "risk_score", "health_score", "play_phase"]


class WriteBackMapping(Content):
    """What the product writes to this CRM when CRM_WRITE_BACK names the connection
    (activities/crm_write.py): plays' tasks as CRM tasks on the account's company or Account
    (`tasks`; completing either completes the other), e-mails sent logged on the contacts
    (`emails`; `email_templates_excluded`: globs of templates never logged, e.g. survey e-mails,
    whose links are personal; `email_body`: log the text, not only the subject), and our values in
    the account properties `properties` names (risk_band, risk_score, health_score, play_phase:
    "<playbook>: <phase>" of the `phase_playbooks` plays). `idempotency_property` makes a retry
    find the record it already created: in HubSpot a custom single-line text property on tasks and
    e-mails, in Salesforce a custom External ID text field on Task (upserted by it)."""

    tasks: bool = True
    emails: bool = True
    email_templates_excluded: list[str] = []
    email_body: bool = True
    properties: dict[WriteBackProperty, str] = {}
    phase_playbooks: list[Literal["onboarding", "renewal", "sla", "churn", "nps"]] = ["onboarding", "renewal"]
    idempotency_property: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")

    @field_validator("properties")
    @classmethod
    def _names(cls, props: dict[str, str]) -> dict[str, str]:
        import re

        for ours, theirs in props.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,99}", theirs):
                raise ValueError(f"{ours}: {theirs!r} is not a CRM property name")
        return props


class Mapping(Content):
    """One CRM connection: its dialect, its name (the key of its ids), and how to read it."""

    version: Literal[1] = 1
    source: Literal["hubspot", "salesforce", "zendesk", "csv"]
    connection: str = Field(pattern=r"^[a-z][a-z0-9_:-]{0,40}$",
                            description="name of this CRM connection; the key of its record ids")
    default_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    date_formats: list[str] = Field([], description="extra strptime formats, tried after ISO 8601")
    accounts: AccountsMapping | None = None
    contacts: ContactsMapping | None = None
    sponsor: SponsorRule = SponsorRule()
    webhooks: WebhooksMapping | None = None
    write_back: WriteBackMapping | None = None
    default_status: Literal["prospect", "onboarding", "active", "at-risk", "churned"] = "active"

    @model_validator(mode="after")
    def _write_back(self) -> "Mapping":
        if self.write_back is None:
            return self
        if self.source not in ("hubspot", "salesforce"):
            raise ValueError(f"write_back: only a HubSpot or Salesforce connection is written to, not {self.source}")
        read = {p.lower() for p in (self.webhooks.properties if self.webhooks else {})}
        if self.accounts:
            read |= {r.property.lower() for r in self.accounts.fields.values() if r.property}
        for ours, theirs in self.write_back.properties.items():
            if theirs.lower() in read:
                raise ValueError(f"write_back.properties.{ours}: {theirs} is also read from this CRM (webhooks or "
                                 "accounts fields): each write would come back as a change; name another property")
        return self

    @field_validator("date_formats")
    @classmethod
    def _formats(cls, formats: list[str]) -> list[str]:
        from datetime import datetime

        for fmt in formats:
            try:
                datetime.now().strftime(fmt)
            except ValueError as exc:
                raise ValueError(f"{fmt!r} is not a strptime format: {exc}") from None
        return formats


class CsmEntry(Content):
    """One of our CSMs, and the CRM owners (ids, names or e-mails, any CRM) that stand for them."""

    name: str = Field(min_length=1)
    email: EmailStr
    owners: list[str] = []


class TeamContent(Content):
    """`playbooks/crm/team.yaml`: who owns imported accounts. An owner that matches nobody gets
    `default_csm`, and the import says so; it never fails the import."""

    version: Literal[1] = 1
    default_csm: EmailStr
    csms: list[CsmEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_is_a_csm(self) -> "TeamContent":
        if self.default_csm.lower() not in {str(c.email).lower() for c in self.csms}:
            raise ValueError("default_csm: must be one of the csms listed")
        return self


class CurrenciesContent(Content):
    """`playbooks/crm/currencies.yaml`: US dollars per unit of each currency, to place an ARR in
    a tier (the tiers of seed 001 section 8 are in USD). CS ops updates the rates."""

    version: Literal[1] = 1
    as_of: str = Field(description="when the rates were taken (YYYY-MM-DD)")
    usd_per_unit: dict[str, float]

    @field_validator("usd_per_unit")
    @classmethod
    def _rates(cls, rates: dict[str, float]) -> dict[str, float]:
        for code, rate in rates.items():
            if len(code) != 3 or not code.isupper():
                raise ValueError(f"{code!r} is not an ISO 4217 code")
            if rate <= 0:
                raise ValueError(f"{code}: a rate must be positive")
        return rates
