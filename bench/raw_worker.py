"""A worker for the raw comparison of `bench/start_rate.py`: one trivial workflow that runs one
trivial activity, on its own task queue, in its own process (as the product's worker is).

    .venv/bin/python bench/raw_worker.py <temporal address> <namespace> <task queue>
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn(name="raw_echo")
async def raw_echo(name: str) -> str:
    """The floor of one activity: no I/O."""
    return name


@workflow.defn(name="RawOneActivity")
class RawOneActivity:
    """Starts, runs one activity, completes: what Temporal itself costs per workflow."""

    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(raw_echo, name, start_to_close_timeout=timedelta(seconds=60))


async def main(address: str, namespace: str, task_queue: str) -> None:
    client = await Client.connect(address, namespace=namespace)
    async with Worker(client, task_queue=task_queue, workflows=[RawOneActivity], activities=[raw_echo]):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
