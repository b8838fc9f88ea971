"""The chat and CRM legs of bench/chaos.py: deliveries to local Slack, Teams and HubSpot stand-ins
(tests/deliveries/fakes.py, fake_crm_write.py: they answer as the vendors document) while
worker.py is SIGKILLed, and while HubSpot answers 429 and 500 for a minute.

  chat  P0 tickets (an incident, escalations L1 and L2: Slack incoming webhooks and Web API) and
        churn readings that move the band (Teams cards, Slack) for 40 accounts, launched over about half a minute
        while worker.py is SIGKILLed at random moments (at least --kills times).
  crm   onboarding for 30 accounts linked to HubSpot companies: every task and welcome e-mail
        written to HubSpot while it answers 429 (Retry-After 1) and 500 in turn for --outage
        seconds, worker.py SIGKILLed a few times meanwhile; then HubSpot recovers.

Counted per delivery (named without run ids or times: kind, destination, operation, event, play,
step): the copies the vendor holds, Slack Web API messages by their delivery key in message
metadata, Slack and Teams incoming-webhook messages by their exact body, HubSpot records by their
idempotency value. Lost = delivered in the reference run, no copy after the chaos; duplicates =
more than one copy (for incoming webhooks, which keep no key, shown as the documented window);
and deliveries still open or failed once everything is quiet. Account-property writes coalesce
(one pending per account), so they are not compared.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter

from tests.deliveries.fake_crm_write import TOKEN, FakeHubSpot, hs_rate_limited
from tests.deliveries.fakes import BOT_TOKEN, Fault, FakeSlack, FakeTeams
from tests.starter.webhooks.fake_crm import serve, stop
from workflows.churn_messages import MetricsReading
from starter import steering

COMPANY_BASE = 9_000_000_000


async def serve_fakes() -> dict:
    fakes = {"slack": FakeSlack(channels=("C0CRITALRT", "C0ACMESHRD")), "teams": FakeTeams(),
             "hubspot": FakeHubSpot(companies=tuple(str(COMPANY_BASE + i) for i in range(100)))}
    fakes["servers"] = [await serve(f) for f in (fakes["slack"], fakes["teams"], fakes["hubspot"])]
    return fakes


async def stop_fakes(fakes: dict) -> None:
    for server, task in fakes["servers"]:
        await stop(server, task)


def worker_env(fakes: dict) -> dict[str, str]:
    s, t, h = fakes["slack"].url, fakes["teams"].url, fakes["hubspot"].url
    return {"CHAT_WEBHOOK_URLS": json.dumps({"escalations": f"{s}/hooks/escalations", "cs-alerts": f"{s}/hooks/cs-alerts",
                                             "cs-leadership": f"{t}/teams/cs-leadership"}),
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": f"{s}/api", "CRM_WRITE_BACK": "hubspot",
            "HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_API_URL": h, "DELIVERY_TIMEOUT_SECONDS": "3",
            "DELIVERY_RETRY_INITIAL_SECONDS": "1", "DELIVERY_RETRY_MAX_SECONDS": "10",
            "CRM_SEARCH_SETTLE_SECONDS": "2", "NOTICE_POLL_SECONDS": "0.5"}


async def scenario_chat(run, chaos: bool, args, dev_accounts) -> list[str]:
    accounts = await dev_accounts(run, 40)
    stop_killer = asyncio.Event()
    killer = asyncio.create_task(run.worker.killer(stop_killer, 0.5, 2.5)) if chaos else None
    c, p, s = run.client, run.pool, run.settings
    plays = []
    for i, account in enumerate(accounts):
        if i % 2 == 0:
            h = await steering.open_ticket(c, p, s, f"T-C{i}", account, "P0", "Production down", launched_by="chaos")
        else:  # one reading, one rescoring: the same band change in every run
            h = await steering.read_metrics(c, p, s, account, MetricsReading(
                values={"nps": 10, "csat": 2, "dau_pct": 8}, source="chaos"))
        plays.append(h.id)
        await asyncio.sleep(0.6)
    if killer:
        while run.worker.kills < args.kills:
            await asyncio.sleep(0.2)
        stop_killer.set()
        await killer
    await run.quiet(plays)
    await quiet_deliveries(run)
    return plays


async def scenario_crm(run, chaos: bool, args, dev_accounts) -> list[str]:
    accounts = await dev_accounts(run, 30)
    await run.pool.executemany("INSERT INTO crm_links (connection, object_type, crm_id, account_id)"
                               " VALUES ('hubspot', 'company', $1, $2)",
                               [(str(COMPANY_BASE + i), a) for i, a in enumerate(accounts)])
    hub: FakeHubSpot = run.fakes["hubspot"]
    if chaos:
        hub.start_outage([hs_rate_limited(1), Fault(500, {}, {"status": "error", "message": "internal error"})])
    began = time.monotonic()
    plays = []
    for account in accounts:
        plays.append((await steering.launch_onboarding(run.client, run.pool, run.settings, account, "chaos")).id)
        await asyncio.sleep(0.2)
    if chaos:
        for _ in range(3):  # kills while HubSpot refuses: retries in flight are cut
            await asyncio.sleep(random.uniform(3, 8))
            run.worker.kill9()
            await run.worker.start()
        await asyncio.sleep(max(0.0, args.outage - (time.monotonic() - began)))
        refused = hub.refused
        hub.recover()
        run.notes.append(f"HubSpot refused {refused} requests (429 and 500 in turn) for {args.outage:.0f} s")
    await run.quiet(plays)
    await quiet_deliveries(run)
    return plays


async def quiet_deliveries(run, timeout: float = 900) -> None:
    """Until every play event is routed and no delivery is pending or sending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_ = await run.pool.fetchval(
            "SELECT (SELECT count(*) FROM play_events WHERE routed_at IS NULL)"
            " + (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending'))")
        if open_ == 0:
            return
        await asyncio.sleep(1)
    run.notes.append(f"deliveries still open after {timeout:.0f} s")


def _key(row) -> tuple:
    """A delivery named the same way in every run (no run ids, no times): what, where, for which step."""
    return (row["kind"], row["destination"], row["operation"], row["event"], row["workflow_id"], row["step"])


async def observe(run, seen) -> None:
    """For each delivery (account-property writes aside: they coalesce), how many copies the vendor
    holds: Slack Web API messages by their delivery key, incoming-webhook messages (Slack, Teams) by
    their exact body, HubSpot records by their idempotency value. Also the outbox's statuses."""
    slack, teams, hub = run.fakes["slack"], run.fakes["teams"], run.fakes["hubspot"]
    api = Counter(m["metadata"]["event_payload"]["key"] for msgs in slack.channels.values() for m in msgs)
    hooks = Counter((hook, json.dumps(m, sort_keys=True)) for fake in (slack, teams)
                    for hook, msgs in fake.hooks.items() for m in msgs)
    records = Counter(r.get("cs_playbook_key") for t in ("tasks", "emails") for r in hub.objects[t].values())
    for row in await run.pool.fetch("SELECT * FROM deliveries WHERE operation <> 'update_account'"):
        if row["channel"] == "slack_api":
            seen.messages[_key(row)] += api[row["idem_key"]]
        elif row["channel"] in ("slack_webhook", "teams_webhook"):
            seen.hook_messages[_key(row)] += hooks[(row["payload"]["webhook"],
                                                    json.dumps(row["payload"]["body"], sort_keys=True))]
        elif row["channel"] == "hubspot":
            seen.crm[_key(row)] += records[row["payload"]["key"]]
    for r in await run.pool.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status"):
        seen.deliveries[r["status"]] = r["n"]


def compare(ref, chaos, say) -> bool:
    """Lost anything, or doubled what a retry can check (Slack Web API, HubSpot): the leg fails.
    Incoming webhooks (Slack, Teams) keep no key: their doubles are the documented window, shown."""
    ok = True
    for what in ("messages", "hook_messages", "crm"):
        r, k = getattr(ref, what), getattr(chaos, what)
        if not r and not k:
            continue
        lost = sorted(key for key, n in r.items() if n and not k.get(key))
        dups = sum(n - 1 for n in k.values() if n > 1)
        say(f"  {what:<14} reference {sum(r.values()):>5} in {len(r):>4} deliveries  chaos {sum(k.values()):>5}"
            f" in {len(k):>4}  lost {len(lost)}  duplicates {dups}")
        for key in lost[:5]:
            say(f"    lost: {key}")
        for key, n in [(key, n) for key, n in k.items() if n > 1][:5]:
            say(f"    {n}x: {key}")
        if what == "hook_messages" and dups:
            say("    (incoming webhooks keep no key: a kill while Slack or Teams takes a message re-posts it)")
        ok = ok and not lost and (not dups or what == "hook_messages")
    say(f"  deliveries after the chaos: {dict(chaos.deliveries)} (reference {dict(ref.deliveries)})")
    return ok and not chaos.deliveries.get("pending") and not chaos.deliveries.get("failed")


def counters() -> dict:
    return {"messages": Counter(), "hook_messages": Counter(), "crm": Counter(), "deliveries": Counter()}
