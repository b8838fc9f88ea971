"""Where a play event goes: the deliveries it makes (chat messages, CRM writes, signed webhooks).

`route` decides from content and configuration in force (reloaded when a file changes):
playbooks/notifications.yaml (routes, destinations, per-role and per-account channels, webhook
subscriptions), the CRM mappings' `write_back` sections (playbooks/crm/*.yaml) with
CRM_WRITE_BACK, and the secrets of core/settings.py. A destination, subscription or connection
whose secret or token is not set is off: nothing is made for it. Each delivery gets an
idempotency key from the event's key and its destination, so routing an event twice (a relay
that died before marking it routed) makes nothing twice.

| what              | key                                        | made for                                   |
|-------------------|--------------------------------------------|--------------------------------------------|
| chat message      | chat/<destination>/<event key>             | each destination of each matching route    |
| webhook           | webhook/<subscription>/<event key>         | each subscription naming the event         |
| CRM task          | crm/<connection>/task/<task key>           | task.created, account linked to the CRM    |
| CRM task status   | .../completed or .../cancelled             | task.completed (not from that CRM), task.cancelled |
| CRM e-mail log    | crm/<connection>/email/<e-mail key>        | email.sent to a contact of that CRM        |
| account values    | crm/<connection>/account/<account>/<event> | phase, band, score changes (one pending at a time) |
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from activities.chat_messages import build, links_for, slack_blocks, teams_card
from activities.crm_write import record_key
from activities.outbound_webhooks import BadSecret, check_secret, message_id
from activities.play_events import jsonable
from core.models import tier_of
from core.settings import Settings
from playbooks.crm_connections import CONNECTIONS_FILE, Connections, load_connections
from playbooks.crm_mapping import TeamContent
from playbooks.notifications import NOTIFICATIONS_FILE, NotificationsContent, _loopback, load_notifications
from playbooks.reloading import cached_content

PHASE_EVENTS = ("play.started", "play.step_done", "play.finished")
RISK_EVENTS = ("account.band_changed", "account.risk_updated")
_cached = cached_content  # content reloaded when its files change (playbooks/reloading.py)


def current_notifications(settings: Settings) -> NotificationsContent:
    """notifications.yaml as it is now (PlaybookError when invalid): the profile's own, else the default's."""
    from playbooks.profiles import profile_of

    folder = profile_of(settings).path(NOTIFICATIONS_FILE).parent
    return _cached(("notifications", str(folder)), [folder / NOTIFICATIONS_FILE], lambda: load_notifications(folder))


def current_connections(settings: Settings) -> Connections:
    """playbooks/crm/connections.yaml and its mappings as they are now (PlaybookError when invalid)."""
    folder = Path(settings.playbooks_dir) / "crm"
    files = [folder / CONNECTIONS_FILE, *sorted(folder.glob("*.yaml"))]
    return _cached(("connections", str(folder)), files, lambda: load_connections(folder))


def current_team(settings: Settings) -> TeamContent | None:
    from playbooks.loader import _load_config

    path = Path(settings.playbooks_dir) / "crm" / "team.yaml"
    if not path.is_file():
        return None
    return _cached(("team", str(path)), [path], lambda: _load_config(path, TeamContent))


# -- what is on ---------------------------------------------------------------------------------
def chat_destination_on(settings: Settings, content: NotificationsContent, name: str) -> str | None:
    """None if the destination can send, else why not (its secret is not configured)."""
    dest = content.destinations.get(name)
    if dest is None:
        return "not in notifications.yaml"
    if dest.channel == "slack_api":
        ok = settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value()
        return None if ok else "SLACK_BOT_TOKEN is not set"
    url = settings.chat_webhook_urls.get(dest.secret_name or "")
    if url is None or not url.get_secret_value():
        return f"CHAT_WEBHOOK_URLS has no {dest.secret_name!r}"
    parts = urlsplit(url.get_secret_value())
    secure = parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname or ""))
    if not secure or not parts.hostname:
        return f"CHAT_WEBHOOK_URLS[{dest.secret_name!r}] is not an https URL"
    return None


def subscription_on(settings: Settings, name: str) -> str | None:
    secret = settings.outbound_webhook_secrets.get(name)
    if secret is None or not secret.get_secret_value():
        return f"OUTBOUND_WEBHOOK_SECRETS has no {name!r}"
    try:
        check_secret(secret.get_secret_value())
    except BadSecret as exc:
        return f"OUTBOUND_WEBHOOK_SECRETS[{name!r}] {exc}"
    return None


def write_back_on(settings: Settings, connections: Connections, name: str) -> str | None:
    if name not in settings.write_back_connections:
        return "CRM_WRITE_BACK does not name it"
    conn = connections.by_name.get(name)
    if conn is None:
        return f"no connection {name!r} in connections.yaml"
    if conn.mapping.write_back is None:
        return "its mapping has no write_back section"
    hubspot_token = settings.hubspot_access_token.get_secret_value() if settings.hubspot_access_token else ""
    if conn.source == "hubspot" and not hubspot_token:
        return "HUBSPOT_ACCESS_TOKEN is not set"
    if conn.source == "salesforce" and not (settings.salesforce_access_token
                                            and settings.salesforce_access_token.get_secret_value()
                                            and settings.salesforce_instance_url):
        return "SALESFORCE_ACCESS_TOKEN and SALESFORCE_INSTANCE_URL are not both set"
    return None


# -- what routing needs to know about the account ------------------------------------------------
@dataclass
class AccountInfo:
    id: str
    name: str
    tier: str | None
    companies: dict[str, str] = field(default_factory=dict)        # connection -> CRM company / Account id
    contacts: dict[str, dict[str, str]] = field(default_factory=dict)  # connection -> e-mail -> CRM contact id


async def account_info(conn: asyncpg.Connection | asyncpg.Pool, account_id: str | None) -> AccountInfo | None:
    if not account_id:
        return None
    row = await conn.fetchrow("SELECT id, name, arr, usd_rate, crm_tier, merged_into FROM accounts WHERE id = $1",
                              account_id)
    if row is None:
        return None
    ids = [account_id] + ([row["merged_into"]] if row["merged_into"] else [])
    info = AccountInfo(id=row["id"], name=row["name"], tier=tier_of(row))
    for link in await conn.fetch(
            "SELECT connection, crm_id FROM crm_links WHERE account_id = ANY($1::text[]) AND object_type = 'company'"
            " ORDER BY account_id = $2, updated_at", ids, account_id):
        info.companies[link["connection"]] = link["crm_id"]
    for c in await conn.fetch("SELECT lower(email) AS email, crm_key FROM contacts WHERE account_id = ANY($1::text[])"
                              " AND crm_key IS NOT NULL AND email IS NOT NULL AND crm_deleted_at IS NULL", ids):
        connection, _, crm_id = c["crm_key"].partition(":")
        info.contacts.setdefault(connection, {})[c["email"]] = crm_id
    return info


async def account_values(pool: asyncpg.Pool, account_id: str, properties: dict[str, str],
                         phase_playbooks: list[str]) -> dict[str, object]:
    """The account's values as they are now, under the CRM's property names: risk_band, risk_score,
    health_score (the churn watch's, else the account's), play_phase ("<playbook>: <phase>" of the
    running plays of `phase_playbooks`, else the last one to finish; "" when none ever ran)."""
    risk = await pool.fetchrow("SELECT a.health, r.band, r.score, r.health_score FROM accounts a"
                               " LEFT JOIN account_risk r ON r.account_id = a.id WHERE a.id = $1", account_id)
    if risk is None:
        return {}
    values: dict[str, object] = {}
    if "risk_band" in properties and risk["band"]:
        values[properties["risk_band"]] = risk["band"]
    if "risk_score" in properties and risk["score"] is not None:
        values[properties["risk_score"]] = risk["score"]
    if "health_score" in properties:
        health = risk["health_score"] if risk["health_score"] is not None else risk["health"]
        values[properties["health_score"]] = health
    if "play_phase" in properties and phase_playbooks:
        rows = await pool.fetch(
            "SELECT playbook, phase, running FROM play_phases WHERE account_id = $1 AND playbook = ANY($2::text[])"
            " ORDER BY running DESC, updated_at DESC", account_id, phase_playbooks)
        running = [f"{r['playbook']}: {r['phase'] or 'started'}" for r in rows if r["running"]]
        if running:
            values[properties["play_phase"]] = "; ".join(sorted(running))
        elif rows:
            values[properties["play_phase"]] = f"{rows[0]['playbook']}: {rows[0]['phase'] or 'finished'}"
    return values


def crm_owner(team: TeamContent | None, email: str | None, source: str) -> str | None:
    """The CRM owner id standing for one of our CSMs (team.yaml `owners`): digits for HubSpot, a
    User id (005...) for Salesforce; None when team.yaml names none."""
    if not team or not email:
        return None
    for csm in team.csms:
        if str(csm.email).lower() == email.lower():
            for key in csm.owners:
                if source == "hubspot" and key.isdigit():
                    return key
                if source == "salesforce" and key.startswith("005") and len(key) in (15, 18):
                    return key
    return None


# -- routing ------------------------------------------------------------------------------------
@dataclass
class Routing:
    """What `route` needs besides the event: configuration and content in force, and the account."""

    settings: Settings
    content: NotificationsContent
    connections: Connections | None
    team: TeamContent | None
    account: AccountInfo | None
    email: dict | None = None  # for email.sent: the communications row (body, sender)


def _spec(event: dict, **kw) -> dict:
    return {"event_id": event["id"], "event": event["event"], "account_id": event.get("account_id"),
            "workflow_id": event.get("workflow_id"), "step": event.get("step"), **kw}


def _event_role(event: dict) -> str | None:
    data = event.get("data") or {}
    if event["event"] == "play.escalated":
        return data.get("to_role")
    if event["event"].startswith("task."):
        return data.get("owner_role")
    return None


def chat_specs(event: dict, r: Routing) -> list[dict]:
    content, account = r.content, r.account
    tier = account.tier if account else None
    names: list[str] = []
    for route in content.routes:
        if event["event"] not in route.events or not route.when.matches(event, tier):
            continue
        for target in route.to:
            if target == "account":
                names += content.accounts.get(event.get("account_id") or "", [])
            elif target == "role":
                names += content.roles.get(_event_role(event) or "", [])
            elif target.startswith("role:"):
                names += content.roles.get(target.split(":", 1)[1], [])
            else:
                names.append(target)
    specs = []
    links = links_for(r.settings, event.get("account_id"), event.get("workflow_id"))
    account_view = {"name": account.name, "tier": account.tier} if account else None
    msg = build(event, account_view, links, (r.email or {}).get("body_text") or "")
    for name in dict.fromkeys(names):
        if chat_destination_on(r.settings, content, name) is not None:
            continue
        dest = content.destinations[name]
        if dest.channel == "slack_api":
            body = {"channel": dest.slack_channel, **slack_blocks(msg), "unfurl_links": False, "unfurl_media": False}
            payload = {"body": body}
        elif dest.channel == "slack_webhook":
            payload = {"webhook": dest.slack_webhook, "body": slack_blocks(msg)}
        else:
            payload = {"webhook": dest.teams_webhook, "body": teams_card(msg)}
        specs.append(_spec(event, idem_key=f"chat/{name}/{event['event_key']}", kind="chat", channel=dest.channel,
                           destination=name, operation="post", summary=msg.title[:300], payload=payload))
    return specs


def webhook_specs(event: dict, r: Routing) -> list[dict]:
    tier = r.account.tier if r.account else None
    specs = []
    for sub in r.content.webhooks:
        if event["event"] not in sub.events or not sub.when.matches(event, tier):
            continue
        if subscription_on(r.settings, sub.name) is not None:
            continue
        key = f"webhook/{sub.name}/{event['event_key']}"
        occurred = event["occurred_at"]
        body = {"type": event["event"], "timestamp": occurred.isoformat().replace("+00:00", "Z"), "data": jsonable({
            "event_id": event["event_key"], "account_id": event.get("account_id"),
            "account_name": r.account.name if r.account else None, "workflow_id": event.get("workflow_id"),
            "play_id": event.get("play_id"), "playbook": event.get("playbook"), "step": event.get("step"),
            "title": event.get("title"), "severity": event.get("severity"), **(event.get("data") or {})})}
        specs.append(_spec(event, idem_key=key, kind="webhook", channel="webhook", destination=sub.name,
                           operation="deliver", summary=f"{event['event']}: {event.get('title') or ''}"[:300],
                           payload={"url": sub.url, "message_id": message_id(key),
                                    "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False)}))
    return specs


def crm_specs(event: dict, r: Routing) -> list[dict]:
    if r.account is None or r.connections is None:
        return []
    specs = []
    data, kind = event.get("data") or {}, event["event"]
    for name, company_id in r.account.companies.items():
        if write_back_on(r.settings, r.connections, name) is not None:
            continue
        conn = r.connections.by_name[name]
        wb = conn.mapping.write_back
        base = dict(kind="crm", channel=conn.source, destination=name)
        if kind == "task.created" and wb.tasks:
            body = "\n".join(p for p in (data.get("detail") or "", f"Play {event.get('workflow_id')}, step "
                                         f"{event.get('step')}; created by the customer-success playbooks.") if p)
            specs.append(_spec(event, idem_key=f"crm/{name}/task/{data['task_key']}", operation="create_task",
                               summary=f"task: {data.get('title')}"[:300], **base, payload={
                                   "key": record_key(data["task_key"]), "task_key": data["task_key"],
                                   "task_id": data.get("task_id"), "company_id": company_id,
                                   "subject": data.get("title") or "", "body": body, "due_at": data.get("due_at"),
                                   "priority": data.get("priority"),
                                   "owner": crm_owner(r.team, data.get("owner_email"), conn.source)}))
        elif kind in ("task.completed", "task.cancelled") and wb.tasks and data.get("via") != name:
            status = "completed" if kind == "task.completed" else "cancelled"
            specs.append(_spec(event, idem_key=f"crm/{name}/task/{data['task_key']}/{status}",
                               operation="complete_task", summary=f"task {status}: {data.get('title')}"[:300], **base,
                               payload={"task_key": data["task_key"], "task_id": data.get("task_id"), "status": status,
                                        "create_key": f"crm/{name}/task/{data['task_key']}"}))
        elif kind == "email.sent" and wb.emails and r.email is not None:
            if any(fnmatch.fnmatchcase(data.get("template") or "", g) for g in wb.email_templates_excluded):
                continue
            people = r.account.contacts.get(name, {})
            recipients = [_address(a) for a in (data.get("to") or []) + (data.get("cc") or [])]
            contact_ids = list(dict.fromkeys(people[a] for a in recipients if a in people))
            if not contact_ids:
                continue
            e = r.email
            specs.append(_spec(event, idem_key=f"crm/{name}/email/{e['idem_key']}", operation="log_email",
                               summary=f"e-mail: {data.get('subject')}"[:300], **base, payload={
                                   "key": record_key(e["idem_key"]), "email_key": e["idem_key"],
                                   "communication_id": e["id"], "company_id": company_id,
                                   "contact_ids": contact_ids, "subject": e["subject"],
                                   "text": e["body_text"] if wb.email_body else "",
                                   "sent_at": (e["sent_at"] or event["occurred_at"]).isoformat(),
                                   "from": _address(e["mail_from"]), "to": [_address(a) for a in e["to_addrs"]],
                                   "cc": [_address(a) for a in e["cc_addrs"]]}))
        if wb.properties and ((kind in PHASE_EVENTS and "play_phase" in wb.properties
                               and event.get("playbook") in wb.phase_playbooks)
                              or (kind in RISK_EVENTS and set(wb.properties) & {"risk_band", "risk_score",
                                                                                 "health_score"})):
            specs.append(_spec(event, idem_key=f"crm/{name}/account/{r.account.id}/{event['id']}",
                               operation="update_account", summary="account values", **base,
                               payload={"company_id": company_id, "properties": dict(wb.properties),
                                        "phase_playbooks": list(wb.phase_playbooks)}))
    return specs


def _address(formatted: str) -> str:
    from email.utils import parseaddr

    return parseaddr(formatted)[1].lower()


def may_route(event: dict, content: NotificationsContent, connections: Connections | None) -> bool:
    """Whether any chat route, webhook subscription or CRM write-back could take this play event
    (a play_events row as a dict), whatever its account's tier. False means `route` gives no
    delivery whatever the account or the e-mail, so the relay skips reading them (an NPS cycle's
    100,000 `email.sent` survey events, which no shipped route or subscription takes)."""
    name = event["event"]
    return (connections is not None
            or any(name in rt.events and rt.when.matches(event, None, any_tier=True) for rt in content.routes)
            or any(name in sub.events and sub.when.matches(event, None, any_tier=True) for sub in content.webhooks))


def route(event: dict, r: Routing) -> list[dict]:
    """Every delivery the event makes (dicts with the `deliveries` columns), none twice."""
    return chat_specs(event, r) + webhook_specs(event, r) + crm_specs(event, r)
