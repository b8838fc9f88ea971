"""`csplay import` as a CS-ops person runs it: a real process against a real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import openpyxl

from core.settings import PROJECT_ROOT
from tests.starter.book.importer_test import digests

FIXTURES = PROJECT_ROOT / "tests" / "starter" / "book" / "fixtures"
CRM = PROJECT_ROOT / "playbooks" / "crm"


def csplay(db_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "200", "LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "starter", "import", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


async def test_hubspot_dry_run_then_apply(pool, db_url):
    files = ["--companies", str(FIXTURES / "hubspot" / "companies.csv"),
             "--contacts", str(FIXTURES / "hubspot" / "contacts.csv")]
    before = await digests(pool)
    dry = csplay(db_url, "hubspot", *files)
    assert dry.returncode == 0, dry.stderr
    assert "(dry run)" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert "contacts.csv:7: Email: 'sam.okafor(at)pacificcrest.example' is not an e-mail address" in dry.stdout
    assert "companies.csv:6: Company owner: owner 'Integration User' is none of our CSMs" in dry.stdout
    assert "Traceback" not in dry.stdout + dry.stderr
    assert await digests(pool) == before

    applied = csplay(db_url, "hubspot", *files, "--apply", "--by", "ops@tai.example")
    assert applied.returncode == 0, applied.stderr
    assert "applied: accounts: 8 created" in applied.stdout
    run = await pool.fetchrow("SELECT * FROM import_runs")
    assert (run["run_by"], run["status"], run["created"], run["refused"]) == ("ops@tai.example", "finished", 18, 2)
    assert await pool.fetchval("SELECT count(*) FROM crm_links WHERE connection = 'hubspot'") == 8

    again = csplay(db_url, "hubspot", *files, "--apply", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["counts"]["accounts"] == {"created": 0, "updated": 0, "unchanged": 8, "refused": 0}


async def test_salesforce_and_csv_mapping_with_xlsx_sheets(pool, db_url, tmp_path):
    loader = FIXTURES / "salesforce"
    done = csplay(db_url, "salesforce", "--accounts", str(loader / "extract_Account.csv"),
                  "--contacts", str(loader / "extract_Contact.csv"), "--apply")
    assert done.returncode == 0, done.stderr
    assert "extract_Contact.csv:5: EMAIL: 'yui.mori@@osaka-seimitsu.example' is not an e-mail address" in done.stdout

    book = tmp_path / "book.xlsx"
    wb = openpyxl.Workbook()
    sheet = wb.active
    sheet.title = "Accounts"
    sheet.append(["Account ID", "Account Name", "CSM", "ARR", "Country"])
    sheet.append(["GS-9", "Kiwi Orchard Co-op", "Casey Morgan", "NZD 40,000", "New Zealand"])
    people = wb.create_sheet("People")
    people.append(["Contact ID", "Account ID", "First Name", "Last Name", "Email"])
    people.append(["GC-9", "GS-9", "Aroha", "Ngata", "aroha@kiwiorchard.example"])
    wb.save(book)
    done = csplay(db_url, "csv", "--mapping", str(CRM / "examples" / "cs_template.yaml"), "--accounts", str(book),
                  "--sheet", "Accounts", "--contacts", str(book), "--contacts-sheet", "People", "--apply")
    assert done.returncode == 0, done.stderr
    kiwi = await pool.fetchrow("SELECT * FROM accounts WHERE id = 'kiwi-orchard-co-op'")
    assert (kiwi["arr_currency"], kiwi["timezone"], kiwi["source"], kiwi["sponsor_email"]) == (
        "NZD", "Pacific/Auckland", "csv:cs_template", None)
    assert await pool.fetchval("SELECT email FROM contacts WHERE account_id = 'kiwi-orchard-co-op'") == (
        "aroha@kiwiorchard.example")


async def test_an_unusable_file_or_mapping_is_one_line_and_exit_1(pool, db_url, tmp_path):
    before = await digests(pool)
    wrong = csplay(db_url, "hubspot", "--companies", str(FIXTURES / "salesforce" / "extract_Account.csv"))
    assert wrong.returncode == 1
    assert wrong.stderr.strip().startswith("error: extract_Account.csv:1: no column for the record id")
    missing = csplay(db_url, "salesforce", "--accounts", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and "error: nope.csv: no such file" in missing.stderr
    mapping = tmp_path / "mine.yaml"
    shutil.copy(CRM / "examples" / "cs_template.yaml", mapping)
    mapping.write_text(mapping.read_text().replace("source: csv", "source: csv\nsauce: ketchup"))
    broken = csplay(db_url, "csv", "--mapping", str(mapping), "--accounts", str(FIXTURES / "cs_template" /
                                                                                    "accounts.csv"))
    assert broken.returncode == 1
    line = next(n for n, t in enumerate(mapping.read_text().splitlines(), 1) if t.startswith("sauce"))
    assert f"{mapping}:{line}: sauce: Extra inputs are not permitted" in broken.stderr
    other = csplay(db_url, "hubspot", "--mapping", str(CRM / "salesforce.yaml"), "--companies",
                   str(FIXTURES / "hubspot" / "companies.csv"))
    assert other.returncode == 1 and "reads salesforce files, not hubspot ones" in other.stderr
    for done in (wrong, missing, broken, other):
        assert "Traceback" not in done.stdout + done.stderr
    assert await digests(pool) == before
