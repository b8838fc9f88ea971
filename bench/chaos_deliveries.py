"""The chat and CRM legs of bench/chaos.py: deliveries to local Slack, Teams and HubSpot stand-ins
(tests/deliveries/fakes.py, fake_crm_write.py: they answer as the vendors document) while
worker.py is SIGKILLed, and while HubSpot answers 429 and 500 for a minute.

  chat  P0 tickets (an incident, escalations L1 and L2: Slack incoming webhooks and Web API) and
        churn flags to RED (Teams cards, Slack) for 40 accounts, launched over about half a minute
        while worker.py is SIGKILLed at random moments (at least --kills times).
  crm   onboarding for 30 accounts linked to HubSpot companies: every task and welcome e-mail
        written to HubSpot while it answers 429 (Retry-After 1) and 500 in turn for --outage
        seconds, worker.py SIGKILLed a few times meanwhile; then HubSpot recovers.

Counted per delivery: Slack Web API messages (by their delivery key in message metadata), Slack
and Teams incoming-webhook messages (by title and context), HubSpot records (by idempotency value). Lost = in
the reference run, not after the chaos; duplicates = more than one; and deliveries still open or
failed once everything is quiet.
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
from workflows.churn_messages import IndicatorFlag
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
        else:
            for indicator in ("contract_disputed", "renewal_past_due", "key_stakeholder_departed"):
                h = await steering.flag_risk(c, p, s, account, IndicatorFlag(indicator=indicator, source="chaos"))
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


async def observe(run, seen) -> None:
    """What the stand-ins received, per delivery, and what the outbox says."""
    slack, teams, hub = run.fakes["slack"], run.fakes["teams"], run.fakes["hubspot"]
    for hook, messages in slack.hooks.items():
        for m in messages:
            seen.hook_messages[(hook, m["blocks"][0]["text"]["text"], m["blocks"][-1]["elements"][0]["text"])] += 1
    for channel, messages in slack.channels.items():
        for m in messages:
            seen.messages[(channel, m["metadata"]["event_payload"]["key"])] += 1
    for hook, messages in teams.hooks.items():
        for m in messages:
            body = m["attachments"][0]["content"]["body"]
            seen.hook_messages[(hook, body[0]["text"], body[-1]["text"])] += 1
    for object_type in ("tasks", "emails"):
        for record in hub.objects[object_type].values():
            seen.crm[(object_type, record.get("cs_playbook_key"))] += 1
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
        lost = sorted(set(r) - set(k))
        dups = sum(n - 1 for n in k.values() if n > 1)
        say(f"  {what:<12} reference {sum(r.values()):>5}  chaos {sum(k.values()):>5}  lost {len(lost)}"
            f"  duplicates {dups}")
        for key in lost[:5]:
            say(f"    lost: {key}")
        for key, n in [(key, n) for key, n in k.items() if n > 1][:5]:
            say(f"    {n}x: {key}")
        if what == "hook_messages" and dups:
            say("    (incoming webhooks keep no key: a kill after Slack or Teams accepted a message re-posts it)")
        ok = ok and not lost and (not dups or what == "hook_messages")
    say(f"  deliveries after the chaos: {dict(chaos.deliveries)} (reference {dict(ref.deliveries)})")
    return ok and not chaos.deliveries.get("pending") and not chaos.deliveries.get("failed")


def counters() -> dict:
    return {"messages": Counter(), "hook_messages": Counter(), "crm": Counter(), "deliveries": Counter()}
