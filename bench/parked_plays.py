"""100,000 parked plays: what a play costs while it sleeps on its timer for months.

Most plays spend almost all their life asleep: a renewal countdown launched a
year out has nothing to do for months. This bench launches --plays renewal
countdowns through the product (accounts renewing 300-360 days out, so the
first step is four months away), waits until every one has read its account
and parked on its timer, and reports:

- the launch rate through the product, and the time until all are parked;
- the worker's RSS once they are parked (and its peak while parking): a
  parked play holds no worker memory, only the workflow cache does;
- PostgreSQL's database size before and after, and the Temporal dev server's
  SQLite file before and after: the cost per parked play on disk;
- in the same run, on the same server, as many raw workflows that park on one
  timer with a small input (an in-process worker): the Temporal bytes of a
  parked play against a raw one (goal: at most 1.25x), and the worker memory
  per cached play (RSS growth over the plays the workflow cache holds; goal
  at most 0.15 MB).

Private stack on free ports (dev server with our search attributes and its
database on disk, embedded PostgreSQL, one worker.py, a counting relay).

    .venv/bin/python bench/parked_plays.py [--plays 100000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from aiosmtpd.controller import Controller  # noqa: E402
from datetime import timedelta  # noqa: E402

from temporalio import workflow  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

from activities.db import create_pool  # noqa: E402
from bench.stack import (  # noqa: E402
    CountingRelay, Stack, bulk_load, free_port, mb, prepare_database, proc_cpu_seconds, proc_status, run_bench,
    say, start_postgres, start_temporal, start_worker, wait_for_worker,
)
from core.settings import Settings  # noqa: E402
from starter.steering import launch_renewal  # noqa: E402

TASK_QUEUE = "parked"
RAW_QUEUE = "parked-raw"


@workflow.defn(name="RawParked")
class RawParked:
    """The floor: a workflow that parks on one timer with a small input (an account id)."""

    @workflow.run
    async def run(self, account_id: str) -> str:
        await workflow.sleep(timedelta(days=300))
        return account_id


async def raw_leg(client, temporal_db: Path, plays: int, concurrency: int) -> float:
    """Start `plays` RawParked workflows, wait until each sleeps on its timer; bytes per parked one."""
    before = file_size(temporal_db)
    async with Worker(client, task_queue=RAW_QUEUE, workflows=[RawParked], workflow_runner=UnsandboxedWorkflowRunner(),
                      max_cached_workflows=0):
        ids = iter(range(plays))

        async def lane():
            for i in ids:
                await client.start_workflow(RawParked.run, f"acct-{i:06d}", id=f"raw-{i:06d}", task_queue=RAW_QUEUE)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
        for i in range(plays - 1, -1, -max(1, plays // 20)):  # a sample, the last started first
            handle = client.get_workflow_handle(f"raw-{i:06d}")
            while True:
                events = [e.event_type async for e in handle.fetch_history_events()]
                if EventType.EVENT_TYPE_TIMER_STARTED in events:
                    break
                await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # the last few workflow tasks of the others
    return (file_size(temporal_db) - before) / plays


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())  # with -wal / -shm


async def bench(args, stack: Stack) -> None:
    say(f"Parked plays: {args.plays:,} renewal countdowns, {args.concurrency} launches at a time")
    await asyncio.to_thread(start_postgres, stack)
    url = await prepare_database(stack, "parked")
    await bulk_load(url, args.plays, status="active", say_every=False)
    pool = await create_pool(url, args.concurrency)
    await pool.execute("UPDATE accounts SET renewal_date = current_date + 300 + (hashtext(id) & 63) % 60")
    await pool.execute("VACUUM ANALYZE accounts")
    client = await start_temporal(stack)
    temporal_db = stack.root / "temporal.db"
    relay = CountingRelay()
    smtp_port = free_port()
    stack.sink_controller = Controller(relay, hostname="127.0.0.1", port=smtp_port)
    stack.sink_controller.start()
    worker = start_worker(stack, client, url, smtp_port, TASK_QUEUE)
    await wait_for_worker(client, worker, stack, TASK_QUEUE)
    settings = Settings(_env_file=None, database_url=url, task_queue=TASK_QUEUE, smtp_host="127.0.0.1",
                        smtp_port=smtp_port, data_dir=stack.root / "data")
    pg_before = await pool.fetchval("SELECT pg_database_size(current_database())")
    temporal_before = file_size(temporal_db)
    rss_idle = proc_status(worker.pid)["VmRSS"]
    say(f"- {args.plays:,} accounts loaded; PostgreSQL {pg_before / 2**20:,.0f} MB, Temporal {temporal_before / 2**20:,.1f} MB,"
        f" idle worker RSS {mb(rss_idle)}")
    try:
        ids = iter(range(args.plays))
        launched = 0
        began = time.monotonic()

        async def lane():
            nonlocal launched
            for i in ids:
                await launch_renewal(client, pool, settings, f"acct-{i:06d}", "bench")
                launched += 1

        async def progress():
            while True:
                await asyncio.sleep(10)
                rss = proc_status(worker.pid)["VmRSS"]
                say(f"  {time.monotonic() - began:6.0f} s  launched {launched:>7,}  worker RSS {mb(rss)}")

        reporter = asyncio.create_task(progress())
        await asyncio.gather(*(lane() for _ in range(args.concurrency)))
        launch_seconds = time.monotonic() - began
        say(f"- launched {launched:,} in {launch_seconds:,.0f} s ({launched / launch_seconds:,.0f}/s); "
            "waiting for the worker to park them")
        # Parked = the worker has nothing left to do: its CPU stays near zero. A run that hits
        # --timeout first still reports, with the share parked from a random sample.
        cpu, t = proc_cpu_seconds(worker.pid), time.monotonic()
        quiet = 0
        while quiet < 3 and time.monotonic() - began < args.timeout:
            await asyncio.sleep(5)
            cpu2, t2 = proc_cpu_seconds(worker.pid), time.monotonic()
            quiet = quiet + 1 if (cpu2 - cpu) / (t2 - t) < 0.05 else 0
            cpu, t = cpu2, t2
        finished = quiet >= 3
        parked_seconds = time.monotonic() - began - (15 if finished else 0)
        reporter.cancel()
        sample = random.Random(1).sample(range(args.plays), min(100, args.plays))
        parked = 0
        for i in sample:
            handle = client.get_workflow_handle(f"renewal-acct-{i:06d}")
            desc = await handle.describe()
            events = [e.event_type async for e in handle.fetch_history_events()]
            if not desc.raw_description.pending_activities and EventType.EVENT_TYPE_TIMER_STARTED in events:
                parked += 1
        status = proc_status(worker.pid)
        await pool.execute("CHECKPOINT")
        pg_after = await pool.fetchval("SELECT pg_database_size(current_database())")
        temporal_after = file_size(temporal_db)
        say(f"\nParked plays: {args.plays:,} renewal countdowns on one worker")
        say(f"  launch rate             {launched / launch_seconds:,.0f} plays/s through the product "
            f"({args.concurrency} at a time)")
        say(f"  {'all parked after' if finished else 'stopped (--timeout) at':<23} {parked_seconds:,.0f} s"
            f"{' (worker idle)' if finished else ', worker still parking'}; random sample of {len(sample)}: "
            f"{parked} asleep on a timer with no activity pending")
        say(f"  worker RSS              idle {mb(rss_idle)} before, {mb(status['VmRSS'])} with all parked, "
            f"peak {mb(status['VmHWM'])} (the workflow cache, not the plays)")
        say(f"  PostgreSQL              {pg_before / 2**20:,.0f} MB -> {pg_after / 2**20:,.0f} MB: "
            f"{(pg_after - pg_before) / args.plays:,.0f} bytes per parked play")
        say(f"  Temporal (SQLite)       {temporal_before / 2**20:,.1f} MB -> {temporal_after / 2**20:,.0f} MB: "
            f"{(temporal_after - temporal_before) / args.plays / 1024:,.1f} KB per parked play")
        say(f"  e-mails sent            {relay.received} (none expected: the first step is months away)")
        if args.raw:
            per_play = (temporal_after - temporal_before) / args.plays
            raw = await raw_leg(client, temporal_db, args.plays, args.concurrency)
            cached = min(args.plays, settings.workflow_cache_size)
            per_cached = (status["VmRSS"] - rss_idle) / 1024 / cached
            say(f"  raw parked workflow     {raw / 1024:,.1f} KB per parked one (same server, one timer, small input)")
            say(f"  play / raw              {per_play / raw:,.2f}x Temporal bytes (goal <= 1.25x)")
            say(f"  worker memory           {per_cached:,.3f} MB per cached play ({cached:,} cached; goal <= 0.15 MB)")
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plays", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds before reporting what is parked")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-raw", dest="raw", action="store_false", help="skip the raw workflows' leg")
    args = parser.parse_args()
    return run_bench(bench, args, "parked-")


if __name__ == "__main__":
    sys.exit(main())
