"""Pause, resume, skip a step and cancel: the same for every playbook (`SteerablePlay`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import (
    SteeringError, cancel_play, launch_onboarding, launch_renewal, open_ticket, pause_play, resume_play, skip_step,
    sla_status,
)
from tests.workflows.play_driver import skip_to_next_monday
from tests.workflows.renewal_test import sleep_until, status


async def test_paused_countdown_acts_on_nothing_and_catches_up_on_resume(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    renewal = start.date() + timedelta(days=180)
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", renewal, settings.task_queue)
    await sleep_until(env, renewal, -170)
    await pause_play(env.client, handle.id, "Diana Hoang", "customer reorganising")
    await sleep_until(env, renewal, -100)
    assert not [m for m in sink.messages if not m.step.startswith("step/health_review")]
    st = await status(handle)
    assert st.control.paused_by == "Diana Hoang" and st.control.pause_reason == "customer reorganising"
    await resume_play(env.client, handle.id, "Diana Hoang")
    await env.sleep(timedelta(hours=1))
    steps = [m.step for m in sink.messages]
    # The value review (150) and executive review (120) fell due while paused: the latest runs, the other is skipped.
    assert "step/executive_review/email/qbr_invite" in steps and "step/value_review/email/value_review_invite" not in steps
    st = await status(handle)
    assert [e.kind for e in st.control.log] == ["paused", "resumed"] and st.control.paused_at is None
    assert "overtaken" in next(e.note for e in st.schedule if e.step == "step/value_review")


async def test_skip_step_skips_one_pending_step_and_refuses_the_rest(env, worker, pool, settings, sink):
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    await env.sleep(timedelta(hours=1))
    with pytest.raises(SteeringError) as refused:
        await skip_step(env.client, handle.id, "phase/technical_setup", "casey")
    assert refused.value.status == 422 and "can skip: " in str(refused.value)
    with pytest.raises(SteeringError) as unknown:
        await skip_step(env.client, handle.id, "email/nothing", "casey")
    assert "'email/nothing' is not a pending step" in str(unknown.value)
    result = await skip_step(env.client, handle.id, "email/weekly_status/" + (
        await env.get_current_time() + timedelta(days=4)).date().isoformat(), "casey", "customer on holiday")
    assert result.skipped.startswith("email/weekly_status/")
    await env.sleep(timedelta(days=5))
    assert not [m for m in sink.messages if m.step.startswith("email/weekly_status/")]


async def test_cancel_ends_the_play_and_cancels_its_open_tasks(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", start.date() + timedelta(days=100),
                                  settings.task_queue)
    await sleep_until(env, start.date() + timedelta(days=100), -85)
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE status = 'not-started'") == 1
    await cancel_play(env.client, handle.id)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    rows = await pool.fetch("SELECT status, completed_by FROM tasks WHERE workflow_id = $1", handle.id)
    assert [(r["status"], r["completed_by"]) for r in rows] == [("cancelled", "play cancelled")]
    with pytest.raises(SteeringError) as again:
        await cancel_play(env.client, handle.id)
    assert again.value.status == 409 and "not running (canceled)" in str(again.value)
    with pytest.raises(SteeringError) as missing:
        await pause_play(env.client, "renewal-nobody", "x")
    assert missing.value.status == 404


async def test_an_sla_clock_can_skip_a_p0_update_and_be_paused(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, "T-S", DEMO_ACCOUNT_ID, "P0", "Down", start, "test",
                               settings.task_queue, now=start)
    await env.sleep(timedelta(minutes=10))
    await skip_step(env.client, handle.id, "p0-update/1-1", "marcus", "on a bridge call with them")
    await env.sleep(timedelta(minutes=55))  # update 2 is due an hour after the opening
    assert [m.step for m in sink.messages if m.step.startswith("p0-update/")] == ["p0-update/1-2"]
    await pause_play(env.client, handle.id, "diana")
    await env.sleep(timedelta(hours=2))
    assert [m.step for m in sink.messages if m.step.startswith("p0-update/")] == ["p0-update/1-2"]
    assert (await sla_status(env.client, "T-S")).control.paused_by == "diana"


async def test_a_cancel_while_a_step_is_being_retried_ends_the_play(env, pool, settings):
    """A play cancelled while an activity of a step is running (here the welcome e-mail, retried
    while the mail relay is unreachable) ends as cancelled: the cancelled activity is not taken
    for a failed step the play carries on after."""
    from worker import build_worker

    from tests.conftest import eventually, free_port

    no_relay = settings.model_copy(update={"smtp_port": free_port()})  # nothing listens there
    async with build_worker(env.client, pool, no_relay, settings.task_queue):
        await skip_to_next_monday(env)
        handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)

        async def welcome_retried():
            pending = (await handle.describe()).raw_description.pending_activities
            return any(p.activity_type.name == "send_templated_email" and p.attempt >= 2 for p in pending)

        await eventually(welcome_retried, "the welcome e-mail retried while the relay is down")
        await cancel_play(env.client, handle.id)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1 AND status = 'not-started'",
                               handle.id) == 0
