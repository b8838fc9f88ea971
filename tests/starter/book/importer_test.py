"""Import runs against real PostgreSQL: HubSpot, Salesforce and a user's CSV mapping, with the
quirks of real exports (our fixtures in the vendors' formats, and the shared files as they are)."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from starter.book.importer import ImportFile, ImportProblem, load_mapping, load_rates, load_team, run_import

ROOT = Path(__file__).resolve().parents[3]
CRM = ROOT / "playbooks" / "crm"
FIXTURES = Path(__file__).parent / "fixtures"
HUBSPOT = FIXTURES / "hubspot"
SALESFORCE = FIXTURES / "salesforce"
TEMPLATE = FIXTURES / "cs_template"
REAL = ROOT.parent / "shared" / "real-inputs"


async def digests(pool, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every table's rows, digested (equal digests, equal contents)."""
    tables = [r["table_name"] for r in await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    query = "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"{}\" x"
    return {t: await pool.fetchval(query.format(t)) for t in tables if t not in skip}


async def run(pool, dialect: str, accounts: Path | None = None, contacts: Path | None = None, *, apply: bool = True,
              mapping=None, **kw):
    mapping = mapping or load_mapping(CRM / f"{dialect}.yaml", dialect)
    return await run_import(
        pool, mapping, dialect=dialect, accounts=ImportFile(accounts) if isinstance(accounts, Path) else accounts,
        contacts=ImportFile(contacts) if isinstance(contacts, Path) else contacts, team=load_team(CRM / "team.yaml"),
        rates=load_rates(CRM / "currencies.yaml"), apply=apply, run_by="test", **kw)


def counts(report) -> dict:
    return {k: (c.created, c.updated, c.unchanged, c.refused) for k, c in report.counts.items()}


async def account(pool, crm_id: str, connection: str = "hubspot"):
    return await pool.fetchrow("SELECT a.* FROM accounts a JOIN crm_links l ON l.account_id = a.id"
                               " WHERE l.connection = $1 AND l.crm_id = $2", connection, crm_id)


def problem(items, where: str):
    return next(p for p in items if p.where == where)


# -- HubSpot --------------------------------------------------------------------------------------
async def test_hubspot_dry_run_writes_nothing_then_apply_does_what_it_said(pool):
    before = await digests(pool)
    planned = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv", apply=False)
    assert await digests(pool) == before
    # 8 companies; 11 contact rows: one of two companies (2 rows), one invalid e-mail, one of an unknown company.
    assert counts(planned) == {"accounts": (8, 0, 0, 0), "contacts": (10, 0, 0, 2)}
    assert planned.run_id is None and planned.sponsors == 0

    applied = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    assert counts(applied) == counts(planned)
    assert [(p.where, p.column) for p in applied.refused.items] == [("contacts.csv:7", "Email"),
                                                                    ("contacts.csv:11", "Associated Company IDs")]
    assert "'sam.okafor(at)pacificcrest.example' is not an e-mail address" in applied.refused.items[0].reason
    assert "company 39999999999 is not in the book" in applied.refused.items[1].reason
    run_row = await pool.fetchrow("SELECT * FROM import_runs WHERE id = $1", applied.run_id)
    assert (run_row["status"], run_row["created"], run_row["refused"], run_row["connection"]) == (
        "finished", 18, 2, "hubspot")
    assert run_row["report"]["counts"]["contacts"]["refused"] == 2


async def test_hubspot_values_as_people_typed_them(pool):
    report = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    harbor = await account(pool, "30000000001")
    assert (harbor["id"], harbor["arr"], harbor["arr_currency"], harbor["country"], harbor["timezone"],
            harbor["language"], harbor["health"], harbor["csm_email"], harbor["status"], harbor["renewal_date"]) == (
        "harborview-freight-ltd", Decimal(120000), "USD", "GB", "Europe/London", "en", 81,
        "avery.lindqvist@tai.example", "active", date(2027, 3, 31))
    brewery = await account(pool, "30000000002")
    assert (brewery["id"], brewery["arr"], brewery["arr_currency"], brewery["usd_rate"], brewery["country"],
            brewery["region"], brewery["timezone"], brewery["language"]) == (
        "brauerei-konigsbach-gmbh", Decimal(85000), "EUR", Decimal("1.08"), "DE", "BY", "Europe/Berlin", "de")
    pacific = await account(pool, "30000000003")
    assert (pacific["arr"], pacific["region"], pacific["timezone"]) == (Decimal(30000), "CA", "America/Los_Angeles")
    lumiere = await account(pool, "30000000004")
    assert (lumiere["arr"], lumiere["arr_currency"], lumiere["language"]) == (Decimal("48500"), "EUR", "fr")
    hokkaido = await account(pool, "30000000005")  # a name without Latin letters: the id comes from the CRM id
    assert (hokkaido["id"], hokkaido["name"], hokkaido["arr_currency"], hokkaido["timezone"]) == (
        "hubspot-30000000005", "北海道ロジスティクス株式会社", "JPY", "Asia/Tokyo")
    saopaulo = await account(pool, "30000000008")
    assert (saopaulo["arr"], saopaulo["arr_currency"], saopaulo["timezone"], saopaulo["language"]) == (
        Decimal(540000), "BRL", "America/Sao_Paulo", "pt")
    atlantis = await account(pool, "30000000007")  # an opportunity in HubSpot: a prospect here
    assert (atlantis["status"], atlantis["country"], atlantis["timezone"]) == ("prospect", None, "America/New_York")
    warnings = {(p.where, p.column): p.reason for p in report.warnings.items}
    assert "'Atlantis' is not a country" in warnings[("companies.csv:8", "Country/Region")]
    assert "'next spring' is not a date" in warnings[("companies.csv:7", "Renewal Date")]
    fjord = await account(pool, "30000000006")
    assert fjord["renewal_date"] is None and fjord["arr"] == Decimal(1250000)  # the rest of the row is taken


async def test_unknown_and_missing_owners_get_the_default_csm_with_a_warning(pool):
    report = await run(pool, "hubspot", HUBSPOT / "companies.csv")
    warnings = {(p.where, p.column): p.reason for p in report.warnings.items}
    assert warnings[("companies.csv:6", "Company owner")] == (
        "owner 'Integration User' is none of our CSMs: assigned to the default CSM Casey Morgan")
    assert warnings[("companies.csv:5", "Company owner")] == "no owner: assigned to the default CSM Casey Morgan"
    for crm_id, owner in (("30000000005", "Integration User"), ("30000000004", None)):
        row = await account(pool, crm_id)
        assert (row["csm_name"], row["csm_email"], row["csm_owner"]) == ("Casey Morgan", "casey.morgan@tai.example",
                                                                         owner)
    assert counts(report)["accounts"] == (8, 0, 0, 0)  # never a refusal


async def test_contacts_of_two_companies_without_email_and_sponsors(pool):
    report = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    shared = await pool.fetch("SELECT account_id, name, crm_key FROM contacts"
                              " WHERE email = 'ops@shared-services.example' ORDER BY account_id")
    assert [(r["account_id"], r["name"], r["crm_key"]) for r in shared] == [
        ("brauerei-konigsbach-gmbh", "Ciarán Ó Briain", "hubspot:40000000004"),
        ("harborview-freight-ltd", "Ciarán Ó Briain", "hubspot:40000000004")]
    priya = await pool.fetchrow("SELECT * FROM contacts WHERE crm_key = 'hubspot:40000000005'")
    assert (priya["name"], priya["email"], priya["title"], priya["account_id"]) == (
        "Priya Raman", None, "CFO", "pacific-crest-software-inc")
    assert any(p.where == "contacts.csv:6" and p.column == "Email" and "no e-mail address" in p.reason
               for p in report.warnings.items)
    elodie = await pool.fetchrow("SELECT email_opt_out FROM contacts WHERE crm_key = 'hubspot:40000000007'")
    assert elodie["email_opt_out"] is True
    sponsors = {r["id"]: r["sponsor_email"] for r in await pool.fetch(
        "SELECT id, sponsor_email FROM accounts WHERE source = 'hubspot'")}
    assert sponsors == {
        "harborview-freight-ltd": "olivia.hart@harborview.example",      # "Head of Operations"
        "brauerei-konigsbach-gmbh": "j.weiss@koenigsbach.example",       # "Leiter Qualitätssicherung"
        "pacific-crest-software-inc": None,                              # no usable address
        "lumiere-analytique-sas": None,                                  # opted out, or no sponsor's title
        "hubspot-30000000005": "h.sato@hokkaido-logi.example",           # "情報システム部 部長"
        "fjord-field-as": "kari.nordmann@fjordfield.example",            # "VP Customer Success"
        "atlantis-holdings": None, "sao-paulo-textil-ltda": None,
    }
    assert report.sponsors == 4


async def test_sponsors_of_more_accounts_than_kept_in_memory_are_found_in_the_database(pool, monkeypatch):
    from starter.book import store

    monkeypatch.setattr(store, "TOUCHED_KEPT", 2)  # as if the run had touched more than 10,000 accounts
    report = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    assert report.sponsors == 4
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE source = 'hubspot' AND sponsor_email IS NOT NULL"
                               ) == 4
    assert await pool.fetchval("SELECT sponsor_email FROM accounts WHERE id = 'fjord-field-as'") == (
        "kari.nordmann@fjordfield.example")
    assert await pool.fetchval("SELECT sponsor_email FROM accounts WHERE id = 'acme'") == "dana.reyes@acme.example"


async def test_a_reimport_of_the_same_files_changes_nothing(pool):
    await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    # Each applied run is recorded (import_runs) and audited (audit_log); nothing else may change.
    before = await digests(pool, skip=("import_runs", "audit_log"))
    again = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    assert counts(again) == {"accounts": (0, 0, 8, 0), "contacts": (0, 0, 10, 2)}
    assert again.sponsors == 0 and again.changes.total == 0
    assert await digests(pool, skip=("import_runs", "audit_log")) == before
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'import'") == 2
    assert await pool.fetchval("SELECT count(*) FROM import_runs WHERE status = 'finished'") == 2


async def test_a_later_export_updates_only_what_changed(pool):
    await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    stamps = {r["id"]: r["updated_at"] for r in await pool.fetch("SELECT id, updated_at FROM accounts")}
    later = await run(pool, "hubspot", HUBSPOT / "companies-later.csv", HUBSPOT / "contacts-later.csv")
    assert counts(later) == {"accounts": (1, 2, 6, 0), "contacts": (0, 1, 9, 2)}
    assert [(c.kind, c.where, c.account_id, c.fields) for c in later.changes.items] == [
        ("accounts", "companies-later.csv:2", "harborview-freight-ltd", ["arr"]),
        ("accounts", "companies-later.csv:3", "brauerei-konigsbach-gmbh", ["csm_name", "csm_email", "csm_owner"]),
        ("contacts", "contacts-later.csv:3", "harborview-freight-ltd", ["title"]),
    ]
    assert (await account(pool, "30000000001"))["arr"] == Decimal(135000)
    assert (await account(pool, "30000000002"))["csm_email"] == "maja.nowak@tai.example"
    kiwi = await account(pool, "30000000009")
    assert (kiwi["arr_currency"], kiwi["timezone"], kiwi["language"]) == ("NZD", "Pacific/Auckland", "en")
    moved = {r["id"] for r in await pool.fetch("SELECT id, updated_at FROM accounts")
             if stamps.get(r["id"]) != r["updated_at"]}
    assert moved == {"harborview-freight-ltd", "brauerei-konigsbach-gmbh", "kiwi-orchard-co-op"}
    # Never deletes: a later export without a company leaves it alone.
    none = await run(pool, "hubspot", None, HUBSPOT / "contacts.csv")
    assert none.counts["accounts"].total == 0
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE source = 'hubspot'") == 9


async def test_french_labels_semicolons_and_a_byte_order_mark(pool):
    fr = FIXTURES / "hubspot_fr"
    report = await run(pool, "hubspot", fr / "entreprises.csv", fr / "contacts.csv")
    assert counts(report) == {"accounts": (3, 0, 0, 0), "contacts": (3, 0, 0, 0)}
    dupre, mueller, creme = [await account(pool, f"3100000000{i}") for i in (1, 2, 3)]
    assert (dupre["country"], dupre["language"], dupre["arr"], dupre["arr_currency"], dupre["csm_email"]) == (
        "FR", "fr", Decimal(85000), "EUR", "jonas.becker@tai.example")
    assert (mueller["country"], mueller["arr"], mueller["timezone"]) == ("DE", Decimal(1200000), "Europe/Berlin")
    assert (creme["country"], creme["arr"], creme["arr_currency"], creme["status"]) == (
        "GB", Decimal(18500), "GBP", "prospect")
    opt = {r["name"]: r["email_opt_out"] for r in await pool.fetch(
        "SELECT name, email_opt_out FROM contacts WHERE crm_key LIKE 'hubspot:4100%'")}
    assert opt == {"Amélie Dupré": False, "Günther Müller": False, "Zoë Crème": True}
    assert dupre["sponsor_email"] == "amelie.dupre@dupre.example"  # "Directeur général"


async def test_hubspot_xlsx_export(pool, tmp_path):
    path = tmp_path / "hubspot-crm-exports-all-companies-2026-11-30.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "All companies"
    ws.append(["Record ID", "Company name", "Company owner", "Country/Region", "Current ARR", "Renewal Date"])
    ws.append([18413070045, "Northwind Traders Ltd", "Avery Lindqvist", "United Kingdom", 120000, date(2027, 9, 30)])
    ws.append([18413078676, "Müller & Söhne", "Jonas Becker", "Germany", "€ 85.000", "2027-01-31"])
    wb.save(path)
    report = await run(pool, "hubspot", path)
    assert counts(report)["accounts"] == (2, 0, 0, 0)
    northwind = await account(pool, "18413070045")
    assert (northwind["arr"], northwind["renewal_date"]) == (Decimal(120000), date(2027, 9, 30))
    assert (await account(pool, "18413078676"))["arr_currency"] == "EUR"


async def test_the_shared_hubspot_exports_as_they_are(pool):
    exports = REAL / "hubspot" / "exports"
    report = await run(pool, "hubspot", exports / "companies-export.csv", exports / "contacts-export.csv")
    assert counts(report) == {"accounts": (5, 0, 0, 0), "contacts": (5, 0, 0, 0)}
    lodz = await account(pool, "18413102490")
    assert (lodz["arr"], lodz["arr_currency"], lodz["timezone"], lodz["language"]) == (
        Decimal(210000), "PLN", "Europe/Warsaw", "pl")


# -- unusable input: refused before anything is written -----------------------------------------------
async def test_a_file_broken_further_down_is_refused_with_nothing_written(pool, tmp_path):
    broken = tmp_path / "contacts.csv"
    broken.write_bytes((HUBSPOT / "contacts.csv").read_bytes() + b'"40000000099","' + b"x" * 140_000)
    before = await digests(pool)
    with pytest.raises(ImportProblem, match=r"contacts.csv:13: a value runs on"):
        await run(pool, "hubspot", HUBSPOT / "companies.csv", broken)
    assert await digests(pool) == before


async def test_the_wrong_file_for_the_dialect_is_unusable(pool):
    before = await digests(pool)
    with pytest.raises(ImportProblem) as refused:
        await run(pool, "hubspot", None, HUBSPOT / "companies.csv")
    assert "companies.csv:1: no column for the contacts' companies" in str(refused.value)
    with pytest.raises(ImportProblem, match=r"extract_Account.csv:1: no column for the record id"):
        await run(pool, "hubspot", SALESFORCE / "extract_Account.csv")
    with pytest.raises(ImportProblem, match="give the accounts"):
        await run(pool, "hubspot")
    assert await digests(pool) == before


async def test_the_report_keeps_the_first_rows_and_counts_the_rest(pool, tmp_path):
    path = tmp_path / "many.csv"
    lines = ['"Record ID","Company name","Company owner"'] + [f'"5{i:010d}","Company {i}","Someone {i % 3}"'
                                                            for i in range(250)]
    path.write_text("\n".join(lines) + "\n")
    report = await run(pool, "hubspot", path, apply=False, keep=5, batch_size=100)
    assert counts(report)["accounts"] == (250, 0, 0, 0)
    assert len(report.warnings.items) == 5 and report.warnings.more == report.warnings.total - 5
    assert report.warnings.total > 250
    assert report.warning_kinds[("Company owner", "owner 'Someone 1' is none of our CSMs: "
                                                    "assigned to the default CSM Casey Morgan")] == 83


async def test_progress_is_reported_per_batch(pool):
    seen = []
    await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv", batch_size=3,
              progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert ("accounts", 3, 8) in seen and ("accounts", 8, 8) in seen and ("contacts", 11, 11) in seen
    assert [s for s in seen if s[0] == "sponsors"][-1][1] == 4


async def test_a_broken_mapping_names_file_line_and_field(tmp_path):
    from playbooks.loader import PlaybookError

    path = tmp_path / "mine.yaml"
    shutil.copy(CRM / "examples" / "cs_template.yaml", path)
    text = path.read_text().replace("    health: {columns: [Health Score, Score de santé], type: int}",
                                    "    health: {columns: [Health Score, Score de santé], type: money}")
    path.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "type: money}" in t and "health" in t)
    with pytest.raises(PlaybookError) as refused:
        load_mapping(path, "csv")
    assert f"{path}:{line}: accounts.fields.health.type: health is read as int or percent, not money" in str(
        refused.value)
    with pytest.raises(PlaybookError, match=r"this mapping reads csv files, not hubspot ones"):
        load_mapping(CRM / "examples" / "cs_template.yaml", "hubspot")


async def test_events_waiting_on_the_imported_objects_are_resumed(pool, monkeypatch):
    """The webhooks' hook (starter.book.waiting.resolve_waiting, from another branch) is called after
    each applied batch with the CRM ids just created or updated; its failure is a warning only."""
    import sys
    import types

    calls = []

    async def resolve_waiting(pool_, connection, object_type, crm_ids):
        calls.append((connection, object_type, crm_ids))
        if object_type == "contact":
            raise RuntimeError("the CRM is down")

    monkeypatch.setitem(sys.modules, "starter.book.waiting", types.SimpleNamespace(resolve_waiting=resolve_waiting))
    dry = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv", apply=False)
    assert calls == [] and dry.warnings.total == 5  # a dry run resumes nothing
    report = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    assert calls[0] == ("hubspot", "company", [f"3000000000{i}" for i in range(1, 9)])
    assert calls[1][:2] == ("hubspot", "contact") and "40000000004" in calls[1][2] and "40000000006" not in calls[1][2]
    assert any("events waiting on these contacts were not resumed: the CRM is down" in w.reason
               for w in report.warnings.items)
    assert counts(report) == {"accounts": (8, 0, 0, 0), "contacts": (10, 0, 0, 2)}
    calls.clear()
    await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    assert calls == []  # nothing new, nothing to resume


async def test_a_run_that_fails_halfway_is_recorded_and_running_it_again_completes_it(pool, monkeypatch):
    from starter.book import store

    async def database_gone(self, rows):
        raise ConnectionError("the database went away")

    monkeypatch.setattr(store.Book, "_write_contacts", database_gone)
    with pytest.raises(ConnectionError):
        await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    failed = await pool.fetchrow("SELECT * FROM import_runs")
    assert failed["status"] == "failed" and failed["finished_at"] is not None
    assert failed["report"]["counts"]["accounts"]["created"] == 8  # what was written before stays
    monkeypatch.undo()
    again = await run(pool, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    assert counts(again) == {"accounts": (0, 0, 8, 0), "contacts": (10, 0, 0, 2)}
    assert again.sponsors == 4


async def test_a_contact_of_a_company_not_in_the_book_and_one_address_for_two_people(pool, tmp_path):
    mapping = load_mapping(CRM / "examples" / "cs_template.yaml", "csv")
    people = tmp_path / "people.csv"
    people.write_text("Contact ID,Account ID,First Name,Last Name,Email\n"
                      "GC-7,GS-1001;GS-9999,Ana,Silva,ana@redwood-dental.example\n"
                      "GC-8,GS-1001,Ana,Silva (again),ANA@redwood-dental.example\n"
                      "GC-9,GS-1002,Bo,Berg,bo@alpenglow.example\n"
                      "GC-9,GS-1002,Bo,Berg,bo.berg@alpenglow.example\n")
    report = await run(pool, "csv", TEMPLATE / "accounts.csv", people, mapping=mapping)
    assert counts(report)["contacts"] == (2, 0, 1, 1)
    warnings = [(w.where, w.column, w.reason) for w in report.warnings.items if w.where.startswith("people")]
    assert ("people.csv:2", "Account ID", "company GS-9999 is not in the book: the contact is added to its other "
            "companies") in warnings
    assert ("people.csv:4", "Contact ID", "the same record appears again later in the input: the later one is "
            "taken") in warnings
    (refused,) = report.refused.items
    assert (refused.where, refused.column) == ("people.csv:3", "Email")
    assert "ANA@redwood-dental.example is already the address of another contact of redwood-dental-group" in (
        refused.reason)
    assert await pool.fetchval("SELECT email FROM contacts WHERE crm_key = 'cs-template:GC-9'") == (
        "bo.berg@alpenglow.example")


async def test_records_written_meanwhile_by_another_writer_stop_the_run_cleanly(pool, monkeypatch):
    """Two imports (or an import and a webhook) creating the same account at once: the second one's
    batch fails as a whole instead of overwriting; it says to run it again, which completes it."""
    from starter.book import store

    original = store.Book._write_accounts

    async def racing(self, rows):
        await original(self.__class__(self.pool, self.mapping, self.team.content, _rates(), apply=True), rows)
        await original(self, rows)

    def _rates():
        return load_rates(CRM / "currencies.yaml")

    monkeypatch.setattr(store.Book, "_write_accounts", racing)
    with pytest.raises(ImportProblem, match="wrote some of these records meanwhile; .* run the import again"):
        await run(pool, "hubspot", HUBSPOT / "companies.csv")
    assert await pool.fetchval("SELECT status FROM import_runs") == "failed"
    monkeypatch.undo()
    again = await run(pool, "hubspot", HUBSPOT / "companies.csv")
    assert counts(again)["accounts"] == (0, 0, 8, 0)
