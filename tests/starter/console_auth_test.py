"""Console logins against the real database: hashes, lock-out, sessions, the user command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.settings import PROJECT_ROOT
from starter.console.auth import LoginRefused, add_user, log_in, log_out, session_user
from starter.console.data import timeline

PASSWORD = "correct horse battery"


async def test_passwords_are_stored_as_argon2id_hashes_and_sessions_as_token_digests(pool, settings):
    assert await add_user(pool, "Casey.Morgan@tai.example", "Casey Morgan", PASSWORD)
    row = await pool.fetchrow("SELECT * FROM console_users")
    assert row["email"] == "casey.morgan@tai.example"
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]
    token, name = await log_in(pool, settings, " CASEY.MORGAN@tai.example ", PASSWORD)
    assert name == "Casey Morgan"
    assert await pool.fetchval("SELECT count(*) FROM console_sessions WHERE token_hash = $1", token) == 0
    user = await session_user(pool, token)
    assert user and user.email == "casey.morgan@tai.example" and len(user.csrf_token) >= 32
    other, _ = await log_in(pool, settings, "casey.morgan@tai.example", PASSWORD)
    assert (await session_user(pool, other)).csrf_token != user.csrf_token  # one CSRF token per session
    await log_out(pool, user)
    assert await session_user(pool, token) is None
    assert await session_user(pool, other) is not None
    assert await session_user(pool, "made-up") is None and await session_user(pool, None) is None


async def test_wrong_passwords_lock_the_login_for_a_while(pool, settings):
    await add_user(pool, "diana@tai.example", "Diana", PASSWORD)
    for _ in range(settings.console_max_failed_logins):
        with pytest.raises(LoginRefused, match="wrong e-mail or password"):
            await log_in(pool, settings, "diana@tai.example", "guess")
    with pytest.raises(LoginRefused, match="too many failed logins; try again in 15 min"):
        await log_in(pool, settings, "diana@tai.example", PASSWORD)  # even the right one, until the lock ends
    await pool.execute("UPDATE console_users SET locked_until = now() - interval '1 second'")
    token, _ = await log_in(pool, settings, "diana@tai.example", PASSWORD)
    assert await session_user(pool, token)
    assert await pool.fetchval("SELECT failed_logins FROM console_users") == 0


async def test_unknown_users_expired_sessions_and_a_new_password(pool, settings):
    with pytest.raises(LoginRefused, match="wrong e-mail or password"):  # the same words as a wrong password
        await log_in(pool, settings, "nobody@tai.example", PASSWORD)
    await add_user(pool, "lee@tai.example", "Lee", PASSWORD)
    token, _ = await log_in(pool, settings, "lee@tai.example", PASSWORD)
    await pool.execute("UPDATE console_sessions SET expires_at = now() - interval '1 minute'")
    assert await session_user(pool, token) is None
    token, _ = await log_in(pool, settings, "lee@tai.example", PASSWORD)
    assert not await add_user(pool, "lee@tai.example", "Lee Park", "another long password")
    assert await session_user(pool, token) is None  # a new password ends every session
    with pytest.raises(ValueError, match="at least 10 characters"):
        await add_user(pool, "lee@tai.example", "Lee", "short")
    with pytest.raises(ValueError, match="e-mail address and a name"):
        await add_user(pool, "no-at-sign", "Lee", PASSWORD)


def test_csplay_user_add_reads_the_password_from_stdin(db_url):
    env_cmd = [sys.executable, "-m", "starter", "user", "add", "Sam@tai.example", "--name", "Sam", "--password-stdin"]
    env = {**os.environ, "DATABASE_URL": db_url}
    done = subprocess.run(env_cmd, input=PASSWORD + "\n", env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "console user sam@tai.example created" in done.stdout, done.stderr
    short = subprocess.run(env_cmd, input="short\n", env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=60)
    assert short.returncode == 1 and "at least 10 characters" in short.stderr and "Traceback" not in short.stderr


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
