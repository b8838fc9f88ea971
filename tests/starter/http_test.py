"""The HTTP service in-process (httpx over ASGI) against a real test server, PostgreSQL and worker:
renewal launch and steering, every refusal a clear 4xx that starts and changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.workflows.play_driver import ET, skip_to_next_monday


async def test_renewal_launch_status_and_steering_over_http(env, http, pool, sink):
    start = await skip_to_next_monday(env)
    renewal = start.astimezone(ET).date() + timedelta(days=100)

    launched = await http.post("/plays/renewal", json={"account_id": "acme", "renewal_date": renewal.isoformat()})
    assert launched.status_code == 202 and launched.json()["workflow_id"] == "renewal-acme"
    again = await http.post("/plays/renewal", json={"account_id": "acme", "renewal_date": renewal.isoformat()})
    assert again.status_code == 409 and "already running" in again.json()["detail"]

    st = (await http.get("/plays/renewal/acme")).json()
    assert st["renewal_date"] == renewal.isoformat() and st["tier"] == "Enterprise"
    assert [e["status"] for e in st["schedule"][:3]] == ["skipped"] * 3

    moved = await http.post("/plays/renewal/acme/renewal-date",
                            json={"renewal_date": (renewal + timedelta(days=10)).isoformat(), "reason": "legal"})
    assert moved.status_code == 200 and moved.json()["previous_date"] == renewal.isoformat()

    early = await http.post("/plays/renewal/acme/renewed", json={"signed_by": "Dana", "new_renewal_date": "2020-01-01"})
    assert early.status_code == 422 and "must end after the current renewal date" in early.json()["detail"]
    assert (await http.post("/plays/renewal/acme/renewed", json={"signed_by": "Dana"})).status_code == 202


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), [
    ("post", "/plays/renewal", {"account_id": "nobody"}, 404, "unknown account 'nobody'"),
    ("post", "/plays/renewal", {"account_id": "acme", "renewal_date": "2027-02-30"}, 422, "renewal_date"),
    ("post", "/plays/renewal", {"account_id": "acme", "renewal_date": "2001-01-01"}, 422, "is in the past"),
    ("post", "/plays/renewal", {"account_id": "ACME!"}, 422, "account_id"),
    ("post", "/plays/renewal", {}, 422, "account_id"),
    ("get", "/plays/renewal/nobody", None, 404, "no renewal countdown for account 'nobody'"),
    ("post", "/plays/renewal/nobody/renewal-date", {"renewal_date": "2030-01-01"}, 404, "no renewal countdown"),
    ("post", "/plays/renewal/acme/renewal-date", {"renewal_date": "soon"}, 422, "renewal_date"),
    ("post", "/plays/renewal/acme/renewed", {}, 422, "signed_by"),
    ("post", "/plays/renewal/acme/churned", {"reason": "x"}, 404, "no renewal countdown"),
    # The token's name is who did it: a body naming someone else is refused, naming the field.
    ("post", "/plays/renewal/acme/churned", {"recorded_by": "x"}, 422, "recorded_by: Extra inputs are not permitted"),
    ("post", "/plays/onboarding", {"account_id": "acme", "launched_by": "x"}, 422, "launched_by"),
    ("post", "/tasks/1/complete", {"completed_by": "x"}, 422, "completed_by"),
])
async def test_bad_requests_get_a_clear_4xx_and_start_nothing(env, http, pool, method, path, body, status, text):
    response = await getattr(http, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    assert text in response.text and "Traceback" not in response.text
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0
    assert await pool.fetchval("SELECT count(*) FROM communications") == 0


async def test_date_refused_by_the_play_is_a_422_that_changes_nothing(env, http):
    start = await skip_to_next_monday(env)
    renewal = start.astimezone(ET).date() + timedelta(days=100)
    await http.post("/plays/renewal", json={"account_id": "acme", "renewal_date": renewal.isoformat()})
    refused = await http.post("/plays/renewal/acme/renewal-date", json={"renewal_date": "2001-01-01"})
    assert refused.status_code == 422 and "it is in the past" in refused.json()["detail"]
    st = (await http.get("/plays/renewal/acme")).json()
    assert st["renewal_date"] == renewal.isoformat() and st["date_changes"] == []
