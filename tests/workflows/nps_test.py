"""NPS on the time-skipping test server: the batched cycle (invite, remind, close), each answer's
follow-up path through the signed-link endpoint, its refusals, and the report against a hand count."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from activities.accounts import upsert_account
from activities.nps import nps_report, survey_link
from playbooks.loader import load_named
from starter.demo import demo_account
from starter.steering import choose_detractor_path, launch_nps_cycle
from tests.workflows.play_driver import skip_to_next_monday
from workflows.nps import NpsCycle
from workflows.nps_messages import CycleInput

CONTACTS = ["lee.park@acme.example", "sam.ortiz@acme.example"]


def token_for(settings, email: str, cycle: str = "2026-10", account: str = "acme", days: int = 7) -> str:
    link = survey_link(settings, cycle, account, email, datetime.now(timezone.utc) + timedelta(days=days))
    return link.rsplit("/", 1)[1]


async def invite(pool, *emails: str, cycle: str = "2026-10", account: str = "acme") -> None:
    """The invitation rows a cycle writes when it sends its links: a link that was never sent is refused."""
    for email in emails:
        await pool.execute(
            "INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at)"
            " VALUES ($1, $2, $3, $3, now() + interval '7 days')", cycle, account, email)


async def more_accounts(pool, n: int) -> None:
    base = demo_account(datetime.now().date())
    for i in range(n):
        await upsert_account(pool, base.model_copy(update={
            "id": f"acct{i:02d}", "name": f"Account {i:02d}", "status": "active",
            "contacts": [c.model_copy(update={"email": f"c{j}@acct{i:02d}.example"}) for j, c in enumerate(base.contacts)],
        }))


async def test_cycle_invites_in_batches_reminds_the_silent_and_closes_the_rest(env, worker, pool, settings, sink, http):
    await skip_to_next_monday(env)
    await more_accounts(pool, 5)  # 6 accounts x 2 contacts
    snapshot = load_named("nps")
    # One shard: its batches one after another from one cursor, as cycles from before issue 18 run.
    snapshot = snapshot.model_copy(update={"content": snapshot.content.model_copy(
        update={"batch_size": 5, "parallel_batches": 1})})
    handle = await env.client.start_workflow(
        NpsCycle.run, CycleInput(cycle_id="2026-10", playbook=snapshot, max_history_events=12),
        id="nps-cycle-2026-10", task_queue=settings.task_queue)
    await env.sleep(timedelta(hours=1))
    progress = await handle.query(NpsCycle.status)
    assert (progress.phase, progress.sent, progress.batches) == ("waiting", 12, 3)
    assert progress.run_count >= 2, "the history limit must have forced continue-as-new between batches"
    surveys = [m for m in sink.messages if m.step.startswith("survey/")]
    assert len(surveys) == 12 and len({m.rcpt_to[0] for m in surveys}) == 12
    assert "/nps/" in surveys[0].text and "how likely are you to recommend" in surveys[0].subject
    # One contact answers; after 4 days the other 11 get one reminder; after 7 the rest close.
    answered = await http.post(f"/nps/{token_for(settings, CONTACTS[0])}", data={"score": "9"})
    assert answered.status_code == 201, answered.text
    await env.sleep(timedelta(days=4))
    reminders = [m for m in sink.messages if m.step.startswith("reminder/")]
    assert len(reminders) == 11 and CONTACTS[0] not in {m.rcpt_to[0] for m in reminders}
    result = await handle.result()
    assert (result.phase, result.reminded, result.closed) == ("closed", 11, 11)
    assert await pool.fetchval("SELECT count(*) FROM nps_invitations WHERE closed_at IS NOT NULL") == 11


async def test_a_sharded_cycle_invites_and_reminds_each_contact_once_across_continue_as_new(
        env, worker, pool, settings, sink):
    """Issue 18: three shards' batches side by side; the history limit hands over between batches."""
    await skip_to_next_monday(env)
    await more_accounts(pool, 7)  # 8 accounts x 2 contacts
    snapshot = load_named("nps")
    snapshot = snapshot.model_copy(update={"content": snapshot.content.model_copy(
        update={"batch_size": 2, "parallel_batches": 3})})
    handle = await env.client.start_workflow(
        NpsCycle.run, CycleInput(cycle_id="2026-10", playbook=snapshot, max_history_events=20),
        id="nps-cycle-2026-10", task_queue=settings.task_queue)
    await env.sleep(timedelta(hours=1))
    progress = await handle.query(NpsCycle.status)
    assert (progress.phase, progress.sent) == ("waiting", 16)
    assert progress.run_count >= 2, "the history limit must have forced continue-as-new between batches"
    surveys = [m for m in sink.messages if m.step.startswith("survey/")]
    assert len(surveys) == 16 and len({m.rcpt_to[0] for m in surveys}) == 16
    assert await pool.fetchval("SELECT count(*) FROM nps_invitations WHERE cycle_id = '2026-10'") == 16
    await env.sleep(timedelta(days=4))
    reminders = [m for m in sink.messages if m.step.startswith("reminder/")]
    assert len(reminders) == 16 and len({m.rcpt_to[0] for m in reminders}) == 16
    result = await handle.result()
    assert (result.phase, result.reminded, result.closed) == ("closed", 16, 16)


async def test_promoter_path(env, worker, pool, settings, sink, http):
    await skip_to_next_monday(env)
    await invite(pool, CONTACTS[0])
    response = await http.post(f"/nps/{token_for(settings, CONTACTS[0])}", data={"score": "10", "comment": "Great"})
    assert response.status_code == 201 and "Thank you" in response.text
    await env.sleep(timedelta(days=8))
    steps = [m.step for m in sink.messages]
    assert steps == ["promoter/thank_you/respondent", "promoter/advisory_board/respondent",
                     "promoter/referral/respondent"]
    assert sink.messages[0].rcpt_to[0] == CONTACTS[0]
    task = await pool.fetchrow("SELECT title, owner_email, due_at FROM tasks")
    assert task["owner_email"] == "priya.nair@tai.example" and "VP Product" in task["title"]


async def test_passive_path_asks_for_the_gap_and_resurveys_after_30_days(env, worker, pool, settings, sink, http):
    await skip_to_next_monday(env)
    await invite(pool, CONTACTS[1])
    await http.post(f"/nps/{token_for(settings, CONTACTS[1])}", data={"score": "7"})
    await env.sleep(timedelta(days=31))
    steps = [m.step for m in sink.messages]
    assert steps[0] == "passive/gap_question/respondent" and "what would make it a 9?" in sink.messages[0].subject
    assert steps[1] == f"survey/2026-10-r1/{CONTACTS[1]}"
    titles = [r["title"] for r in await pool.fetch("SELECT title FROM tasks ORDER BY id")]
    assert titles[0].startswith("Targeted improvement") and titles[1].startswith("30-day check-in")
    # The re-survey link is a new cycle: answering it is not a second answer to the first.
    token = sink.messages[1].text.split("/nps/")[1].split()[0]
    again = await http.post(f"/nps/{token}", data={"score": "9"})
    assert again.status_code == 201


async def test_detractor_path_alerts_the_csm_and_escalates_until_a_path_is_chosen(env, worker, pool, settings,
                                                                                  sink, http):
    await skip_to_next_monday(env)
    await invite(pool, CONTACTS[0])
    await http.post(f"/nps/{token_for(settings, CONTACTS[0])}", data={"score": "3", "comment": "Too slow"})
    await env.sleep(timedelta(hours=1))
    alert = next(m for m in sink.messages if m.step == "detractor/urgent_contact/email")
    assert "casey.morgan@tai.example" in alert.rcpt_to and "scored 3" in alert.subject and "Too slow" in alert.text
    urgent = await pool.fetchrow("SELECT priority, due_at FROM tasks WHERE step LIKE 'detractor/urgent_contact%'")
    assert urgent["priority"] == "P0"
    await env.sleep(timedelta(days=15))
    assert await pool.fetchval("SELECT to_role FROM escalations") == "cs_manager"
    wid = f"nps-2026-10-{CONTACTS[0]}"
    from starter.steering import SteeringError

    with pytest.raises(SteeringError) as refused:
        await choose_detractor_path(env.client, wid, "pray", "casey")
    assert "unknown path 'pray'" in str(refused.value)
    status = await choose_detractor_path(env.client, wid, "escalated_engagement", "diana")
    assert status.path == "escalated_engagement"
    await env.sleep(timedelta(hours=1))
    owners = {r["owner_email"] for r in await pool.fetch("SELECT owner_email FROM tasks WHERE step LIKE 'path/%'")}
    assert owners == {"diana.hoang@tai.example", "alex.chen@tai.example"}
    # The answer moved the account's NPS for the churn watch: one detractor, NPS -100 (< 30: +20).
    from starter.steering import churn_status

    st = await churn_status(env.client, "acme")
    assert st.metrics["nps"] == -100 and "nps_below_30" in [i["key"] for i in st.indicators]


@pytest.mark.parametrize(("case", "make", "status", "text"), [
    ("forged signature", lambda s: token_for(s, CONTACTS[0])[:-4] + "AAAA", 403, "not issued by us"),
    ("garbage token", lambda s: "hello", 403, "damaged"),
    ("expired link", lambda s: token_for(s, CONTACTS[0], days=-1), 410, "survey closed"),
])
async def test_bad_links_are_refused_and_record_nothing(env, http, pool, settings, case, make, status, text):
    response = await http.post(f"/nps/{make(settings)}", data={"score": "9"})
    assert response.status_code == status and text in response.text, (case, response.text)
    assert (await http.get(f"/nps/{make(settings)}")).status_code == status
    assert await pool.fetchval("SELECT count(*) FROM nps_responses") == 0


@pytest.mark.parametrize("score", ["11", "-1", "nine", ""])
async def test_scores_out_of_range_are_422_and_record_nothing(env, http, pool, settings, score):
    response = await http.post(f"/nps/{token_for(settings, CONTACTS[0])}", data={"score": score})
    assert response.status_code == 422 and "score" in response.text
    assert await pool.fetchval("SELECT count(*) FROM nps_responses") == 0


async def test_a_second_answer_is_409_and_changes_nothing(env, worker, http, pool, settings):
    await invite(pool, CONTACTS[0])
    token = token_for(settings, CONTACTS[0])
    assert (await http.post(f"/nps/{token}", data={"score": "8"})).status_code == 201
    second = await http.post(f"/nps/{token}", json={"score": 2})
    assert second.status_code == 409 and "already answered" in second.text
    assert [r["score"] for r in await pool.fetch("SELECT score FROM nps_responses")] == [8]


async def test_report_matches_a_hand_count(pool):
    await more_accounts(pool, 3)
    await pool.execute("UPDATE accounts SET arr = 20000, vertical = 'Retail' WHERE id IN ('acct00', 'acct01')")
    rows = [("acme", "lee.park@acme.example", 10), ("acme", "sam.ortiz@acme.example", 6),
            ("acct00", "c0@acct00.example", 9), ("acct00", "c1@acct00.example", None),
            ("acct01", "c0@acct01.example", 7), ("acct01", "c1@acct01.example", 3),
            ("acct02", "c0@acct02.example", 9), ("acct02", "c1@acct02.example", None)]
    for account, email, score in rows:
        await pool.execute("INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at)"
                           " VALUES ('Q', $1, $2, 'x', now())", account, email)
        if score is not None:
            category = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
            await pool.execute("INSERT INTO nps_responses (cycle_id, account_id, contact_email, score, category)"
                               " VALUES ('Q', $1, $2, $3, $4)", account, email, score, category)
    report = await nps_report(pool, "Q")
    # 6 answers: promoters 10, 9, 9 (3); passive 7 (1); detractors 6, 3 (2): NPS = 50% - 33.3% = 17.
    assert report["overall"] == {"nps": 17, "responses": 6, "invited": 8, "promoters": 3, "passives": 1,
                                 "detractors": 2, "response_rate": 75.0}
    tiers = {r["name"]: (r["nps"], r["responses"], r["response_rate"]) for r in report["groups"][0]["rows"]}
    # Enterprise: acme 10, 6 and acct02 9 -> 2 promoters, 1 detractor of 3 = 33; Starter: 9, 7, 3 -> 0.
    assert tiers == {"Enterprise": (33, 3, 75.0), "Starter": (0, 3, 75.0)}
    verticals = {r["name"]: r["nps"] for r in report["groups"][1]["rows"]}
    assert verticals == {"Logistics": 33, "Retail": 0}
    assert report["groups"][2]["rows"][0]["name"] == "under 1 year"


async def test_launch_refusals(env, worker, pool, settings):
    from starter.steering import SteeringError

    with pytest.raises(SteeringError) as unknown:
        await launch_nps_cycle(env.client, pool, settings, "X", ["nobody"], task_queue=settings.task_queue)
    assert unknown.value.status == 404
    await launch_nps_cycle(env.client, pool, settings, "Y", ["acme"], task_queue=settings.task_queue)
    with pytest.raises(SteeringError) as again:
        await launch_nps_cycle(env.client, pool, settings, "Y", ["acme"], task_queue=settings.task_queue)
    assert again.value.status == 409


async def test_a_scheduled_run_names_its_cycle_after_the_month_end_it_measures(env, worker, pool, settings, sink):
    from activities.nps import cycle_for
    from tests.workflows.play_driver import ET

    start = await skip_to_next_monday(env)
    handle = await env.client.start_workflow(
        NpsCycle.run, CycleInput(playbook=load_named("nps"), account_ids=["acme"]), id="nps-cycle-scheduled",
        task_queue=settings.task_queue)
    await env.sleep(timedelta(minutes=5))
    progress = await handle.query(NpsCycle.status)
    assert progress.cycle_id == cycle_for(start.astimezone(ET).date()) and progress.sent == 2
    assert cycle_for(datetime(2027, 2, 1).date()) == "2027-01" and cycle_for(datetime(2027, 11, 1).date()) == "2027-10"


async def test_report_email_goes_to_cs_leadership_once(pool, settings, sink):
    from activities.nps import send_nps_report

    await pool.execute("INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at)"
                       " VALUES ('Q', 'acme', 'lee.park@acme.example', 'Lee', now())")
    await pool.execute("INSERT INTO nps_responses (cycle_id, account_id, contact_email, score, category)"
                       " VALUES ('Q', 'acme', 'lee.park@acme.example', 10, 'promoter')")
    snapshot = load_named("nps")
    _, already = await send_nps_report(pool, settings, "Q", snapshot.template("report"), snapshot.content.report.to)
    assert not already and sink.messages[0].subject == "NPS Q: 100 (1 answers, 100.0% response rate)"
    assert "alex.chen@tai.example" in sink.messages[0].rcpt_to and "Enterprise  100  1  100.0%" in sink.messages[0].text
    _, already = await send_nps_report(pool, settings, "Q", snapshot.template("report"), snapshot.content.report.to)
    assert already and len(sink.messages) == 1


async def test_the_link_opens_a_page_with_the_question(env, http, pool, settings):
    await invite(pool, CONTACTS[0])
    page = await http.get(f"/nps/{token_for(settings, CONTACTS[0])}?score=8")
    assert page.status_code == 200 and "How likely are you to recommend" in page.text
    assert 'value="8" checked' in page.text and "<form method=\"post\">" in page.text
