"""NPS cycle at scale: how long one worker takes to invite 100,000 accounts, and at what cost.

The NPS playbook promises a quarterly survey to every contact of every active
account; at 100,000 accounts the cycle must go out in under 5 minutes, on one
worker, without the worker's memory growing with the size of the cycle (the
cycle hands out batches from a cursor and continues as new when its history
grows, so nothing should accumulate). This script measures exactly that:

- the sending phase's wall time (launch to the last invitation marked sent)
  and e-mails per second;
- batches and continue-as-new runs of the `NpsCycle` workflow, and how long
  each batch took (from the workflow history);
- the worker's RSS at start, its peak, and at the end (flat, or growing?);
- the PostgreSQL database size afterwards, and which statements were slow
  and which tables were read by sequential scans while the cycle ran.

It starts a private stack on free ports in a temp dir, never the one of
./run.sh: embedded PostgreSQL, the SMTP sink, the Temporal dev server (with
our search attributes) and `--workers` `worker.py` processes (one by default; since issue 18
a cycle's shards of batches run on all of them), bulk-loads the accounts,
launches cycle "bench" and follows it with the `status` query. Everything it
started is stopped at the end, on Ctrl-C, and after --timeout.

    .venv/bin/python bench/nps_100k.py [--accounts 100000] [--workers 1] [--batch-size 1000] [--timeout 900]
        [--suppressed-pct 5] [--bouncing-pct 2] [--profile stacks.txt]

With issue 17's send-time checks: 5% of the contacts are suppressed (half unsubscribed from surveys
on our list, half opted out in the CRM) and 2% bounce: the relay accepts their copy and returns a
Postfix DSN to the VERP return path at the product's inbound listener, whose InboundMail plays
suppress the address and give the CSM a task while the cycle is still sending. The send window is
opened round the clock in the bench's copy of the playbooks, so the figures do not depend on the
hour the bench runs at.

Figures are printed, never asserted: a timing depends on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from aiosmtpd.controller import Controller  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus  # noqa: E402

from bench.stack import (  # noqa: E402
    CountingRelay, SinkCount, Stack, bulk_load, free_port, log_tail, machine_cpu, mb, pct, prepare_database,
    proc_cpu_seconds, proc_status, say, start_inbound, start_postgres, start_temporal, start_worker, wait_for_worker,
)
from activities.db import create_pool  # noqa: E402
from core.settings import PROJECT_ROOT, Settings  # noqa: E402
from starter.steering import launch_nps_cycle  # noqa: E402
from workflows.nps import NpsCycle  # noqa: E402
from workflows.nps_messages import cycle_workflow_id  # noqa: E402

CYCLE_ID = "bench"
TASK_QUEUE = "nps-bench"
DATABASE = "bench"
GOAL_SECONDS = 300  # the sending phase of 100,000 accounts, on one worker
GOAL_ACCOUNTS = 100_000


def playbooks_with_batch_size(root: Path, batch_size: int, parallel: int | None = None) -> Path:
    """A copy of the playbooks with the NPS batch size (and, given `parallel`, its shards) changed and
    its send window open round the clock (the bench must not depend on the hour it runs at): the
    launch snapshots them."""
    target = root / "playbooks"
    shutil.copytree(PROJECT_ROOT / "playbooks", target)
    nps = target / "nps.yaml"
    shards = f"\nparallel_batches: {parallel}" if parallel else ""
    text, n = re.subn(r"(?m)^batch_size:\s*\d+", f"batch_size: {batch_size}{shards}", nps.read_text())
    text, m = re.subn(r"(?m)^send_window:.*$", 'send_window: {days: [monday, tuesday, wednesday, thursday, friday, '
                      'saturday, sunday], opens: "00:00", closes: "24:00", on_holidays: true}', text)
    if n != 1 or m != 1:
        raise SystemExit("error: playbooks/nps.yaml has no top-level batch_size or send_window to change")
    nps.write_text(text)
    return target


def every(pct: float) -> int:
    """Every how many contacts one is picked, for `pct` percent of them (0: none)."""
    return round(100 / pct) if pct > 0 else 0


async def mark_contacts(url: str, accounts: int, suppressed_pct: float, bouncing_pct: float) -> tuple[int, int, set[str]]:
    """Suppress `suppressed_pct`% of the contacts (every other one on our list, unsubscribed from surveys;
    the rest opted out in the CRM) and pick `bouncing_pct`% others whose mailboxes do not exist:
    (suppressed on our list, opted out in the CRM, bouncing addresses)."""
    step_s, step_b = every(suppressed_pct), every(bouncing_pct)
    ours, crm, bouncing = [], [], set()
    for i in range(accounts):
        email = f"lee.park@acct-{i:06d}.example"
        if step_s and i % step_s == 0:
            (ours if (i // step_s) % 2 == 0 else crm).append(email)
        elif step_b and i % step_b == 1:
            bouncing.add(email)
    pool = await create_pool(url, 2)
    try:
        await pool.executemany(
            "INSERT INTO suppressions (address_key, category, reason, source, created_by)"
            " VALUES ($1, 'survey', 'unsubscribed', 'one-click', 'bench')", [(e,) for e in ours])
        await pool.execute("UPDATE contacts SET email_opt_out = true WHERE email = ANY($1::text[])", crm)
    finally:
        await pool.close()
    return len(ours), len(crm), bouncing


async def batch_timings(client: Client, first_run_id: str | None) -> tuple[list[float], list[float], int]:
    """Each batch's activity time (scheduled to completed) and the gaps between batches (the
    workflow's turn), over every run of the cycle, following continue-as-new from the first."""
    wid, run_id = cycle_workflow_id(CYCLE_ID), first_run_id
    durations, gaps, runs = [], [], 0
    while run_id:
        runs += 1
        history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
        scheduled: dict[int, datetime] = {}
        last_done, run_id = None, None
        for e in history.events:
            at = e.event_time.ToDatetime()
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                if e.activity_task_scheduled_event_attributes.activity_type.name != "send_survey_batch":
                    continue
                scheduled[e.event_id] = at
                if last_done is not None:
                    gaps.append((at - last_done).total_seconds())
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                began = scheduled.get(e.activity_task_completed_event_attributes.scheduled_event_id)
                if began is not None:
                    durations.append((at - began).total_seconds())
                    last_done = at
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return durations, gaps, runs


def slow_statements(pg_log: Path, top: int = 5) -> list[str]:
    """The worker's statements PostgreSQL logged as slower than --slow-ms, grouped by text."""
    stats: dict[str, list[float]] = defaultdict(list)
    pattern = re.compile(r"duration: ([\d.]+) ms\s+(?:statement|execute [^:]*):\s*(.*)")
    try:
        text = pg_log.read_text(errors="replace")
    except OSError:
        return []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = pattern.search(line)
        if m:
            statement = m.group(2)
            # A statement that starts with a newline goes on in the log's tab-indented continuation lines.
            for more in lines[i + 1:i + 4]:
                if statement.strip() or not more.startswith("\t"):
                    break
                statement = more
            stats[" ".join(statement.split())[:110]].append(float(m.group(1)))
    ranked = sorted(stats.items(), key=lambda kv: -sum(kv[1]))[:top]
    return [f"{len(v):>6} x  max {max(v):>7.0f} ms  total {sum(v) / 1000:>6.1f} s  {k}" for k, v in ranked]


async def run(args: argparse.Namespace, stack: Stack, t0: float) -> None:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)  # same path as Ctrl-C: clean up, then stop
    deadline = t0 + args.timeout
    try:
        await bench(args, stack, deadline)
    finally:
        stack.stop_worker()  # before Temporal goes, so the worker does not log a lost connection
        await stack.stop_temporal()


async def bench(args: argparse.Namespace, stack: Stack, deadline: float) -> None:
    say(f"NPS cycle bench: {args.accounts:,} accounts, batch size {args.batch_size}, "
        f"timeout {args.timeout:.0f}s, in {stack.root}")
    await asyncio.to_thread(start_postgres, stack)
    url = await prepare_database(stack, DATABASE)
    say(f"- PostgreSQL (embedded), database {DATABASE!r}, migrations applied")
    smtp_port, inbound_port = free_port(), free_port()
    loaded = time.monotonic()
    say(f"- loading {args.accounts:,} accounts (one contact each) and the staff ladder")
    await bulk_load(url, args.accounts)
    ours, crm, bouncing = await mark_contacts(url, args.accounts, args.suppressed_pct, args.bouncing_pct)
    say(f"  loaded in {time.monotonic() - loaded:.1f}s; {ours + crm:,} contacts suppressed ({ours:,} unsubscribed "
        f"from surveys, {crm:,} opted out in the CRM), {len(bouncing):,} whose mailbox does not exist")
    relay = CountingRelay(bouncing, ("127.0.0.1", inbound_port))
    stack.sink_controller = Controller(relay, hostname="127.0.0.1", port=smtp_port)
    stack.sink_controller.start()
    sink = SinkCount(relay)
    say(f"- counting SMTP relay on 127.0.0.1:{smtp_port} (Message-IDs noted, messages dropped unparsed; "
        f"a DSN back to the inbound listener for each bouncing address)")
    client = await start_temporal(stack)
    say(f"- Temporal dev server on {client.service_client.config.target_host}")

    workers = [start_worker(stack, client, url, smtp_port, TASK_QUEUE, args.slow_ms,
                            log_name="worker.log" if i == 0 else f"worker{i + 1}.log") for i in range(args.workers)]
    start_inbound(stack, client, url, smtp_port, TASK_QUEUE, inbound_port)
    for i, w in enumerate(workers):
        await wait_for_worker(client, w, stack, TASK_QUEUE, log_name="worker.log" if i == 0 else f"worker{i + 1}.log")
    await asyncio.sleep(3)  # the others' pollers: wait_for_worker sees the queue's, not each process's
    say(f"- {len(workers)} worker process(es) (pids {', '.join(str(w.pid) for w in workers)}) polling task queue "
        f"{TASK_QUEUE!r}; inbound listener on 127.0.0.1:{inbound_port}; load average {load()}")
    worker = Workers(workers)

    settings = Settings(_env_file=None, database_url=url, task_queue=TASK_QUEUE, smtp_host="127.0.0.1",
                        smtp_port=smtp_port, data_dir=stack.root / "data",
                        playbooks_dir=playbooks_with_batch_size(stack.root, args.batch_size, args.parallel))
    pool = await create_pool(url, 2)
    try:
        await pool.execute("SELECT pg_stat_reset()")  # table scans counted from the launch on
        rss0 = worker.status()["VmRSS"]
        cpu0 = worker.cpu()
        machine0, bench0 = machine_cpu(), time.process_time()
        launched_at, started = datetime.now(timezone.utc), time.monotonic()
        handle = await launch_nps_cycle(client, pool, settings, cycle_id=CYCLE_ID, launched_by="bench",
                                        task_queue=TASK_QUEUE)
        say(f"- launched {handle.id}; worker RSS {mb(rss0)}")
        if args.profile:  # py-spy samples the first worker while the cycle sends (collapsed stacks)
            stack.spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                                          str(worker.pid), "--format", "raw", "--rate", "50", "-o", args.profile],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        say()
        watched = await watch(args, client, worker, sink, stack.root / "worker.log", started, deadline)
        if getattr(stack, "spy", None) is not None:
            stack.spy.send_signal(signal.SIGINT)
            stack.spy.wait(30)
        # Bounces come back while the cycle sends; once it is done, wait for the last ones to be acted on.
        watched["bounces"] = await bounces_done(pool, relay, len(bouncing) if watched["outcome"] == "done" else 0,
                                                started, deadline)
        await report(args, client, pool, stack, sink, handle.first_execution_run_id, worker, watched,
                     launched_at, started, rss0, cpu0, machine0, bench0)
    finally:
        await pool.close()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Workers:
    """Several worker processes seen as one: RSS and CPU summed, alive while all are."""

    def __init__(self, procs: list[subprocess.Popen]):
        self.procs = procs
        self.pid = procs[0].pid
        self.returncode = None

    def poll(self):
        for p in self.procs:
            if p.poll() is not None:
                self.returncode = p.returncode
                return p.returncode
        return None

    def status(self) -> dict[str, int]:
        each = [proc_status(p.pid) for p in self.procs]
        return {"VmRSS": sum(e["VmRSS"] for e in each), "VmHWM": sum(e["VmHWM"] for e in each)}

    def each_rss(self) -> str:
        return " + ".join(mb(proc_status(p.pid)["VmRSS"]) for p in self.procs)

    def cpu(self) -> float:
        return sum(proc_cpu_seconds(p.pid) for p in self.procs)


async def bounces_done(pool, relay: CountingRelay, bouncing: int, started: float, deadline: float) -> dict:
    """Wait (within the deadline) until every bounce the relay returned has been acted on."""
    while time.monotonic() < deadline:
        done = await pool.fetchval("SELECT count(*) FROM inbound_mail WHERE processed_at IS NOT NULL")
        if relay.dsns_sent + relay.dsn_failures >= bouncing and done >= relay.dsns_sent:
            break
        await asyncio.sleep(1)
    last = await pool.fetchval("SELECT max(processed_at) FROM inbound_mail")
    return {"dsns": relay.dsns_sent, "dsn_failures": relay.dsn_failures, "last_processed": last,
            "waited": time.monotonic() - started}


async def watch(args, client: Client, worker: "Workers", sink: SinkCount, worker_log: Path,
                started: float, deadline: float) -> dict:
    """Query the cycle every few seconds until its phase leaves 'sending' (or time runs out)."""
    handle = client.get_workflow_handle(cycle_workflow_id(CYCLE_ID))  # the latest run, across continue-as-new
    rss_peak, progress, outcome, ended = 0, None, "timeout", None
    last_received, last_t, last_cpu = 0, started, worker.cpu()
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
            now = time.monotonic()
            if worker.poll() is not None:
                outcome = f"worker exited ({worker.returncode})"
                say(f"the worker exited:\n{log_tail(worker_log)}")
                break
            rss = worker.status()["VmRSS"]
            cpu = worker.cpu()
            rss_peak = max(rss_peak, rss)
            try:
                progress = await handle.query(NpsCycle.status, rpc_timeout=timedelta(seconds=20))
            except Exception as exc:  # a query can miss while a run hands over to the next: say so, go on
                say(f"{now - started:7.1f}s  query failed: {type(exc).__name__}: {exc}")
                desc = await handle.describe()
                if desc.status != WorkflowExecutionStatus.RUNNING:
                    outcome = f"cycle {desc.status.name.lower()}"
                    break
                continue
            # The query counts whole batches; the sink counts each e-mail, so its rate is the smooth one.
            received = sink.drain()
            rate = (received - last_received) / (now - last_t)
            say(f"{now - started:7.1f}s  {progress.phase:<8} sent {progress.sent:>7,}/{args.accounts:,}  "
                f"batches {progress.batches:>4}  runs {progress.run_count}  sink {received:>7,} ({rate:>4.0f}/s)  "
                f"worker RSS {mb(rss)}  CPU {100 * (cpu - last_cpu) / (now - last_t):.0f}%")
            last_received, last_t, last_cpu = received, now, cpu
            if progress.phase != "sending":
                outcome, ended = "done", now
                break
    except asyncio.CancelledError:
        outcome = "interrupted"  # Ctrl-C: still report what was reached, then stop everything
    return {"progress": progress, "rss_peak": rss_peak, "outcome": outcome, "ended": ended,
            "rss_end": worker.status()["VmRSS"] if worker.poll() is None else None,
            "hwm": worker.status()["VmHWM"] if worker.poll() is None else None,
            "cpu_end": worker.cpu() if worker.poll() is None else None,
            "machine_end": machine_cpu(), "bench_end": time.process_time(),
            "stopped": time.monotonic()}


async def report(args, client, pool, stack, sink: SinkCount, first_run_id, worker, watched, launched_at,
                 started, rss0, cpu0, machine0, bench0) -> None:
    await asyncio.sleep(1)  # the sink's last messages are parsed on its own thread
    received = sink.drain()
    invited = await pool.fetchval("SELECT count(*) FROM nps_invitations WHERE cycle_id = $1", CYCLE_ID)
    by_status = dict(await pool.fetch(
        "SELECT status, count(*) FROM communications WHERE workflow_id = $1 GROUP BY status",
        cycle_workflow_id(CYCLE_ID)))
    last_sent_at = await pool.fetchval("SELECT max(coalesce(sent_at, created_at)) FROM communications"
                                       " WHERE workflow_id = $1", cycle_workflow_id(CYCLE_ID))
    hard_bounces = await pool.fetchval("SELECT count(*) FROM suppressions WHERE reason = 'hard_bounce'")
    csm_tasks = await pool.fetchval("SELECT count(*) FROM tasks WHERE step LIKE 'bounce/%'")
    bounced = await pool.fetchval("SELECT count(*) FROM communication_recipients WHERE status = 'bounced'")
    db_size = await pool.fetchval("SELECT pg_database_size(current_database())")
    tables = await pool.fetch(
        "SELECT relname, pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables"
        " ORDER BY bytes DESC LIMIT 4")
    scans = await pool.fetch(
        "SELECT relname, seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables"
        " WHERE seq_tup_read > $1 ORDER BY seq_tup_read DESC LIMIT 4", 10 * args.accounts)
    durations, gaps, runs = await batch_timings(client, first_run_id)
    progress, outcome = watched["progress"], watched["outcome"]
    sent = by_status.get("sent", 0)
    elapsed = (last_sent_at - launched_at).total_seconds() if last_sent_at else None
    observed = (watched["ended"] or watched["stopped"]) - started

    say()
    say(f"NPS cycle, {args.accounts:,} accounts, {args.workers} worker(s) ({outcome}); load average now {load()}")
    say(f"  command                 {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    say(f"  accounts / contacts     {args.accounts:,} / {args.accounts:,} (status active, one contact each)")
    say(f"  invitations (rows)      {invited:,}")
    say(f"  e-mails sent (outbox)   {sent:,}" + (f"  ({by_status.get('pending', 0):,} pending)"
                                                  if by_status.get("pending") else ""))
    say(f"  e-mails suppressed      {by_status.get('suppressed', 0):,} (recorded in the outbox, not sent)")
    say(f"  e-mails at the sink     {received:,}  ({len(sink.message_ids):,} distinct Message-IDs)")
    b = watched["bounces"]
    say(f"  bounces                 {b['dsns']:,} DSNs back to the listener ({b['dsn_failures']} failed to arrive); "
        f"{bounced:,} recipients marked bounced, {hard_bounces:,} addresses suppressed, {csm_tasks:,} CSM tasks"
        + (f"; the last acted on {(b['last_processed'] - launched_at).total_seconds():,.1f} s after the launch"
           if b["last_processed"] else ""))
    if elapsed:
        what = "sending phase" if outcome == "done" else "sending, unfinished"
        say(f"  {what:<22}  {elapsed:,.1f} s  (launch to last e-mail sent or suppressed; "
            f"seen by polling after {observed:,.1f} s)")
        say(f"  e-mails per second      {sent / elapsed:,.0f} sent, {(sent + by_status.get('suppressed', 0)) / elapsed:,.0f} "
            "handled (sent or suppressed)")
    if progress is not None:
        say(f"  batches / runs          {progress.batches} batches of up to {args.batch_size}, "
            f"{progress.run_count} run(s) (continue-as-new {progress.run_count - 1}x); history: {runs} run(s)")
    if durations:
        say(f"  batch time              median {statistics.median(durations):.1f} s, p90 {pct(durations, 0.9):.1f} s,"
            f" max {max(durations):.1f} s; first {durations[0]:.1f} s, last {durations[-1]:.1f} s")
    if gaps:
        say(f"  between batches         median {statistics.median(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms")
    if watched["rss_end"] is not None:
        say(f"  worker RSS at the end   {worker.each_rss()} ({len(worker.procs)} process(es); the figures below are summed)")
        say(f"  worker RSS              start {mb(rss0)}, peak {mb(max(watched['rss_peak'], rss0))} sampled "
            f"({mb(watched['hwm'])} kernel high-water mark), end {mb(watched['rss_end'])}")
        say(f"  worker CPU              {watched['cpu_end'] - cpu0:,.1f} s over {observed:,.1f} s "
            f"({100 * (watched['cpu_end'] - cpu0) / observed:.0f}% of one core)")
        handled = sent + by_status.get("suppressed", 0)
        if handled:  # what contention changes least: compare runs by this, not by their wall time
            say(f"  worker CPU per e-mail   {1000 * (watched['cpu_end'] - cpu0) / handled:.2f} ms "
                f"(sent or suppressed; bounces' InboundMail plays and the notice relay included)")
    (busy1, total1), (busy0, total0) = watched["machine_end"], machine0
    say(f"  machine CPU             {100 * (busy1 - busy0) / (total1 - total0):.0f}% busy over {os.cpu_count()} cores "
        f"(PostgreSQL, Temporal, worker, and this process with the sink: "
        f"{watched['bench_end'] - bench0:,.1f} s CPU)")
    say(f"  PostgreSQL database     {db_size / 2**20:,.0f} MB  ("
        + ", ".join(f"{t['relname']} {t['bytes'] / 2**20:,.0f} MB" for t in tables) + ")")
    if scans:
        say("  sequential scans        " + "; ".join(
            f"{s['relname']}: {s['seq_scan']:,} scans, {s['seq_tup_read']:,} rows read" for s in scans))
    slow = slow_statements(stack.root / "pg" / "log")
    say(f"  worker SQL > {args.slow_ms} ms".ljust(26) + ("none" if not slow else f"{len(slow)} kinds, by total time:"))
    for line in slow:
        say(f"    {line}")
    if outcome == "done" and elapsed:
        verdict = "met" if elapsed < GOAL_SECONDS else "NOT met"
        say(f"  goal (< {GOAL_SECONDS // 60} min for 100k) {verdict}" + (
            "" if args.accounts == GOAL_ACCOUNTS
            else f" at this size; at this rate 100,000 would take ~{GOAL_ACCOUNTS / (sent / elapsed):,.0f} s"))
    else:
        reached = progress.sent if progress else 0
        say(f"  goal (< {GOAL_SECONDS // 60} min for 100k) not reached: stopped ({outcome}) "
            f"with {reached:,} of {args.accounts:,} invitations after {observed:,.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=GOAL_ACCOUNTS)
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the cycle's batches")
    parser.add_argument("--batch-size", type=int, default=1000, help="the NPS playbook's batch_size (1-5000)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="the NPS playbook's parallel_batches (1-32; default: the playbook's own)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before the bench stops by itself")
    parser.add_argument("--interval", type=float, default=5, help="seconds between progress lines")
    parser.add_argument("--slow-ms", type=int, default=100, help="worker statements slower than this are listed")
    parser.add_argument("--profile", help="write py-spy's collapsed stacks of the first worker here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    parser.add_argument("--suppressed-pct", type=float, default=5, help="contacts suppressed (ours and the CRM's)")
    parser.add_argument("--bouncing-pct", type=float, default=2, help="contacts whose mailbox does not exist")
    args = parser.parse_args()
    if not 1 <= args.batch_size <= 5000 or args.accounts < 1:
        parser.error("--accounts must be >= 1 and --batch-size between 1 and 5000")
    t0 = time.monotonic()
    stack = Stack(Path(tempfile.mkdtemp(prefix="nps-bench-")))
    code = 0
    try:
        asyncio.run(run(args, stack, t0))
    except KeyboardInterrupt:
        code = 130
    finally:
        say("stopping the bench stack...")
        stack.stop(args.keep)
        say(f"stopped after {time.monotonic() - t0:.0f}s.")
    return code


if __name__ == "__main__":
    sys.exit(main())
