"""Workers die: a play survives repeated worker kills with no e-mail or task twice."""

from __future__ import annotations

import asyncio
import random
from contextlib import suppress

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import launch_onboarding
from tests.workflows.onboarding_test import ON_TIME_EMAILS
from tests.workflows.play_driver import PlayDriver, skip_to_next_monday
from worker import build_worker


async def test_worker_killed_repeatedly_mid_play_finishes_without_duplicates(env, pool, settings, sink):
    running: dict = {}
    kills = 0

    def start_worker():
        # No workflow cache: every workflow task replays the play from its
        # history on whichever worker is alive (a harder test of determinism),
        # and queries never wait on a dead worker's sticky queue.
        worker = build_worker(env.client, pool, settings, settings.task_queue, max_cached_workflows=0)
        running["task"] = asyncio.create_task(worker.run())

    async def kill_worker():
        running["task"].cancel()
        with suppress(asyncio.CancelledError):
            await running["task"]

    rng = random.Random(20261125)

    async def chaos(_status):
        nonlocal kills
        if rng.random() < 0.4:
            # Let the worker pick up what the last tick set off, then cut it mid-flight.
            await asyncio.sleep(rng.uniform(0, 0.05))
            await kill_worker()
            kills += 1
            start_worker()

    start_worker()
    await skip_to_next_monday(env)
    handle = await launch_onboarding(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", settings.task_queue)
    result = await PlayDriver(env, pool, handle).run(on_tick=chaos)
    await kill_worker()

    assert kills >= 20
    steps = [m.step for m in sink.messages]
    assert len(steps) == len(set(steps)) == len(ON_TIME_EMAILS), steps
    assert await pool.fetchval("SELECT count(*) FROM communications WHERE status = 'sent'") == len(ON_TIME_EMAILS)
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1", handle.id) == 20
    assert result.failed_steps == {} and result.slip_days == 0
