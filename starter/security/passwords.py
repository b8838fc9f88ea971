"""Console passwords: the policy, and argon2id hashing off the event loop.

Hashes are argon2id with OWASP's parameters (Password Storage Cheat Sheet: 19 MiB, 2 passes, one
lane), about 30 ms of one core each on an idle machine; older hashes (argon2-cffi's defaults)
still verify and are rehashed at the next login. Done on the event loop, 16 people logging in at
once stalled every other request for seconds; here they run on one worker thread (the argon2
binding releases the GIL, and one lane keeps a burst of logins to one core, leaving the other to
the service), and at most `login_max_waiting` may queue: beyond that the caller gets LoginBusy
(the console answers 503 with Retry-After).

The policy (NIST SP 800-63B section 5.1.1.2): at least 10 characters, at most 128, not built
on the person's name or e-mail, and not guessable: zxcvbn (Dropbox's estimator, with its lists
of common and leaked passwords, names and words) must rate it 3 of 4 or better.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import AsyncIterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

MIN_LENGTH = 10
MAX_LENGTH = 128
MIN_SCORE = 3

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
_waiting = 0
# Verified against when there is no real hash to check (unknown e-mail, throttled client), so
# every refusal costs the same time as a wrong password.
DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class WeakPassword(ValueError):
    """The password breaks the policy; the message says which rule, for the person to fix."""


class LoginBusy(Exception):
    """Too many logins are waiting for a hashing thread: try again in a few seconds."""


def check_policy(password: str, email: str = "", name: str = "") -> None:
    """Raise WeakPassword naming the broken rule: length, the person's own name or e-mail, or a
    zxcvbn score under 3 (with its warning, e.g. 'This is similar to a commonly used password')."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password: at most {MAX_LENGTH} characters")
    personal = {p for p in re.split(r"[^a-z0-9]+", f"{email} {name}".lower()) if len(p) >= 3}
    personal -= {"com", "org", "net", "example"}
    lowered = password.lower()
    for part in sorted(personal):
        if part in lowered:
            raise WeakPassword("password: must not contain your name or e-mail address")
    verdict = zxcvbn(password, user_inputs=sorted(personal))
    if verdict["score"] < MIN_SCORE:
        feedback = verdict["feedback"]
        why = feedback.get("warning") or "it is too easy to guess"
        hint = " ".join(feedback.get("suggestions") or [])
        raise WeakPassword(f"password: too easy to guess ({why.rstrip('.')}). {hint}".strip())


_limit = {"waiting": 16}


@asynccontextmanager
async def hashing_place() -> AsyncIterator[None]:
    """A place in the hashing queue for one login, or LoginBusy at once when `login_max_waiting`
    are already queued. Taken before anything is counted, so a busy answer changes nothing."""
    global _waiting
    if _waiting >= _limit["waiting"]:
        raise LoginBusy("too many logins at once; try again in a few seconds")
    _waiting += 1
    try:
        yield
    finally:
        _waiting -= 1


async def _on_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(_threads, fn, *args)


def set_max_waiting(n: int) -> None:
    """How many hash or verify calls may wait for a thread before LoginBusy (LOGIN_MAX_WAITING)."""
    _limit["waiting"] = max(1, n)


async def hash_password(password: str) -> str:
    """argon2id hash (PHC string) of `password`, computed on the hashing thread."""
    return await _on_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True if `password` matches; with no hash (None), checks against a dummy and returns False,
    taking the same time. Runs on the hashing thread (callers hold a `hashing_place`)."""
    ok = await _on_thread(_verify, password_hash or DUMMY_HASH, password[:MAX_LENGTH * 4])
    return ok and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """True if the hash was made with other parameters than today's (rehash at the next login)."""
    return _hasher.check_needs_rehash(password_hash)
