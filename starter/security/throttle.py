"""Login throttling that an attacker cannot turn against someone else (OWASP Authentication
Cheat Sheet, "Login Throttling" and "Device Cookies").

Every attempt takes a place in its counters *before* the password is checked, in one atomic
statement per counter, so parallel guesses cannot slip past the limit (81 of 100 concurrent
guesses were checked before); a successful login gives its places back. Counters, each over a
window of `console_lockout_minutes` (a counter's window restarts when it has run out):

- `device:<cookie digest>`: a browser that logged in to this account before (a random cookie
  set on success). Only that browser counts here, so guesses from elsewhere never lock a person
  out of their usual browser, however many there are;
- `pair:<e-mail>|<ip>`: one client guessing one account (`console_max_failed_logins`);
- `ip:<ip>`: one client guessing many accounts (`login_max_failures_per_ip`);
- `acct:<e-mail>`: one account guessed from many clients without its device cookie
  (`login_max_failures_per_account`); slows a distributed attack, never the person's browser.

A throttled attempt gets the same answer, after the same work (one argon2 verification), as an
unknown e-mail or a wrong password: nobody learns from it which e-mails exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from core.settings import Settings


@dataclass(frozen=True)
class Claim:
    """The counters an attempt took a place in, and whether every one was within its limit."""

    keys: tuple[str, ...]
    allowed: bool


def keys_for(email: str, ip: str, device_ok: bool, device_hash: str | None, settings: Settings) -> list[tuple[str, int]]:
    """(counter key, limit) pairs an attempt counts against."""
    if device_ok and device_hash:
        return [(f"device:{device_hash}", settings.console_max_failed_logins)]
    return [(f"pair:{email}|{ip}", settings.console_max_failed_logins),
            (f"ip:{ip}", settings.login_max_failures_per_ip),
            (f"acct:{email}", settings.login_max_failures_per_account)]


async def claim(pool: asyncpg.Pool, settings: Settings, counters: list[tuple[str, int]]) -> Claim:
    """Take a place in every counter (atomically each, so concurrent attempts are counted one by
    one); allowed only if no counter went over its limit."""
    minutes = settings.console_lockout_minutes
    allowed = True
    async with pool.acquire() as conn:
        for key, limit in counters:
            count = await conn.fetchval(
                "INSERT INTO login_throttle AS t (key, failures, window_started) VALUES ($1, 1, now())"
                " ON CONFLICT (key) DO UPDATE SET"
                "  failures = CASE WHEN t.window_started < now() - make_interval(mins => $2) THEN 1"
                "                  ELSE t.failures + 1 END,"
                "  window_started = CASE WHEN t.window_started < now() - make_interval(mins => $2) THEN now()"
                "                        ELSE t.window_started END"
                " RETURNING failures", key, minutes,
            )
            allowed = allowed and count <= limit
    return Claim(tuple(k for k, _ in counters), allowed)


async def release(pool: asyncpg.Pool, claim: Claim) -> None:
    """After a successful login: the client's and browser's counters start again, and the shared
    ones (ip, account) give back the place this attempt took."""
    async with pool.acquire() as conn:
        for key in claim.keys:
            if key.startswith(("pair:", "device:")):
                await conn.execute("DELETE FROM login_throttle WHERE key = $1", key)
            else:
                await conn.execute("UPDATE login_throttle SET failures = greatest(failures - 1, 0) WHERE key = $1",
                                   key)


async def forget_old(pool: asyncpg.Pool, settings: Settings) -> None:
    """Drop counters whose window ran out long ago (called now and then by logins)."""
    await pool.execute("DELETE FROM login_throttle WHERE window_started < now() - make_interval(mins => $1)",
                       settings.console_lockout_minutes * 4)
