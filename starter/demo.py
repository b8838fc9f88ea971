"""The demo account, the demo book of business and our staff ladder, created on first start only."""

from __future__ import annotations

import csv
import os
import secrets
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from activities.accounts import upsert_account, upsert_staff
from core.models import Account, Contact, Person, StaffMember

DEMO_ACCOUNT_ID = "acme"

# Seed 001: Diana Hoang is VP Customer Success and the CS manager of the ladder.
DEFAULT_STAFF = [
    # Seed 001 section 8.1: the Starter ladder's first rung, a shared queue.
    StaffMember(role="support_team", name="TAI Support Team", email="support@tai.example"),
    StaffMember(role="cs_manager", name="Diana Hoang", email="diana.hoang@tai.example"),
    StaffMember(role="vp_customer_success", name="Diana Hoang", email="diana.hoang@tai.example"),
    StaffMember(role="vp_engineering", name="Marcus Webb", email="marcus.webb@tai.example"),
    StaffMember(role="vp_product", name="Priya Nair", email="priya.nair@tai.example"),
    StaffMember(role="ceo", name="Alex Chen", email="alex.chen@tai.example"),
    # Section 3.2: "COO notified if not resolved in 2 hours" (a P0). The handbook names no COO.
    StaffMember(role="coo", name="TAI COO", email="coo@tai.example"),
]


def profile_staff(profiles: list[str] | None = None) -> list[StaffMember]:
    """Demo people for the staff roles the profiles declare (profile.yaml `staff_roles`; default: the
    active profile) that the default staff lacks: one placeholder each, named after the role's title,
    at <role>@<profile>.example. Put the real people in the staff table."""
    from playbooks.profiles import active_profile, cached_profile

    chosen = [cached_profile(name) for name in profiles] if profiles is not None else [active_profile()]
    have = {m.role for m in DEFAULT_STAFF}
    out: list[StaffMember] = []
    for profile in chosen:
        for role, title in profile.content.staff_roles.items():
            if role not in have:
                have.add(role)
                out.append(StaffMember(role=role, name=f"{profile.content.organisation} {title}"[:200],
                                       email=f"{role.replace('_', '.')}@{profile.name.replace('_', '-')}.example"))
    return out


def demo_account(today: date) -> Account:
    return Account(
        id=DEMO_ACCOUNT_ID,
        name="Acme Logistics",
        status="onboarding",
        health=72,
        arr=Decimal(150_000),
        renewal_date=today + timedelta(days=365),
        vertical="Logistics",
        csm=Person(name="Casey Morgan", email="casey.morgan@tai.example"),
        sponsor=Person(name="Dana Reyes", email="dana.reyes@acme.example"),
        contacts=[
            Contact(name="Lee Park", email="lee.park@acme.example", role="technical_lead"),
            Contact(name="Sam Ortiz", email="sam.ortiz@acme.example", role="data_owner"),
        ],
    )


async def seed_demo(pool: asyncpg.Pool, today: date, profiles: list[str] | None = None) -> bool:
    """Create the demo account and staff if missing (the default staff and a placeholder for each
    role of `profiles`, default the active one: `profile_staff`); never overwrites edits. True if created."""
    staff = DEFAULT_STAFF + profile_staff(profiles)
    missing_roles = {m.role for m in staff} - {r["role"] for r in await pool.fetch("SELECT role FROM staff")}
    await upsert_staff(pool, [m for m in staff if m.role in missing_roles])
    if await pool.fetchval("SELECT 1 FROM accounts WHERE id = $1", DEMO_ACCOUNT_ID):
        return False
    await upsert_account(pool, demo_account(today))
    return True


DEMO_CONSOLE_USER = ("diana.hoang@tai.example", "Diana Hoang")


async def seed_console_user(pool: asyncpg.Pool, login_file: Path) -> bool:
    """On a product with no console user yet, create the CS manager's login (role admin) with a
    random password written once to `login_file`, created owner-only (0600) before the password
    goes in; it is never printed. Real users come from `csplay user add`. True if created."""
    from starter.console.auth import add_user

    if await pool.fetchval("SELECT 1 FROM console_users LIMIT 1"):
        return False
    password = secrets.token_urlsafe(18)
    login_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(login_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{DEMO_CONSOLE_USER[0]}\n{password}\n")
    await add_user(pool, DEMO_CONSOLE_USER[0], DEMO_CONSOLE_USER[1], password, role="admin")
    return True


# -- the demo book of business ------------------------------------------------------------------
DEMO_BOOK_DIR = Path(__file__).parent / "demo_book"
# The files' dates are written as seen from this day; on import they move by as many days as have
# passed since, so that the demo's renewals always lie ahead (1 to 12 months out).
DEMO_BOOK_AS_OF = date(2026, 12, 1)
DEMO_SOURCE = "demo"


def _shifted(source: Path, dest: Path, days: int, column: str = "Renewal Date") -> Path:
    """A copy of a HubSpot export with the dates of `column` moved by `days` (still HubSpot's
    format: every value quoted)."""
    with source.open(newline="", encoding="utf-8") as fin, dest.open("w", newline="", encoding="utf-8") as fout:
        rows = csv.reader(fin)
        out = csv.writer(fout, quoting=csv.QUOTE_ALL, lineterminator="\n")
        header = next(rows)
        out.writerow(header)
        at = header.index(column)
        for row in rows:
            if row[at]:
                row[at] = (date.fromisoformat(row[at]) + timedelta(days=days)).isoformat()
            out.writerow(row)
    return dest


async def seed_demo_book(pool: asyncpg.Pool, today: date):
    """Import the demo book (starter/demo_book/: 25 companies of three tiers in a dozen countries
    and time zones, their contacts, three CSMs) through the HubSpot importer, once: the
    ImportReport, or None when an earlier start imported it. Uses the shipped mapping, team and
    currencies; its CRM ids are kept under the connection `demo`, apart from a real HubSpot's."""
    from playbooks.loader import PLAYBOOKS_DIR
    from starter.book.importer import ImportFile, load_mapping, load_rates, load_team, run_import

    if await pool.fetchval("SELECT 1 FROM import_runs WHERE source = $1 AND status = 'finished'", DEMO_SOURCE):
        return None
    crm = PLAYBOOKS_DIR / "crm"
    mapping = load_mapping(crm / "hubspot.yaml", "hubspot").model_copy(update={"connection": DEMO_SOURCE})
    with tempfile.TemporaryDirectory(prefix="demo-book-") as tmp:
        companies = _shifted(DEMO_BOOK_DIR / "companies.csv", Path(tmp) / "companies.csv",
                             (today - DEMO_BOOK_AS_OF).days)
        return await run_import(
            pool, mapping, dialect="hubspot", accounts=ImportFile(companies, name="demo_book/companies.csv"),
            contacts=ImportFile(DEMO_BOOK_DIR / "contacts.csv", name="demo_book/contacts.csv"),
            team=load_team(crm / "team.yaml"), rates=load_rates(crm / "currencies.yaml"), apply=True,
            run_by="demo", source_label=DEMO_SOURCE)
