"""Console users, roles, login sessions and CSRF tokens.

Passwords are argon2id hashes, computed off the event loop (starter/security/passwords.py) and
held to a policy (length, not the person's name, zxcvbn score 3+). A session cookie carries a
random token whose SHA-256 is the session row's key, so the database never holds a live
cookie. Each session has its own CSRF token, which every form posts back; the login form,
before any session exists, uses a double-submit cookie instead.

Logins are throttled per client, per account and per trusted browser (starter/security/
throttle.py); unknown e-mail, wrong password and throttled attempt get the same answer after
the same work. Every login and failed login is in the audit log.

Roles (migration 0020): admin > cs_manager > csm > viewer; see starter/console/access.py.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from core.metrics import count
from core.settings import Settings
from starter.security import throttle
from starter.security.audit import Actor, audit
from starter.security.passwords import (
    MIN_LENGTH as MIN_PASSWORD_LENGTH, LoginBusy, WeakPassword, check_policy, hash_password, hashing_place,
    needs_rehash, verify_password,
)

__all__ = ["MIN_PASSWORD_LENGTH", "LoginBusy", "WeakPassword"]

SESSION_COOKIE = "csplay_session"
LOGIN_CSRF_COOKIE = "csplay_login_csrf"
DEVICE_COOKIE = "csplay_device"
ROLES = ("viewer", "csm", "cs_manager", "admin")
ROLE_NAMES = {"viewer": "Viewer", "csm": "CSM", "cs_manager": "CS manager", "admin": "Admin"}
# The one answer to every refused login: it never says whether the e-mail exists or is throttled.
REFUSED = "Wrong e-mail or password, or too many attempts from here. Try again in a few minutes."


class LoginRefused(Exception):
    """Shown to the person as it is: it never says whether the e-mail exists."""


@dataclass(frozen=True)
class ConsoleUser:
    """The logged-in user of a request: e-mail, name, role, and their session's CSRF token."""

    email: str
    name: str
    csrf_token: str
    token_hash: str
    role: str = "viewer"

    def at_least(self, role: str) -> bool:
        """True if this user's role is `role` or above (viewer < csm < cs_manager < admin)."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def role_name(self) -> str:
        return ROLE_NAMES[self.role]


@dataclass(frozen=True)
class LoginResult:
    """A successful login: the session cookie's token, the person, and maybe a new trusted-browser cookie."""

    token: str
    name: str
    email: str
    device_token: str | None  # a new trusted-browser cookie to set, or None to keep the one sent


def digest(token: str) -> str:
    """SHA-256 (hex) of a cookie's token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


_digest = digest


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a posted CSRF token with the expected one."""
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).encode(), expected.encode())


def check_password_rules(password: str, email: str = "", name: str = "") -> None:
    """ValueError (WeakPassword) naming the broken rule; see starter/security/passwords.py."""
    check_policy(password, email, name)


def normal_email(email: str) -> str:
    """An e-mail as console users are keyed: trimmed, lower-cased, at most 320 characters."""
    return email.strip().lower()[:320]


async def add_user(pool: asyncpg.Pool, email: str, name: str, password: str, role: str | None = None) -> bool:
    """Create the user (role `viewer` unless given), or set a new password (and the role, if given)
    for one, ending their sessions; True if created. ValueError for a bad e-mail, name, role or a
    password the policy refuses."""
    email = normal_email(email)
    if "@" not in email or not name.strip():
        raise ValueError("a user needs an e-mail address and a name")
    if role is not None and role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    check_password_rules(password, email, name)
    password_hash = await hash_password(password)
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            "INSERT INTO console_users (email, name, password_hash, role) VALUES ($1, $2, $3, coalesce($4, 'viewer'))"
            " ON CONFLICT (email) DO UPDATE SET name = $2, password_hash = $3, role = coalesce($4, console_users.role),"
            " failed_logins = 0, locked_until = NULL RETURNING (xmax = 0)",
            email, name.strip(), password_hash, role,
        )
        await conn.execute("DELETE FROM console_sessions WHERE email = $1", email)
    return bool(created)


async def set_role(pool: asyncpg.Pool, email: str, role: str) -> None:
    """Change a user's role; their sessions end so the new role applies at once. LookupError if unknown."""
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("UPDATE console_users SET role = $2 WHERE email = $1 RETURNING 1",
                               normal_email(email), role) is None:
            raise LookupError(f"no console user {email!r}")
        await conn.execute("DELETE FROM console_sessions WHERE email = $1", normal_email(email))


async def set_disabled(pool: asyncpg.Pool, email: str, disabled: bool) -> None:
    """Disable a user (their sessions end, logins are refused) or enable them again."""
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE console_users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END"
            " WHERE email = $1 RETURNING 1", normal_email(email), disabled,
        )
        if done is None:
            raise LookupError(f"no console user {email!r}")
        if disabled:
            await conn.execute("DELETE FROM console_sessions WHERE email = $1", normal_email(email))
            await conn.execute("DELETE FROM login_devices WHERE email = $1", normal_email(email))


async def log_in(pool: asyncpg.Pool, settings: Settings, email: str, password: str, ip: str = "127.0.0.1",
                 device_token: str | None = None) -> LoginResult:
    """Check the password and open a session (`ip`: the client's address, `device_token`: its
    trusted-browser cookie if it sent one). Raises LoginRefused(REFUSED) for an unknown or
    disabled e-mail, a wrong password or a throttled client alike, each after one argon2
    verification and the same queries; LoginBusy when too many logins wait for a hashing thread."""
    return await attempt_login(pool, settings, email, password, ip, device_token)


async def attempt_login(pool: asyncpg.Pool, settings: Settings, email: str, password: str, ip: str,
                        device_token: str | None) -> LoginResult:
    """log_in itself; the hashing place is taken first, so a busy answer counts nothing."""
    async with hashing_place():  # LoginBusy here, before anything is counted
        return await _attempt_login(pool, settings, email, password, ip, device_token)


async def _attempt_login(pool: asyncpg.Pool, settings: Settings, email: str, password: str, ip: str,
                         device_token: str | None) -> LoginResult:
    email = normal_email(email)
    device_hash = digest(device_token) if device_token else None
    device_ok = bool(device_hash) and await pool.fetchval(
        "SELECT email = $2 FROM login_devices WHERE token_hash = $1", device_hash, email) is True
    claimed = await throttle.claim(pool, settings, throttle.keys_for(email, ip, device_ok, device_hash, settings))
    row = await pool.fetchrow("SELECT email, name, password_hash FROM console_users"
                              " WHERE email = $1 AND disabled_at IS NULL", email)
    checked = row["password_hash"] if row is not None and claimed.allowed else None
    if not await verify_password(checked, password):
        why = "unknown or disabled e-mail" if row is None else "throttled" if not claimed.allowed else "wrong password"
        await audit(pool, Actor(email if row else "(unknown e-mail)", "anonymous", ip), "login.failed",
                    f"user:{email}" if row else "", "refused", detail=why)
        count("login_failures", reason=why)
        raise LoginRefused(REFUSED)
    await throttle.release(pool, claimed)
    if needs_rehash(row["password_hash"]):
        await pool.execute("UPDATE console_users SET password_hash = $2 WHERE email = $1", email,
                           await hash_password(password))
    new_device = None
    if device_ok:
        await pool.execute("UPDATE login_devices SET last_used_at = now() WHERE token_hash = $1", device_hash)
    else:
        new_device = secrets.token_urlsafe(32)
        await pool.execute("INSERT INTO login_devices (token_hash, email) VALUES ($1, $2)", digest(new_device), email)
    token = await open_session(pool, settings, email)
    await audit(pool, Actor(email, "user", ip), "login", f"user:{email}", "ok", detail="password")
    return LoginResult(token=token, name=row["name"], email=email, device_token=new_device)


async def open_session(pool: asyncpg.Pool, settings: Settings, email: str) -> str:
    """A new session for `email` (password or single sign-on): the cookie token to set."""
    now = datetime.now(timezone.utc)
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM console_sessions WHERE expires_at < $1", now)
        await conn.execute(
            "INSERT INTO console_sessions (token_hash, email, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
            digest(token), email, secrets.token_urlsafe(32), now + timedelta(hours=settings.console_session_hours),
        )
        await conn.execute("UPDATE console_users SET last_login_at = $2 WHERE email = $1", email, now)
    if secrets.randbelow(50) == 0:
        await throttle.forget_old(pool, settings)
    return token


async def session_user(pool: asyncpg.Pool, token: str | None) -> ConsoleUser | None:
    """The user of a live session cookie (an enabled user, an unexpired session), else None."""
    if not token or len(token) > 200:
        return None
    row = await pool.fetchrow(
        "SELECT s.token_hash, s.csrf_token, u.email, u.name, u.role FROM console_sessions s"
        " JOIN console_users u ON u.email = s.email WHERE s.token_hash = $1 AND s.expires_at > now()"
        " AND u.disabled_at IS NULL",
        digest(token),
    )
    if row is None:
        return None
    return ConsoleUser(email=row["email"], name=row["name"], csrf_token=row["csrf_token"],
                       token_hash=row["token_hash"], role=row["role"])


async def log_out(pool: asyncpg.Pool, user: ConsoleUser) -> None:
    """End this session (the user's other sessions stay)."""
    await pool.execute("DELETE FROM console_sessions WHERE token_hash = $1", user.token_hash)


async def set_flash(pool: asyncpg.Pool, user: ConsoleUser, kind: str, text: str, lines: list[str] | None = None) -> None:
    """The outcome of an action, shown once on the page the browser is sent to next."""
    await pool.execute("UPDATE console_sessions SET flash = $2 WHERE token_hash = $1", user.token_hash,
                       {"kind": kind, "text": text, "lines": lines or []})


async def take_flash(pool: asyncpg.Pool, user: ConsoleUser) -> dict | None:
    """The outcome set by the last action, once: it is cleared as it is read."""
    raw = await pool.fetchval(
        "UPDATE console_sessions s SET flash = NULL FROM console_sessions old"
        " WHERE s.token_hash = $1 AND old.token_hash = s.token_hash RETURNING old.flash", user.token_hash,
    )
    return raw or None
