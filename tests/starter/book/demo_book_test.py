"""The demo book: what ./run.sh imports on its first start, through the HubSpot importer."""

from __future__ import annotations

from datetime import date

from core.models import tier_of
from starter.demo import DEMO_BOOK_AS_OF, seed_demo_book
from tests.starter.book.importer_test import digests


async def acme(pool) -> tuple:
    return (dict(await pool.fetchrow("SELECT * FROM accounts WHERE id = 'acme'")),
            [dict(r) for r in await pool.fetch("SELECT * FROM contacts WHERE account_id = 'acme' ORDER BY id")])


async def test_the_demo_book_is_a_realistic_small_book_imported_once(pool):
    before_acme = await acme(pool)
    today = date.today()
    report = await seed_demo_book(pool, today)
    assert report is not None and report.apply and report.source == "demo" and report.connection == "demo"
    assert (report.counts["accounts"].created, report.counts["accounts"].refused) == (25, 0)
    # 39 people, one of them a contact of two customers; one without an e-mail address.
    assert (report.counts["contacts"].created, report.counts["contacts"].refused) == (40, 0)
    assert [w.reason for w in report.warnings.items] == [
        "no e-mail address: kept, but no play can write to this contact"]
    rows = await pool.fetch("SELECT * FROM accounts WHERE source = 'demo'")
    assert len(rows) == 25
    tiers = {tier_of(r) for r in rows}
    assert tiers == {"Enterprise", "Mid-Market", "Starter"}
    assert len({r["country"] for r in rows}) == 16 and len({r["timezone"] for r in rows}) == 21  # as README says
    assert {r["csm_name"] for r in rows} == {"Casey Morgan", "Avery Lindqvist", "Jonas Becker"}
    renewals = [r["renewal_date"] for r in rows if r["renewal_date"]]
    assert len(renewals) == 24 and all(today < d <= today + (date(2027, 12, 31) - DEMO_BOOK_AS_OF) for d in renewals)
    assert sum(1 for r in rows if r["sponsor_email"]) >= 20  # named from titles: VP, Head of, Director, CEO...
    assert {r["status"] for r in rows} == {"active", "prospect"}
    assert await acme(pool) == before_acme  # the demo account stays exactly as it was

    before = await digests(pool)
    assert await seed_demo_book(pool, today) is None  # the second start imports nothing
    assert await digests(pool) == before
