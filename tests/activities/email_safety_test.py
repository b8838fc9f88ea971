"""Values from outside in e-mail headers: names with CR, LF or bidi overrides no longer fail a
send for ever, subjects carry no live links or reversed text, and a send that can never succeed
fails its step once, with the reason on the outbox row and in the play (issue 16)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.text import defang_urls, header_safe, unsafe_characters
from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import SteeringError, launch_onboarding, open_ticket
from tests.conftest import asleep_on_timer, eventually
from tests.workflows.play_driver import skip_to_next_monday
from workflows.onboarding import OnboardingPlan

RLO = "\u202e"


@pytest.mark.parametrize(("raw", "safe"), [
    ("Dana\r\nBcc: evil@attacker.example", "Dana Bcc: evil@attacker.example"),
    (f"invoice{RLO}fdp.exe", "invoicefdp.exe"),
    ("tab\there\x00and\x1bthere\u2028next", "tab hereandthere next"),
    ("zero\u200bwidth", "zerowidth"),
    ("  plain   name  ", "plain name"),
])
def test_header_safe_keeps_one_clean_line(raw, safe):
    assert header_safe(raw) == safe
    assert unsafe_characters(safe) == []


def test_unsafe_characters_are_named_and_long_values_cut():
    assert unsafe_characters(f"a\r\nb{RLO}") == ["U+000D", "U+000A", "U+202E"]
    assert header_safe("x" * 300, 10) == "x" * 9 + "\u2026"


@pytest.mark.parametrize(("raw", "defanged"), [
    ("Login at https://evil.example/reset now", "Login at hxxps://evil[.]example/reset now"),
    ("see http://a.b.c", "see hxxp://a[.]b[.]c"),
    ("visit www.evil.example today", "visit www[.]evil[.]example today"),
    ("no links here, v1.2 and a.b", "no links here, v1.2 and a.b"),
])
def test_urls_in_subjects_are_defanged(raw, defanged):
    assert defang_urls(raw) == defanged


async def test_a_name_with_a_line_break_no_longer_blocks_the_welcome_email(env, worker, pool, settings, sink):
    await pool.execute("UPDATE accounts SET sponsor_name = $1 WHERE id = 'acme'",
                       "Dana\r\nBcc: attacker@evil.example\r\nReyes")
    await pool.execute("UPDATE contacts SET name = $1 WHERE email = 'lee.park@acme.example'", f"Lee {RLO}kraP")
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await asleep_on_timer(env.client, handle.id)
    welcome = next(m for m in sink.messages if m.step == "email/welcome")
    assert "attacker@evil.example" not in welcome.rcpt_to
    row = await pool.fetchrow("SELECT to_addrs, status, attempts FROM communications WHERE step = 'email/welcome'")
    assert row["status"] == "sent" and row["attempts"] == 1
    # One quoted display name: the "Bcc:" is part of the name, not a header.
    assert '"Dana Bcc: attacker@evil.example Reyes" <dana.reyes@acme.example>' in row["to_addrs"]
    assert all(not unsafe_characters(a) for a in row["to_addrs"])
    assert (await handle.query(OnboardingPlan.status)).failed_steps == {}


async def test_a_ticket_subject_reaches_email_subjects_without_live_links_or_reversed_text(env, worker, pool,
                                                                                          settings, sink):
    start = await skip_to_next_monday(env)
    subject = f"URGENT reset at https://evil.example/login {RLO}gnp.exe\r\nX-Injected: yes"
    handle = await open_ticket(env.client, pool, settings, "T-77", DEMO_ACCOUNT_ID, "P0", subject, start, "test",
                               settings.task_queue, now=start)
    await env.sleep(timedelta(minutes=5))
    mails = await eventually(lambda: _mails_of(sink, handle.id), "the P0's first e-mails")
    for mail in mails:
        assert "https://evil.example" not in mail.subject and RLO not in mail.subject
        assert "X-Injected" not in mail.subject or "\n" not in mail.subject
    assert any("hxxps://evil[.]example/login" in m.subject for m in mails), [m.subject for m in mails]
    stored = await eventually(lambda: pool.fetchval("SELECT subject FROM sla_tickets WHERE ticket_id = 'T-77'"),
                              "the ticket's row")
    assert RLO not in stored and "\n" not in stored and stored.startswith("URGENT reset at https://evil.example")
    with pytest.raises(SteeringError, match="subject must not be empty"):
        await open_ticket(env.client, pool, settings, "T-78", DEMO_ACCOUNT_ID, "P1", f"\r\n{RLO}\t", start, "test",
                          settings.task_queue, now=start)


async def _mails_of(sink, workflow_id):
    return [m for m in sink.messages if m.workflow_id == workflow_id]


async def test_an_email_every_recipient_refuses_fails_its_step_once_with_the_reason(env, worker, pool, settings,
                                                                                   sink):
    for address in ("dana.reyes@acme.example", "lee.park@acme.example", "sam.ortiz@acme.example",
                    "casey.morgan@tai.example"):
        sink.refuse[address] = f"550 5.1.1 <{address}>: mailbox unavailable"
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await asleep_on_timer(env.client, handle.id)
    row = await pool.fetchrow("SELECT status, reason AS failure, attempts FROM communications WHERE step = 'email/welcome'")
    assert row["status"] == "failed" and row["attempts"] == 1  # not retried for ever
    assert "refused (550 5.1.1" in row["failure"] and row["failure"].count("refused (550") == 4
    failed = (await handle.query(OnboardingPlan.status)).failed_steps
    assert "email/welcome" in failed and "nobody could be reached" in failed["email/welcome"]
    # The play carries on: its first tasks exist.
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1", handle.id) > 0
