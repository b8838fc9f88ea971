"""Start rate: playbook launches per second through the product, against raw `client.start_workflow`.

A CRM import or a segment launch starts plays by the thousand. The product's
start path adds to Temporal's own: the account is read from PostgreSQL, the
playbook snapshot is taken (cached while its files do not change), the input
model is built and validated, search attributes are set. This bench measures
both on the same dev server in the same run, with the same concurrency:

- raw: `client.start_workflow` of a trivial workflow (one argument, no search
  attributes), the floor Temporal sets;
- product: `launch_onboarding` (what `csplay launch`, the console, the HTTP API
  and the CRM webhook call) for distinct accounts.

Neither set of workflows runs while it is measured (no worker polls yet), so the
figure is the start path alone. Then the drain: a backlog of raw one-activity
workflows (bench/raw_worker.py, one process) and the backlog of launched plays
(one worker.py, until every play has sent its welcome e-mail) are each drained
by one worker process in turn, on the same server, and the ratio is printed.

    .venv/bin/python bench/start_rate.py [--starts 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from temporalio import workflow  # noqa: E402

from activities.db import create_pool  # noqa: E402
from bench.stack import (  # noqa: E402
    CountingRelay, Stack, accounts_in_send_window, bulk_load, child_pids, free_port, mb, prepare_database, proc_cpu_seconds, proc_status, run_bench, say,
    start_postgres,
    start_temporal, start_worker, wait_for_worker,
)
from aiosmtpd.controller import Controller  # noqa: E402
from core.settings import Settings  # noqa: E402
from starter.steering import launch_onboarding  # noqa: E402

TASK_QUEUE = "start-rate"
RAW_QUEUE = "start-rate-raw"  # no worker polls it: the trivial workflows only need starting
DRAIN_QUEUE = "start-rate-drain"  # raw one-activity workflows, drained by bench/raw_worker.py
GOAL_RATIO = 0.8


@workflow.defn(name="TrivialWorkflow")
class TrivialWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return name


async def timed_starts(n: int, concurrency: int, start_one) -> tuple[float, list[float]]:
    """Wall time of n starts, `concurrency` at a time, and each start's latency."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def lane():
        for i in queue:
            t = time.perf_counter()
            await start_one(i)
            latencies.append(time.perf_counter() - t)

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


def line(name: str, n: int, seconds: float, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (f"  {name:<28} {n:>6} starts in {seconds:6.2f} s = {n / seconds:7.1f}/s   "
            f"latency median {1000 * statistics.median(latencies):5.1f} ms, p95 {1000 * p95:5.1f} ms")


async def bench(args, stack: Stack) -> None:
    say(f"Start rate: {args.starts} starts each, {args.concurrency} at a time")
    await asyncio.to_thread(start_postgres, stack)
    url = await prepare_database(stack, "start_rate")
    await bulk_load(url, args.starts, status="onboarding", say_every=False)
    say(f"  accounts in {await accounts_in_send_window(url)}: the welcome e-mails go out now")
    client = await start_temporal(stack)
    relay = CountingRelay()
    smtp_port = free_port()
    stack.sink_controller = Controller(relay, hostname="127.0.0.1", port=smtp_port)
    stack.sink_controller.start()
    settings = Settings(_env_file=None, database_url=url, task_queue=TASK_QUEUE, smtp_host="127.0.0.1",
                        smtp_port=smtp_port, data_dir=stack.root / "data")
    pool = await create_pool(url, args.concurrency)
    try:
        # Warm both paths (connections, the snapshot cache) outside the measure.
        await client.start_workflow(TrivialWorkflow.run, "warm", id="raw-warm", task_queue=RAW_QUEUE)
        await launch_onboarding(client, pool, settings, "acct-000000", "bench")
        if not args.drain_only:
            raw = await timed_starts(args.starts - 1, args.concurrency, lambda i: client.start_workflow(
                TrivialWorkflow.run, f"n{i}", id=f"raw-{i}", task_queue=RAW_QUEUE))
        product = await timed_starts(args.starts - 1, args.concurrency, lambda i: launch_onboarding(
            client, pool, settings, f"acct-{i + 1:06d}", "bench"))
        if not args.drain_only:
            say(line("raw client.start_workflow", args.starts - 1, *raw))
        say(line("product launch_onboarding", args.starts - 1, *product))
        if not args.drain_only:
            ratio = ((args.starts - 1) / product[0]) / ((args.starts - 1) / raw[0])
            say(f"  ratio product / raw          {ratio:.2f}  "
                f"(goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'NOT met'})")

        raw_seconds = await raw_drain(args, stack, client)

        say(f"- load average {load()}; starting a worker: every launched play must send its welcome e-mail")
        worker = start_worker(stack, client, url, smtp_port, TASK_QUEUE)
        await wait_for_worker(client, worker, stack, TASK_QUEUE)
        spy = None
        if args.profile:  # py-spy samples the worker during the drain (collapsed stacks, one per line)
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(worker.pid),
                                    "--format", "raw", "--rate", "50", "-o", args.profile],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        began, server0 = time.monotonic(), server_cpu()
        cpu0 = proc_cpu_seconds(worker.pid)
        # A play's welcome goes to the sponsor and the contact, one copy each (VERP): count plays, not copies.
        welcomed = 0
        while welcomed < args.starts and time.monotonic() - began < args.timeout:
            await asyncio.sleep(0.2)
            welcomed = await pool.fetchval("SELECT count(*) FROM communications WHERE step LIKE '%welcome'"
                                           " AND status = 'sent'")
        seconds = time.monotonic() - began
        cpu = proc_cpu_seconds(worker.pid) - cpu0
        server = server_cpu() - server0
        rss = proc_status(worker.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        say(f"  plays whose welcome e-mail went out: {welcomed} of {args.starts} ({relay.received} copies at the relay; "
            f"{seconds:.1f} s to drain the backlog on one worker = {welcomed / seconds:.1f} plays/s; "
            f"worker CPU {cpu:.0f} s = {100 * cpu / seconds:.0f}% of a core, RSS {mb(rss.get('VmRSS', 0))}, "
            f"peak {mb(rss.get('VmHWM', 0))})")
        say(f"  CPU per play: dev server {1000 * server / max(welcomed, 1):.0f} ms, "
            f"worker {1000 * cpu / max(welcomed, 1):.1f} ms")
        raw_rate, rate = args.drain / raw_seconds, welcomed / seconds
        say(f"  drain ratio product / raw    {rate / raw_rate:.2f}  ({rate:.1f} plays/s against {raw_rate:.1f} raw "
            f"workflows/s; load average now {load()})")
    finally:
        await pool.close()


def server_cpu() -> float:
    """CPU seconds of the Temporal dev server (this process's `temporal` child) so far: a figure that
    contention for the cores changes far less than wall time."""
    total = 0.0
    for pid in child_pids():
        try:
            if "temporal" in Path(f"/proc/{pid}/cmdline").read_text():
                total += proc_cpu_seconds(pid)
        except OSError:
            pass
    return total


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def raw_drain(args, stack: Stack, client) -> float:
    """Seconds one raw worker process takes to drain a backlog of `args.drain` one-activity workflows."""
    say(f"- raw drain: {args.drain} one-activity workflows queued, then one bench/raw_worker.py (load {load()})")
    await timed_starts(args.drain, args.concurrency, lambda i: client.start_workflow(
        "RawOneActivity", f"d{i}", id=f"raw-drain-{i}", task_queue=DRAIN_QUEUE))
    target = client.service_client.config.target_host
    raw = subprocess.Popen([sys.executable, str(Path(__file__).with_name("raw_worker.py")), target, client.namespace,
                            DRAIN_QUEUE], cwd=stack.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for_worker(client, raw, stack, DRAIN_QUEUE)
        began, server0, raw_cpu0 = time.monotonic(), server_cpu(), proc_cpu_seconds(raw.pid)
        query = f"TaskQueue = '{DRAIN_QUEUE}' AND ExecutionStatus = 'Completed'"
        while (await client.count_workflows(query)).count < args.drain:
            if time.monotonic() - began > args.timeout:
                raise SystemExit("error: the raw drain did not finish")
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - began
        server, worker_cpu = server_cpu() - server0, proc_cpu_seconds(raw.pid) - raw_cpu0
    finally:
        raw.terminate()
        raw.wait(10)
    say(f"  raw one-activity workflows: {args.drain} in {seconds:.1f} s = {args.drain / seconds:.1f}/s; CPU per "
        f"workflow: dev server {1000 * server / args.drain:.0f} ms, worker {1000 * worker_cpu / args.drain:.1f} ms")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--drain", type=int, default=1000, help="raw one-activity workflows for the drain comparison")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the welcome e-mails")
    parser.add_argument("--drain-only", action="store_true", help="skip the raw start rate (the drain still compares)")
    parser.add_argument("--profile", help="write py-spy's collapsed stacks of the worker during the drain here")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    return run_bench(bench, args, "start-rate-")


if __name__ == "__main__":
    sys.exit(main())
