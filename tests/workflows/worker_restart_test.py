"""Workers die: a play survives repeated worker kills with no e-mail or task twice."""

from __future__ import annotations

import asyncio
import random

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import launch_onboarding
from tests.workflows.onboarding_test import planned_emails
from tests.workflows.play_driver import PlayDriver, skip_to_next_monday, us_calendar
from tests.workflows.killable_worker import KillableWorker


async def test_worker_killed_repeatedly_mid_play_finishes_without_duplicates(env, pool, settings, sink):
    worker = KillableWorker(env.client, pool, settings)
    rng = random.Random(20261125)

    async def chaos(_status):
        if rng.random() < 0.4:
            # Let the worker pick up what the last tick set off, then cut it mid-flight.
            await asyncio.sleep(rng.uniform(0, 0.05))
            await worker.kill_and_restart()

    await worker.start()
    start = await skip_to_next_monday(env)
    cal = us_calendar(start)
    planned = planned_emails(cal, cal.roll_forward(start.date()))
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    result = await PlayDriver(env, pool, handle, cal).run(on_tick=chaos)
    await worker.stop()

    assert worker.kills >= 20
    steps = [m.step for m in sink.messages]
    assert len(steps) == len(set(steps)) and set(steps) == planned, steps
    assert await pool.fetchval("SELECT count(*) FROM communications WHERE status = 'sent'") == len(planned)
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1", handle.id) == 20
    assert result.failed_steps == {} and result.slip_days == 0
