"""Engineers' view: failures that read as causes, readiness, and a webhook's trace reaching the
activity that sends its e-mail."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Worker

from activities.interceptors import ReadableFailures, database_place
from core.telemetry import setup_tracing
from tests.round_the_clock import round_the_clock
from tests.conftest import eventually, free_port
from worker import build_worker


@activity.defn(name="touch_database")
async def touch_database(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    await conn.close()


@workflow.defn(sandboxed=False)
class TouchDatabase:
    @workflow.run
    async def run(self, url: str) -> None:
        await workflow.execute_activity(touch_database, url, start_to_close_timeout=timedelta(seconds=30),
                                        retry_policy=RetryPolicy(maximum_attempts=1))


async def test_a_stopped_database_reads_as_postgresql_unavailable(env, settings):
    dead = f"postgresql://cs:secret-password@127.0.0.1:{free_port()}/playbooks"
    async with Worker(env.client, task_queue=settings.task_queue, workflows=[TouchDatabase],
                      activities=[touch_database], interceptors=[ReadableFailures(settings, dead)]):
        with pytest.raises(WorkflowFailureError) as failed:
            await env.client.execute_workflow(TouchDatabase.run, dead, id=f"touch-{uuid.uuid4()}",
                                              task_queue=settings.task_queue)
    activity_error = failed.value.cause
    message = activity_error.cause.message
    assert message.startswith(f"PostgreSQL unavailable at {database_place(dead)}"), message
    assert "secret-password" not in message and activity_error.cause.type == "DatabaseUnavailable"
    assert activity_error.cause.cause is not None  # the original error is kept as the cause


def test_database_place_never_shows_credentials():
    assert database_place("postgresql://u:p@db.internal:6543/playbooks?sslmode=require") == "db.internal:6543/playbooks"
    assert database_place("postgresql:///playbooks?host=/tmp/run&port=5433") == "/tmp/run:5433/playbooks"


async def test_readyz_reports_each_dependency(http, settings):
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"postgres": "ok", "migrations": "ok", "temporal": "ok", "smtp": "ok"}
    assert (await http.get("/healthz")).json() == {"status": "alive"}
    http._transport.app.state.settings = settings.model_copy(update={"smtp_port": free_port()})
    try:
        down = await http.get("/readyz")
    finally:
        http._transport.app.state.settings = settings
    assert down.status_code == 503 and down.json()["smtp"].startswith("down: ") and down.json()["postgres"] == "ok"


async def test_readyz_names_a_migration_not_applied_apart_from_postgresql(http, pool):
    """A database one migration behind this version is reachable but not ready: "migrations" says which."""
    from activities.db import migration_files

    last = migration_files()[-1][0]
    await pool.execute("DELETE FROM schema_migrations WHERE version = $1", last)
    down = await http.get("/readyz")
    assert down.status_code == 503, down.text
    assert down.json()["postgres"] == "ok" and down.json()["migrations"] == f"down: migrations not applied: {last}"


async def test_a_webhooks_trace_reaches_the_activity_that_sends_its_email(env, pool, settings, sink):
    from starter.http import app
    from tests.starter.webhook_test import CLOSED_WON, post

    spans = InMemorySpanExporter()
    assert setup_tracing("test", spans)
    config = env.client.config()
    config["interceptors"] = [TracingInterceptor()]
    client = Client(**config)
    settings = settings.model_copy(update={"playbooks_dir": round_the_clock(settings.data_dir)})  # e-mail at once
    app.state.client, app.state.pool, app.state.settings = client, pool, settings
    async with build_worker(client, pool, settings, settings.task_queue):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            response = await post(http, [CLOSED_WON])
            assert response.status_code == 202, response.text

        async def welcome_sent():
            return [s for s in spans.get_finished_spans() if s.name == "RunActivity:send_templated_email"]

        (email_span, *_) = await eventually(welcome_sent, "the welcome e-mail's activity span")
    server = next(s for s in spans.get_finished_spans() if s.kind.name == "SERVER" and "webhooks" in s.name)
    start = next(s for s in spans.get_finished_spans() if s.name == "StartWorkflow:OnboardingPlan")
    assert email_span.context.trace_id == start.context.trace_id == server.context.trace_id


async def test_a_refused_webhook_is_counted_for_the_alert(anonymous, monkeypatch):
    """docs/operations.md alerts on cs_webhook_refused: an unsigned HubSpot call counts with its vendor and status."""
    counted = []
    monkeypatch.setattr("starter.webhooks.count", lambda name, value=1, **labels: counted.append((name, labels)))
    refused = await anonymous.post("/webhooks/hubspot", content=b"[]", headers={"Content-Type": "application/json"})
    assert refused.status_code == 401, refused.text
    assert counted == [("webhook_refused", {"vendor": "hubspot", "status": 401})]
