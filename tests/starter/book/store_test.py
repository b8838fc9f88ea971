"""The book's store against real PostgreSQL: the shared HubSpot and Salesforce exports as they
are, re-imported unchanged, updated by a later export, and a dry run that writes nothing."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

from playbooks.crm_mapping import CurrenciesContent, Mapping, TeamContent
from playbooks.loader import _load_config
from starter.book.records import account_record, by_columns, contact_record
from starter.book.store import Book, sync_team

CRM = Path(__file__).resolve().parents[3] / "playbooks" / "crm"
REAL = Path(__file__).resolve().parents[4] / "shared" / "real-inputs"


def load(name: str, model):
    return _load_config(CRM / name, model)


def rows(path: Path):
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        headers = {h.strip().lower(): h for h in reader.fieldnames}
        for n, row in enumerate(reader, start=2):
            yield by_columns(row, headers), f"{path.name}:{n}"


async def run(pool, mapping: Mapping, companies: Path, contacts: Path, apply: bool = True):
    team, rates = load("team.yaml", TeamContent), load("currencies.yaml", CurrenciesContent)
    await sync_team(pool, team)
    book = Book(pool, mapping, team, rates, apply=apply)
    accounts = await book.accounts([account_record(mapping, lookup, where) for lookup, where in rows(companies)])
    people = await book.contacts([contact_record(mapping, lookup, where) for lookup, where in rows(contacts)])
    sponsors = await book.choose_sponsors()
    return accounts, people, sponsors


async def test_hubspot_exports_as_they_are(pool):
    mapping = load("hubspot.yaml", Mapping)
    files = REAL / "hubspot" / "exports" / "companies-export.csv", REAL / "hubspot" / "exports" / "contacts-export.csv"
    accounts, people, sponsors = await run(pool, mapping, *files)
    assert [o.action for o in accounts] == ["created"] * 5, accounts
    northwind = await pool.fetchrow("SELECT * FROM accounts WHERE id = 'northwind-traders-ltd'")
    assert (northwind["arr"], northwind["arr_currency"], northwind["country"], northwind["timezone"]) == (
        Decimal(120000), "USD", "GB", "Europe/London")
    assert northwind["csm_email"] == "avery.lindqvist@tai.example" and northwind["status"] == "active"
    mueller = await pool.fetchrow("SELECT * FROM accounts WHERE id LIKE 'muller%'")
    assert (mueller["arr"], mueller["arr_currency"], mueller["language"]) == (Decimal(85000), "EUR", "de")
    sakura = await pool.fetchrow("SELECT a.* FROM accounts a JOIN crm_links l ON l.account_id = a.id"
                                 " WHERE l.crm_id = '18413086201'")
    assert sakura["id"] == "hubspot-18413086201" and sakura["name"] == "株式会社サクラ精機"
    assert sakura["arr_currency"] == "JPY" and sakura["timezone"] == "Asia/Tokyo"
    bluefin = next(o for o in accounts if o.crm_id == "18413094592")
    assert any("default CSM" in str(w) for w in bluefin.warnings)
    assert all(o.action == "created" for o in people if o.action != "refused")
    again = await run(pool, mapping, *files)
    assert {o.action for o in again[0] + again[1]} <= {"unchanged", "refused"}


async def test_salesforce_dataloader_export_and_dry_run(pool):
    mapping = load("salesforce.yaml", Mapping)
    files = REAL / "salesforce" / "dataloader" / "extract_Account.csv", REAL / "salesforce" / "dataloader" / "extract_Contact.csv"
    before = await pool.fetchval("SELECT count(*) FROM accounts")
    planned, planned_people, _ = await run(pool, mapping, *files, apply=False)
    assert await pool.fetchval("SELECT count(*) FROM accounts") == before
    assert [o.action for o in planned] == ["created"] * 4
    assert all(o.action == "created" for o in planned_people), planned_people
    accounts, people, _ = await run(pool, mapping, *files)
    assert [o.action for o in accounts] == [o.action for o in planned]
    assert await pool.fetchval("SELECT count(*) FROM crm_links WHERE connection = 'salesforce'") == 4
    northwind = await pool.fetchrow("SELECT * FROM accounts WHERE id = 'northwind-traders-ltd'")
    assert northwind["csm_email"] == "avery.lindqvist@tai.example"
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = 'northwind-traders-ltd'") == 2
