"""Chat messages for play events: what a CS team reads in Slack (Block Kit) or Microsoft Teams
(an Adaptive Card), with a link to the account page and to the play in the Temporal UI.

Pure functions: an event becomes a `ChatMessage` (title, a few lines, facts, links), which each
channel renders in its own format within its documented limits (Slack: header 150 characters,
section text 3,000, field 2,000, 10 fields, button text 75; Teams: a card well under the 28 KB
a message may carry). Everything that came from outside (account and ticket names, subjects, a
CRM's values) is escaped for the format: in Slack mrkdwn `&`, `<` and `>` (so a name can never
become a mention like <!channel> or a link), in Teams the Markdown characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from core.settings import Settings

ICONS = {"P0": ":rotating_light:", "P1": ":warning:", "P2": ":large_yellow_circle:", "P3": ":information_source:"}
BAND_ICONS = {"GREEN": ":large_green_circle:", "YELLOW": ":large_yellow_circle:", "ORANGE": ":large_orange_circle:",
              "RED": ":red_circle:"}


@dataclass
class ChatMessage:
    """One message, channel-neutral. `lines` and fact values are plain text (escaped when rendered)."""

    title: str
    lines: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    context: str = ""
    icon: str = ""


def _cut(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(value) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value.utcoffset() is not None else value.isoformat()
    return str(value or "")


def links_for(settings: Settings, account_id: str | None, workflow_id: str | None) -> list[tuple[str, str]]:
    """The account page in the console and the play in the Temporal UI."""
    out = []
    if account_id:
        out.append(("Account page", f"{settings.survey_base_url}/console/accounts/{quote(account_id, safe='')}"))
    if workflow_id:
        base = settings.temporal_ui_url.rstrip("/")
        out.append(("Temporal UI", f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/"
                                   f"{quote(workflow_id, safe='')}"))
    return out


def build(event: dict, account: dict | None, links: list[tuple[str, str]], email_text: str = "") -> ChatMessage:
    """The message for a play event (a play_events row as a dict). `account`: its name and tier;
    `email_text`: the plain-text body of the e-mail an `email.sent` event is about."""
    data = event.get("data") or {}
    name = (account or {}).get("name") or event.get("account_id") or "no account"
    kind = event["event"]
    msg = ChatMessage(title=event.get("title") or kind, links=links, icon=ICONS.get(event.get("severity") or "", ""))
    if kind == "play.escalated":
        msg.title = f"Escalation L{data.get('level')}: {name}"
        msg.lines = [data.get("report_title") or "", f"Why: {data.get('reason', '')}"]
        if data.get("business_impact"):
            msg.lines.append(f"Impact: {data['business_impact']}")
        msg.facts = [("Level", f"L{data.get('level')} to {data.get('to_name') or data.get('to_role')} "
                               f"({data.get('to_role')})"), ("Severity", event.get("severity") or "")]
        msg.facts += [("Needs", "; ".join(data.get("needs") or []))] if data.get("needs") else []
        msg.icon = ":rotating_light:" if (data.get("level") or 0) >= 3 else ":warning:"
    elif kind == "ticket.incident":
        msg.title = f"P0 incident at {name}"
        msg.lines = [f"Ticket {data.get('ticket_id')}: {data.get('subject', '')}"]
        msg.facts = [("Status", str(data.get("status", "")).replace("_", " ")), ("Tier", data.get("tier") or ""),
                     ("Response due", _when(data.get("response_due_at"))),
                     ("Resolution due", _when(data.get("resolution_due_at")))]
        msg.icon = ":rotating_light:"
    elif kind == "account.band_changed":
        msg.title = f"Risk band {data.get('from_band')} -> {data.get('to_band')}: {name}"
        msg.lines = [f"Churn-risk score {data.get('score')}."]
        if data.get("indicators"):
            msg.lines.append("Indicators: " + ", ".join(str(i).replace("_", " ") for i in data["indicators"]))
        msg.icon = BAND_ICONS.get(data.get("to_band") or "", "")
    elif kind == "account.risk_flagged":
        msg.title = f"Churn-risk flag at {name}: +{data.get('points')}"
        msg.lines = [str(data.get("reason") or ""), f"Indicator: {str(data.get('indicator', '')).replace('_', ' ')}"]
        msg.icon = ":warning:"
    elif kind == "email.sent":
        msg.title = f"{data.get('subject', 'E-mail sent')}"
        msg.lines = [_cut(email_text.strip(), 1200)] if email_text.strip() else []
        msg.facts = [("Account", name), ("To", ", ".join(data.get("to") or []))]
        msg.icon = ":email:" if not msg.icon else msg.icon
    elif kind.startswith("task."):
        verb = kind.split(".", 1)[1]
        msg.title = f"Task {verb} at {name}: {data.get('title', '')}"
        msg.lines = [str(data.get("detail") or "")] if data.get("detail") and verb == "created" else []
        msg.facts = [("Owner", data.get("owner_email") or data.get("owner_role") or ""),
                     ("Due", _when(data.get("due_at"))), ("Priority", data.get("priority") or "")]
        if verb == "completed":
            msg.facts.append(("Completed by", str(data.get("completed_by") or "")))
    elif kind.startswith("play."):
        msg.title = f"{event.get('playbook')} {kind.split('.', 1)[1].replace('_', ' ')} for {name}"
        msg.lines = [f"Step {event['step']}" if event.get("step") else "",
                     f"Outcome: {data['outcome']}" if data.get("outcome") else "",
                     f"Phase: {data['phase']}" if data.get("phase") else ""]
    msg.lines = [line for line in msg.lines if line]
    if kind not in ("email.sent",) and not any(k == "Account" for k, _ in msg.facts):
        msg.facts.insert(0, ("Account", name + (f" ({account['tier']})" if account and account.get("tier") else "")))
    msg.context = " · ".join(p for p in (event.get("workflow_id"), event.get("step"), _when(event.get("occurred_at")))
                             if p)
    return msg


# -- Slack ---------------------------------------------------------------------------------------
def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters (api.slack.com, "Formatting text"): & < > only."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_blocks(msg: ChatMessage) -> dict:
    """{text, blocks}: the body of an incoming webhook; chat.postMessage adds channel and metadata.
    `text` is the notification's fallback (what a phone shows)."""
    title = _cut(f"{msg.title}", 150)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}]
    if msg.lines:
        body = "\n".join(slack_escape(line) for line in msg.lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, 3000)}})
    if msg.facts:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{slack_escape(k)}*\n{slack_escape(v) or '-'}", 2000)}
            for k, v in msg.facts[:10]]})
    if msg.links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": _cut(label, 75)}, "url": url[:3000]}
            for label, url in msg.links[:5]]})
    if msg.context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(slack_escape(msg.context),
                                                                                      3000)}]})
    fallback = f"{msg.icon + ' ' if msg.icon else ''}{msg.title}"
    return {"text": _cut(slack_escape(fallback), 3000), "blocks": blocks}


# -- Microsoft Teams ----------------------------------------------------------------------------
_MD = "\\`*_{}[]()#+-!<>|~"


def teams_escape(text: str) -> str:
    """Markdown characters an Adaptive Card TextBlock would read, backslash-escaped."""
    return "".join("\\" + c if c in _MD else c for c in str(text))


def teams_card(msg: ChatMessage) -> dict:
    """The message an incoming webhook or a Workflows "post to a channel" flow takes: one Adaptive
    Card (schema 1.4) as an attachment."""
    body: list[dict] = [{"type": "TextBlock", "text": teams_escape(_cut(msg.title, 300)), "weight": "Bolder",
                         "size": "Medium", "wrap": True}]
    for line in msg.lines:
        body.append({"type": "TextBlock", "text": teams_escape(_cut(line, 2000)), "wrap": True})
    if msg.facts:
        body.append({"type": "FactSet", "facts": [{"title": teams_escape(k), "value": teams_escape(v) or "-"}
                                                   for k, v in msg.facts[:10]]})
    if msg.context:
        body.append({"type": "TextBlock", "text": teams_escape(msg.context), "isSubtle": True, "size": "Small",
                     "wrap": True})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": body,
            "actions": [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in msg.links[:5]]}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
