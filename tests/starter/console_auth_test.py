"""Console logins against the real database: hashes, the password policy, throttling that cannot be
turned against someone else, parallel guesses, one answer for every refusal, sessions, the user command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from core.settings import PROJECT_ROOT
from starter.console.auth import (
    REFUSED, LoginBusy, LoginRefused, LoginResult, add_user, log_in, log_out, session_user, set_disabled,
)
from starter.security.passwords import WeakPassword, set_max_waiting
from starter.console.data import timeline

PASSWORD = "correct horse battery"


async def test_passwords_are_stored_as_argon2id_hashes_and_sessions_as_token_digests(pool, settings):
    assert await add_user(pool, "Casey.Morgan@tai.example", "Casey Morgan", PASSWORD)
    row = await pool.fetchrow("SELECT * FROM console_users")
    assert row["email"] == "casey.morgan@tai.example" and row["role"] == "viewer"  # new users start read-only
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]
    first = await log_in(pool, settings, " CASEY.MORGAN@tai.example ", PASSWORD)
    assert first.name == "Casey Morgan" and first.device_token
    assert await pool.fetchval("SELECT count(*) FROM console_sessions WHERE token_hash = $1", first.token) == 0
    assert await pool.fetchval("SELECT count(*) FROM login_devices WHERE token_hash = $1", first.device_token) == 0
    user = await session_user(pool, first.token)
    assert user and user.email == "casey.morgan@tai.example" and len(user.csrf_token) >= 32 and user.role == "viewer"
    other = await log_in(pool, settings, "casey.morgan@tai.example", PASSWORD, device_token=first.device_token)
    assert other.device_token is None  # the browser is already trusted
    assert (await session_user(pool, other.token)).csrf_token != user.csrf_token  # one CSRF token per session
    await log_out(pool, user)
    assert await session_user(pool, first.token) is None
    assert await session_user(pool, other.token) is not None
    assert await session_user(pool, "made-up") is None and await session_user(pool, None) is None


async def test_unknown_users_expired_sessions_disabled_users_and_a_new_password(pool, settings):
    with pytest.raises(LoginRefused) as unknown:
        await log_in(pool, settings, "nobody@tai.example", PASSWORD)
    assert str(unknown.value) == REFUSED
    await add_user(pool, "lee@tai.example", "Lee", PASSWORD)
    token = (await log_in(pool, settings, "lee@tai.example", PASSWORD)).token
    await pool.execute("UPDATE console_sessions SET expires_at = now() - interval '1 minute'")
    assert await session_user(pool, token) is None
    token = (await log_in(pool, settings, "lee@tai.example", PASSWORD)).token
    assert not await add_user(pool, "lee@tai.example", "Lee Park", "another long password")
    assert await session_user(pool, token) is None  # a new password ends every session
    token = (await log_in(pool, settings, "lee@tai.example", "another long password")).token
    await set_disabled(pool, "lee@tai.example", True)
    assert await session_user(pool, token) is None  # disabling ends the sessions
    with pytest.raises(LoginRefused, match="Wrong e-mail or password"):
        await log_in(pool, settings, "lee@tai.example", "another long password")
    await set_disabled(pool, "lee@tai.example", False)
    assert await log_in(pool, settings, "lee@tai.example", "another long password")
    with pytest.raises(ValueError, match="e-mail address and a name"):
        await add_user(pool, "no-at-sign", "Lee", PASSWORD)
    with pytest.raises(ValueError, match="role"):
        await add_user(pool, "sam@tai.example", "Sam", PASSWORD, role="root")


@pytest.mark.parametrize(("password", "why"), [
    ("short", "at least 10 characters"),
    ("aaaaaaaaaa", "too easy to guess"),
    ("password123!", "commonly used password"),
    ("qwertyuiop", "too easy to guess"),
    ("Diana.Hoang-2027", "must not contain your name or e-mail"),
    ("x" * 129, "at most 128 characters"),
])
async def test_the_password_policy_refuses_weak_and_personal_passwords(pool, password, why):
    with pytest.raises(WeakPassword, match=why):
        await add_user(pool, "diana.hoang@tai.example", "Diana Hoang", password)
    assert await pool.fetchval("SELECT count(*) FROM console_users") == 0


async def test_five_wrong_passwords_throttle_that_client_not_the_person_elsewhere(pool, settings):
    await add_user(pool, "diana@tai.example", "Diana", PASSWORD)
    trusted = (await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="10.0.0.1")).device_token
    for _ in range(settings.console_max_failed_logins):
        with pytest.raises(LoginRefused):
            await log_in(pool, settings, "diana@tai.example", "guess", ip="192.0.2.66")
    with pytest.raises(LoginRefused) as throttled:  # even the right one, from that client, until the window ends
        await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="192.0.2.66")
    assert str(throttled.value) == REFUSED  # the same words as a wrong password
    # The attacker cannot lock Diana out: from her own browser, or another address, she gets in.
    assert await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="192.0.2.66", device_token=trusted)
    assert await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="10.0.0.2")
    await pool.execute("UPDATE login_throttle SET window_started = now() - interval '16 minutes'")
    assert await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="192.0.2.66")
    reasons = [r["detail"] for r in await pool.fetch(
        "SELECT detail FROM audit_log WHERE action = 'login.failed' ORDER BY id")]
    assert reasons == ["wrong password"] * 5 + ["throttled"]
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'login' AND outcome = 'ok'") == 4


@pytest.fixture
def cheap_hashes(monkeypatch):
    """argon2id with minimal cost, for tests that hash a hundred times on a busy machine: the
    throttle does not depend on the cost (the parameters travel in each hash)."""
    from argon2 import PasswordHasher

    from starter.security import passwords

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", cheap)
    monkeypatch.setattr(passwords, "DUMMY_HASH", cheap.hash("dummy password"))


async def test_guesses_from_many_addresses_slow_new_browsers_but_not_the_persons_own(pool, settings, cheap_hashes):
    await add_user(pool, "diana@tai.example", "Diana", PASSWORD)
    trusted = (await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="10.0.0.1")).device_token
    for n in range(settings.login_max_failures_per_account):
        with pytest.raises(LoginRefused):
            await log_in(pool, settings, "diana@tai.example", "guess", ip=f"198.51.100.{n}")
    with pytest.raises(LoginRefused):  # a browser the account never used, from a fresh address
        await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="203.0.113.7")
    assert await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="203.0.113.7", device_token=trusted)


async def test_one_hundred_parallel_guesses_check_only_five_passwords(pool, settings, cheap_hashes):
    """The bypass of issue 16: 81 of 100 concurrent guesses were checked, the right one got in."""
    await add_user(pool, "diana@tai.example", "Diana", PASSWORD)
    set_max_waiting(1000)
    try:
        guesses = [f"guess number {n}" for n in range(99)] + [PASSWORD]
        outcomes = await asyncio.gather(*(log_in(pool, settings, "diana@tai.example", g, ip="192.0.2.1")
                                          for g in guesses), return_exceptions=True)
    finally:
        set_max_waiting(settings.login_max_waiting)
    refused = [o for o in outcomes if isinstance(o, LoginRefused)]
    checked = await pool.fetchval("SELECT count(*) FROM audit_log WHERE detail = 'wrong password'")
    logged_in = [o for o in outcomes if not isinstance(o, Exception)]
    assert checked + len(logged_in) <= settings.console_max_failed_logins
    assert len(refused) + len(logged_in) == 100


async def test_every_refusal_costs_one_hash_on_a_worker_thread(pool, settings, monkeypatch):
    from starter.security import passwords

    calls: list[tuple[str, bool]] = []
    real = passwords._verify

    def spy(password_hash, password):
        calls.append((threading.current_thread().name, password_hash == passwords.DUMMY_HASH))
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", spy)
    await add_user(pool, "diana@tai.example", "Diana", PASSWORD)
    await set_disabled(pool, "diana@tai.example", False)
    for email, password, ip in [("nobody@tai.example", PASSWORD, "192.0.2.9"), ("diana@tai.example", "wrong", "192.0.2.9")]:
        with pytest.raises(LoginRefused):
            await log_in(pool, settings, email, password, ip=ip)
    for _ in range(5):
        with pytest.raises(LoginRefused):
            await log_in(pool, settings, "diana@tai.example", "wrong", ip="192.0.2.10")
    with pytest.raises(LoginRefused):  # throttled: checked against the dummy hash, same cost
        await log_in(pool, settings, "diana@tai.example", PASSWORD, ip="192.0.2.10")
    assert len(calls) == 8 and all(name.startswith("argon2") for name, _ in calls)
    assert [dummy for _, dummy in calls] == [True, False, False, False, False, False, False, True]


async def test_too_many_logins_waiting_are_told_to_come_back(pool, settings):
    await add_user(pool, "diana@tai.example", "Diana", PASSWORD)
    set_max_waiting(2)
    try:
        outcomes = await asyncio.gather(*(log_in(pool, settings, "diana@tai.example", PASSWORD, ip=f"10.1.0.{n}")
                                          for n in range(8)), return_exceptions=True)
    finally:
        set_max_waiting(settings.login_max_waiting)
    assert any(isinstance(o, LoginBusy) for o in outcomes)
    assert all(isinstance(o, (LoginBusy, LoginResult)) for o in outcomes), outcomes
    # A busy answer counted nothing: every counter left is a success's, given back.
    assert await pool.fetchval("SELECT coalesce(sum(failures), 0) FROM login_throttle") == 0


def test_csplay_user_add_reads_the_password_from_stdin(db_url):
    env_cmd = [sys.executable, "-m", "starter", "user", "add", "Sam@tai.example", "--name", "Sam", "--role", "csm",
               "--password-stdin"]
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "200"}
    done = subprocess.run(env_cmd, input=PASSWORD + "\n", env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "console user sam@tai.example created" in done.stdout, done.stderr
    weak = subprocess.run(env_cmd, input="aaaaaaaaaa\n", env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert weak.returncode == 1 and "too easy to guess" in weak.stderr and "Traceback" not in weak.stderr
    listed = subprocess.run([sys.executable, "-m", "starter", "user", "list"], env=env, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert "sam@tai.example" in listed.stdout and "csm" in listed.stdout
    audit = subprocess.run([sys.executable, "-m", "starter", "audit", "--action", "user."], env=env, cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert "user.add" in audit.stdout and "cli:" in audit.stdout and "refused" in audit.stdout, audit.stdout


def test_the_timeline_reads_every_playbooks_status_shape():
    sla = {"clocks": [{"clock": "response", "target": "4h", "due_at": "2027-01-08T14:00:00Z", "running": False,
                       "met": True},
                      {"clock": "resolution", "target": "24h", "due_at": "2027-01-09T10:00:00Z", "running": True,
                       "met": None}],
           "escalations": [{"level": 2, "to_role": "vp_engineering", "rule": "p1_open_4h",
                            "at": "2027-01-08T18:00:00Z"}],
           "next_action": "resolution clock due", "next_action_at": "2027-01-09T10:00:00Z",
           "failed_steps": {"email/update": "template missing"}}
    rows = timeline(sla)
    assert [(r["what"], r["status"]) for r in rows] == [
        ("response clock, target 4h", "met"), ("escalated to L2 vp_engineering", "done"),
        ("resolution clock, target 24h", "running"), ("resolution clock due", "next"),
        ("email/update", "failed"),
    ]
    churn = {"band_changes": [{"from_band": "GREEN", "to_band": "YELLOW", "score": 30, "at": "2027-01-02T09:00:00Z"}],
             "done_steps": ["yellow/1/alert"], "next_action": "", "escalations": []}
    assert [r["what"] for r in timeline(churn)] == ["risk band GREEN to YELLOW", "yellow/1/alert"]
    onboarding = {"schedule": [{"step": "b", "title": "Later", "at": "2027-01-03T14:00:00Z", "status": "planned"},
                               {"step": "a", "title": "Sooner", "at": "2027-01-02T14:00:00Z", "status": "done"}],
                  "escalations": ["slip/1"], "done_steps": ["ignored when there is a schedule"]}
    assert [(r["what"], r["status"]) for r in timeline(onboarding)] == [("Sooner", "done"), ("Later", "planned")]
