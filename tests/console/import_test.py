"""The console's Import page in a real Chromium: upload HubSpot exports, see the dry run, confirm.

Runs against the product as ./run.sh starts it (tests/console/conftest.py), which has already
imported the demo book on its first start.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.console.conftest import shot

FIXTURES = Path(__file__).resolve().parents[1] / "starter" / "book" / "fixtures"
HUBSPOT = FIXTURES / "hubspot"


def uploads(stack) -> list[Path]:
    root = stack.data_dir / "imports"
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def upload(page, stack, mapping: str, accounts: Path | None, contacts: Path | None) -> None:
    page.goto(stack.base_url + "/console/imports")
    page.select_option("select[name=mapping]", mapping)
    if accounts:
        page.set_input_files("input[name=accounts]", str(accounts))
    if contacts:
        page.set_input_files("input[name=contacts]", str(contacts))
    page.click("button[name=upload]")


def counts(page, kind: str) -> dict[str, str]:
    row = page.locator(f"#import-counts tr[data-kind={kind}]")
    return {c: row.locator(f"td.{c}").inner_text() for c in ("created", "updated", "unchanged", "refused")}


def test_the_demo_book_came_through_the_importer(console, console_stack):
    page, stack = console, console_stack
    (run,) = stack.sql("SELECT id, status, created FROM import_runs WHERE source = 'demo'")
    assert (run["status"], run["created"]) == ("finished", 65)  # 25 accounts, 40 contact rows
    page.goto(stack.base_url + "/console/imports")
    expect(page.locator("#import-runs")).to_contain_text("demo_book/companies.csv")
    page.goto(stack.base_url + "/console/accounts/muller-sohne-prazisionstechnik-gmbh")
    expect(page.locator("#account-arr")).to_contain_text("€185,000 ARR")
    expect(page.locator("#account-place")).to_contain_text("DE-BW · time zone Europe/Berlin · language de")
    expect(page.locator("#account-place")).to_contain_text("demo company 12010000002")
    shot(page, "account-imported")


def test_upload_dry_run_then_confirm(console, console_stack):
    page, stack = console, console_stack
    assert uploads(stack) == []
    upload(page, stack, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    page.wait_for_url(re.compile(r".*/console/imports/[A-Za-z0-9_-]{22}$"))
    token = page.url.rsplit("/", 1)[1]
    # The dry run runs on the service; the page reloads itself until its table is there.
    expect(page.locator("#import-dry-run")).to_contain_text("nothing has been written yet")
    assert counts(page, "accounts") == {"created": "8", "updated": "0", "unchanged": "0", "refused": "0"}
    assert counts(page, "contacts") == {"created": "10", "updated": "0", "unchanged": "0", "refused": "2"}
    refused = page.locator("#import-refused")
    expect(refused.locator("tr", has_text="contacts.csv:7")).to_contain_text("Email")
    expect(refused.locator("tr", has_text="contacts.csv:7")).to_contain_text("is not an e-mail address")
    expect(page.locator("#import-warnings")).to_contain_text(
        "owner 'Integration User' is none of our CSMs: assigned to the default CSM Casey Morgan")
    shot(page, "import-dry-run")
    # A dry run writes nothing; the files wait under DATA_DIR/imports/<random token>.
    assert stack.sql("SELECT count(*) AS n FROM crm_links WHERE connection = 'hubspot'")[0]["n"] == 0
    (folder,) = uploads(stack)
    assert folder.name == token and {p.name for p in folder.iterdir()} >= {"accounts.upload", "contacts.upload"}

    page.once("dialog", lambda d: d.accept())
    page.click("button[name=confirm]")
    page.wait_for_url(re.compile(r".*/console/imports/runs/\d+$"))
    expect(page.locator("h1")).to_contain_text("finished")
    assert counts(page, "accounts")["created"] == "8" and counts(page, "contacts")["refused"] == "2"
    shot(page, "import-applied")
    assert uploads(stack) == []  # applied: the uploaded files are gone
    assert stack.sql("SELECT count(*) AS n FROM crm_links WHERE connection = 'hubspot'")[0]["n"] == 8

    page.goto(stack.base_url + "/console/accounts/brauerei-konigsbach-gmbh")
    expect(page.locator("#account-arr")).to_contain_text("€85,000 ARR ($91,800)")
    expect(page.locator("#account-place")).to_contain_text("DE-BY · time zone Europe/Berlin · language de")
    expect(page.locator("#account-place")).to_contain_text("hubspot company 30000000002")

    # The same files again: nothing would change; discarding leaves nothing behind.
    upload(page, stack, "hubspot", HUBSPOT / "companies.csv", HUBSPOT / "contacts.csv")
    expect(page.locator("#import-dry-run")).to_be_visible()
    assert counts(page, "accounts") == {"created": "0", "updated": "0", "unchanged": "8", "refused": "0"}
    page.click("button[name=discard]")
    expect(page.locator("#flash")).to_contain_text("discarded")
    assert uploads(stack) == []


def test_unusable_files_and_forms_without_csrf_are_refused_and_keep_nothing(console, console_stack):
    page, stack = console, console_stack
    runs = stack.sql("SELECT count(*) AS n FROM import_runs")[0]["n"]
    upload(page, stack, "hubspot", FIXTURES / "salesforce" / "extract_Account.csv", None)
    expect(page.locator("#import-problems")).to_contain_text(
        "extract_Account.csv:1: no column for the record id")
    shot(page, "import-unusable")
    upload(page, stack, "salesforce", None, HUBSPOT / "contacts.csv")
    expect(page.locator("#import-problems")).to_contain_text("contacts.csv:1: no column for the record id")
    for form in ({}, {"csrf_token": "forged"}):
        refused = page.request.post(f"{stack.base_url}/console/imports", max_redirects=0, multipart={
            **form, "mapping": "hubspot",
            "accounts": {"name": "companies.csv", "mimeType": "text/csv",
                         "buffer": (HUBSPOT / "companies.csv").read_bytes()}})
        assert refused.status == 403 and "did not come from the console" in refused.text()
    assert uploads(stack) == []
    assert stack.sql("SELECT count(*) AS n FROM import_runs")[0]["n"] == runs
    missing = page.goto(stack.base_url + "/console/imports/AAAAAAAAAAAAAAAAAAAAAA")
    assert missing.status == 404
    expect(page.locator("#problem")).to_contain_text("There is no such import")
