"""Routing and messages, without servers: which deliveries an event makes, and how it reads."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import SecretStr

from activities.chat_messages import build, slack_blocks, teams_card, teams_escape
from activities.notice_routing import AccountInfo, Routing, may_route, route
from core.settings import Settings
from playbooks.crm_connections import load_connections
from playbooks.notifications import load_notifications
from tests.deliveries.conftest import WEBHOOK_SECRET

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
AT = datetime(2027, 1, 8, 14, 30, tzinfo=timezone.utc)


def event(kind: str, **kw) -> dict:
    base = {"id": 7, "event_key": f"sla-T-1/run/{kind}", "event": kind, "account_id": "acme", "workflow_id": "sla-T-1",
            "play_id": "run", "step": "escalation/L2", "playbook": "sla", "occurred_at": AT, "title": "t",
            "severity": "P0", "data": {}}
    return {**base, **kw}


def routing(settings: Settings, **account) -> Routing:
    info = AccountInfo(id="acme", name=account.get("name", "Acme Logistics"), tier="Enterprise",
                       companies={"hubspot": "9876543210"}, contacts={"hubspot": {"lee.park@acme.example": "501"}})
    return Routing(settings, load_notifications(PLAYBOOKS), load_connections(PLAYBOOKS / "crm"), None, info)


def configured(**extra) -> Settings:
    return Settings(_env_file=None, chat_webhook_urls={"escalations": SecretStr("https://hooks.slack.com/services/T/B/x"),
                                                       "cs-leadership": SecretStr("https://example.webhook.office.com/x")},
                    slack_bot_token=SecretStr("xoxb-1"), crm_write_back="hubspot",
                    hubspot_access_token=SecretStr("pat-1"), **extra)


def test_nothing_is_made_until_configured():
    r = routing(Settings(_env_file=None))
    for kind in ("play.escalated", "ticket.incident", "task.created", "account.band_changed"):
        assert route(event(kind, data={"level": 2, "to_role": "vp_engineering", "task_key": "k", "to_band": "RED"}),
                     r) == []


def test_an_l2_sla_escalation_goes_to_escalations_its_owner_and_the_customer():
    specs = route(event("play.escalated", data={"level": 2, "to_role": "vp_engineering", "reason": "P0 severity"}),
                  routing(configured()))
    assert sorted((s["destination"], s["channel"]) for s in specs) == [
        ("acme-shared", "slack_api"), ("critical-alerts", "slack_api"), ("escalations", "slack_webhook")]
    api = next(s for s in specs if s["destination"] == "critical-alerts")
    assert api["payload"]["body"]["channel"] == "C0CRITALRT" and api["payload"]["body"]["unfurl_links"] is False
    assert len({s["idem_key"] for s in specs}) == 3 and all(s["idem_key"].endswith("/play.escalated") for s in specs)


def test_an_l1_escalation_of_onboarding_stays_internal():
    specs = route(event("play.escalated", playbook="onboarding", data={"level": 1, "to_role": "cs_manager"}),
                  routing(configured()))
    assert [s["destination"] for s in specs] == ["escalations"]  # the role's destination is the same: once


def test_band_changes_only_to_orange_or_red():
    r = routing(configured())
    yellow = route(event("account.band_changed", data={"to_band": "YELLOW"}), r)
    assert [s["operation"] for s in yellow] == ["update_account"]  # the CRM's band property, no chat
    red = route(event("account.band_changed", data={"from_band": "ORANGE", "to_band": "RED", "score": 70}), r)
    assert {s["destination"] for s in red if s["kind"] == "chat"} == {"cs-leadership"}  # cs-alerts has no URL here
    assert {s["operation"] for s in red if s["kind"] == "crm"} == {"update_account"}


def test_crm_write_back_of_tasks_and_e_mails_to_crm_contacts_only():
    r = routing(configured())
    task = route(event("task.created", data={"task_key": "onboarding-acme/r/task/x", "title": "Charter",
                                             "due_at": AT.isoformat(), "priority": "P1", "owner_email": None}), r)
    (create,) = [s for s in task if s["kind"] == "crm"]
    assert create["operation"] == "create_task" and create["payload"]["company_id"] == "9876543210"
    done_in_hubspot = route(event("task.completed", data={"task_key": "k", "via": "hubspot"}), r)
    assert not [s for s in done_in_hubspot if s["kind"] == "crm"]
    email = {"id": 3, "idem_key": "onboarding-acme/r/email/welcome", "subject": "Welcome", "body_text": "Hello",
             "sent_at": AT, "mail_from": "CS <success@tai.example>", "to_addrs": ["Dana <dana@acme.example>"],
             "cc_addrs": ["Lee Park <lee.park@acme.example>"]}
    r.email = email
    sent = route(event("email.sent", data={"template": "onboarding/welcome.html.j2", "to": email["to_addrs"],
                                           "cc": email["cc_addrs"]}), r)
    (log,) = [s for s in sent if s["kind"] == "crm"]
    assert log["payload"]["contact_ids"] == ["501"] and log["payload"]["text"] == "Hello"
    survey = route(event("email.sent", data={"template": "nps/survey.html.j2", "to": email["cc_addrs"]}), r)
    assert not [s for s in survey if s["kind"] == "crm"]  # personal survey links are never logged


def test_a_subscription_gets_the_standard_webhooks_body(tmp_path):
    import shutil

    folder = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = folder / "notifications.yaml"
    path.write_text(path.read_text().replace(
        "webhooks: []", "webhooks:\n  - {name: tools, url: 'https://hooks.example.com/x', events: [task.created]}"))
    s = configured(outbound_webhook_secrets={"tools": SecretStr(WEBHOOK_SECRET)})
    r = Routing(s, load_notifications(folder), None, None, routing(s).account)
    (spec,) = route(event("task.created", data={"task_key": "k", "title": "Charter"}), r)
    body = json.loads(spec["payload"]["body"])
    assert body == {"type": "task.created", "timestamp": "2027-01-08T14:30:00Z", "data": {
        "event_id": "sla-T-1/run/task.created", "account_id": "acme", "account_name": "Acme Logistics",
        "workflow_id": "sla-T-1", "play_id": "run", "playbook": "sla", "step": "escalation/L2", "title": "t",
        "severity": "P0", "task_key": "k"} | {"title": "Charter"}}
    assert spec["payload"]["message_id"].startswith("msg_")


def test_outside_text_is_escaped_for_slack_and_teams():
    msg = build(event("ticket.incident", data={"ticket_id": "T-1", "subject": "<!channel> [click](http://evil) *x*"}),
                {"name": "Acme <@U123> & Co", "tier": "Enterprise"}, [("Account page", "http://x/console/accounts/acme")])
    slack = json.dumps(slack_blocks(msg))
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack and "&lt;@U123&gt; &amp; Co" in slack
    teams = json.dumps(teams_card(msg))
    assert "[click](http://evil)" not in teams and teams_escape("[click](http://evil)") in json.loads(teams)[
        "attachments"][0]["content"]["body"][1]["text"]


def test_block_kit_limits_hold_for_long_texts():
    long = "x" * 10_000
    blocks = slack_blocks(build(event("play.escalated", data={"level": 3, "report_title": long, "reason": long,
                                                              "needs": [long]}),
                                {"name": long, "tier": None}, []))["blocks"]
    assert len(blocks[0]["text"]["text"]) <= 150 and len(blocks[1]["text"]["text"]) <= 3000
    assert all(len(f["text"]) <= 2000 for f in blocks[2]["fields"]) and len(blocks[2]["fields"]) <= 10


def test_the_relay_skips_reading_an_account_only_for_events_no_route_can_take():
    """`may_route` is False only where `route` makes nothing for any tier: a survey's `email.sent` (the
    NPS cycle's 100,000 events) is marked routed without reading its account and e-mail."""
    settings = Settings(_env_file=None, chat_webhook_urls={"escalations": SecretStr("https://hooks.slack.com/services/T/B/x"),
                                                           "cs-leadership": SecretStr("https://example.webhook.office.com/x")},
                        slack_bot_token=SecretStr("xoxb-1"))
    content = load_notifications(PLAYBOOKS)
    survey = event("email.sent", playbook="nps", step="survey/c1/lee.park@acme.example",
                   data={"template": "nps/survey.html.j2", "communication_id": 1})
    breach = event("email.sent", data={"template": "sla/breach_notice.html.j2", "communication_id": 2})
    escalated = event("play.escalated", data={"level": 2, "to_role": "vp_engineering"})
    assert not may_route(survey, content, None)
    assert may_route(breach, content, None) and may_route(escalated, content, None)
    assert may_route(survey, content, load_connections(PLAYBOOKS / "crm"))  # CRM write-back logs every e-mail
    for tier in ("Enterprise", "Mid-Market", "Starter", None):
        info = AccountInfo(id="acme", name="Acme Logistics", tier=tier)
        assert route(survey, Routing(settings, content, None, None, info, {"body_text": "x"})) == []
        assert route(breach, Routing(settings, content, None, None, info, {"body_text": "x"})) != []
