"""Webhook to e-mail latency: CRM closed-won accepted -> the welcome e-mail at the SMTP relay.

The CRM marks a deal closed-won; the customer should hear from us at once.
This bench sends --events signed HubSpot webhooks (one closed-won deal each,
for distinct accounts) to the real HTTP service (uvicorn, as ./run.sh runs
it) at a steady --rate, and for each one measures from the moment the service
answered 202 to the moment the onboarding play's welcome e-mail reached the
SMTP relay. It prints p50 / p95 / p99 and the worst; goal p95 < 1 s.

Private stack on free ports (dev server with our search attributes, embedded
PostgreSQL, one worker.py, the HTTP service, a relay that notes each
message's X-Playbook-Workflow header and arrival time).

    .venv/bin/python bench/webhook_latency.py [--events 1000] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import httpx  # noqa: E402

from bench.stack import (  # noqa: E402
    Stack, accounts_in_send_window, bulk_load, pct, prepare_database, run_bench, say, start_postgres, start_temporal, start_worker_and_http,
    wait_for_http,
)
from starter.webhooks import SIGNATURE, TIMESTAMP, sign  # noqa: E402

TASK_QUEUE = "latency"
SECRET = "bench-secret"
GOAL_P95 = 1.0


class ArrivalRelay:
    """Notes when each play's first e-mail arrives (monotonic clock, this process)."""

    _WORKFLOW = re.compile(rb"^X-Playbook-Workflow:\s*(\S+)", re.MULTILINE | re.IGNORECASE)

    def __init__(self):
        self.first: dict[str, float] = {}

    async def handle_DATA(self, server, session, envelope) -> str:
        at = time.monotonic()
        raw = envelope.original_content or envelope.content
        match = self._WORKFLOW.search(raw if isinstance(raw, bytes) else raw.encode())
        if match:
            self.first.setdefault(match.group(1).decode(), at)
        return "250 Message accepted for delivery"



async def bench(args, stack: Stack) -> None:
    say(f"Webhook -> first e-mail latency: {args.events} closed-won events at {args.rate}/s")
    await asyncio.to_thread(start_postgres, stack)
    url = await prepare_database(stack, "latency")
    await bulk_load(url, args.events, status="prospect", say_every=False)
    say(f"  accounts in {await accounts_in_send_window(url)}: the welcome e-mails go out now")
    client = await start_temporal(stack)
    relay = ArrivalRelay()
    _, http, base = await start_worker_and_http(stack, client, url, relay, TASK_QUEUE, CRM_WEBHOOK_SECRET=SECRET)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as web:
            await wait_for_http(web, stack, 10)
            accepted: dict[str, float] = {}
            refused = 0

            async def deliver(i: int) -> None:
                nonlocal refused
                account = f"acct-{i:06d}"
                body = json.dumps([{"eventId": 10_000 + i, "subscriptionType": "deal.propertyChange",
                                    "accountId": account, "occurredAt": int(time.time() * 1000),
                                    "propertyName": "dealstage", "propertyValue": "closedwon"}]).encode()
                ts = str(int(time.time() * 1000))
                headers = {SIGNATURE: sign(SECRET, "POST", f"{base}/webhooks/crm", body, ts), TIMESTAMP: ts,
                           "content-type": "application/json"}
                response = await web.post("/webhooks/crm", content=body, headers=headers)
                if response.status_code == 202:
                    accepted[f"onboarding-{account}"] = time.monotonic()
                else:
                    refused += 1

            began = time.monotonic()
            pending = []
            for i in range(args.events):
                target = began + i / args.rate
                await asyncio.sleep(max(0.0, target - time.monotonic()))
                pending.append(asyncio.create_task(deliver(i)))
                if i % 200 == 199:
                    say(f"  sent {i + 1}/{args.events}; e-mails so far {len(relay.first)}")
            await asyncio.gather(*pending)
            deadline = time.monotonic() + 120
            while len(set(accepted) & set(relay.first)) < len(accepted) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        latencies = [relay.first[w] - t for w, t in accepted.items() if w in relay.first]
        missing = len(accepted) - len(latencies)
        say(f"\n  events accepted {len(accepted)}, refused {refused}, welcome e-mails {len(latencies)}"
            + (f", MISSING {missing}" if missing else ""))
        say(f"  latency  p50 {1000 * pct(latencies, 0.50):6.0f} ms   p95 {1000 * pct(latencies, 0.95):6.0f} ms   "
            f"p99 {1000 * pct(latencies, 0.99):6.0f} ms   max {1000 * max(latencies):6.0f} ms")
        p95 = pct(latencies, 0.95)
        say(f"  goal p95 < {GOAL_P95:.0f} s: {'met' if p95 < GOAL_P95 else 'NOT met'}")
    finally:
        http.terminate()
        http.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20, help="events per second")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    return run_bench(bench, args, "latency-")


if __name__ == "__main__":
    sys.exit(main())
