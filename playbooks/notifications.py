"""The schema of `playbooks/notifications.yaml`: which play events go to which Slack or Microsoft
Teams channel, and which other tools are sent them as signed webhooks.

Routing is content a CS leader edits, like the playbooks (and shaped to move into an
organisation's profile folder as it is): named `destinations` (a Slack incoming webhook, a Slack
channel the bot posts to, a Teams incoming webhook or Workflows URL); the destinations of each
staff or account role (`roles`) and of each customer (`accounts`: an Enterprise customer's
dedicated channel, seed 004); `routes` (events, an optional `when` filter, and targets); and
`webhooks`, the outbound subscriptions. Secrets are never here: a webhook destination names its
URL in CHAT_WEBHOOK_URLS, a subscription its signing secret in OUTBOUND_WEBHOOK_SECRETS, and a
destination or subscription whose secret is not configured is off. Problems are reported as
`file:line: field: message` (playbooks/loader.py).

A route's targets: a destination's name; `account` (the account's own destinations); `role` (the
destinations of the role the event names: an escalation's `to_role`, a task's owner role); or
`role:<role>` (that role's destinations, e.g. `role:cs_manager`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from core.models import ACCOUNT_ID, ACCOUNT_ROLES, STAFF_ROLES, Severity, Tier, context_profile
from playbooks.schema import Content
from playbooks.scoring import Band

NOTIFICATIONS_FILE = "notifications.yaml"
NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# The events of activities/play_events.py a route or a subscription may name (account.risk_updated
# is internal: it only writes the CRM's account properties).
EventName = Literal["play.started", "play.step_done", "play.finished", "task.created", "task.completed",
                    "task.cancelled", "play.escalated", "account.band_changed", "account.risk_flagged",
                    "email.sent", "ticket.incident"]
PLAYBOOKS = ("onboarding", "renewal", "sla", "churn", "nps")
ROLE_NAMES: tuple[str, ...] = ACCOUNT_ROLES + STAFF_ROLES  # and the active profile's staff_roles


class Destination(Content):
    """One place messages go; exactly one of the three. `slack_webhook` / `teams_webhook`: the name
    under which CHAT_WEBHOOK_URLS holds the incoming-webhook URL. `slack_channel`: the id of a
    channel (C0123ABCD; in Slack: the channel's details, at the bottom) the bot (SLACK_BOT_TOKEN,
    scopes chat:write and channels:history) is a member of; an id, not a #name, because a retry
    reads the channel's history to find a message already posted."""

    slack_webhook: str | None = Field(None, pattern=NAME)
    slack_channel: str | None = Field(None, pattern=r"^[CG][A-Z0-9]{8,12}$")
    teams_webhook: str | None = Field(None, pattern=NAME)

    @model_validator(mode="after")
    def _one(self) -> "Destination":
        given = [k for k in ("slack_webhook", "slack_channel", "teams_webhook") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("slack_webhook: give exactly one of slack_webhook, slack_channel, teams_webhook")
        return self

    @property
    def channel(self) -> Literal["slack_webhook", "slack_api", "teams_webhook"]:
        return "slack_api" if self.slack_channel else "slack_webhook" if self.slack_webhook else "teams_webhook"

    @property
    def secret_name(self) -> str | None:
        """The CHAT_WEBHOOK_URLS entry it needs (None: the Slack bot token)."""
        return self.slack_webhook or self.teams_webhook


class When(Content):
    """Which events of a route's kinds it takes; every list given must match (empty: any).
    `steps` and `templates` are shell-style globs (`p0-update/*`, `nps/detractor_*`)."""

    playbooks: list[Literal["onboarding", "renewal", "sla", "churn", "nps"]] = []
    steps: list[str] = []
    templates: list[str] = []
    levels: list[int] = Field([], description="escalation levels, 1-4")
    to_bands: list[Band] = []
    priorities: list[Severity] = Field([], description="the event's priority: a task's, an escalation's severity")
    tiers: list[Tier] = []
    accounts: list[str] = []

    @field_validator("levels")
    @classmethod
    def _levels(cls, levels: list[int]) -> list[int]:
        for level in levels:
            if not 1 <= level <= 4:
                raise ValueError(f"{level} is not an escalation level (1-4)")
        return levels

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, ids: list[str]) -> list[str]:
        import re

        for account_id in ids:
            if not re.match(ACCOUNT_ID, account_id):
                raise ValueError(f"{account_id!r} is not an account id")
        return ids

    def matches(self, event: dict, tier: str | None, any_tier: bool = False) -> bool:
        """Does this play event (a play_events row as a dict: event, playbook, step, severity,
        account_id, data) pass the filter? `tier`: the account's tier, if any; `any_tier`: pass
        the tier condition whatever the account's (to know whether the account is worth reading)."""
        data = event.get("data") or {}
        checks = [
            (self.playbooks, lambda: event.get("playbook") in self.playbooks),
            (self.steps, lambda: any(fnmatch.fnmatchcase(event.get("step") or "", g) for g in self.steps)),
            (self.templates, lambda: any(fnmatch.fnmatchcase(data.get("template") or "", g) for g in self.templates)),
            (self.levels, lambda: data.get("level") in self.levels),
            (self.to_bands, lambda: data.get("to_band") in self.to_bands),
            (self.priorities, lambda: event.get("severity") in self.priorities),
            (self.tiers, lambda: any_tier or tier in self.tiers),
            (self.accounts, lambda: event.get("account_id") in self.accounts),
        ]
        return all(check() for given, check in checks if given)


class Route(Content):
    """Events of these kinds (passing `when`) go to these targets, once per event and destination."""

    name: str = Field(min_length=1, max_length=200)
    events: list[EventName] = Field(min_length=1)
    when: When = When()
    to: list[str] = Field(min_length=1)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Subscription(Content):
    """An outbound webhook: every event of `events` (passing `when`) is POSTed to `url`, signed
    per Standard Webhooks with OUTBOUND_WEBHOOK_SECRETS[name] (off while that is not set)."""

    name: str = Field(pattern=NAME)
    url: str = Field(max_length=2000)
    events: list[EventName] = Field(min_length=1)
    when: When = When()
    description: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("must be https (plain http only to this machine: localhost, 127.0.0.1)")
        if parts.username or parts.password:
            raise ValueError("must not carry a user name or password (the signature authenticates us)")
        if any(c in url for c in "\r\n\t "):
            raise ValueError("must not contain spaces or line breaks")
        return url


class NotificationsContent(Content):
    """`playbooks/notifications.yaml`, validated: every target a route names exists."""

    version: Literal[1] = 1
    destinations: dict[str, Destination] = {}
    roles: dict[str, list[str]] = {}
    accounts: dict[str, list[str]] = {}
    routes: list[Route] = []
    webhooks: list[Subscription] = []

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> "NotificationsContent":
        profile = context_profile(info)
        role_names = ROLE_NAMES + tuple(r for r in (profile.staff_roles if profile else ()) if r not in ROLE_NAMES)
        import re

        for name in self.destinations:
            if not re.match(NAME, name):
                raise ValueError(f"destinations.{name}: a name is lower-case letters, digits, - and _")
        for role, names in self.roles.items():
            if role not in role_names:
                raise ValueError(f"roles.{role}: not a role ({', '.join(role_names)})")
            self._known(names, f"roles.{role}")
        for account_id, names in self.accounts.items():
            if not re.match(ACCOUNT_ID, account_id):
                raise ValueError(f"accounts.{account_id}: not an account id")
            self._known(names, f"accounts.{account_id}")
        for i, route in enumerate(self.routes):
            for target in route.to:
                if target in ("account", "role"):
                    continue
                if target.startswith("role:"):
                    role = target.split(":", 1)[1]
                    if role not in role_names:
                        raise ValueError(f"routes[{i}].to: {role!r} is not a role ({', '.join(role_names)})")
                    continue
                self._known([target], f"routes[{i}].to")
        seen = set()
        for i, sub in enumerate(self.webhooks):
            if sub.name in seen:
                raise ValueError(f"webhooks[{i}].name: {sub.name!r} is listed twice")
            seen.add(sub.name)
        return self

    def _known(self, names: list[str], where: str) -> None:
        for name in names:
            if name not in self.destinations:
                raise ValueError(f"{where}: no destination {name!r} (destinations: "
                                 f"{', '.join(sorted(self.destinations)) or 'none'})")


def load_notifications(playbooks_dir: Path) -> NotificationsContent:
    """notifications.yaml of the folder, validated (an empty content when the file is absent:
    nothing is routed). Raises PlaybookError (file:line: field: message)."""
    from playbooks.loader import _load_config

    path = Path(playbooks_dir) / NOTIFICATIONS_FILE
    if not path.is_file():
        return NotificationsContent()
    return _load_config(path, NotificationsContent)
