"""The NPS batch's bulk outbox (activities/mail_batch.py) against PostgreSQL and the SMTP sink: each
contact e-mailed once however often the batch runs (again, at the same time, after a failed attempt),
suppressed contacts recorded with why, every copy with its own survey link and unsubscribe."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from activities.accounts import fetch_account, fetch_staff
from activities.mail_batch import BatchContext
from activities.nps import NpsActivities
from activities.survey_links import verify_link
from core.models import Person, PlayRef, SurveyBatchRequest
from playbooks.loader import load_named
from playbooks.rendering import email_context
from tests.conftest import free_port
from tests.workflows.nps_test import more_accounts

CYCLE = "2026-10"
EXPIRES = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)


def request(**kw) -> SurveyBatchRequest:
    return SurveyBatchRequest(play=PlayRef(workflow_id=f"nps-cycle-{CYCLE}", play_id="run1", account_id=""),
                              cycle_id=CYCLE, kind="survey", template=load_named("nps").template("survey"),
                              expires_at=EXPIRES, limit=100, **kw)


async def twelve_contacts_two_suppressed(pool) -> None:
    """acme and 5 more accounts, 2 contacts each; one unsubscribed from surveys, one opted out in the CRM."""
    await more_accounts(pool, 5)
    await pool.execute("INSERT INTO suppressions (address_key, category, reason, source, created_by)"
                       " VALUES ('c0@acct00.example', 'survey', 'unsubscribed', 'one-click', 'test')")
    await pool.execute("UPDATE contacts SET email_opt_out = true WHERE email = 'c1@acct01.example'")


async def outbox(pool) -> dict[str, int]:
    return dict(await pool.fetch("SELECT status, count(*) FROM communications WHERE workflow_id = $1 GROUP BY status",
                                 f"nps-cycle-{CYCLE}"))


async def test_a_batch_sends_each_contact_once_records_the_suppressed_and_a_rerun_sends_nothing(pool, settings, sink):
    await twelve_contacts_two_suppressed(pool)
    nps = NpsActivities(pool, settings)
    result = await nps.send_survey_batch(request())
    assert (result.sent, result.suppressed, result.already, result.done) == (10, 2, 0, True)
    assert len(sink.copies) == 10 and len({m.rcpt_to[0] for m in sink.copies}) == 10
    assert not {"c0@acct00.example", "c1@acct01.example"} & {m.rcpt_to[0] for m in sink.copies}
    secret = settings.nps_link_secret.get_secret_value()
    for mail in sink.copies:  # each contact's own signed link, one-click unsubscribe and return path
        token = mail.text.split("/nps/")[1].split()[0]
        assert verify_link(secret, token, datetime.now(timezone.utc)).contact_email == mail.rcpt_to[0]
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail.envelope_from.startswith("bounce+")
    assert await outbox(pool) == {"sent": 10, "suppressed": 2}
    reasons = [r["reason"] for r in await pool.fetch(
        "SELECT reason FROM communications WHERE status = 'suppressed' ORDER BY step")]
    assert "c0@acct00.example: suppressed (unsubscribed (survey, one-click" in reasons[0]
    assert reasons[1] == "c1@acct01.example: suppressed (opted out in the CRM)"
    assert await pool.fetchval("SELECT count(*) FROM communication_recipients WHERE status = 'sent'"
                               " AND sent_at IS NOT NULL AND attempts = 1") == 10
    assert await pool.fetchval("SELECT count(*) FROM play_events WHERE event = 'email.sent'") == 10
    # The same batch again (a retry after its result was lost): nothing more goes out.
    again = await nps.send_survey_batch(request())
    assert (again.sent, again.suppressed, again.already) == (0, 2, 10)
    assert len(sink.copies) == 10 and await outbox(pool) == {"sent": 10, "suppressed": 2}


async def test_two_attempts_of_one_batch_at_the_same_time_send_each_contact_once(pool, settings, sink):
    """Issue 18's duplicates: a second attempt started while the first still sends waits for it."""
    await twelve_contacts_two_suppressed(pool)
    first, second = await asyncio.gather(NpsActivities(pool, settings).send_survey_batch(request()),
                                         NpsActivities(pool, settings).send_survey_batch(request()))
    assert sorted([first.sent, second.sent]) == [0, 10] and first.sent + first.already == 10
    assert len(sink.copies) == 10 and len({m.message_id for m in sink.copies}) == 10
    assert await outbox(pool) == {"sent": 10, "suppressed": 2}


async def test_a_batch_whose_relay_was_down_goes_on_where_it_stopped(pool, settings, sink):
    await twelve_contacts_two_suppressed(pool)
    down = settings.model_copy(update={"smtp_port": free_port()})  # nobody listens there
    with pytest.raises(OSError):
        await NpsActivities(pool, down).send_survey_batch(request())
    assert len(sink.copies) == 0
    assert await pool.fetchval("SELECT count(*) FROM communication_recipients WHERE status = 'pending'") == 10
    result = await NpsActivities(pool, settings).send_survey_batch(request())
    assert (result.sent, result.suppressed) == (10, 2)
    assert len(sink.copies) == 10 and len({m.rcpt_to[0] for m in sink.copies}) == 10
    assert await outbox(pool) == {"sent": 10, "suppressed": 2}


async def test_the_batch_context_is_the_one_email_context(pool):
    account, staff = await fetch_account(pool, "acme"), await fetch_staff(pool)
    person = Person(name="Lee Park", email="lee.park@acme.example")
    data = {"link": "https://x/nps/t", "expires_at": EXPIRES}
    context = BatchContext(staff)
    for _ in range(2):  # the second one from what the first dumped
        assert context(account, "survey/x", data, person) == email_context(account, staff, "survey/x", data, person)


async def test_a_batch_in_several_chunks_e_mails_an_address_two_accounts_share_once(pool, settings, sink, monkeypatch):
    """Chunks of 5 (12 contacts, 13 rows): the shared address's second row, in a later chunk, finds its
    e-mail sent."""
    import activities.mail_batch

    monkeypatch.setattr(activities.mail_batch, "CHUNK", 5)
    await twelve_contacts_two_suppressed(pool)
    await pool.execute("INSERT INTO contacts (account_id, name, email) VALUES ('acct03', 'Shared', 'c0@acct02.example')")
    result = await NpsActivities(pool, settings).send_survey_batch(request())
    assert (result.sent, result.suppressed, result.already) == (10, 2, 1)
    assert len(sink.copies) == 10 and len({m.rcpt_to[0] for m in sink.copies}) == 10
    assert await outbox(pool) == {"sent": 10, "suppressed": 2}
