"""Workers die during a seven-month countdown: no e-mail, task or risk mark twice."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import complete_task, launch_renewal
from tests.workflows.killable_worker import KillableWorker
from tests.workflows.play_driver import skip_to_next_monday
from tests.workflows.renewal_test import ENTERPRISE_EMAILS, ENTERPRISE_TASKS
from workflows.renewal import RenewalCountdown
from workflows.renewal_messages import Renewed


async def test_worker_killed_repeatedly_mid_countdown_gives_no_duplicates(env, pool, settings, sink):
    worker = KillableWorker(env.client, pool, settings)
    rng = random.Random(20261126)
    await worker.start()
    start = await skip_to_next_monday(env)
    renewal = start.date() + timedelta(days=180)
    handle = await launch_renewal(env.client, pool, settings, DEMO_ACCOUNT_ID, "test", renewal, settings.task_queue)
    for _ in range(0, 171, 3):
        await env.sleep(timedelta(days=3))
        # Complete what is open, so task signals land on dying workers too.
        for row in await pool.fetch("SELECT id FROM tasks WHERE workflow_id = $1 AND status <> 'completed'", handle.id):
            await complete_task(env.client, pool, row["id"], "driver")
        if rng.random() < 0.5:
            await asyncio.sleep(rng.uniform(0, 0.05))
            await worker.kill_and_restart()
    await handle.signal(RenewalCountdown.renewed, Renewed(signed_by="Dana Reyes"))
    for _ in range(5):
        await env.sleep(timedelta(days=8))
        await worker.kill_and_restart()
    result = await handle.result()
    await worker.stop()

    assert worker.kills >= 20
    assert [m.step for m in sink.messages] == [step for step, _ in ENTERPRISE_EMAILS]
    assert await pool.fetchval("SELECT count(*) FROM communications WHERE status = 'sent'") == len(ENTERPRISE_EMAILS)
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1", handle.id) == len(ENTERPRISE_TASKS)
    assert await pool.fetchval("SELECT count(*) FROM risk_events") == 1
    assert result.outcome == "renewed" and result.failed_steps == {}
