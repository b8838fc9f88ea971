"""Issue 18's batched activities against PostgreSQL: a step's tasks in one activity and one
transaction, several play events in one, and a play's start (account and calendars) in one. Each
keeps the idempotency of the one-at-a-time activities it replaces."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from activities.accounts import AccountActivities, upsert_account
from activities.calendars import CalendarActivities
from activities.play_events import PlayEventActivities
from activities.tasks import TaskActivities
from core.models import (
    CalendarPlace, CalendarsRequest, CreateTasksRequest, NewTask, PlayContextRequest, PlayEventRequest,
    PlayEventsRequest, PlayRef,
)
from starter.demo import DEMO_ACCOUNT_ID, demo_account

PLAY = PlayRef(workflow_id="onboarding-acme", play_id="run-1", account_id=DEMO_ACCOUNT_ID)
DUE = datetime(2027, 1, 5, 23, tzinfo=timezone.utc)


def three_tasks() -> list[NewTask]:
    return [NewTask(step="task/charter", title="Kickoff held", owner_role="csm", due_at=DUE, priority="P1",
                    milestone="kickoff"),
            NewTask(step="task/sso", title="SSO configured", owner_role="sponsor", due_at=DUE + timedelta(days=1)),
            NewTask(step="task/notes", title="Notes", owner_email="someone@tai.example", due_at=DUE)]


async def test_create_tasks_writes_each_task_once_with_its_event_and_owner(pool):
    await upsert_account(pool, demo_account(date.today()))
    tasks = TaskActivities(pool)
    first = await tasks.create_tasks(CreateTasksRequest(play=PLAY, tasks=three_tasks()))
    assert [r.step for r in first] == ["task/charter", "task/sso", "task/notes"]
    account = demo_account(date.today())
    assert first[0].owner_email == str(account.csm.email) and first[1].owner_email == str(account.sponsor.email)
    assert first[2].owner_email == "someone@tai.example" and first[0].milestone == "kickoff"
    # A retry (or a twin) gets the same rows back and writes nothing more.
    again = await tasks.create_tasks(CreateTasksRequest(play=PLAY, tasks=three_tasks()))
    assert [r.task_id for r in again] == [r.task_id for r in first]
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 3
    assert await pool.fetchval("SELECT count(*) FROM play_events WHERE event = 'task.created'") == 3
    assert await tasks.create_tasks(CreateTasksRequest(play=PLAY, tasks=[])) == []


async def test_record_play_events_records_each_once_in_order(pool):
    await upsert_account(pool, demo_account(date.today()))
    at = datetime(2027, 1, 5, 14, tzinfo=timezone.utc)
    batch = PlayEventsRequest(events=[
        PlayEventRequest(play=PLAY, event="play.started", playbook="onboarding", at=at, phase="planning"),
        PlayEventRequest(play=PLAY, event="play.step_done", playbook="onboarding", at=at, step="phase/planning",
                         phase="planning", outcome="done"),
        PlayEventRequest(play=PLAY, event="play.step_done", playbook="onboarding", at=at + timedelta(seconds=1),
                         step="email/welcome", phase="execution", outcome="done"),
    ])
    events = PlayEventActivities(pool)
    await events.record_play_events(batch)
    await events.record_play_events(batch)  # a retry
    rows = await pool.fetch("SELECT event, step FROM play_events ORDER BY id")
    assert [(r["event"], r["step"]) for r in rows] == [
        ("play.started", None), ("play.step_done", "phase/planning"), ("play.step_done", "email/welcome")]
    assert await pool.fetchval("SELECT phase FROM play_phases WHERE workflow_id = $1", PLAY.workflow_id) == "execution"


async def test_load_play_context_is_load_account_and_load_calendars_in_one(pool):
    tokyo = demo_account(date.today()).model_copy(update={"timezone": "Asia/Tokyo", "country": "JP"})
    await upsert_account(pool, tokyo)
    staff = CalendarPlace(tz="America/New_York", country="US")
    accounts = AccountActivities(pool)
    context = await accounts.load_play_context(PlayContextRequest(
        account_id=DEMO_ACCOUNT_ID, calendars=True, staff=staff, start=date(2027, 1, 4), years=2))
    assert context.account == await accounts.load_account(DEMO_ACCOUNT_ID)
    expected = await CalendarActivities().load_calendars(CalendarsRequest(
        account=CalendarPlace(tz="Asia/Tokyo", country="JP"), staff=staff, start=date(2027, 1, 4), years=2))
    assert context.calendars == expected
    assert date(2027, 1, 11) in context.calendars.account.holidays  # Coming of Age Day, Japan's not America's
    without = await accounts.load_play_context(PlayContextRequest(account_id=DEMO_ACCOUNT_ID))
    assert without.calendars is None and without.account == context.account
