"""Console users, login sessions and CSRF tokens.

Passwords are argon2id hashes (argon2-cffi, the maintained binding the
Password Hashing Competition's winner ships); a session cookie carries a
random token whose SHA-256 is the session row's key, so the database never
holds a live cookie. Each session has its own CSRF token, which every form
posts back; the login form, before any session exists, uses a double-submit
cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.settings import Settings

SESSION_COOKIE = "csplay_session"
LOGIN_CSRF_COOKIE = "csplay_login_csrf"
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a wrong e-mail costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class LoginRefused(Exception):
    """Shown to the person as it is: it never says whether the e-mail exists."""


@dataclass(frozen=True)
class ConsoleUser:
    email: str
    name: str
    csrf_token: str
    token_hash: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")


async def add_user(pool: asyncpg.Pool, email: str, name: str, password: str) -> bool:
    """Create the user, or set a new password (ending their sessions); True if created."""
    check_password_rules(password)
    email = email.strip().lower()
    if "@" not in email or not name.strip():
        raise ValueError("a user needs an e-mail address and a name")
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            "INSERT INTO console_users (email, name, password_hash) VALUES ($1, $2, $3)"
            " ON CONFLICT (email) DO UPDATE SET name = $2, password_hash = $3, failed_logins = 0,"
            " locked_until = NULL RETURNING (xmax = 0)",
            email, name.strip(), _hasher.hash(password),
        )
        await conn.execute("DELETE FROM console_sessions WHERE email = $1", email)
    return bool(created)


async def log_in(pool: asyncpg.Pool, settings: Settings, email: str, password: str) -> tuple[str, str]:
    """Check the password and open a session: (cookie token, its name). Failures count
    towards a temporary lock-out of the account, so a password cannot be guessed online."""
    email = email.strip().lower()
    now = datetime.now(timezone.utc)
    row = await pool.fetchrow("SELECT * FROM console_users WHERE email = $1", email)
    if row is None:
        _verify(_DUMMY_HASH, password)
        raise LoginRefused("wrong e-mail or password")
    if row["locked_until"] and row["locked_until"] > now:
        minutes = max(1, round((row["locked_until"] - now).total_seconds() / 60))
        raise LoginRefused(f"too many failed logins; try again in {minutes} min")
    if not _verify(row["password_hash"], password):
        failed = row["failed_logins"] + 1
        lock = failed >= settings.console_max_failed_logins
        await pool.execute(
            "UPDATE console_users SET failed_logins = $2, locked_until = $3 WHERE email = $1",
            email, 0 if lock else failed, now + timedelta(minutes=settings.console_lockout_minutes) if lock else None,
        )
        raise LoginRefused("wrong e-mail or password")
    if _hasher.check_needs_rehash(row["password_hash"]):
        await pool.execute("UPDATE console_users SET password_hash = $2 WHERE email = $1", email,
                           _hasher.hash(password))
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM console_sessions WHERE expires_at < $1", now)
        await conn.execute(
            "INSERT INTO console_sessions (token_hash, email, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
            _digest(token), email, secrets.token_urlsafe(32), now + timedelta(hours=settings.console_session_hours),
        )
        await conn.execute("UPDATE console_users SET failed_logins = 0, locked_until = NULL, last_login_at = $2"
                           " WHERE email = $1", email, now)
    return token, row["name"]


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def session_user(pool: asyncpg.Pool, token: str | None) -> ConsoleUser | None:
    if not token:
        return None
    row = await pool.fetchrow(
        "SELECT s.token_hash, s.csrf_token, u.email, u.name FROM console_sessions s"
        " JOIN console_users u ON u.email = s.email WHERE s.token_hash = $1 AND s.expires_at > now()",
        _digest(token),
    )
    if row is None:
        return None
    return ConsoleUser(email=row["email"], name=row["name"], csrf_token=row["csrf_token"],
                       token_hash=row["token_hash"])


async def log_out(pool: asyncpg.Pool, user: ConsoleUser) -> None:
    await pool.execute("DELETE FROM console_sessions WHERE token_hash = $1", user.token_hash)


async def set_flash(pool: asyncpg.Pool, user: ConsoleUser, kind: str, text: str, lines: list[str] | None = None) -> None:
    """The outcome of an action, shown once on the page the browser is sent to next."""
    await pool.execute("UPDATE console_sessions SET flash = $2 WHERE token_hash = $1", user.token_hash,
                       {"kind": kind, "text": text, "lines": lines or []})


async def take_flash(pool: asyncpg.Pool, user: ConsoleUser) -> dict | None:
    raw = await pool.fetchval(
        "UPDATE console_sessions s SET flash = NULL FROM console_sessions old"
        " WHERE s.token_hash = $1 AND old.token_hash = s.token_hash RETURNING old.flash", user.token_hash,
    )
    return raw or None
