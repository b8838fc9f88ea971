"""Who may call the HTTP API (issue 16), in-process against a real test server, PostgreSQL and
worker: every route is public by design or needs a token; scopes; the token's name is the actor
on the play, the task and the audit log; the token command; the docs behind a login."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.routing import APIRoute

from core.settings import PROJECT_ROOT
from starter.security.api_auth import PUBLIC_ROUTES, is_public
from starter.security.tokens import create_token, digest
from tests.conftest import API_TOKEN_NAME, first_tasks


def all_routes(app):
    """(path, methods, dependant) of every route, those of included routers too."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route.path, route.methods, route.dependant
        elif hasattr(route, "effective_route_contexts"):  # FastAPI's included router
            for ctx in route.effective_route_contexts():
                yield ctx.path, ctx.methods, ctx.dependant


def test_every_route_is_listed_as_public_or_needs_a_token():
    from starter.http import app

    guarded, public = [], []
    for path, _, dependant in all_routes(app):
        names = {getattr(d.call, "__name__", "") for d in _dependencies(dependant)}
        if any(n.startswith("require_") for n in names):
            guarded.append(path)
        else:
            assert is_public(path), f"{path} needs neither a token nor is it listed in PUBLIC_ROUTES"
            public.append(path)
    assert {"/accounts", "/outbox", "/plays/onboarding", "/tasks/{task_id}/complete"} <= set(guarded)
    assert "/healthz" in public and "/webhooks/crm" in public and all(is_public(p) for p in public)
    assert all(why for why in PUBLIC_ROUTES.values())


def test_every_console_page_but_the_login_needs_a_session():
    from starter.http import app

    open_pages = {"/console/login", "/console/sso/start", "/console/sso/callback"}
    pages = 0
    for path, _, dependant in all_routes(app):
        if not path.startswith("/console") or path in open_pages:
            continue
        names = {getattr(d.call, "__name__", "") for d in _dependencies(dependant)}
        assert "current_user" in names, f"{path} can be reached without logging in"
        pages += 1
    assert pages >= 15


def _dependencies(dependant):
    for d in dependant.dependencies:
        if d.call is not None:
            yield d
        yield from _dependencies(d)


async def test_without_a_token_every_guarded_route_is_401_and_does_nothing(env, http, anonymous, pool):
    from starter.http import app

    for route_path, methods, _ in all_routes(app):
        if is_public(route_path):
            continue
        path = re.sub(r"\{[a-z_]+\}", "acme", re.sub(r"\{task_id\}", "1", route_path))
        for method in methods:
            answer = await anonymous.request(method, path, json={"account_id": "acme"} if method == "POST" else None)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization" in answer.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0
    assert await pool.fetchval("SELECT count(*) FROM communications") == 0


async def test_scopes_decide_what_a_token_may_do(env, http, anonymous, pool):
    tokens = {scope: (await create_token(pool, f"only-{scope}", [scope], "test"))[0]
              for scope in ("read", "steer", "launch")}

    def as_(scope):
        return {"Authorization": f"Bearer {tokens[scope]}"}

    assert (await anonymous.get("/accounts", headers=as_("read"))).status_code == 200
    for scope in ("steer", "launch"):
        refused = await anonymous.get("/accounts", headers=as_(scope))
        assert refused.status_code == 403 and "needs 'read'" in refused.json()["detail"]
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    refused = await anonymous.post("/plays/onboarding", headers=as_("read"), json={"account_id": "acme"})
    assert refused.status_code == 403 and "needs 'launch'" in refused.json()["detail"]
    launched = await anonymous.post("/plays/onboarding", headers=as_("launch"), json={"account_id": "acme"})
    assert launched.status_code == 202, launched.text
    task = (await first_tasks(env, pool, "onboarding-acme", "acme's first onboarding tasks"))[0]["id"]
    assert (await anonymous.post(f"/tasks/{task}/complete", headers=as_("launch"))).status_code == 403
    done = await anonymous.post(f"/tasks/{task}/complete", headers=as_("steer"))
    assert done.status_code == 200 and done.json()["status"] == "completed"
    # The token's name is who did it: on the task row, in the play's input, in the audit log.
    assert await pool.fetchval("SELECT completed_by FROM tasks WHERE id = $1", task) == "only-steer"
    history = await env.client.get_workflow_handle("onboarding-acme").fetch_history()
    assert '"launched_by":"only-launch"' in history.events[0].workflow_execution_started_event_attributes.input \
        .payloads[0].data.decode()
    rows = await pool.fetch("SELECT actor, actor_kind, source_ip, action, object, account_id, outcome FROM audit_log"
                            " ORDER BY id")
    assert [(r["actor"], r["actor_kind"], r["action"], r["object"], r["account_id"], r["outcome"]) for r in rows] == [
        ("only-launch", "token", "launch", "onboarding-acme", "acme", "ok"),
        ("only-steer", "token", "complete_task", f"task:{task}", "acme", "ok"),
    ]
    assert all(r["source_ip"] == "127.0.0.1" for r in rows)
    assert await pool.fetchval("SELECT last_used_at FROM api_tokens WHERE name = 'only-read'") is not None


async def test_refusals_are_audited_under_the_token_name(env, http, pool):
    refused = await http.post("/plays/onboarding", json={"account_id": "nobody"})
    assert refused.status_code == 404
    row = await pool.fetchrow("SELECT actor, outcome, detail FROM audit_log")
    assert (row["actor"], row["outcome"]) == (API_TOKEN_NAME, "refused") and "nobody" in row["detail"]
    with pytest.raises(Exception, match="append-only"):
        await pool.execute("UPDATE audit_log SET outcome = 'ok'")
    with pytest.raises(Exception, match="append-only"):
        await pool.execute("DELETE FROM audit_log")
    with pytest.raises(Exception, match="append-only"):
        await pool.execute("TRUNCATE audit_log")


async def test_expired_revoked_and_malformed_tokens_are_401(env, http, anonymous, pool):
    token, _ = await create_token(pool, "short-lived", ["read"], "test", expires_in_days=1)
    ok = await anonymous.get("/accounts", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    await pool.execute("UPDATE api_tokens SET expires_at = $1 WHERE name = 'short-lived'",
                       datetime.now(timezone.utc) - timedelta(seconds=1))
    for header in (f"Bearer {token}", "Bearer " + "x" * 5000, "Basic dXNlcjpwYXNz", f"Bearer {token[:-1]}"):
        answer = await anonymous.get("/accounts", headers={"Authorization": header})
        assert answer.status_code == 401, header[:40]
    assert await pool.fetchval("SELECT count(*) FROM api_tokens WHERE token_hash = $1", digest(token)) == 1
    assert await pool.fetchval("SELECT count(*) FROM api_tokens WHERE token_hash = $1", token) == 0


def test_csplay_token_create_list_revoke(db_url):
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "200"}

    def csplay(*args):
        return subprocess.run([sys.executable, "-m", "starter", *args], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=60)

    made = csplay("token", "create", "CRM-Sync", "--scope", "read", "--scope", "steer")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("csp_") and "not shown again" in made.stderr
    listed = csplay("token", "list")
    assert "crm-sync" in listed.stdout and "read, steer" in listed.stdout and token not in listed.stdout
    taken = csplay("token", "create", "crm-sync", "--scope", "read")
    assert taken.returncode == 1 and "already called 'crm-sync'" in taken.stderr and "Traceback" not in taken.stderr
    bad = csplay("token", "create", "x", "--scope", "everything")
    assert bad.returncode == 1 and "scope: unknown everything" in bad.stderr
    assert csplay("token", "revoke", "crm-sync").returncode == 0
    assert "revoked" in csplay("token", "list", "--all").stdout
    audit = csplay("audit", "--action", "token.")
    assert audit.stdout.count("token.create") == 3 and "token.revoke" in audit.stdout


async def test_the_docs_need_a_login_or_a_token_and_use_no_cdn(env, http, anonymous):
    assert (await anonymous.get("/openapi.json")).status_code == 401
    page = await anonymous.get("/docs", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/console/login?next=/docs"
    spec = await http.get("/openapi.json")
    assert spec.status_code == 200 and "bearer" in str(spec.json()["components"]["securitySchemes"]).lower()
    docs = await http.get("/docs")
    assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "<script>" not in docs.text  # no inline script
    assert "script-src 'self'" in docs.headers["content-security-policy"]
    bundle = await anonymous.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
