"""Outbound webhooks signed per Standard Webhooks, checked with the specification's reference
library and by hand; retries keep the webhook-id; 410 stops; a replay delivers again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from activities.outbound_webhooks import BadSecret, check_secret, signed_headers
from starter.relay import replay_delivery
from starter.steering import launch_onboarding
from tests.conftest import asleep_on_timer
from tests.deliveries.conftest import WEBHOOK_SECRET, Running, deliveries, notify_settings, settled, subscribe
from tests.deliveries.fakes import Fault


def test_signature_matches_the_specification_test_vector():
    # The example of the Standard Webhooks specification (its README and reference tests).
    moment = datetime.fromtimestamp(1614265330, tz=timezone.utc)
    headers = signed_headers(WEBHOOK_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", '{"test": 2432232314}', moment)
    assert headers == {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                       "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


@pytest.mark.parametrize("secret, says", [("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"), ("whsec_not*base64", "base64"),
                                          ("whsec_c2hvcnQ=", "5 bytes")])
def test_a_malformed_secret_is_refused(secret, says):
    with pytest.raises(BadSecret, match=says):
        check_secret(secret)


async def test_play_events_reach_a_subscriber_signed_and_retried_with_the_same_id(env, pool, settings, servers,
                                                                                  folder):
    receiver = servers["receiver"]
    receiver.faults = [Fault(500, {}, "oops", "/receive"), Fault(429, {"Retry-After": "1"}, "", "/receive")]
    subscribe(folder, f"{receiver.url}/receive", "[play.started, task.created, play.step_done]")
    s = notify_settings(settings, servers, folder)
    async with Running(env, pool, s):
        handle = await launch_onboarding(env.client, pool, s, "acme", "test", s.task_queue)
        await asleep_on_timer(env.client, handle.id)
        tasks = await pool.fetchval("SELECT count(*) FROM tasks")
        rows = await settled(pool, "every webhook delivered", tasks + 2, kind="webhook")
    assert {r["status"] for r in rows} == {"delivered"}
    verifier = Webhook(WEBHOOK_SECRET)
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    bodies = {}
    for request in receiver.requests:
        headers = request.headers
        assert headers["content-type"] == "application/json"
        payload = verifier.verify(request.body, headers)  # raises unless signed right, within 5 minutes
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body
        by_hand = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{by_hand}"
        bodies.setdefault(headers["webhook-id"], []).append(payload)
    # The two refused attempts were tried again with the same id and the same body.
    assert len(receiver.requests) == len(rows) + 2 and len(bodies) == len(rows)
    assert all(len({json.dumps(b) for b in same}) == 1 for same in bodies.values())
    kinds = sorted({b[0]["type"] for b in bodies.values()})
    assert kinds == ["play.started", "play.step_done", "task.created"]
    started = next(b[0] for b in bodies.values() if b[0]["type"] == "play.started")
    assert started["data"]["account_id"] == "acme" and started["data"]["workflow_id"] == "onboarding-acme"
    assert started["data"]["account_name"] == "Acme Logistics" and started["timestamp"].endswith("Z")


async def test_410_stops_and_a_replay_sends_the_same_message_again(env, pool, settings, servers, folder):
    receiver = servers["receiver"]
    receiver.faults = [Fault(410, {}, "unsubscribed", "/receive")]
    subscribe(folder, f"{receiver.url}/receive", "[play.started]")
    s = notify_settings(settings, servers, folder)
    async with Running(env, pool, s):
        handle = await launch_onboarding(env.client, pool, s, "acme", "test", s.task_queue)
        await asleep_on_timer(env.client, handle.id)
        (row,) = await settled(pool, "the refused webhook", kind="webhook")
        assert row["status"] == "failed" and "410 Gone" in row["last_error"]
        await replay_delivery(pool, env.client, s, row["id"], "test")
        (again,) = await settled(pool, "the replayed webhook", kind="webhook")
    assert again["status"] == "delivered" and again["replays"] == 1, (again["last_error"], [
        (a["outcome"], a["status_code"], a["detail"]) for a in await pool.fetch(
            "SELECT outcome, status_code, detail FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id", row["id"])])
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    log = await pool.fetch("SELECT outcome, status_code FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
                           row["id"])
    assert [(a["outcome"], a["status_code"]) for a in log] == [("failed", 410), ("delivered", 204)]
    assert not await deliveries(pool, status="pending")


async def test_a_late_give_up_of_the_first_workflow_leaves_a_replay_alone(pool, settings):
    """The first DeliverItem workflow marks its delivery failed once more as it ends (give_up_delivery);
    if a replay started meanwhile, the replay's workflow decides: the row stays pending."""
    from temporalio.testing import ActivityEnvironment

    from activities.delivery import DeliveryActivities, GiveUpRequest

    delivery_id = await pool.fetchval(
        "INSERT INTO deliveries (idem_key, kind, channel, destination, operation, event, summary, payload, status,"
        " replays) VALUES ('k', 'webhook', 'webhook', 'tools', 'deliver', 'play.started', 's', '{}', 'pending', 1)"
        " RETURNING id")
    give_up = DeliveryActivities(pool, settings).give_up_delivery
    first, replay = ActivityEnvironment(), ActivityEnvironment()
    first.info = first.info.__class__(**{**first.info.__dict__, "workflow_id": f"delivery-{delivery_id}"})
    replay.info = replay.info.__class__(**{**replay.info.__dict__, "workflow_id": f"delivery-{delivery_id}-r1"})
    await first.run(give_up, GiveUpRequest(delivery_id=delivery_id, reason="410 Gone"))
    assert await pool.fetchval("SELECT status FROM deliveries WHERE id = $1", delivery_id) == "pending"
    await replay.run(give_up, GiveUpRequest(delivery_id=delivery_id, reason="410 Gone again"))
    assert await pool.fetchval("SELECT last_error FROM deliveries WHERE id = $1", delivery_id) == "410 Gone again"
