"""The console's Webhooks page, in-process against the real database: what waits and why, what
is retrying or refused, per vendor; logged-in users only."""

from __future__ import annotations

from starter.console.auth import SESSION_COOKIE, add_user, log_in
from datetime import date

from tests.starter.webhooks.vendors import epoch_ms, hs_prop, hubspot, real, salesforce

PASSWORD = "correct horse battery"


async def test_the_page_lists_waiting_events_with_what_they_wait_for_and_why(env, http, pool, settings):
    await hubspot(http, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json"))
    await salesforce(http, real("salesforce/outbound/opportunity_closed_won.xml"))
    await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                       " VALUES ('hubspot', 'company', '5', 'acme')")
    past = await hubspot(http, [hs_prop("company", 5, "renewal_date", epoch_ms(date(2020, 1, 31)))])
    assert past.json()["results"][0]["status"] == "refused"
    anonymous = await http.get("/console/webhooks")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/console/login")
    await add_user(pool, "diana.hoang@tai.example", "Diana Hoang", PASSWORD)
    token = (await log_in(pool, settings, "diana.hoang@tai.example", PASSWORD)).token
    http.cookies.set(SESSION_COOKIE, token)
    try:
        page = await http.get("/console/webhooks")
        assert page.status_code == 200
        html = page.text
        assert 'id="count-waiting">2<' in html and 'id="count-refused">1<' in html
        assert "renewal date 2020-01-31 is in the past" in html
        assert "deal 20563118842: which company it belongs to is not known yet" in html
        assert "company 0015g000009X4veAAC is not in the book yet" in html
        assert "salesforce company 0015g000009X4veAAC" in html  # what it waits for
        assert "Content-Security-Policy" in page.headers and 'href="/console/webhooks" class="current"' in html
        only = await http.get("/console/webhooks", params={"source": "salesforce"})
        assert "0015g000009X4veAAC" in only.text and "20563118842" not in only.text
        bad = await http.get("/console/webhooks", params={"source": "<script>"})
        assert bad.status_code == 422 and "<script>" not in bad.text
    finally:
        http.cookies.clear()


async def test_the_cli_lists_waiting_events(env, http, pool, db_url, tmp_path):
    import asyncio
    import os
    import sys

    from core.settings import PROJECT_ROOT

    await hubspot(http, real("hubspot/webhooks/deal.propertyChange.dealstage_closedwon.json"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starter", "webhooks", "waiting", "--source", "hubspot",
        env={**os.environ, "DATABASE_URL": db_url, "DATA_DIR": str(tmp_path), "COLUMNS": "200"}, cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "deal.propertyChange" in text and "hubspot deal 20563118842" in text and "waiting 1" in text
