"""The console role by role, in a real Chromium against the product as ./run.sh starts it: what
each role sees, and that the server refuses what it may not do even when the browser posts it
anyway (a hidden button is not a permission). Also the admin pages (users, API tokens, settings),
the API docs behind a login, and single sign-on against a local OpenID Connect provider.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import shot
from tests.console.console_test import reload_until

PASSWORD = "quiet lantern orbit 42"
VIEWER = ("vic.viewer@tai.example", "Vic Viewer", "viewer")
CSM = ("casey.morgan@tai.example", "Casey Morgan", "csm")
MANAGER = ("morgan.manager@tai.example", "Morgan Manager", "cs_manager")
OWN, OTHER = "roles-own", "roles-other"  # Casey's account, and Jordan's


@pytest.fixture(scope="module")
def people(console_stack):
    stack = console_stack
    for email, name, role in (VIEWER, CSM, MANAGER):
        stack.add_user(email, name, role, PASSWORD)
    for account_id, name, csm_name, csm_email in ((OWN, "Own Book Ltd", "Casey Morgan", CSM[0]),
                                                  (OTHER, "Other Book Inc", "Jordan Blake", "jordan.blake@tai.example")):
        stack.sql("INSERT INTO accounts (id, name, status, health, arr, renewal_date, csm_name, csm_email,"
                  " sponsor_name, sponsor_email) VALUES ($1, $2, 'onboarding', 70, 60000, current_date + 300, $3, $4,"
                  " 'Sam Sponsor', 'sam@customer.example') ON CONFLICT (id) DO NOTHING",
                  account_id, name, csm_name, csm_email)
        stack.cli("launch", account_id)
    return stack


def log_in(page, stack, email: str, password: str = PASSWORD) -> None:
    page.goto(stack.base_url + "/console/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(stack.base_url + "/console/")


def csrf(page) -> str:
    return page.locator("input[name=csrf_token]").first.get_attribute("value")


def post(page, stack, path: str, **form) -> tuple[int, str]:
    """What the server answers when the browser posts a form, whatever the page offered."""
    answer = page.request.post(stack.base_url + path, form={"csrf_token": csrf(page), **form}, max_redirects=0)
    return answer.status, answer.text()


def open_task(stack, account_id: str) -> int:
    rows = stack.sql("SELECT id FROM tasks WHERE account_id = $1 AND status = 'not-started' ORDER BY id LIMIT 1",
                     account_id)
    assert rows, f"{account_id} has no open task yet"
    return rows[0]["id"]


def wait_for_tasks(page, stack, account_id: str) -> None:
    page.goto(f"{stack.base_url}/console/accounts/{account_id}")
    reload_until(page, lambda: page.locator("#tasks tr[data-task]").count() > 0, f"{account_id}'s first tasks")


def test_a_viewer_reads_every_page_and_changes_nothing(page, people):
    stack = people
    log_in(page, stack, VIEWER[0])
    expect(page.locator("#role")).to_have_text("Viewer")
    header = page.locator("header")
    for hidden in ("Launch", "Audit", "Admin"):
        expect(header.get_by_role("link", name=hidden, exact=True)).to_have_count(0)
    wait_for_tasks(page, stack, OWN)
    expect(page.locator("#read-only")).to_be_visible()
    for button in ("pause", "cancel", "skip", "complete"):
        expect(page.locator(f"button[name={button}]")).to_have_count(0)
    shot(page, "role-viewer-account")
    for path in ("/console/", "/console/tasks", "/console/outbox", "/console/reports"):
        assert page.goto(stack.base_url + path).status == 200, path
    for path, needs in (("/console/launch", "CSM"), ("/console/audit", "CS manager"), ("/console/admin/users", "Admin"),
                        ("/console/admin/tokens", "Admin"), ("/console/admin/settings", "Admin")):
        response = page.goto(stack.base_url + path)
        assert response.status == 403, path
        expect(page.locator("#problem")).to_contain_text(f"needs the {needs} role")
    shot(page, "role-viewer-refused")
    page.goto(f"{stack.base_url}/console/accounts/{OWN}")
    task = open_task(stack, OWN)
    for path, form in ((f"/console/plays/onboarding-{OWN}/cancel", {"account_id": OWN}),
                       (f"/console/plays/onboarding-{OWN}/pause", {"account_id": OWN}),
                       (f"/console/tasks/{task}/complete", {}),
                       ("/console/launch", {"playbook": "renewal", "account": OWN}),
                       ("/console/admin/tokens", {"name": "sneaky", "scope": "admin"})):
        status, text = post(page, stack, path, **form)
        assert status == 403 and "Traceback" not in text, (path, status)
    assert stack.sql("SELECT status FROM tasks WHERE id = $1", task)[0]["status"] == "not-started"
    assert not stack.sql("SELECT 1 FROM api_tokens WHERE name = 'sneaky'")
    page.goto(f"{stack.base_url}/console/accounts/{OWN}")
    expect(page.locator(f"[data-play='onboarding-{OWN}'] .play-status")).to_have_text("running")
    assert not stack.sql("SELECT 1 FROM audit_log WHERE actor = $1 AND outcome = 'ok' AND action <> 'login'",
                         VIEWER[0])


def test_a_csm_steers_and_launches_only_their_own_book(page, people):
    stack = people
    log_in(page, stack, CSM[0])
    expect(page.locator("#role")).to_have_text("CSM")
    wait_for_tasks(page, stack, OWN)
    own = page.locator(f"[data-play='onboarding-{OWN}']")
    page.once("dialog", lambda d: d.accept())
    own.locator("button[name=pause]").click()
    expect(page.locator("#flash")).to_contain_text(f"onboarding-{OWN} paused")
    reload_until(page, lambda: own.locator(".play-status").inner_text() == "paused", "Casey's play paused")
    page.once("dialog", lambda d: d.accept())
    own.locator("button[name=resume]").click()
    expect(page.locator("#flash")).to_contain_text(f"onboarding-{OWN} resumed")
    shot(page, "role-csm-own-account")

    wait_for_tasks(page, stack, OTHER)
    expect(page.locator("#read-only")).to_contain_text("only its CSM (Jordan Blake)")
    expect(page.locator("button[name=pause]")).to_have_count(0)
    other_task = open_task(stack, OTHER)
    for path, form in ((f"/console/plays/onboarding-{OTHER}/pause", {"account_id": OTHER}),
                       (f"/console/plays/onboarding-{OTHER}/cancel", {"account_id": OTHER}),
                       (f"/console/tasks/{other_task}/complete", {}),
                       ("/console/launch", {"playbook": "renewal", "account": OTHER})):
        status, text = post(page, stack, path, **form)
        assert status == 403 and "not in your book" in text, (path, status, text[:300])
    assert stack.sql("SELECT status FROM tasks WHERE id = $1", other_task)[0]["status"] == "not-started"

    page.goto(stack.base_url + "/console/launch")
    expect(page.locator(f"#acct-{OWN}")).to_have_count(1)
    expect(page.locator(f"#acct-{OTHER}")).to_have_count(0)
    shot(page, "role-csm-launch")
    assert page.goto(stack.base_url + "/console/audit").status == 403
    # Casey's own task: completed from the console, recorded under Casey's name.
    own_task = open_task(stack, OWN)
    page.goto(f"{stack.base_url}/console/accounts/{OWN}")
    status, _ = post(page, stack, f"/console/tasks/{own_task}/complete", back=f"/console/accounts/{OWN}")
    assert status == 303
    (done,) = stack.sql("SELECT status, completed_by FROM tasks WHERE id = $1", own_task)
    assert (done["status"], done["completed_by"]) == ("completed", CSM[0])
    audit = {(r["action"], r["object"], r["outcome"]) for r in stack.sql(
        "SELECT action, object, outcome FROM audit_log WHERE actor = $1", CSM[0])}
    assert {("pause", f"onboarding-{OWN}", "ok"), ("resume", f"onboarding-{OWN}", "ok"),
            ("pause", f"onboarding-{OTHER}", "refused"), ("complete_task", f"task:{other_task}", "refused"),
            ("complete_task", f"task:{own_task}", "ok"), ("login", f"user:{CSM[0]}", "ok")} <= audit


def test_a_cs_manager_steers_every_account_and_reads_the_audit_log(page, people):
    stack = people
    log_in(page, stack, MANAGER[0])
    expect(page.locator("#role")).to_have_text("CS manager")
    wait_for_tasks(page, stack, OTHER)
    other = page.locator(f"[data-play='onboarding-{OTHER}']")
    page.once("dialog", lambda d: d.accept())
    other.locator("input[name=reason]").fill("customer on holiday")
    other.locator("button[name=pause]").click()
    expect(page.locator("#flash")).to_contain_text(f"onboarding-{OTHER} paused")
    reload_until(page, lambda: other.locator(".play-status").inner_text() == "paused", "Jordan's play paused")
    page.once("dialog", lambda d: d.accept())
    other.locator("button[name=resume]").click()
    expect(page.locator("#flash")).to_contain_text(f"onboarding-{OTHER} resumed")
    # The account's own page lists who did what to it.
    reload_until(page, lambda: "customer on holiday" in page.locator("#account-audit").inner_text(),
                 "the pause in the account's audit")
    expect(page.locator("#account-audit")).to_contain_text(MANAGER[0])
    shot(page, "role-manager-account")

    page.goto(f"{stack.base_url}/console/audit?account={OTHER}&outcome=refused")
    rows = page.locator("#audit tbody tr[data-audit]")
    expect(rows.first).to_be_visible()
    assert all(r.locator("td.outcome-refused").count() == 1 for r in rows.all())
    expect(page.locator("#audit")).to_contain_text(CSM[0])  # Casey's refused attempts are there
    page.goto(f"{stack.base_url}/console/audit?action=login.failed")
    page.goto(f"{stack.base_url}/console/audit?actor={MANAGER[0]}")
    expect(page.locator("#audit")).to_contain_text("resume")
    shot(page, "role-manager-audit")
    assert page.goto(stack.base_url + "/console/audit?since=yesterday").status == 422
    assert page.goto(stack.base_url + "/console/admin/users").status == 403
    page.goto(stack.base_url + "/console/")
    status, _ = post(page, stack, "/console/admin/users", email="x@tai.example", name="X", role="admin",
                     password=PASSWORD)
    assert status == 403 and not stack.sql("SELECT 1 FROM console_users WHERE email = 'x@tai.example'")


def test_an_admin_manages_users_and_tokens_and_the_docs_need_a_login(page, people):
    stack = people
    log_in(page, stack, stack.email, stack.password)
    expect(page.locator("#role")).to_have_text("Admin")
    page.goto(stack.base_url + "/console/admin/users")
    form = page.locator("#add-user")
    for password, flash in (("aaaaaaaaaaaa", "too easy to guess"), (PASSWORD, "added (CSM)")):
        form.locator("input[name=email]").fill("new.csm@tai.example")
        form.locator("input[name=name]").fill("New Csm")
        form.locator("select[name=role]").select_option("csm")
        form.locator("input[name=password]").fill(password)
        form.locator("button[name=add]").click()
        expect(page.locator("#flash")).to_contain_text(flash)
    row = page.locator("tr[data-user='new.csm@tai.example']")
    row.locator("select[name=role]").select_option("viewer")
    row.locator("button[name=change_role]").click()
    expect(page.locator("#flash")).to_contain_text("new.csm@tai.example is now a Viewer")
    status, _ = post(page, stack, f"/console/admin/users/{stack.email}/role", role="viewer")
    assert status == 409  # an admin cannot demote themselves
    shot(page, "role-admin-users")

    page.goto(stack.base_url + "/console/admin/tokens")
    page.fill("#create-token input[name=name]", "reporting")
    page.check("#create-token input[value=read]")
    page.click("#create-token button[name=create]")
    token = page.locator("#token-value").inner_text().strip()
    assert token.startswith("csp_")
    shot(page, "role-admin-token-created")
    with httpx.Client(base_url=stack.base_url, timeout=30) as api:
        assert api.get("/accounts").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        accounts = api.get("/accounts", headers=auth)
        assert accounts.status_code == 200 and OWN in accounts.text
        launch = api.post("/plays/onboarding", headers=auth, json={"account_id": OWN})
        assert launch.status_code == 403 and "needs 'launch'" in launch.json()["detail"]
        assert api.get("/openapi.json", headers=auth).status_code == 200
        page.goto(stack.base_url + "/console/admin/tokens")
        assert token not in page.content()  # shown once, never again
        page.once("dialog", lambda d: d.accept())
        page.locator("tr[data-token='reporting'] button[name=revoke]").click()
        expect(page.locator("#flash")).to_contain_text("token reporting revoked")
        assert api.get("/accounts", headers=auth).status_code == 401
    assert stack.sql("SELECT count(*) AS n FROM api_tokens WHERE token_hash LIKE 'csp_%'")[0]["n"] == 0

    page.goto(stack.base_url + "/console/admin/settings")
    expect(page.locator("#settings")).to_contain_text("no: this machine only")
    expect(page.locator("#settings")).to_contain_text("Single sign-on")
    # The API docs: served from here (no CDN), for a logged-in user only.
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(stack.base_url + "/docs")
    expect(page.locator(".swagger-ui .info")).to_contain_text("Customer lifecycle playbooks")
    assert asked and all(u.startswith(stack.base_url) or u.startswith("data:") for u in asked), asked
    shot(page, "api-docs")
    page.context.clear_cookies()
    page.goto(stack.base_url + "/docs")
    assert "/console/login" in page.url


def test_single_sign_on_lets_known_people_in_and_no_one_else(browser, people):
    stack = people
    idp = httpx.Client(base_url=stack.issuer, timeout=30)
    for sub, email, verified in (("morgan", MANAGER[0], True), ("stranger", "stranger@elsewhere.example", True),
                                 ("unverified", VIEWER[0], False)):
        assert idp.put(f"/users/{sub}", json={"email": email, "email_verified": verified, "name": sub}).status_code == 204

    def sign_on(sub: str):
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(stack.base_url + "/console/login")
        page.click("#sso")
        page.wait_for_url(re.compile(re.escape(stack.issuer) + ".*/oauth2/authorize.*"))
        page.fill("input[name=sub]", sub)
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(re.compile(re.escape(stack.base_url) + "/console/.*"))
        return context, page

    context, page = sign_on("morgan")
    expect(page.locator("#role")).to_have_text("CS manager")
    shot(page, "sso-logged-in")
    session = next(c for c in context.cookies() if c["name"] == "csplay_session")
    assert session["httpOnly"]
    context.close()
    for sub, says in (("stranger", "you have no console access here"), ("unverified", "did not vouch")):
        context, page = sign_on(sub)
        expect(page.locator("#problem")).to_contain_text(says)
        context.close()
    # A callback that did not start in this browser (a forged or replayed link) is refused.
    context = browser.new_context()
    page = context.new_page()
    page.goto(stack.base_url + "/console/sso/callback?code=stolen&state=guessed")
    expect(page.locator("#problem")).to_contain_text("did not start here")
    shot(page, "sso-refused")
    context.close()
    rows = stack.sql("SELECT actor, outcome, detail FROM audit_log WHERE detail LIKE '%single sign-on%'"
                     " OR detail LIKE 'sso:%' ORDER BY id")
    assert ("morgan.manager@tai.example", "ok", "single sign-on") in [(r["actor"], r["outcome"], r["detail"])
                                                                      for r in rows]
    assert sum(r["outcome"] == "refused" for r in rows) >= 3
