"""Slack and Microsoft Teams notifications from real plays, delivered to local stand-ins that
answer as Slack and Teams document, error answers included."""

from __future__ import annotations

from starter.steering import flag_risk, open_ticket
from tests.conftest import asleep_on_timer, eventually
from tests.deliveries.conftest import Running, deliveries, notify_settings, settled
from tests.deliveries.fakes import THROTTLED, Fault
from workflows.churn_messages import IndicatorFlag

CRITICAL, ACME = "C0CRITALRT", "C0ACMESHRD"


async def p0_ticket(env, pool, s, ticket="T-77", subject="Sync down <!channel> & more"):
    """A P0 ticket for acme: at once an incident, escalations L1 and L2; returns once the clock sleeps."""
    now = await env.get_current_time()
    handle = await open_ticket(env.client, pool, s, ticket, "acme", "P0", subject, launched_by="test",
                               task_queue=s.task_queue, now=now)
    await asleep_on_timer(env.client, handle.id)
    return handle


async def red(env, pool, s):
    """Three flags that take acme to RED; returns once its churn watch sleeps."""
    for indicator in ("contract_disputed", "renewal_past_due", "key_stakeholder_departed"):
        await flag_risk(env.client, pool, s, "acme", IndicatorFlag(indicator=indicator, source="test"), s.task_queue)
    await asleep_on_timer(env.client, "churn-acme")


def texts(message: dict) -> str:
    """Everything a Slack message shows, as one string."""
    out = [message.get("text", "")]
    for b in message.get("blocks", []):
        if "text" in b:
            out.append(b["text"]["text"])
        out += [f["text"] for f in b.get("fields", [])]
        out += [e.get("text", {}).get("text", "") + " " + e.get("url", "") if isinstance(e.get("text"), dict)
                else e.get("text", "") for e in b.get("elements", [])]
    return "\n".join(out)


async def test_a_p0_ticket_reaches_escalations_critical_alerts_and_the_customer_channel(env, pool, settings, servers):
    slack = servers["slack"]
    s = notify_settings(settings, servers)
    async with Running(env, pool, s):
        await p0_ticket(env, pool, s)
        rows = await settled(pool, "the P0 ticket's chat messages", 6, kind="chat")
    assert all(r["status"] == "delivered" for r in rows), [(r["summary"], r["last_error"]) for r in rows]
    # Seed 001 section 9.2: L1 and L2 at once for a P0; both in #escalations (the webhook).
    posted = slack.hooks["escalations"]
    assert len(posted) == 2 and {"Escalation L1: Acme Logistics", "Escalation L2: Acme Logistics"} == {
        m["blocks"][0]["text"]["text"] for m in posted}
    # L2 goes to its owner's role (VP Engineering -> #critical-alerts) and the customer's channel; so does the incident.
    for channel in (CRITICAL, ACME):
        titles = sorted(m["blocks"][0]["text"]["text"] for m in slack.posted(channel))
        assert titles == ["Escalation L2: Acme Logistics", "P0 incident at Acme Logistics"], (channel, titles)
    incident = next(m for m in slack.posted(ACME) if "incident" in m["blocks"][0]["text"]["text"])
    shown = texts(incident)
    # The ticket's subject came from outside: escaped, never a mention.
    assert "&lt;!channel&gt; &amp; more" in shown and "<!channel>" not in shown
    assert "/console/accounts/acme" in shown and "/workflows/sla-T-77" in shown
    # Each message once, with its delivery key in the metadata (what a retry looks for).
    assert all(m["metadata"]["event_type"] == "cs_playbook_notice" for m in slack.posted(ACME))
    assert len({m["metadata"]["event_payload"]["key"] for m in slack.posted(ACME)}) == 2


async def test_band_change_to_red_goes_to_teams_as_an_adaptive_card(env, pool, settings, servers):
    teams = servers["teams"]
    s = notify_settings(settings, servers)
    async with Running(env, pool, s):
        await red(env, pool, s)
        await settled(pool, "the band change's messages", event="account.band_changed", kind="chat")
    (card_message, *_) = teams.hooks["cs-leadership"]
    card = card_message["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert "Risk band" in card["body"][0]["text"] and "Acme Logistics" in card["body"][0]["text"]
    assert [a["title"] for a in card["actions"]] == ["Account page", "Temporal UI"]
    # The CSM role's destination (#cs-alerts) has it too.
    assert any("Risk band" in m["blocks"][0]["text"]["text"] for m in servers["slack"].hooks["cs-alerts"])


async def test_429_retry_after_is_honoured_and_5xx_retried(env, pool, settings, servers):
    slack = servers["slack"]
    slack.faults = [Fault(429, {"Retry-After": "2"}, "rate_limited", "/hooks/"),
                    Fault(503, {}, "rollup_error", "/hooks/")]
    s = notify_settings(settings, servers)
    async with Running(env, pool, s):
        await p0_ticket(env, pool, s)
        rows = await settled(pool, "the escalations' webhook messages", 2, destination="escalations")
    assert all(r["status"] == "delivered" for r in rows)
    hook_calls = [r for r in slack.requests if r.path == "/hooks/escalations"]
    assert len(slack.hooks["escalations"]) == 2 and len(hook_calls) == 4
    # The attempt after the 429 came no sooner than its Retry-After.
    attempts = await pool.fetch("SELECT a.* FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id"
                                " WHERE d.destination = 'escalations' ORDER BY a.id")
    limited = next(a for a in attempts if a["status_code"] == 429)
    after = next(a for a in attempts if a["delivery_id"] == limited["delivery_id"] and a["id"] > limited["id"])
    assert float(limited["retry_after_seconds"]) == 2
    assert (after["started_at"] - limited["finished_at"]).total_seconds() >= 1.9
    assert [a["outcome"] for a in attempts].count("retry") == 2


async def test_refusals_fail_for_good_and_a_replay_delivers_once_fixed(env, pool, settings, servers):
    from starter.relay import replay_delivery

    slack = servers["slack"]
    slack.archived.add(ACME)  # is_archived: no retry makes it postable
    s = notify_settings(settings, servers)
    async with Running(env, pool, s):
        await p0_ticket(env, pool, s)
        rows = await settled(pool, "the customer channel's messages", 2, destination="acme-shared")
        assert {r["status"] for r in rows} == {"failed"}
        assert all("is_archived" in r["last_error"] for r in rows)
        assert sum(1 for r in slack.requests if r.path == "/api/chat.postMessage") >= 2
        slack.archived.clear()
        for r in rows:
            await replay_delivery(pool, env.client, s, r["id"], "test")
        again = await settled(pool, "the replayed messages", 2, destination="acme-shared")
    assert {r["status"] for r in again} == {"delivered"} and {r["replays"] for r in again} == {1}
    assert len(slack.posted(ACME)) == 2


async def test_slack_token_problems_are_retried_not_failed(env, pool, settings, servers):
    from pydantic import SecretStr

    s = notify_settings(settings, servers, slack_bot_token=SecretStr("xoxb-revoked"))
    async with Running(env, pool, s):
        await p0_ticket(env, pool, s)

        async def retrying():
            rows = await deliveries(pool, destination="acme-shared")
            return rows and all(r["status"] == "pending" and r["last_error"] and "invalid_auth" in r["last_error"]
                                for r in rows)
        await eventually(retrying, "the bot's messages to wait for a fixed token")
    assert servers["slack"].posted(ACME) == []


async def test_teams_throttling_behind_a_200_is_retried_and_workflows_202_is_delivered(env, pool, settings, servers,
                                                                                        folder):
    from pydantic import SecretStr

    teams = servers["teams"]
    teams.faults = [Fault(200, {}, THROTTLED, "/teams/cs-leadership"),
                    Fault(429, {"Retry-After": "1"}, "", "/teams/cs-workflow")]
    path = folder / "notifications.yaml"
    path.write_text(path.read_text().replace("cs-leadership: {teams_webhook: cs-leadership}",
                                             "cs-leadership: {teams_webhook: cs-leadership}\n"
                                             "  workflow: {teams_webhook: cs-workflow}").replace(
        "to: [cs-leadership, role:csm]", "to: [cs-leadership, workflow]"))
    s = notify_settings(settings, servers, folder)
    s = s.model_copy(update={"chat_webhook_urls": {**s.chat_webhook_urls,
                                                   "cs-workflow": SecretStr(f"{teams.url}/teams/cs-workflow")}})
    async with Running(env, pool, s):
        await red(env, pool, s)
        rows = await settled(pool, "the Teams messages", event="account.band_changed", kind="chat")
    assert {r["status"] for r in rows} == {"delivered"}
    per_destination = {d: sum(1 for r in rows if r["destination"] == d) for d in ("cs-leadership", "workflow")}
    assert per_destination["cs-leadership"] == per_destination["workflow"] == len(teams.hooks["cs-workflow"]) >= 1
    outcomes = [r["outcome"] for r in await pool.fetch("SELECT outcome FROM delivery_attempts ORDER BY id")]
    assert outcomes.count("retry") == 2, outcomes
    details = " ".join(r["detail"] or "" for r in await pool.fetch("SELECT detail FROM delivery_attempts"))
    assert "200 with an error" in details and "429" in details
