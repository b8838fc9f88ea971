"""The audit log: who did what, when, from where, to what, and how it ended.

One append-only table (`audit_log`, migration 0020: a trigger refuses UPDATE, DELETE and
TRUNCATE). Every entry point writes here: the HTTP API (actor: the token's name), the console
(actor: the user's e-mail), the CLI (actor: cli:<login>), logins and failed logins.

Use `audit(...)` for a one-off entry, or `audited(...)` around an action so its outcome is
recorded whatever happens:

    async with audited(pool, actor, "pause", workflow_id, account_id="acme"):
        await steering.pause_play(...)

A refusal (SteeringError, a 4xx) is recorded as `refused`, any other exception as `failed`
(and re-raised); the action's own success as `ok`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import AsyncIterator, Literal

import asyncpg

from core.logs import get_logger
from core.text import header_safe

log = get_logger("audit")
ActorKind = Literal["token", "user", "cli", "system", "anonymous"]
Outcome = Literal["ok", "refused", "failed"]


@dataclass(frozen=True)
class Actor:
    """Who is acting: a token (name), a console user (e-mail, role), the CLI (cli:<login>), the
    system or an anonymous caller; `ip` is the client's address as the service saw it."""

    name: str
    kind: ActorKind
    ip: str | None = None
    role: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def __str__(self) -> str:
        return self.name


@dataclass
class Entry:
    """What `audited` records; the action may add `detail` (e.g. the new date) before it ends."""

    detail: str = ""
    account_id: str | None = None


async def audit(pool: asyncpg.Pool, actor: Actor | str, action: str, object: str = "", outcome: Outcome = "ok",
                ip: str | None = None, *, account_id: str | None = None, detail: str = "") -> None:
    """Append one entry. `actor` is an Actor or a plain name (then of kind `system`); `ip`
    defaults to the actor's. Values are made one-line and cut (core.text.header_safe), so a
    hostile value cannot forge a second entry in a log reader. Never raises: a failed write is
    logged as an error (the action it records has already happened)."""
    if isinstance(actor, Actor):
        name, kind, ip = actor.name, actor.kind, ip or actor.ip
    else:
        name, kind = actor, "system"
    try:
        await pool.execute(
            "INSERT INTO audit_log (actor, actor_kind, source_ip, action, object, account_id, outcome, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            header_safe(name, 200) or "?", kind, ip, header_safe(action, 100), header_safe(object, 300),
            account_id, outcome, header_safe(detail, 1000),
        )
    except Exception as exc:  # the audit must not turn a done action into an error page
        log.error("audit.write_failed", action=action, object=object, error=f"{type(exc).__name__}: {exc}")


def _refusal(exc: BaseException) -> bool:
    from fastapi import HTTPException

    from starter.steering import SteeringError

    if isinstance(exc, SteeringError):
        return exc.status < 500
    if isinstance(exc, HTTPException):
        return exc.status_code < 500
    return type(exc).__name__ in ("Refused", "PlaybookError", "WorkflowUpdateFailedError", "ValueError")


@asynccontextmanager
async def audited(pool: asyncpg.Pool, actor: Actor | str, action: str, object: str = "", *,
                  account_id: str | None = None, detail: str = "") -> AsyncIterator[Entry]:
    """Record the action's outcome when the block ends: ok, refused (a 4xx-like refusal, with its
    message) or failed (any other exception, re-raised)."""
    entry = Entry(detail=detail, account_id=account_id)
    try:
        yield entry
    except BaseException as exc:
        outcome: Outcome = "refused" if _refusal(exc) else "failed"
        why = str(exc) or type(exc).__name__
        await audit(pool, actor, action, object, outcome, account_id=entry.account_id,
                    detail=f"{entry.detail}; {why}" if entry.detail else why)
        raise
    await audit(pool, actor, action, object, "ok", account_id=entry.account_id, detail=entry.detail)


async def audit_rows(pool: asyncpg.Pool, *, account_id: str | None = None, actor: str | None = None,
                     action: str | None = None, outcome: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, before_id: int | None = None,
                     limit: int = 100) -> list[asyncpg.Record]:
    """Entries newest first, filtered (actor and action match as prefixes, case-insensitive);
    `before_id` pages back (keyset, so a page number cannot be made expensive)."""
    return await pool.fetch(
        "SELECT id, at, actor, actor_kind, source_ip, action, object, account_id, outcome, detail FROM audit_log"
        " WHERE ($1::text IS NULL OR account_id = $1) AND ($2::text IS NULL OR lower(actor) LIKE lower($2) || '%')"
        " AND ($3::text IS NULL OR action LIKE $3 || '%') AND ($4::text IS NULL OR outcome = $4)"
        " AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6)"
        " AND ($7::bigint IS NULL OR id < $7) ORDER BY id DESC LIMIT $8",
        account_id, _like_safe(actor), _like_safe(action), outcome, since, until, before_id, limit,
    )


def _like_safe(value: str | None) -> str | None:
    if not value:
        return None
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
