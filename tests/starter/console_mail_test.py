"""The console's suppression list and the account's customer mail, through the real HTTP service."""

from __future__ import annotations

from activities.accounts import fetch_account, fetch_staff
from activities.email import Mailer, resolve_roles
from core.models import EmailTemplate, PlayRef
from starter.console.auth import SESSION_COOKIE, add_user, log_in, session_user
from tests.bad_input_test import table_digests

PASSWORD = "correct horse battery"


async def logged_in(http, pool, settings) -> str:
    """Log the CS manager in on `http`; returns the session's CSRF token."""
    await add_user(pool, "diana.hoang@tai.example", "Diana Hoang", PASSWORD, role="cs_manager")
    token = (await log_in(pool, settings, "diana.hoang@tai.example", PASSWORD)).token
    http.cookies.set(SESSION_COOKIE, token)
    return (await session_user(pool, token)).csrf_token


async def test_the_list_shows_ours_and_the_crms_and_edits_ours(http, pool, settings):
    csrf = await logged_in(http, pool, settings)
    await pool.execute("UPDATE contacts SET email_opt_out = true WHERE email = 'sam.ortiz@acme.example'")
    added = await http.post("/console/suppressions", data={"csrf_token": csrf, "address": "Lee.Park@ACME.example",
                                                          "category": "survey", "note": "asked on the phone"})
    assert added.status_code == 303
    row = await pool.fetchrow("SELECT id, address_key, category, reason, source, created_by, note FROM suppressions")
    assert (row["address_key"], row["category"], row["reason"], row["source"], row["created_by"], row["note"]) == (
        "lee.park@acme.example", "survey", "manual", "console", "diana.hoang@tai.example", "asked on the phone")
    page = await http.get("/console/suppressions")
    assert page.status_code == 200
    assert "lee.park@acme.example" in page.text and "surveys" in page.text and "asked on the phone" in page.text
    assert "sam.ortiz@acme.example" in page.text and "crm opt out" in page.text and "change it in the CRM" in page.text
    removed = await http.post(f"/console/suppressions/{row['id']}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 303 and await pool.fetchval("SELECT count(*) FROM suppressions") == 0
    flash = await http.get("/console/suppressions")
    assert "lee.park@acme.example may get surveys again" in flash.text
    audited = await pool.fetch("SELECT actor, action, object FROM audit_log WHERE action LIKE 'suppression.%' ORDER BY id")
    assert [(r["actor"], r["action"], r["object"]) for r in audited] == [
        ("diana.hoang@tai.example", "suppression.add", "address:lee.park@acme.example"),
        ("diana.hoang@tai.example", "suppression.remove", "address:lee.park@acme.example")]


async def test_a_viewer_cannot_add_and_a_csm_cannot_remove(http, pool, settings):
    for email, role in (("vic@tai.example", "viewer"), ("casey.morgan@tai.example", "csm")):
        await add_user(pool, email, email.split("@")[0], PASSWORD, role=role)
    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ('lee.park@acme.example', 'all', 'unsubscribed', 'one-click', 'lee')")
    for email, path in (("vic@tai.example", "/console/suppressions"),
                        ("casey.morgan@tai.example", "/console/suppressions/1/remove")):
        token = (await log_in(pool, settings, email, PASSWORD)).token
        http.cookies.set(SESSION_COOKIE, token)
        csrf = (await session_user(pool, token)).csrf_token
        refused = await http.post(path, data={"csrf_token": csrf, "address": "x@acme.example", "category": "all"})
        assert refused.status_code == 403 and "role" in refused.text
    assert [tuple(r) for r in await pool.fetch("SELECT address_key, category FROM suppressions")] == [
        ("lee.park@acme.example", "all")]


async def test_bad_additions_are_refused_and_change_nothing(http, pool, settings):
    csrf = await logged_in(http, pool, settings)
    before = await table_digests(pool)
    forged = await http.post("/console/suppressions", data={"csrf_token": "forged", "address": "x@acme.example",
                                                           "category": "all"})
    assert forged.status_code == 403
    for data, says in (({"address": "not an address", "category": "all"}, "address:"),
                       ({"address": "x@exa_mple.example", "category": "all"}, "IDNA 2008"),
                       ({"address": "x@acme.example", "category": "everything"}, "category: choose one of")):
        response = await http.post("/console/suppressions", data={"csrf_token": csrf, **data})
        assert response.status_code == 303
        assert says in (await http.get("/console/suppressions")).text
    after = await table_digests(pool)
    assert {t: d for t, d in after.items() if t != "console_sessions"} == \
        {t: d for t, d in before.items() if t != "console_sessions"}  # the session's flash came and went


async def test_the_account_page_shows_replies_and_bounces(http, pool, settings):
    await logged_in(http, pool, settings)
    account = await fetch_account(pool, "acme")
    staff = await fetch_staff(pool)
    play = PlayRef(workflow_id="renewal-acme", play_id="run1", account_id="acme")
    tmpl = EmailTemplate(name="t.html.j2", subject="Renewal proposal", body="<html><body>Hi</body></html>",
                         category="lifecycle")
    result = await Mailer(pool, settings).deliver(play, "email/1", tmpl, resolve_roles(["contacts"], account, staff),
                                                  [], {}, account, staff)
    recipient = await pool.fetchrow("SELECT id, token FROM communication_recipients WHERE address = 'sam.ortiz@acme.example'")
    await pool.execute(
        "INSERT INTO inbound_mail (kind, dedupe_key, token, communication_id, recipient_id, account_id, from_address,"
        " from_name, subject, status_code, diagnostic, body_text, raw_size, outcome) VALUES"
        " ('bounce', 'b1', $1, $2, $3, 'acme', 'MAILER-DAEMON@mx.acme.example', '', 'Undelivered Mail', '5.1.1',"
        "  '550 5.1.1 User unknown', '', 100, 'hard bounce: address suppressed; CSM told'),"
        " ('reply', 'r1', 'x', $2, NULL, 'acme', 'lee.park@acme.example', 'Lee Park', 'RE: Renewal proposal', '', '',"
        "  'Looks good to us <b>really</b>', 100, 'reply recorded; CSM told')",
        recipient["token"], result.communication_id, recipient["id"])
    page = await http.get("/console/accounts/acme")
    assert page.status_code == 200
    section = page.text.split('id="inbound-mail"')[1].split("</table>")[0]
    assert "bounce" in section and "5.1.1" in section and "sam.ortiz@acme.example" in section
    assert "Lee Park" in section and "RE: Renewal proposal" in section and "hard bounce: address suppressed" in section
    assert "Looks good to us &lt;b&gt;really&lt;/b&gt;" in section  # autoescaped


def test_the_suppressions_command(pool, settings):
    import os
    import subprocess
    import sys

    from core.settings import PROJECT_ROOT

    env = {**os.environ, "DATABASE_URL": settings.database_url, "COLUMNS": "160"}

    def csplay(*args):
        return subprocess.run([sys.executable, "-m", "starter", "suppressions", *args], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    added = csplay("add", "Lee.Park@acme.example", "--category", "lifecycle", "--by", "casey", "--note", "asked")
    assert added.returncode == 0 and "lee.park@acme.example suppressed from lifecycle" in added.stdout
    listed = csplay("list")
    assert listed.returncode == 0 and "lee.park@acme.example" in listed.stdout and "manual" in listed.stdout
    bad = csplay("add", "no-at-sign", "--by", "casey")
    assert bad.returncode == 1 and "address:" in bad.stderr and "Traceback" not in bad.stderr
    removed = csplay("remove", "lee.park@acme.example", "--category", "lifecycle", "--by", "casey")
    assert removed.returncode == 0 and "may get lifecycle e-mail again" in removed.stdout
    again = csplay("remove", "lee.park@acme.example", "--category", "lifecycle", "--by", "casey")
    assert again.returncode == 1 and "is not suppressed" in again.stderr
