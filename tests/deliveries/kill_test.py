"""worker.py SIGKILLed while its deliveries are in flight at Slack, HubSpot, Salesforce and a webhook
receiver (each stand-in holds the requests until the worker is dead): after a restart nothing is
lost and nothing is doubled.

What each vendor saw, and why there is no duplicate:
- Slack Web API: the message was committed before the worker died; the retry finds it in the
  channel's history by its metadata and does not post it again.
- Slack incoming webhook: Slack saw the connection close before it committed the message; the
  retry posts it once. (After a commit, an incoming webhook cannot be asked: README's window.)
- HubSpot: the task was created, its answer lost; the retry waits for the search index and finds
  it by the idempotency property.
- Salesforce: the Task was upserted; the retry upserts the same External ID (created: false).
- Webhook receiver: it got the delivery, and gets it again with the same webhook-id, which is
  how Standard Webhooks receivers recognise a retry.

Real processes on the Temporal dev server: the time-skipping test server stalls once a killed
worker leaves started tasks behind (bench/chaos.py says the same).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.crm_write import record_key
from core.settings import PROJECT_ROOT
from starter.devstack import dev_server_args
from starter.steering import launch_onboarding, open_ticket
from tests.conftest import DEV_SERVER, asleep_on_timer, eventually, free_port
from tests.deliveries.conftest import WEBHOOK_SECRET, link_acme, notify_settings, settled, subscribe
from tests.deliveries.fake_crm_write import TOKEN
from tests.deliveries.fakes import BOT_TOKEN


def worker_env(s, address: str, smtp_port: int) -> dict:
    """worker.py's environment for the settings `s` (secrets as the product reads them)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "SMTP_", "DATABASE_"))},
            "TEMPORAL_ADDRESS": address, "DATABASE_URL": s.database_url, "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port), "TASK_QUEUE": s.task_queue, "DATA_DIR": str(s.data_dir),
            "PLAYBOOKS_DIR": str(s.playbooks_dir), "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
            "CHAT_WEBHOOK_URLS": json.dumps({k: v.get_secret_value() for k, v in s.chat_webhook_urls.items()}),
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": s.slack_api_url,
            "OUTBOUND_WEBHOOK_SECRETS": json.dumps({"tools": WEBHOOK_SECRET}), "CRM_WRITE_BACK": s.crm_write_back,
            "HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_API_URL": s.hubspot_api_url, "SALESFORCE_ACCESS_TOKEN": TOKEN,
            "SALESFORCE_INSTANCE_URL": s.salesforce_instance_url, "DELIVERY_TIMEOUT_SECONDS": "2",
            "DELIVERY_RETRY_INITIAL_SECONDS": "0.5", "DELIVERY_RETRY_MAX_SECONDS": "2",
            "CRM_SEARCH_SETTLE_SECONDS": "1.5", "NOTICE_POLL_SECONDS": "0.3"}


class WorkerProcess:
    def __init__(self, env: dict, log):
        self.env, self.log, self.proc = env, log, None

    async def start(self) -> None:
        seen = self.log.read_text(errors="replace").count("worker.started") if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "worker.py")], env=self.env,
                                         cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)

        async def started():
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            return self.log.read_text(errors="replace").count("worker.started") > seen
        await eventually(started, "worker.py to start")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def test_a_worker_killed_mid_delivery_leaves_no_duplicate_and_loses_nothing(pool, settings, servers, folder,
                                                                                 smtp_server, tmp_path):
    slack, hub, sf, receiver = servers["slack"], servers["hubspot"], servers["salesforce"], servers["receiver"]
    subscribe(folder, f"{receiver.url}/receive", "[play.started, play.escalated]")
    args = dev_server_args(tmp_path / "temporal.db", free_port(), free_port())
    temporal = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=str(DEV_SERVER),
        dev_server_extra_args=args[args.index("--log-level"):], ui=False)
    s = notify_settings(settings, servers, folder, task_queue="kill", search_attributes=True)
    worker = WorkerProcess(worker_env(s, temporal.client.service_client.config.target_host, smtp_server[0]),
                           tmp_path / "worker.log")
    await link_acme(pool, hubspot=True, salesforce=True)
    for fake in (slack, hub, sf, receiver):
        fake.hold = asyncio.Event()
    slack.hold_drops = True  # an incoming webhook that loses its client commits nothing
    try:
        await worker.start()
        client = temporal.client
        onboarding = await launch_onboarding(client, pool, s, "acme", "test", s.task_queue)
        ticket = await open_ticket(client, pool, s, "T-KILL", "acme", "P0", "Down", launched_by="test",
                                   task_queue=s.task_queue)

        async def in_flight():
            paths = Counter(r.path.split("/")[1] for r in slack.requests)
            return paths["hooks"] >= 1 and paths["api"] >= 1 and hub.held and sf.held and receiver.held
        await eventually(in_flight, "deliveries held at Slack (webhook and API), HubSpot, Salesforce and the receiver")
        worker.kill9()
        for fake in (slack, hub, sf, receiver):
            fake.release(client_gone=True)
        await worker.start()
        await asleep_on_timer(client, onboarding.id)
        await asleep_on_timer(client, ticket.id)
        tasks = await pool.fetch("SELECT idem_key FROM tasks WHERE workflow_id = $1", onboarding.id)
        rows = await settled(pool, "every delivery after the kill", len(tasks) * 2 + 6)
    finally:
        worker.stop()
        await temporal.shutdown()
    assert {r["status"] for r in rows} == {"delivered"}, [(r["summary"], r["last_error"]) for r in rows if
                                                          r["status"] != "delivered"]
    lost = await pool.fetch("SELECT d.channel FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id"
                            " WHERE a.outcome = 'lost'")
    assert {"slack_api", "slack_webhook", "hubspot", "salesforce", "webhook"} <= {r["channel"] for r in lost}
    # Slack: one message per delivery, by webhook and by the Web API.
    hook_rows = [r for r in rows if r["channel"] == "slack_webhook"]
    assert sum(len(m) for m in slack.hooks.values()) == len(hook_rows)
    api_keys = [m["metadata"]["event_payload"]["key"] for msgs in slack.channels.values() for m in msgs]
    assert len(api_keys) == len(set(api_keys)) == sum(1 for r in rows if r["channel"] == "slack_api")
    # HubSpot and Salesforce: one record per task and per e-mail.
    assert sorted(t["cs_playbook_key"] for t in hub.objects["tasks"].values()) == sorted(
        record_key(t["idem_key"]) for t in tasks)
    assert len(hub.objects["emails"]) == 1, (  # what the outbox, the events and the deliveries say
        [tuple(r) for r in await pool.fetch("SELECT step, status, reason FROM communications")],
        [tuple(r) for r in await pool.fetch("SELECT event, step FROM play_events WHERE event = 'email.sent'")],
        [tuple(r) for r in await pool.fetch("SELECT destination, operation, status, summary FROM deliveries")])
    keys = Counter(t["CS_Playbook_Key__c"] for t in sf.tasks.values())  # Lee Park is a HubSpot contact only
    assert all(n == 1 for n in keys.values()) and len(keys) == len(tasks)
    # The receiver: every delivery, any repeat with the same webhook-id.
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == sum(1 for r in rows if r["kind"] == "webhook")
