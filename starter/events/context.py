"""What acting on an event needs (Temporal, PostgreSQL, settings, the content in force) and what
acting on one says back (`Result`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncpg
from temporalio.client import Client

from core.settings import Settings
from playbooks.crm_connections import CONNECTIONS_FILE, Connection, Connections, load_connections
from playbooks.crm_mapping import CurrenciesContent, Mapping, TeamContent
from playbooks.loader import _load_config
from playbooks.reloading import cached_content
from playbooks.triggers import TriggersContent
from starter.book.store import Book
from starter.events.routing import WaitFor, current_triggers
from starter.lookups import CrmLookups

Status = Literal["done", "waiting", "refused"]


@dataclass
class Result:
    """What became of one event: `outcome` in words (shown to the vendor, the console and the
    log), its status, the account and play it reached, and what it waits for."""

    outcome: str
    status: Status = "done"
    account_id: str | None = None
    workflow_id: str | None = None
    trigger: str | None = None
    wait: WaitFor | None = None

    @classmethod
    def waiting(cls, wait: WaitFor, account_id: str | None = None) -> "Result":
        parts = [*wait.done, f"waiting: {wait.reason}"]
        return cls("; ".join(parts), "waiting", account_id=account_id, wait=wait)


_cached = cached_content  # content reloaded when its files change (playbooks/reloading.py)


def crm_dir(settings: Settings) -> Path:
    """The folder of the CRM mappings and connections.yaml (playbooks/crm)."""
    return Path(settings.playbooks_dir) / "crm"


def current_connections(settings: Settings) -> Connections:
    """connections.yaml and its mappings as they are now. Raises PlaybookError."""
    folder = crm_dir(settings)
    files = [folder / CONNECTIONS_FILE, *sorted(folder.glob("*.yaml"))]
    return _cached(("connections", str(folder)), files, lambda: load_connections(folder))


@dataclass
class Context:
    """One delivery's (or one sweep's) view: `follow_ups` collects the objects that became known
    while acting, whose waiting events are acted on next."""

    client: Client
    pool: asyncpg.Pool
    settings: Settings
    lookups: CrmLookups | None = None
    follow_ups: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def __post_init__(self):
        if self.lookups is None:
            self.lookups = CrmLookups(self.settings)

    @property
    def triggers(self) -> TriggersContent:
        return current_triggers(self.settings)

    def connections(self) -> Connections:
        return current_connections(self.settings)

    def connection(self, name: str) -> Connection:
        found = self.connections().by_name.get(name)
        if found is None:
            raise LookupError(f"connection {name!r} is no longer in {CONNECTIONS_FILE}")
        return found

    def mapping(self, name: str) -> Mapping:
        return self.connection(name).mapping

    def book(self, mapping: Mapping) -> Book:
        folder = crm_dir(self.settings)
        team = _cached(("team", str(folder)), [folder / "team.yaml"],
                       lambda: _load_config(folder / "team.yaml", TeamContent))
        rates = _cached(("rates", str(folder)), [folder / "currencies.yaml"],
                        lambda: _load_config(folder / "currencies.yaml", CurrenciesContent))
        return Book(self.pool, mapping, team, rates, apply=True)

    def resolved(self, connection: str, object_type: str, crm_ids: list[str]) -> None:
        """These objects are known now: act on what waits for them."""
        if crm_ids:
            self.follow_ups.append((connection, object_type, list(crm_ids)))
