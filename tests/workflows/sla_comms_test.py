"""Ticket communications of a whole ticket on the time-skipping server (issue 19; seed 001 sections
3.1-3.2 and 9.2): acknowledgement, "SLA approaching", P1 updates every 4 hours, the resolution
notice, the closing e-mail and the CSAT survey 72 hours later, and a low CSAT answer through the
survey endpoint: the follow-up task for the CS manager and the churn watch's `csat` metric.

The demo account is Enterprise; the ticket opens on a Monday at 10:00 New York time (a fixed
instant of play time, whatever day the suite runs).
"""

from __future__ import annotations

import re
from datetime import timedelta, timezone

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import churn_status, open_ticket
from tests.conftest import eventually
from tests.workflows.play_driver import skip_to_next_monday
from workflows.sla import SlaClock
from workflows.sla_messages import Acknowledged, Resolved

SPONSOR, SUPPORT = "dana.reyes@acme.example", "support@tai.example"
TOKEN = re.compile(r"/csat/([A-Za-z0-9_.-]+)\?score=1")


async def sleep_to(env, moment) -> None:
    now = await env.get_current_time()
    assert moment > now, f"cannot go back to {moment}"
    await env.sleep(moment - now)


def comms(sink) -> list:
    return [m for m in sink.messages if m.step.startswith("comms/")]


async def test_a_p1_ticket_from_acknowledgement_to_a_low_csat(env, worker, pool, settings, sink, anonymous):
    start = await skip_to_next_monday(env)  # Monday 10:00 ET
    handle = await open_ticket(env.client, pool, settings, "T-COMMS", DEMO_ACCOUNT_ID, "P1", "Reports fail",
                               start, "test", settings.task_queue, now=start)
    await sleep_to(env, start + timedelta(minutes=5))
    ack = comms(sink)
    assert [m.step for m in ack] == ["comms/ack"]
    assert SPONSOR in ack[0].rcpt_to and "ticket T-COMMS (P1)" in ack[0].subject
    for words in ("T-COMMS", "2 business hours", "Mon-Fri 09:00-18:00 (America/New_York)", "every 4 hours"):
        assert words in ack[0].text, words
    assert b"List-Unsubscribe" not in ack[0].raw  # transactional

    # 75 % of the 2-business-hour response target: 11:30, to the assignee (the support queue).
    await sleep_to(env, start + timedelta(hours=1, minutes=35))
    warning = [m for m in comms(sink) if m.step == "comms/approaching/response"]
    assert len(warning) == 1 and warning[0].rcpt_to == (SUPPORT,) and "75% of 2 business hours" in warning[0].subject
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="Casey Morgan"))

    # Updates every 4 hours from the opening: 14:00 and 18:00; resolved at 19:00.
    await sleep_to(env, start + timedelta(hours=9))
    await handle.signal(SlaClock.resolved, Resolved(by="Casey Morgan"))
    await env.sleep(timedelta(minutes=5))
    sent = [m.step for m in comms(sink)]
    assert [s for s in sent if s.startswith("comms/update/")] == [
        f"comms/update/{start.astimezone(timezone.utc):%Y%m%dT%H%M%S}-{n}" for n in (1, 2)]
    update = next(m for m in comms(sink) if m.step.startswith("comms/update/"))
    assert "[P1] Update 1 on ticket T-COMMS" in update.subject and "4 hours" in update.text
    assert sent[-1] == "comms/resolution/0" and "your reply reaches your CSM, who reopens the ticket" in comms(sink)[-1].text

    # 72 hours later (Thursday 19:00): the closing e-mail, then the CSAT survey with one-click links.
    await sleep_to(env, start + timedelta(hours=9 + 72, minutes=5))
    assert [m.step for m in comms(sink)][-2:] == ["comms/closing/0", "comms/csat/0"]
    survey = comms(sink)[-1]
    assert survey.rcpt_to == (SPONSOR,) and "How did we do on ticket T-COMMS?" in survey.subject
    token = TOKEN.search(survey.html).group(1)

    shown = await anonymous.get(f"/csat/{token}", params={"score": "1"})
    assert shown.status_code == 200 and 'value="1" checked' in shown.text
    superscript = await anonymous.get(f"/csat/{token}", params={"score": "\u00b2"})  # "²".isdigit(), not a score
    assert superscript.status_code == 200 and "checked" not in superscript.text
    answered = await anonymous.post(f"/csat/{token}", data={"score": "1", "comment": "Took too long"})
    assert answered.status_code == 201, answered.text
    row = await pool.fetchrow("SELECT ticket_id, round, account_id, contact_email, score, comment FROM csat_responses")
    assert dict(row) == {"ticket_id": "T-COMMS", "round": 0, "account_id": DEMO_ACCOUNT_ID,
                         "contact_email": SPONSOR, "score": 1, "comment": "Took too long"}
    again = await anonymous.post(f"/csat/{token}", data={"score": "5"})
    assert again.status_code == 409 and await pool.fetchval("SELECT count(*) FROM csat_responses") == 1

    # Score 1 <= 2: the CS manager's follow-up task, and the churn watch hears CSAT 1.0 (< 3: +15).
    await env.sleep(timedelta(minutes=5))

    async def followup():
        return await pool.fetchrow("SELECT title, owner_role FROM tasks WHERE workflow_id = $1 AND step LIKE "
                                   "'comms/csat-answer/%'", handle.id)

    task = await eventually(followup, "the low-CSAT follow-up task")
    assert task["owner_role"] == "cs_manager" and "scored 1/5" in task["title"]

    async def csat_metric():
        st = await churn_status(env.client, DEMO_ACCOUNT_ID)
        return st if st.metrics.get("csat") == 1.0 else None

    st = await eventually(csat_metric, "the churn watch's csat metric")
    assert "csat_below_3" in [i["key"] for i in st.indicators]
    result = await handle.result()  # closes after the 7-day reopen window
    assert result.resolution_met is True


async def test_a_reopen_before_the_window_stops_closing_and_survey(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, "T-REOPEN", DEMO_ACCOUNT_ID, "P2", "Slow export",
                               start, "test", settings.task_queue, now=start)
    await sleep_to(env, start + timedelta(hours=2))
    await handle.signal(SlaClock.resolved, Resolved(by="Casey Morgan"))
    await sleep_to(env, start + timedelta(hours=26))
    from workflows.sla_messages import Reopened

    await handle.signal(SlaClock.reopened, Reopened(reason="still slow"))
    await sleep_to(env, start + timedelta(hours=2 + 72, minutes=5))
    sent = [m.step for m in comms(sink)]
    assert "comms/resolution/0" in sent and "comms/closing/0" not in sent and "comms/csat/0" not in sent
    await handle.signal(SlaClock.resolved, Resolved(by="Casey Morgan"))
    await handle.result()
    sent = [m.step for m in comms(sink)]
    assert sent[-3:] == ["comms/resolution/1", "comms/closing/1", "comms/csat/1"]


async def test_the_requester_hears_and_the_assignee_is_warned(env, worker, pool, settings, sink):
    from core.models import Person

    start = await skip_to_next_monday(env)  # Monday 10:00 ET
    requester = Person(name="Lee Park", email="lee.park@acme.example")
    assignee = Person(name="Casey Morgan", email="casey.agent@tai.example")
    await open_ticket(env.client, pool, settings, "T-WHO", DEMO_ACCOUNT_ID, "P3", "Typo in a label", start, "test",
                      settings.task_queue, now=start, requester=requester, assignee=assignee)
    # P3 Enterprise: response 8 business hours; 75 % = 6 h: Monday 16:00.
    await sleep_to(env, start + timedelta(hours=6, minutes=5))
    sent = {m.step: m for m in comms(sink)}
    assert "lee.park@acme.example" in sent["comms/ack"].rcpt_to and SPONSOR not in sent["comms/ack"].rcpt_to
    assert sent["comms/approaching/response"].rcpt_to == ("casey.agent@tai.example",)
    assert not [s for s in sent if s.startswith("comms/update/")]  # P3: "on change", no regular updates
