"""The monthly SLA attainment report against a hand-computed sample, as a
table (the `csplay sla-report` command) and as the e-mail to CS leadership."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from activities.accounts import upsert_account
from activities.sla import send_sla_report, sla_attainment
from core.settings import PROJECT_ROOT
from playbooks.loader import load_named
from starter.demo import demo_account

JAN = datetime(2027, 1, 5, 15, tzinfo=timezone.utc)

# (ticket, account, tier, priority, opened, status, response met, resolution met, credits)
SAMPLE = [
    ("T1", "acme", "Enterprise", "P0", JAN, "closed", True, True, []),
    ("T2", "acme", "Enterprise", "P0", JAN + timedelta(days=3), "closed", False, False, [625, 1250]),
    ("T3", "acme", "Enterprise", "P2", JAN + timedelta(days=4), "resolved", True, False, [1250]),
    ("T4", "tiny", "Starter", "P1", JAN + timedelta(days=5), "open", False, None, []),
    ("T5", "tiny", "Starter", "P1", JAN + timedelta(days=6), "closed", True, True, []),
    # Opened 2027-02-01 00:30 New York time: February, not January, although it is still January in UTC... no:
    # 05:30 UTC on Feb 1 is 00:30 in New York, February in both. The next one is January in New York only.
    ("T6", "acme", "Enterprise", "P3", datetime(2027, 2, 1, 5, 30, tzinfo=timezone.utc), "open", None, None, []),
    ("T7", "acme", "Enterprise", "P3", datetime(2027, 2, 1, 3, 0, tzinfo=timezone.utc), "closed", True, True, []),
]


async def seed_sample(pool) -> None:
    await upsert_account(pool, demo_account(date.today()).model_copy(
        update={"id": "tiny", "name": "Tiny Shop", "arr": Decimal(12_000)}))
    for n, (tid, account, tier, priority, opened, status, rmet, smet, credits) in enumerate(SAMPLE):
        await pool.execute(
            "INSERT INTO sla_tickets (ticket_id, workflow_id, account_id, tier, priority, subject, status, opened_at,"
            " response_met, resolution_met) VALUES ($1, $2, $3, $4, $5, 's', $6, $7, $8, $9)",
            tid, f"sla-{tid}", account, tier, priority, status, opened, rmet, smet)
        for i, amount in enumerate(credits):
            await pool.execute(
                "INSERT INTO service_credits (idem_key, workflow_id, play_id, ticket_id, account_id, clock, percent,"
                " monthly_fee, amount, reason) VALUES ($1, $2, 'p', $3, $4, $5, 5, 12500, $6, 'x')",
                f"{tid}/{i}", f"sla-{tid}", tid, account, ["response", "resolution"][i if len(credits) > 1 else 1],
                Decimal(amount))


async def test_attainment_by_tier_and_priority_matches_the_hand_computed_figures(pool):
    await seed_sample(pool)
    report = await sla_attainment(pool, date(2027, 1, 1))
    rows = {(r["tier"], r["priority"]): r for r in report["rows"]}
    assert list(rows) == [("Enterprise", "P0"), ("Enterprise", "P2"), ("Enterprise", "P3"), ("Starter", "P1")]
    assert rows["Enterprise", "P0"] == {
        "tier": "Enterprise", "priority": "P0", "tickets": 2, "response_met": 1, "response_pct": 50.0,
        "resolution_met": 1, "resolution_pct": 50.0, "open": 0, "credits": Decimal("1875.00")}
    assert rows["Starter", "P1"]["open"] == 1 and rows["Starter", "P1"]["response_pct"] == 50.0
    assert rows["Enterprise", "P3"]["tickets"] == 1  # T7: 22:00 on 31 January in New York
    # 6 January tickets: responses met by T1 T3 T5 T7 (4/6), resolutions by T1 T5 T7 (3/6).
    assert report["totals"] == {"tickets": 6, "response_pct": 66.7, "resolution_pct": 50.0,
                                "credits": Decimal("3125.00")}
    assert (await sla_attainment(pool, date(2027, 2, 1)))["totals"]["tickets"] == 1


async def test_report_email_goes_to_cs_leadership_once_per_month(pool, settings, sink):
    await seed_sample(pool)
    snapshot = load_named("sla")
    template, to = snapshot.template("report"), snapshot.content.report.to
    report, already = await send_sla_report(pool, settings, date(2027, 1, 1), template, to)
    assert not already and len(sink.messages) == 1
    mail = sink.messages[0]
    assert mail.subject == "SLA attainment 2027-01: 66.7% response, 50.0% resolution"
    assert "diana.hoang@tai.example" in mail.rcpt_to
    assert "$3,125.00" in mail.text and "Enterprise" in mail.text
    _, already = await send_sla_report(pool, settings, date(2027, 1, 1), template, to)
    assert already and len(sink.messages) == 1


async def test_sla_report_command_prints_the_table(pool, db_url):
    await seed_sample(pool)
    env = {**os.environ, "DATABASE_URL": db_url}
    done = subprocess.run([sys.executable, "-m", "starter", "sla-report", "--month", "2027-01"], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tickets opened in 2027-01" in done.stdout and "$1,875.00" in done.stdout and "66.7%" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "starter", "sla-report", "--month", "January"], env=env,
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "not a month" in bad.stdout + bad.stderr and "Traceback" not in bad.stderr
