"""What a CRM says about one company or one person, read through a mapping.

A file row (by column label) and a webhook's properties (by property name) become the same
`AccountRecord` / `ContactRecord`, with typed values and, for each value that could not be
read, a `Problem` naming the column or property. Only the fields the source holds are in
`values`: a field the file has no column for is left as it is on our side, and a value
cleared in the CRM (an empty cell, HubSpot's `""`) is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from playbooks.crm_mapping import AccountsMapping, ContactsMapping, FieldRule, Mapping
from starter.book import values as v


@dataclass
class Problem:
    """Why a value was not taken: `where` is `file:row` or `event <id>`; `column` the column
    label or property name. `fatal`: the record is refused; otherwise only that value is skipped."""

    where: str
    column: str
    reason: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.column}: {self.reason}"


@dataclass
class AccountRecord:
    """`values`: our field name -> typed value; `labels`: our field name -> the column label or
    property it was read from (for messages that name the column)."""

    crm_id: str
    where: str
    values: dict[str, object] = field(default_factory=dict)
    owner_keys: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ContactRecord:
    crm_id: str
    where: str
    company_ids: list[str] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)
    owner_keys: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


# A source of raw values: given a field rule, the (label, raw text) pairs it finds for it
# (several for an owner with an id column and a name column), or [] when it has none.
Lookup = Callable[[FieldRule], list[tuple[str, str | None]]]


def by_columns(row: dict[str, str | None], headers: dict[str, str]) -> Lookup:
    """A lookup over one file row; `headers` maps each header, lower-cased and trimmed, to
    the header as written."""

    def lookup(rule: FieldRule) -> list[tuple[str, str | None]]:
        found = []
        for label in rule.columns:
            header = headers.get(label.strip().lower())
            if header is not None:
                found.append((header, row.get(header)))
                if rule.type != "owner":
                    break
        return found

    return lookup


def by_properties(properties: dict[str, object]) -> Lookup:
    """A lookup over a webhook's or API read's properties (only those present)."""

    def lookup(rule: FieldRule) -> list[tuple[str, str | None]]:
        if rule.property and rule.property in properties:
            raw = properties[rule.property]
            return [(rule.property, None if raw is None else str(raw))]
        return []

    return lookup


def read_value(rule: FieldRule, raw: str | None, mapping: Mapping) -> object:
    """One raw value as its field's type (None when empty). Raises values.BadValue."""
    text = rule.mapped(v.clean(raw))
    kind = rule.type
    if text is None:
        return None
    if kind in ("text", "owner", "region"):
        # A region is read within the account's country: the store resolves it (values.parse_region).
        return text
    if kind == "language":
        return v.parse_language(text)
    if kind == "money":
        return v.parse_money(text, mapping.default_currency)
    if kind == "date":
        return v.parse_date(text, tuple(v.DEFAULT_DATE_FORMATS) + tuple(mapping.date_formats))
    if kind == "int":
        return v.parse_int(text, 0, 100)
    if kind == "percent":
        return v.parse_int(text.rstrip("%"), 0, 100)
    if kind == "bool":
        return v.parse_bool(text)
    if kind == "country":
        return v.parse_country(text)
    if kind == "timezone":
        return v.check_timezone(text)
    if kind == "currency":
        if len(text) != 3 or not text.isalpha():
            raise v.BadValue(f"{text!r} is not an ISO 4217 currency code")
        return text.upper()
    if kind == "email":
        return v.parse_email(text)
    if kind in ("tier", "status"):
        allowed = _profile_tiers() if kind == "tier" else (
            "prospect", "onboarding", "active", "at-risk", "churned")
        match = next((a for a in allowed if a.lower() == text.lower()), None)
        if match is None:
            raise v.BadValue(f"{text!r} is not a known {kind} (map it under values:)")
        return match
    if kind == "salesforce_id":
        return v.salesforce_id(text)
    if kind == "ids":
        return v.split_multi(text, rule.separator)
    return text  # id


def _read_id(rule: FieldRule, lookup: Lookup, where: str, problems: list[Problem],
             labels: dict[str, str]) -> str | None:
    found = lookup(rule)
    if not found:
        problems.append(Problem(where, (rule.columns or [rule.property])[0], "no such column: the record id is needed"))
        return None
    label, raw = found[0]
    labels["id"] = label
    try:
        crm_id = v.salesforce_id(raw) if rule.type == "salesforce_id" else v.clean(raw)
    except v.BadValue as exc:
        problems.append(Problem(where, label, str(exc)))
        return None
    if not crm_id:
        problems.append(Problem(where, label, "empty record id"))
    return crm_id


def _read_fields(fields: dict[str, FieldRule], lookup: Lookup, mapping: Mapping, where: str,
                 record: AccountRecord | ContactRecord) -> None:
    for name, rule in fields.items():
        found = lookup(rule)
        if not found:
            continue
        record.labels[name] = found[0][0]
        if rule.type == "owner":
            record.owner_keys = [k for _, raw in found if (k := v.clean(raw))]
            continue
        label, raw = found[0]
        try:
            value = read_value(rule, raw, mapping)
        except v.BadValue as exc:
            # A contact's bad e-mail refuses the contact (issue 17: refused at import, row named);
            # any other unreadable value is skipped with a warning and the rest is taken.
            record.problems.append(Problem(where, label, str(exc), fatal=name in ("email", "name")))
            continue
        if name == "arr" and value is not None:
            amount, currency = value
            record.values["arr"] = amount
            record.values.setdefault("arr_currency", currency)
        elif name == "arr_currency":
            if value is not None:  # a currency column says it outright; an empty one leaves the amount's
                record.values["arr_currency"] = value
        else:
            record.values[name] = value


def account_record(mapping: Mapping, lookup: Lookup, where: str) -> AccountRecord | None:
    """The account a row or event describes; None when the mapping has no accounts section."""
    section: AccountsMapping | None = mapping.accounts
    if section is None:
        return None
    problems: list[Problem] = []
    labels: dict[str, str] = {}
    crm_id = _read_id(section.id, lookup, where, problems, labels)
    record = AccountRecord(crm_id=crm_id or "", where=where, problems=problems, labels=labels)
    _read_fields(section.fields, lookup, mapping, where, record)
    return record


def contact_record(mapping: Mapping, lookup: Lookup, where: str) -> ContactRecord | None:
    section: ContactsMapping | None = mapping.contacts
    if section is None:
        return None
    problems: list[Problem] = []
    labels: dict[str, str] = {}
    crm_id = _read_id(section.id, lookup, where, problems, labels)
    record = ContactRecord(crm_id=crm_id or "", where=where, problems=problems, labels=labels)
    found = lookup(section.companies)
    if found:
        label, raw = found[0]
        record.labels["companies"] = label
        try:
            ids = read_value(section.companies, raw, mapping) or []
            if section.id.type == "salesforce_id" or mapping.source == "salesforce":
                ids = [v.salesforce_id(i) for i in ids]
            record.company_ids = list(dict.fromkeys(ids))
        except v.BadValue as exc:
            problems.append(Problem(where, label, str(exc)))
    _read_fields(section.fields, lookup, mapping, where, record)
    return record


def _profile_tiers() -> tuple[str, ...]:
    """The tiers of the active organisation profile (playbooks/profiles.py)."""
    from playbooks.profiles import active_profile

    return active_profile().tier_names
