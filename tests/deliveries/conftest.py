"""Fixtures for chat notifications, CRM write-back and outbound webhooks: the local vendor
stand-ins on free ports, settings pointing at them (every secret set, retries fast), and a
worker running the relay beside it."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import pytest_asyncio
from pydantic import SecretStr

from starter.relay import NoticeRelay
from tests.round_the_clock import open_round_the_clock, round_the_clock
from tests.conftest import eventually
from tests.deliveries.fake_crm_write import TOKEN, FakeHubSpot, FakeSalesforce
from tests.deliveries.fakes import BOT_TOKEN, FakeSlack, FakeTeams, WebhookReceiver
from tests.starter.webhooks.fake_crm import serve, stop
from worker import build_worker

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks test vector's secret
HS_COMPANY, HS_CONTACT = "9876543210", "501"
SF_ACCOUNT, SF_CONTACT = "0015g00000XyZ12AAB", "0035g00000AbCdEAAZ"


@pytest_asyncio.fixture
async def servers():
    """Slack, Teams, a webhook receiver, HubSpot and Salesforce, each on its own port."""
    fakes = {"slack": FakeSlack(), "teams": FakeTeams(workflows=("cs-workflow",)), "receiver": WebhookReceiver(),
             "hubspot": FakeHubSpot(), "salesforce": FakeSalesforce()}
    running = [await serve(f) for f in fakes.values()]
    yield fakes
    for f in fakes.values():
        f.release(client_gone=False)
    for server, task in running:
        await stop(server, task)


def notify_settings(settings, fakes, folder=None, **extra):
    """`settings` with every destination, subscription and CRM configured against the fakes."""
    s, t = fakes["slack"].url, fakes["teams"].url
    update = dict(
        chat_webhook_urls={"escalations": SecretStr(f"{s}/hooks/escalations"),
                           "cs-alerts": SecretStr(f"{s}/hooks/cs-alerts"),
                           "cs-leadership": SecretStr(f"{t}/teams/cs-leadership")},
        slack_bot_token=SecretStr(BOT_TOKEN), slack_api_url=f"{s}/api",
        outbound_webhook_secrets={"tools": SecretStr(WEBHOOK_SECRET)},
        crm_write_back="hubspot,salesforce",
        hubspot_access_token=SecretStr(TOKEN), hubspot_api_url=fakes["hubspot"].url,
        salesforce_access_token=SecretStr(TOKEN), salesforce_instance_url=fakes["salesforce"].url,
        delivery_timeout_seconds=3.0, delivery_retry_initial_seconds=0.2, delivery_retry_max_seconds=2.0,
        crm_search_settle_seconds=0.5, notice_poll_seconds=0.2,
        # Real time on the fakes: the shipped playbooks open round the clock, so the plays' e-mails go at
        # once whatever the hour the suite runs (tests/round_the_clock.py).
        playbooks_dir=open_round_the_clock(folder) if folder else round_the_clock(settings.data_dir))
    return settings.model_copy(update={**update, **extra})


def subscribe(folder, url: str, events: str = "[play.started, play.finished, task.created, task.completed, "
                                            "play.escalated, account.band_changed, play.step_done]") -> None:
    """Add the `tools` subscription to the folder's notifications.yaml."""
    path = folder / "notifications.yaml"
    text = path.read_text().replace("webhooks: []", f"webhooks:\n  - name: tools\n    url: {url}\n    events: {events}")
    path.write_text(text)


async def link_acme(pool, hubspot: bool = True, salesforce: bool = False) -> None:
    """The demo account as a HubSpot company and / or a Salesforce Account, with Lee Park as its contact."""
    for on, connection, company, contact in ((hubspot, "hubspot", HS_COMPANY, HS_CONTACT),
                                              (salesforce, "salesforce", SF_ACCOUNT, SF_CONTACT)):
        if not on:
            continue
        await pool.execute("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                           " VALUES ($1, 'company', $2, 'acme')", connection, company)
    key = f"hubspot:{HS_CONTACT}" if hubspot else f"salesforce:{SF_CONTACT}"
    await pool.execute("UPDATE contacts SET crm_key = $1 WHERE account_id = 'acme' AND email = 'lee.park@acme.example'",
                       key)


class Running:
    """A worker and its relay on the test's Temporal server, with the given settings."""

    def __init__(self, env, pool, settings):
        self.env, self.pool, self.settings = env, pool, settings
        self.relay = NoticeRelay(pool, settings, env.client)

    async def __aenter__(self):
        self.worker = build_worker(self.env.client, self.pool, self.settings, self.settings.task_queue)
        self._worker = asyncio.create_task(self.worker.run())
        self._relay = asyncio.create_task(self.relay.run())
        return self

    async def __aexit__(self, *exc):
        self._relay.cancel()
        with suppress(asyncio.CancelledError):
            await self._relay
        await self.worker.shutdown()
        with suppress(asyncio.CancelledError):
            await self._worker


async def deliveries(pool, **where) -> list[dict]:
    clauses = " AND ".join(f"{k} = ${i}" for i, k in enumerate(where, 1)) or "true"
    return [dict(r) for r in await pool.fetch(f"SELECT * FROM deliveries WHERE {clauses} ORDER BY id", *where.values())]


async def settled(pool, what: str = "every delivery delivered or failed", at_least: int = 1, **where) -> list[dict]:
    """Wait until every play event is routed and at least `at_least` deliveries match `where`, none of
    them pending or sending; returns them. Call it once the plays are quiet (asleep_on_timer)."""
    async def check():
        unrouted = await pool.fetchval("SELECT count(*) FROM play_events WHERE routed_at IS NULL")
        rows = await deliveries(pool, **where)
        done = all(r["status"] in ("delivered", "failed") for r in rows)
        return rows if len(rows) >= at_least and not unrouted and done else None
    return await eventually(check, what)


class Service:
    """The HTTP service in-process (httpx over ASGI) with these settings, sharing the test's Temporal
    server and database (no worker of its own)."""

    def __init__(self, env, pool, settings):
        self.env, self.pool, self.settings = env, pool, settings

    async def __aenter__(self):
        import httpx

        from starter.http import app

        app.state.client, app.state.pool, app.state.settings = self.env.client, self.pool, self.settings
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        return self.http

    async def __aexit__(self, *exc):
        await self.http.aclose()
