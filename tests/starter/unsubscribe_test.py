"""Unsubscribing (RFC 8058 one-click) through the real HTTP service, without a session."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

from activities.accounts import fetch_account, fetch_staff
from activities.email import Mailer, resolve_roles
from activities.mail_links import unsubscribe_link_for
from core.models import EmailTemplate, PlayRef
from tests.bad_input_test import table_digests

LEE = "lee.park@acme.example"
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"content-type": "application/x-www-form-urlencoded"}}


def token(settings, category: str = "lifecycle", address: str = LEE, days_ago: int = 0) -> str:
    issued = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return unsubscribe_link_for(settings.email_link_secret.get_secret_value(), address, category, "acme", issued)


async def test_the_page_shows_what_the_link_is_for_and_changes_nothing(http, pool, settings):
    before = await table_digests(pool)
    response = await http.get(f"/unsubscribe/{token(settings)}")
    assert response.status_code == 200
    assert "Unsubscribe lee.park@acme.example from account and renewal e-mails" in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert await table_digests(pool) == before


async def test_one_click_unsubscribes_without_a_session_once(http, pool, settings):
    url = f"/unsubscribe/{token(settings)}"
    response = await http.post(url, **ONE_CLICK)
    assert response.status_code == 200 and "will get no more account and renewal e-mails" in response.text
    row = await pool.fetchrow("SELECT address_key, category, reason, source, account_id FROM suppressions")
    assert dict(row) == {"address_key": LEE, "category": "lifecycle", "reason": "unsubscribed", "source": "one-click",
                         "account_id": "acme"}
    again = await http.post(url, **ONE_CLICK)
    assert again.status_code == 200 and "already unsubscribed" in again.text
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 1


async def test_the_page_can_unsubscribe_from_everything_but_service_notices(http, pool, settings):
    response = await http.post(f"/unsubscribe/{token(settings, 'survey')}", data={"scope": "all", "via": "page"})
    assert response.status_code == 200
    row = await pool.fetchrow("SELECT category, source FROM suppressions")
    assert dict(row) == {"category": "all", "source": "unsubscribe page"}


async def test_the_link_in_a_sent_email_works_and_the_next_email_is_suppressed(http, pool, settings, sink):
    account = await fetch_account(pool, "acme")
    staff = await fetch_staff(pool)
    play = PlayRef(workflow_id="renewal-acme", play_id="run1", account_id="acme")
    lee = [p for p in resolve_roles(["contacts"], account, staff) if str(p.email) == LEE]
    tmpl = EmailTemplate(name="t.html.j2", subject="Hello", body="<html><body>Hi</body></html>", category="survey")
    await Mailer(pool, settings).deliver(play, "email/1", tmpl, lee, [], {}, account, staff)
    copy = next(m for m in sink.copies if m.rcpt_to == (LEE,))
    https = str(copy.message["List-Unsubscribe"]).split(",")[0].strip(" <>")
    response = await http.post(urlparse(https).path, **ONE_CLICK)
    assert response.status_code == 200
    result = await Mailer(pool, settings).deliver(play, "email/2", tmpl, lee, [], {}, account, staff)
    assert result.outcome == "suppressed" and "unsubscribed (survey, one-click" in result.recipients[0].reason
