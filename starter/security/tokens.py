"""API bearer tokens: created once, shown once, kept as a SHA-256 digest, revocable.

A token is `csp_` + 43 URL-safe characters (256 random bits), so a plain SHA-256 is enough to
keep it (no dictionary can reach it; a slow hash would only slow every request). Each token has
a name (the actor recorded on every change made with it) and scopes:

- `read`: GET endpoints (accounts, plays, outbox);
- `steer`: move a renewal date, mark renewed or churned, complete a task;
- `launch`: start onboarding and renewal plays;
- `admin`: everything above.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

SCOPES = ("read", "steer", "launch", "admin")
PREFIX = "csp_"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# last_used_at is written at most this often per token, not on every request.
_TOUCH_EVERY = timedelta(minutes=1)


class TokenError(ValueError):
    """A token request that cannot be done, said plainly (bad name, unknown scope, no such token)."""


@dataclass(frozen=True)
class ApiToken:
    """A token's record (never the token): its name, scopes, who made it and when, its expiry
    and last use (UTC), and when it was revoked."""

    id: int
    name: str
    scopes: tuple[str, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """`admin` grants every scope; the others only themselves."""
        return "admin" in self.scopes or scope in self.scopes


def digest(token: str) -> str:
    """The SHA-256 (hex) a token is kept and looked up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _row(r: asyncpg.Record) -> ApiToken:
    return ApiToken(id=r["id"], name=r["name"], scopes=tuple(r["scopes"]), created_by=r["created_by"],
                    created_at=r["created_at"], expires_at=r["expires_at"], last_used_at=r["last_used_at"],
                    revoked_at=r["revoked_at"])


def check_request(name: str, scopes: list[str]) -> tuple[str, list[str]]:
    """The name and scopes as stored, or TokenError naming what is wrong."""
    name = name.strip().lower()
    if not NAME.match(name):
        raise TokenError(f"name: {name!r} must be 1-63 lower-case letters, digits, '.', '_' or '-' "
                         "(it is recorded as the actor of every change)")
    wanted = sorted({s.strip().lower() for s in scopes if s.strip()})
    if not wanted:
        raise TokenError(f"scope: give at least one of {', '.join(SCOPES)}")
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise TokenError(f"scope: unknown {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    return name, wanted


async def create_token(pool: asyncpg.Pool, name: str, scopes: list[str], created_by: str,
                       expires_in_days: int | None = None) -> tuple[str, ApiToken]:
    """A new token: (the token itself, shown once and never stored; its record). TokenError when
    the name is malformed or taken by a live token, or a scope is unknown."""
    name, wanted = check_request(name, scopes)
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise TokenError("expires: between 1 and 3650 days")
    token = PREFIX + secrets.token_urlsafe(32)
    expires = datetime.now(timezone.utc) + timedelta(days=expires_in_days) if expires_in_days else None
    try:
        row = await pool.fetchrow(
            "INSERT INTO api_tokens (name, token_hash, scopes, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)"
            " RETURNING *", name, digest(token), wanted, created_by, expires,
        )
    except asyncpg.UniqueViolationError:
        raise TokenError(f"name: a live token is already called {name!r}; revoke it first or choose another name") \
            from None
    return token, _row(row)


async def revoke_token(pool: asyncpg.Pool, name: str, revoked_by: str) -> ApiToken:
    """Revoke the live token called `name` (requests with it are refused from now on)."""
    row = await pool.fetchrow(
        "UPDATE api_tokens SET revoked_at = now(), revoked_by = $2 WHERE name = $1 AND revoked_at IS NULL"
        " RETURNING *", name.strip().lower(), revoked_by,
    )
    if row is None:
        raise TokenError(f"name: no live token called {name!r}")
    return _row(row)


async def list_tokens(pool: asyncpg.Pool, include_revoked: bool = False) -> list[ApiToken]:
    """Live tokens by name (and the revoked ones after them, if asked)."""
    rows = await pool.fetch(
        "SELECT * FROM api_tokens WHERE $1 OR revoked_at IS NULL ORDER BY revoked_at IS NOT NULL, name, id",
        include_revoked,
    )
    return [_row(r) for r in rows]


async def token_for(pool: asyncpg.Pool, presented: str) -> ApiToken | None:
    """The live token `presented` is, or None (unknown, revoked, expired or malformed)."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    row = await pool.fetchrow(
        "SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())", digest(presented),
    )
    if row is None:
        return None
    now = datetime.now(timezone.utc)
    if row["last_used_at"] is None or now - row["last_used_at"] > _TOUCH_EVERY:
        await pool.execute("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1", row["id"], now)
    return _row(row)
