"""Accounts and contacts written from CRM records: keyed by the CRM's record id, never deleted.

`Book` takes records in batches (an import streams them, a webhook sends one) and answers,
for each, what it did or would do: created, updated (with the fields that changed),
unchanged or refused (with the column and the reason). In a dry run it writes nothing but
remembers what it would have created, so the contacts of a company created earlier in the
same run attach to it. A re-import of the same files changes nothing; nothing is deleted.

Rules a successor must know:
- an account's id is made once, from its name (`Müller & Söhne` -> `muller-sohne`), or from
  the connection and CRM id when the name has no Latin letters; `crm_links` keeps it found;
- `status` is taken from the CRM only when the account is created: after that the plays own it;
- the CSM comes from the CRM owner through `csms.owner_keys` (playbooks/crm/team.yaml); an
  unknown owner gets the default CSM and a warning, never a refusal;
- the time zone and language follow the country unless the mapping reads them;
- the ARR is kept in its own currency with the USD rate of this write (for the tier);
- new accounts, their links and new contacts are written by COPY (starter/book/writes.py), as
  plain inserts: one created meanwhile by another writer fails the batch instead of being
  overwritten, and running the import again is harmless;
- `touched` keeps at most TOUCHED_KEPT accounts for naming sponsors; past that they are found
  again in the database, so a Book's memory does not grow with the book.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import AsyncIterator, Literal

import asyncpg

from playbooks.crm_mapping import CurrenciesContent, Mapping, TeamContent
from starter.book import values as v
from starter.book import writes
from starter.book.records import AccountRecord, ContactRecord, Problem
from starter.book.team import Team, sync_team  # noqa: F401  (re-exported: Book's public API)
from starter.book.values import official_language  # noqa: F401  (re-exported)

Action = Literal["created", "updated", "unchanged", "refused"]
DEFAULT_TIMEZONE = "America/New_York"
# Accounts whose contacts changed, kept in memory to name their sponsors; past this many, they are
# found again in the database (contacts written since the run began), so memory stays flat.
TOUCHED_KEPT = 10_000

# accounts columns an import writes (status only when it creates the account).
ACCOUNT_COLUMNS = ("name", "status", "health", "arr", "arr_currency", "usd_rate", "crm_tier", "renewal_date",
                   "vertical", "country", "region", "timezone", "language", "domain", "csm_name", "csm_email",
                   "csm_owner", "sponsor_name", "sponsor_email", "crm_deleted_at")
CONTACT_COLUMNS = ("name", "first_name", "last_name", "email", "role", "title", "phone", "email_opt_out")


@dataclass
class Outcome:
    """What one record did (or would do, in a dry run)."""

    action: Action
    where: str
    crm_id: str
    account_id: str | None = None
    changes: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    reason: Problem | None = None


class Book:
    """Writes (or, with apply=False, plans) accounts and contacts for one CRM connection."""

    def __init__(self, pool: asyncpg.Pool, mapping: Mapping, team: TeamContent, rates: CurrenciesContent,
                 apply: bool, source_label: str | None = None):
        self.pool, self.mapping, self.apply = pool, mapping, apply
        self.connection = mapping.connection
        self.source = source_label or mapping.connection
        self.team = Team(team)
        self.rates = {code: Decimal(str(rate)) for code, rate in rates.usd_per_unit.items()}
        self._planned_links: dict[tuple[str, str], str] = {}   # dry run: (object_type, crm_id) -> account id
        self.written = 0                                        # rows written (the importer refreshes statistics)
        self._taken: set[str] = set()                           # account ids made in this run
        self.touched: set[str] = set()                          # accounts whose contacts changed (up to TOUCHED_KEPT)
        self.touched_count = 0                                  # ... and how many in all
        self._contacts_since: datetime | None = None            # when this Book first wrote contacts
        self.touched_overflow = False

    # -- links ------------------------------------------------------------------------------
    async def account_ids(self, object_type: str, crm_ids: list[str]) -> dict[str, str]:
        """Our account id for each CRM id known (in the database, or planned in this dry run)."""
        rows = await self.pool.fetch(
            "SELECT crm_id, account_id FROM crm_links WHERE connection = $1 AND object_type = $2"
            " AND crm_id = ANY($3::text[])", self.connection, object_type, crm_ids)
        found = {r["crm_id"]: r["account_id"] for r in rows}
        for crm_id in crm_ids:
            planned = self._planned_links.get((object_type, crm_id))
            if planned and crm_id not in found:
                found[crm_id] = planned
        return found

    async def _new_ids(self, records: list[tuple[AccountRecord, str]]) -> dict[str, str]:
        """An unused account id for each (record, name): from the name, else connection-crmid;
        `-2`, `-3`... when taken. Looked up by exact ids (the primary key), a few at a time."""
        wanted: dict[str, str] = {}
        for record, name in records:
            base = v.slug(name) or ""
            if len(base) < 3:
                base = v.slug(f"{self.connection}-{record.crm_id}", 60)
            wanted[record.crm_id] = base
        out: dict[str, str] = {}
        pending = dict(wanted)
        suffix = 1  # candidates: base, then base-2 ... base-21, then base-22 ... base-41, ...
        while pending:
            candidates = {crm_id: [base] if suffix == 1 else [f"{base[:60]}-{n}" for n in range(suffix, suffix + 20)]
                          for crm_id, base in pending.items()}
            every = sorted({c for cs in candidates.values() for c in cs})
            taken = {r["id"] for r in await self.pool.fetch(
                "SELECT id FROM accounts WHERE id = ANY($1::text[])", every)} | self._taken
            for crm_id, options in candidates.items():
                free = next((c for c in options if c not in taken), None)
                if free is not None:
                    taken.add(free)
                    self._taken.add(free)
                    out[crm_id] = free
                    del pending[crm_id]
            suffix = 2 if suffix == 1 else suffix + 20
        if self.apply:
            self._taken.clear()  # written in this batch: the database knows them from now on
        return out

    # -- accounts ---------------------------------------------------------------------------
    async def accounts(self, records: list[AccountRecord]) -> list[Outcome]:
        """Create or update one batch of accounts (a few thousand at most)."""
        outcomes: list[Outcome] = []
        usable: list[AccountRecord] = []
        for record in records:
            fatal = next((p for p in record.problems if p.fatal), None)
            if fatal or not record.crm_id:
                outcomes.append(Outcome("refused", record.where, record.crm_id, reason=fatal or Problem(
                    record.where, "id", "no record id")))
            else:
                usable.append(record)
        # The same company twice in one batch: the later row wins, as a later export would.
        latest = {r.crm_id: r for r in usable}
        links = await self.account_ids("company", list(latest))
        existing = {r["id"]: dict(r) for r in await self.pool.fetch(
            "SELECT * FROM accounts WHERE id = ANY($1::text[])", list(links.values()))}
        new = [(r, r.values.get("name") or "") for r in latest.values() if r.crm_id not in links]
        made = await self._new_ids([(r, n) for r, n in new if n])
        writes: list[dict] = []
        for record in usable:
            if latest[record.crm_id] is not record:
                again = Problem(record.where, record.labels.get("id", "id"), "the same record appears again later "
                                "in the input: the later one is taken", fatal=False)
                outcomes.append(Outcome("unchanged", record.where, record.crm_id, links.get(record.crm_id),
                                        warnings=[again]))
                continue
            outcome, row = self._plan_account(record, links, existing, made)
            outcomes.append(outcome)
            if row is not None:
                writes.append(row)
        if self.apply and writes:
            await self._write_accounts(writes)
        if not self.apply:
            for row in writes:
                self._planned_links[("company", row["crm_id"])] = row["id"]
        return outcomes

    def _plan_account(self, record: AccountRecord, links: dict[str, str], existing: dict[str, dict],
                      made: dict[str, str]) -> tuple[Outcome, dict | None]:
        warnings = [p for p in record.problems if not p.fatal]
        account_id = links.get(record.crm_id)
        before = existing.get(account_id) if account_id else None
        creating = before is None
        if creating:
            if not record.values.get("name"):
                return Outcome("refused", record.where, record.crm_id, reason=Problem(
                    record.where, "name", "a new account needs its name")), None
            account_id = account_id or made[record.crm_id]
            before = {"status": record.values.get("status") or self.mapping.default_status, "health": 70,
                      "arr": Decimal(0), "arr_currency": self.mapping.default_currency, "usd_rate": Decimal(1),
                      "timezone": None, "language": None, "country": None}
        row = {c: before.get(c) for c in ACCOUNT_COLUMNS}
        vals = record.values
        for name in ("name", "renewal_date", "vertical", "domain"):
            if name in vals:
                row[name] = vals[name]
        if "health" in vals and vals["health"] is not None:
            row["health"] = vals["health"]
        if "tier" in vals:
            row["crm_tier"] = vals["tier"]
        if "deleted" in vals:
            row["crm_deleted_at"] = (row.get("crm_deleted_at") or datetime.now(timezone.utc)) if vals["deleted"] \
                else None
        if "arr" in vals:
            row["arr"] = vals["arr"] if vals["arr"] is not None else Decimal(0)
        if vals.get("arr_currency"):
            row["arr_currency"] = vals["arr_currency"]
        rate = self.rates.get(row["arr_currency"])
        if rate is None:
            warnings.append(Problem(record.where, record.labels.get("arr", "arr"),
                                    f"no USD rate for {row['arr_currency']} in playbooks/crm/currencies.yaml: the "
                                    "tier is taken as if it were USD", False))
            rate = Decimal(1)
        row["usd_rate"] = rate
        if "country" in vals or "region" in vals:
            derived_tz = v.default_timezone(before.get("country"), before.get("region"))
            derived_language = official_language(before.get("country"))
            if "country" in vals:
                if vals["country"] != before.get("country") and "region" not in vals:
                    row["region"] = None  # a region of the old country means nothing in the new one
                row["country"] = vals["country"]
            if "region" in vals:
                try:
                    row["region"] = v.parse_region(row.get("country"), vals["region"])
                except v.BadValue as exc:
                    warnings.append(Problem(record.where, record.labels.get("region", "region"), f"{exc}: left out",
                                            fatal=False))
                    row["region"] = before.get("region") if row.get("country") == before.get("country") else None
            if not vals.get("timezone") and (creating or row.get("timezone") in (None, derived_tz)):
                row["timezone"] = v.default_timezone(row.get("country"), row.get("region")) or row.get("timezone") \
                    or DEFAULT_TIMEZONE
            if not vals.get("language") and (creating or row.get("language") in (None, derived_language)):
                row["language"] = official_language(row.get("country")) or row.get("language") or "en"
        if vals.get("timezone"):
            row["timezone"] = vals["timezone"]
        if vals.get("language"):
            row["language"] = vals["language"]
        row["timezone"] = row.get("timezone") or DEFAULT_TIMEZONE
        row["language"] = row.get("language") or "en"
        if record.owner_keys or creating:
            csm, key, matched = self.team.resolve(record.owner_keys)
            if not matched and (creating or record.owner_keys):
                shown = f"owner {key!r} is none of our CSMs" if key else "no owner"
                warnings.append(Problem(record.where, record.labels.get("owner", "owner"),
                                        f"{shown}: assigned to the default CSM {csm.name}", fatal=False))
            row["csm_name"], row["csm_email"], row["csm_owner"] = csm.name, str(csm.email), key
        if "sponsor_email" in vals:
            row["sponsor_email"] = vals["sponsor_email"]
            row["sponsor_name"] = row.get("sponsor_name") if vals["sponsor_email"] == before.get("sponsor_email") \
                else vals["sponsor_email"]
        if "status" in vals and creating and vals["status"]:
            row["status"] = vals["status"]
        changes = [c for c in ACCOUNT_COLUMNS if c != "usd_rate" and (a := row.get(c)) != (b := before.get(c))
                   and not _same(a, b)]
        if not creating and not changes:
            return Outcome("unchanged", record.where, record.crm_id, account_id, warnings=warnings), None
        action: Action = "created" if creating else "updated"
        row.update(id=account_id, crm_id=record.crm_id, new=creating)
        return Outcome(action, record.where, record.crm_id, account_id, changes, warnings), row

    async def _write_accounts(self, rows: list[dict]) -> None:
        """New accounts and their CRM links by COPY; changed ones by UPDATE (never their status:
        once created, the plays own it). One transaction per batch."""
        created = [r for r in rows if r["new"]]
        changed = [r for r in rows if not r["new"]]
        updated_columns = tuple(c for c in ACCOUNT_COLUMNS if c != "status")
        async with self.pool.acquire() as conn, conn.transaction():
            await writes.insert_rows(conn, "accounts", ("id",) + ACCOUNT_COLUMNS + ("source",),
                                     [(r["id"],) + tuple(r.get(c) for c in ACCOUNT_COLUMNS) + (self.source,)
                                      for r in created])
            await writes.insert_rows(conn, "crm_links", ("connection", "object_type", "crm_id", "account_id"),
                                     [(self.connection, "company", r["crm_id"], r["id"]) for r in created])
            await writes.update_rows(conn, "accounts", "id", updated_columns,
                                     [(r["id"],) + tuple(r.get(c) for c in updated_columns) for r in changed])
        self.written += len(rows)

    # -- contacts ---------------------------------------------------------------------------
    async def contacts(self, records: list[ContactRecord]) -> list[Outcome]:
        """Create or update one batch of contacts; a contact of two companies gets a row in each."""
        outcomes: list[Outcome] = []
        company_ids = sorted({c for r in records for c in r.company_ids})
        links = await self.account_ids("company", company_ids)
        accounts = sorted(set(links.values()))
        # One dict per row, shared by both indexes: a row found by its CRM key and by its address is one row.
        existing = [dict(r) for r in await self.pool.fetch(
            "SELECT * FROM contacts WHERE account_id = ANY($1::text[])", accounts)] if accounts else []
        by_key = {(r["account_id"], r["crm_key"]): r for r in existing if r["crm_key"]}
        by_email = {(r["account_id"], r["email"].lower()): r for r in existing if r["email"]}
        latest = {r.crm_id: r for r in records if r.crm_id}
        writes: list[dict] = []
        for record in records:
            fatal = next((p for p in record.problems if p.fatal), None)
            warnings = [p for p in record.problems if not p.fatal]
            if fatal or not record.crm_id:
                outcomes.append(Outcome("refused", record.where, record.crm_id, reason=fatal or Problem(
                    record.where, "id", "no record id")))
                continue
            column = record.labels.get("companies", "companies")
            known = [links[c] for c in record.company_ids if c in links]
            unknown = [c for c in record.company_ids if c not in links]
            if latest[record.crm_id] is not record:
                outcomes.append(Outcome("unchanged", record.where, record.crm_id, known[0] if known else None,
                                        warnings=[Problem(record.where, record.labels.get("id", "id"),
                                                          "the same record appears again later in the input: the "
                                                          "later one is taken", fatal=False)]))
                continue
            if not known:
                why = (f"company {', '.join(unknown)} is not in the book: import the companies first"
                       if unknown else "no company: a contact belongs to an account")
                outcomes.append(Outcome("refused", record.where, record.crm_id, reason=Problem(record.where, column,
                                                                                              why)))
                continue
            for company in unknown:
                warnings.append(Problem(record.where, column, f"company {company} is not in the book: "
                                        "the contact is added to its other companies", fatal=False))
            for account_id in dict.fromkeys(known):
                outcome, row = self._plan_contact(record, account_id, by_key, by_email, warnings)
                outcomes.append(outcome)
                if row is not None:
                    writes.append(row)
                    by_key[(account_id, row["crm_key"])] = row
                    if row.get("email"):
                        by_email[(account_id, row["email"].lower())] = row
        if self.apply and writes:
            await self._write_contacts(writes)
        for r in writes:
            if r["account_id"] not in self.touched:
                self.touched_count += 1
                if len(self.touched) < TOUCHED_KEPT:
                    self.touched.add(r["account_id"])
                else:
                    self.touched_overflow = True
        return outcomes

    def _plan_contact(self, record: ContactRecord, account_id: str, by_key: dict, by_email: dict,
                      warnings: list[Problem]) -> tuple[Outcome, dict | None]:
        crm_key = f"{self.connection}:{record.crm_id}"
        vals = record.values
        email = vals.get("email") if "email" in vals else None
        before = by_key.get((account_id, crm_key))
        if email:
            twin = by_email.get((account_id, email.lower()))
            if twin is not None and twin is not before:
                if before is None and twin.get("crm_key") in (None, crm_key):
                    before = twin  # the person is already there without a CRM key (added by hand): adopt it
                else:
                    return Outcome("refused", record.where, record.crm_id, account_id, reason=Problem(
                        record.where, record.labels.get("email", "email"),
                        f"{email} is already the address of another contact of {account_id}")), None
        creating = before is None
        row = {c: (before or {}).get(c) for c in CONTACT_COLUMNS}
        for name in ("first_name", "last_name", "email", "title", "phone", "role"):
            if name in vals:
                row[name] = vals[name]
        if "opt_out" in vals:
            row["email_opt_out"] = bool(vals["opt_out"])
        row["email_opt_out"] = bool(row.get("email_opt_out"))
        row["role"] = row.get("role") or "user"
        row["name"] = vals.get("name") or " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p) \
            or row.get("name") or (row["email"].split("@")[0] if row.get("email") else None)
        if not row["name"]:
            return Outcome("refused", record.where, record.crm_id, account_id, reason=Problem(
                record.where, record.labels.get("last_name", record.labels.get("name", "name")),
                "a contact needs a name or an e-mail address")), None
        if creating and not row.get("email"):
            warnings = [*warnings, Problem(record.where, record.labels.get("email", "email"),
                                           "no e-mail address: kept, but no play can write to this contact",
                                           fatal=False)]
        was = before or {}
        changes = [c for c in CONTACT_COLUMNS if (a := row.get(c)) != (b := was.get(c)) and not _same(a, b)]
        if not creating and not changes and before.get("crm_key") == crm_key:
            return Outcome("unchanged", record.where, record.crm_id, account_id, warnings=warnings), None
        row.update(account_id=account_id, crm_key=crm_key, id=(before or {}).get("id"))
        return Outcome("created" if creating else "updated", record.where, record.crm_id, account_id, changes,
                       warnings), row

    async def _write_contacts(self, rows: list[dict]) -> None:
        columns = CONTACT_COLUMNS + ("crm_key",)
        async with self.pool.acquire() as conn, conn.transaction():
            if self._contacts_since is None:  # the rows written from here on have updated_at >= this
                self._contacts_since = await conn.fetchval("SELECT now()")
            await writes.update_rows(conn, "contacts", "id", columns,
                                     [(r["id"],) + tuple(r.get(c) for c in columns) for r in rows if r.get("id")])
            await writes.insert_rows(conn, "contacts", ("account_id",) + columns,
                                     [(r["account_id"],) + tuple(r.get(c) for c in columns)
                                      for r in rows if not r.get("id")])
        self.written += len(rows)

    # -- after the contacts ---------------------------------------------------------------------
    async def choose_sponsors(self) -> list[Outcome]:
        """Name a sponsor for each account touched that has none, from its contacts (the mapping's
        sponsor rule: a role, else a title). One outcome per account given a sponsor. Nothing is
        chosen in a dry run (the contacts are not there yet)."""
        return [o async for chunk in self.sponsor_batches() for o in chunk]

    async def sponsor_batches(self, size: int = 2000) -> AsyncIterator[list[Outcome]]:
        """`choose_sponsors`, `size` accounts at a time, one statement each (writes.name_sponsors)."""
        if not self.touched or not self.apply:
            return
        rule = self.mapping.sponsor
        if not self.touched_overflow:
            touched = sorted(self.touched)
            chunks = (touched[start:start + size] for start in range(0, len(touched), size))
        else:  # too many to keep in memory: the accounts without a sponsor whose contacts this Book wrote
            chunks = writes.accounts_with_contacts_since(self.pool, self._contacts_since, size)
        async for chunk in _aiter(chunks):
            chosen = await writes.name_sponsors(self.pool, chunk, rule.roles, rule.titles)
            yield [Outcome("updated", f"account {a}", "", a, ["sponsor_email"]) for a in chosen]


async def _aiter(items):
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    return a == b
