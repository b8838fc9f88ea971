"""The service never stalls and never echoes what it should not (issue 16): hosts, headers, JSON
depth, slow bodies, 503 with Retry-After when the pool or the request places are taken, /healthz
answering through it all, security headers and HSTS, and the survey page's anti-framing headers.
In-process against a real test server, PostgreSQL and worker."""

from __future__ import annotations

import asyncio

import pytest

from activities.db import create_pool
from starter.security.limits import json_too_deep
from tests.conftest import eventually
from tests.workflows.nps_test import CONTACTS, invite, token_for


@pytest.mark.parametrize(("body", "deep"), [
    (b"[" * 33 + b"]" * 33, True),
    (b"[" * 32 + b"]" * 32, False),
    (b'{"a": "' + b"[" * 100 + b'"}', False),  # brackets inside a string do not nest
    (b'{"a": "\\\\", "b": ' + b"[" * 40 + b"]" * 40 + b"}", True),  # an escaped backslash ends the string
    (b'{"a": "\\"' + b"[" * 40 + b'"}', False),  # an escaped quote does not
    (b'{"a":' * 20 + b"1" + b"}" * 20, False),
])
def test_json_depth_is_measured_outside_strings(body, deep):
    assert json_too_deep(body, 32) is deep


async def test_allowed_hosts_and_the_public_url_host(env, http, settings):
    from starter.http import app

    assert (await http.get("/healthz", headers={"Host": "localhost:8000"})).status_code == 200
    assert (await http.get("/healthz", headers={"Host": "127.0.0.1:8000"})).status_code == 200
    refused = await http.get("/healthz", headers={"Host": "rebind.attacker.example"})
    assert refused.status_code == 400 and "ALLOWED_HOSTS" in refused.json()["detail"]
    app.state.settings = settings.model_copy(update={"public_base_url": "https://cs.tai.example"})
    try:
        published = await http.get("/healthz", headers={"Host": "cs.tai.example"})
        assert published.status_code == 200
        assert published.headers["strict-transport-security"].startswith("max-age=31536000")
    finally:
        app.state.settings = settings
    assert "strict-transport-security" not in (await http.get("/healthz")).headers


async def test_every_answer_has_security_headers(env, http, anonymous, pool, settings):
    for response in (await http.get("/accounts"), await anonymous.get("/accounts"), await anonymous.get("/healthz")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    await invite(pool, CONTACTS[0])
    page = await anonymous.get(f"/nps/{token_for(settings, CONTACTS[0])}")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "default-src 'none'" in csp


async def test_survey_pages_of_closed_cancelled_and_unsent_links(env, worker, anonymous, pool, settings):
    from starter.steering import launch_nps_cycle
    from temporalio.client import WorkflowExecutionStatus

    never = await anonymous.get(f"/nps/{token_for(settings, 'someone@elsewhere.example')}")
    assert never.status_code == 403 and "not issued by us" in never.text
    handle = await launch_nps_cycle(env.client, pool, settings, "2026-10", ["acme"], task_queue=settings.task_queue)
    await eventually(lambda: pool.fetchval("SELECT count(*) = 2 FROM nps_invitations"), "both invitations")
    link = f"/nps/{token_for(settings, CONTACTS[0])}"
    assert (await anonymous.get(link)).status_code == 200
    await handle.cancel()

    async def cancelled():
        return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    await eventually(cancelled, "the cycle cancelled")
    for answer in (await anonymous.get(link), await anonymous.post(link, data={"score": "3"})):
        assert answer.status_code == 410 and "cancelled" in answer.text
    assert await pool.fetchval("SELECT count(*) FROM nps_responses") == 0
    await pool.execute("UPDATE nps_invitations SET closed_at = now() WHERE contact_email = $1", CONTACTS[1])
    closed = await anonymous.get(f"/nps/{token_for(settings, CONTACTS[1])}")
    assert closed.status_code == 410 and "closed" in closed.text


async def test_a_body_that_never_arrives_is_408_and_holds_nothing(env, http, settings):
    from starter.http import app

    app.state.settings = settings.model_copy(update={"body_timeout_seconds": 0.5})
    stuck = asyncio.Event()

    async def trickle():
        yield b'{"account_id": '
        await stuck.wait()  # the rest never comes, as from a slow or malicious client
        yield b'"acme"}'

    try:
        answer = await http.post("/plays/onboarding", content=trickle(), headers={"content-type": "application/json"})
    finally:
        stuck.set()
        app.state.settings = settings
    assert answer.status_code == 408 and "not received within 0.5 s" in answer.json()["detail"]


async def test_a_full_pool_is_503_with_retry_after_and_healthz_still_answers(env, http, anonymous, pool, db_url,
                                                                            settings):
    from starter.http import app

    small = await create_pool(db_url, 2, acquire_timeout=0.5)
    health = await create_pool(db_url, 1, acquire_timeout=1.0)
    held = [await small.acquire(), await small.acquire()]  # every connection busy elsewhere
    app.state.pool, app.state.health_pool = small, health
    try:
        # Liveness and readiness both answer: readiness has a connection of its own.
        busy = await anonymous.get("/healthz")
        assert busy.status_code == 200 and busy.json() == {"status": "alive"}
        ready = await anonymous.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"postgres": "ok", "migrations": "ok", "temporal": "ok", "smtp": "ok"}
        answer = await http.post("/plays/onboarding", json={"account_id": "acme"})
        assert answer.status_code == 503 and answer.headers["retry-after"] == str(settings.overload_retry_after_seconds)
        assert answer.json()["detail"] == "the service is busy; retry later"
    finally:
        for conn in held:
            await small.release(conn)
        app.state.pool = pool
        del app.state.health_pool
        await small.close()
        await health.close()
    assert await pool.fetchval("SELECT count(*) FROM communications") == 0


async def test_requests_beyond_the_places_are_503_at_once_not_queued_for_ever(env, http, anonymous, pool, db_url,
                                                                             settings):
    from starter.http import app
    from starter.security.overload import OverloadGuard

    guard = _guard(app)
    small = await create_pool(db_url, 1, acquire_timeout=60)
    health = await create_pool(db_url, 1, acquire_timeout=1.0)
    held = await small.acquire()
    app.state.pool, app.state.health_pool = small, health
    app.state.settings = settings.model_copy(update={"max_inflight_requests": 1, "overload_wait_seconds": 0.2})
    try:
        # The one place is taken by a request waiting for the (held) connection...
        first = asyncio.create_task(http.get("/accounts"))
        await eventually(lambda: _busy(guard, "request"), "the first request in its place")
        # ...so the next is told to come back, and /healthz is not queued at all.
        second = await anonymous.get("/accounts")
        assert second.status_code == 503 and second.headers["retry-after"] == "5"
        assert (await anonymous.get("/healthz")).status_code == 200
    finally:
        await small.release(held)
    assert (await first).status_code == 200  # the waiting one is served once the connection is free
    app.state.pool, app.state.settings = pool, settings
    del app.state.health_pool
    await small.close()
    await health.close()
    assert isinstance(guard, OverloadGuard)


def _guard(app):
    layer = app.middleware_stack
    while layer is not None and type(layer).__name__ != "OverloadGuard":
        layer = getattr(layer, "app", None)
    if layer is None:
        app.middleware_stack = app.build_middleware_stack()
        return _guard(app)
    return layer


async def _busy(guard, kind: str) -> bool:
    return any(name == kind and k["busy"] >= 1 for name, k in guard.stats().items())


async def test_webhooks_have_their_own_places(env, http, anonymous, settings):
    from starter.http import app

    guard = _guard(app)
    app.state.settings = settings.model_copy(update={"max_inflight_webhooks": 2})
    try:
        answer = await anonymous.post("/webhooks/crm", content=b"[]", headers={"content-type": "application/json"})
        assert answer.status_code == 401  # unsigned: refused, through the webhook places
    finally:
        app.state.settings = settings
    assert guard.stats()["webhook"]["size"] == 2 and guard.stats()["webhook"]["busy"] == 0
