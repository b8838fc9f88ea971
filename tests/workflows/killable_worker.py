"""A worker a test can kill mid-flight and start again, as often as it likes."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from worker import build_worker


class KillableWorker:
    def __init__(self, client, pool, settings):
        self.client, self.pool, self.settings = client, pool, settings
        self.kills = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        # No workflow cache: every workflow task replays the play from its
        # history on whichever worker is alive (a harder test of determinism),
        # and queries never wait on a dead worker's sticky queue.
        worker = build_worker(self.client, self.pool, self.settings, self.settings.task_queue, max_cached_workflows=0)
        self._task = asyncio.create_task(worker.run())
        # A cancel while the worker still validates its namespace leaves it
        # registered and the next start fails: only kill a running worker.
        while not worker.is_running and not self._task.done():
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    async def kill_and_restart(self) -> None:
        await self.stop()
        self.kills += 1
        await self.start()
