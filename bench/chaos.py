"""Chaos: worker.py killed with SIGKILL, PostgreSQL and the SMTP relay stopped, while every playbook runs;
then count, per (workflow, step), what was lost and what was doubled.

The legs run on the local dev server, in real time (all by default; `--leg NAME` runs one):

  kills     The immediate work of every playbook for 100 accounts (onboarding launches; renewals
            launched inside their final window, whose overdue steps fire at once; P0 tickets,
            escalated at once; churn flags to RED; NPS cycles of 75 contacts), launched over about a
            minute while worker.py is SIGKILLed at random moments (at least --kills times) and
            restarted at once.
  outages   PostgreSQL stopped for --outage seconds right after a burst of plays started, then the
            SMTP relay, likewise. Activities retry with backoff; the report shows the retrying
            activities as the Temporal UI shows them (activity, attempt, last failure) and counts the
            worker's log lines about the outage.
  chat      Slack and Teams notifications (P0 tickets, churn flags to RED) under SIGKILLs, to local
            stand-ins that answer as Slack and Teams do (bench/chaos_deliveries.py).
  crm       HubSpot write-back (onboarding tasks and e-mails of 30 linked accounts) while HubSpot
            answers 429 and 500 for --outage seconds and worker.py is SIGKILLed; then it recovers.

Whole plays (30 days, 210 days) under kills are the tests' job: a dev server cannot skip months, and
the time-skipping test server stalls once a SIGKILLed worker leaves started tasks behind (its clock
waits on them), so `tests/workflows/worker_restart_test.py` and `renewal_restart_test.py` kill an
in-process worker 20+ times through whole plays instead.

Each leg runs its scenario twice on fresh servers and a fresh database: undisturbed (the reference),
then with the chaos. Counted per (workflow id, step): e-mails at the SMTP relay, tasks and escalations
in PostgreSQL. Lost = present after the reference, missing after the chaos. Duplicates = more than one.
Also: outbox rows still pending, and outbox rows marked sent that never reached the relay. Goal: all 0.

    .venv/bin/python -m bench.chaos [--leg kills|outages|chat|crm] [--kills 20] [--outage 60] [--seed 7]

Figures are printed, never asserted; the exit code is 1 when anything was lost or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import asyncpg  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from activities.db import create_pool  # noqa: E402
from bench import chaos_deliveries  # noqa: E402
from bench.stack import Stack, bulk_load, free_port, log_tail, prepare_database, say, start_postgres  # noqa: E402
from bench.stack import start_postgres_server, start_temporal, start_worker, stop_postgres_server  # noqa: E402
from core.settings import Settings  # noqa: E402
from starter import steering  # noqa: E402
from starter.mail_sink import MailSink  # noqa: E402
from tests.round_the_clock import round_the_clock  # noqa: E402
from workflows.churn_messages import IndicatorFlag  # noqa: E402

TASK_QUEUE = "chaos"
DEV_ACCOUNTS = 100
LEGS = ("kills", "outages", "chat", "crm")
DELIVERY_LEGS = ("chat", "crm")  # bench/chaos_deliveries.py


# -- one run: servers, a restartable worker, the relay -----------------------------------------
class Worker:
    """worker.py as its own process: started, SIGKILLed and started again."""

    def __init__(self, stack: Stack, client: Client, url: str, smtp_port: int, extra_env: dict, log_name: str):
        self.stack, self.client, self.url, self.smtp_port = stack, client, url, smtp_port
        self.extra_env, self.log_name = extra_env, log_name
        self.kills = 0
        self.proc = None

    async def start(self) -> None:
        log = self.stack.root / self.log_name
        seen = log.read_text(errors="replace").count("worker.started") if log.exists() else 0
        self.proc = start_worker(self.stack, self.client, self.url, self.smtp_port, TASK_QUEUE,
                                 extra_env=self.extra_env, log_name=self.log_name)
        deadline = time.monotonic() + 90
        while log.read_text(errors="replace").count("worker.started") <= seen:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: worker.py did not start:\n{log_tail(log)}")
            await asyncio.sleep(0.05)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    async def killer(self, stop: asyncio.Event, low: float, high: float) -> None:
        """SIGKILL at random moments, restart at once, until told to stop."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), random.uniform(low, high))
                return
            except asyncio.TimeoutError:
                pass
            self.kill9()
            await self.start()


@dataclass
class Observed:
    emails: Counter = field(default_factory=Counter)
    tasks: Counter = field(default_factory=Counter)
    escalations: Counter = field(default_factory=Counter)
    pending_outbox: int = 0
    sent_not_received: int = 0
    redelivered: int = 0  # the same message (same Message-ID) at the relay twice
    messages: Counter = field(default_factory=Counter)       # chat and CRM legs (bench/chaos_deliveries.py)
    hook_messages: Counter = field(default_factory=Counter)
    crm: Counter = field(default_factory=Counter)
    deliveries: Counter = field(default_factory=Counter)
    kills: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Run:
    """A fresh database, Temporal server and relay on the leg's PostgreSQL server."""

    def __init__(self, stack: Stack, name: str, extra_env: dict | None = None, fakes: dict | None = None):
        self.stack, self.name = stack, name
        self.extra_env, self.fakes, self.notes = extra_env or {}, fakes, []
        self.sink = MailSink(None)
        self.smtp_port = free_port()
        self.relay: Controller | None = None

    def start_relay(self) -> None:
        self.relay = Controller(self.sink, hostname="127.0.0.1", port=self.smtp_port)
        self.relay.start()

    def stop_relay(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None

    async def __aenter__(self) -> "Run":
        self.url = await prepare_database(self.stack, self.name)
        self.pool = await create_pool(self.url, 4)
        self.start_relay()
        self.client = await start_temporal(self.stack, db_name=f"temporal-{self.name}.db")
        # The playbooks open round the clock, as the tests that run in real time use them: a chaos run at
        # night must send what it counts, not defer every e-mail to 09:00 in the accounts' zone.
        playbooks = round_the_clock(self.stack.root)
        self.settings = Settings(_env_file=None, database_url=self.url, task_queue=TASK_QUEUE, smtp_host="127.0.0.1",
                                 smtp_port=self.smtp_port, data_dir=self.stack.root / "data", playbooks_dir=playbooks)
        self.worker = Worker(self.stack, self.client, self.url, self.smtp_port,
                             {"LOG_LEVEL": "INFO", "PLAYBOOKS_DIR": str(playbooks), **self.extra_env},
                             f"worker-{self.name}.log")
        await self.worker.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self.stack.worker = self.worker.proc
        self.stack.stop_worker()
        await self.stack.stop_temporal()
        self.stop_relay()
        await self.pool.close()

    async def observe(self) -> Observed:
        await asyncio.sleep(1)  # the relay parses on its own thread
        seen = Observed(kills=self.worker.kills)
        copies = list(self.sink.copies)
        # A recipient sees one message per Message-ID (mail systems collapse re-deliveries of it);
        # two different messages for one step would be a real duplicate. Each recipient gets a copy of
        # its own (its own return path): a re-delivery is the same copy, to the same recipient, again.
        seen.emails = Counter((wid, step) for wid, step, _ in {(m.workflow_id, m.step, m.message_id) for m in copies})
        seen.redelivered = len(copies) - len({(m.message_id, m.rcpt_to) for m in copies})
        for table, counter in (("tasks", seen.tasks), ("escalations", seen.escalations)):
            for r in await self.pool.fetch(f"SELECT workflow_id, step, count(*) AS n FROM {table} GROUP BY 1, 2"):
                counter[(r["workflow_id"], r["step"])] = r["n"]
        seen.pending_outbox = await self.pool.fetchval("SELECT count(*) FROM communications WHERE status IN ('pending', 'deferred')")
        sent = {(r["workflow_id"], r["step"]) for r in await self.pool.fetch(
            "SELECT workflow_id, step FROM communications WHERE status = 'sent'")}
        seen.sent_not_received = len(sent - set(seen.emails))
        return seen

    async def quiet(self, workflow_ids: list[str], stable_for: float = 6, timeout: float = 600) -> None:
        """Until no play has an activity pending and nothing new was written for `stable_for` s."""
        deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            try:
                now_counts = (len(self.sink.copies), await self.pool.fetchval(
                    "SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM escalations)"
                    " + (SELECT count(*) FROM communications WHERE status = 'sent')"))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(0.5)  # our own connections to a restarted PostgreSQL are re-made
                continue
            if now_counts != last:
                last, since = now_counts, time.monotonic()
            elif time.monotonic() - since >= stable_for and not await self.pending(workflow_ids):
                return
            await asyncio.sleep(0.5)
        say(f"  (still busy after {timeout:.0f} s)")

    async def pending(self, workflow_ids: list[str]) -> list[tuple[str, str, int, str]]:
        """(workflow, activity, attempt, last failure) of every pending activity: what the UI shows."""
        found = []
        for wid in workflow_ids:
            try:
                desc = await self.client.get_workflow_handle(wid).describe()
            except RPCError:
                continue
            for a in desc.raw_description.pending_activities:
                found.append((wid, a.activity_type.name, a.attempt, a.last_failure.message))
        return found


# -- scenarios -------------------------------------------------------------------------------
async def dev_accounts(run: Run, n: int) -> list[str]:
    await bulk_load(run.url, n, status="onboarding", say_every=False)
    # Three contacts each, as NPS surveys every contact.
    await run.pool.execute(
        "INSERT INTO contacts (account_id, name, email, role) SELECT id, 'Sam Ortiz', 'sam.ortiz@' || id || '.example',"
        " 'user' FROM accounts UNION ALL SELECT id, 'Kim Lee', 'kim.lee@' || id || '.example', 'user' FROM accounts")
    return [r["id"] for r in await run.pool.fetch("SELECT id FROM accounts ORDER BY id")]


async def burst(run: Run, accounts: list[str], pace: float, tag: str) -> list[str]:
    """Every playbook's immediate work, one account at a time, `pace` seconds apart; the play ids."""
    c, p, s = run.client, run.pool, run.settings
    started = []
    today = datetime.now(timezone.utc).date()
    for i, account in enumerate(accounts):
        kind = i % 4
        if kind == 0:
            h = await steering.launch_onboarding(c, p, s, account, "chaos")
        elif kind == 1:  # inside the final window: the proposal and the signature chase are overdue at once
            await p.execute("UPDATE accounts SET renewal_date = $2 WHERE id = $1", account, today + timedelta(days=20))
            h = await steering.launch_renewal(c, p, s, account, "chaos")
        elif kind == 2:
            h = await steering.open_ticket(c, p, s, f"T-{tag}-{i}", account, "P0", "Production down", launched_by="chaos")
        else:
            for indicator in ("contract_disputed", "renewal_past_due", "key_stakeholder_departed"):
                h = await steering.flag_risk(c, p, s, account, IndicatorFlag(indicator=indicator, source="chaos"))
        started.append(h.id)
        if i % 25 == 24:  # a survey cycle for the last 25 accounts (75 contacts)
            cycle = await steering.launch_nps_cycle(c, p, s, cycle_id=f"chaos-{tag}-{i // 25}",
                                                    account_ids=accounts[i - 24:i + 1], launched_by="chaos")
            started.append(cycle.id)
        await asyncio.sleep(pace)
    # Follow-ups the cycles started (none: nobody answered) and the churn watches are all in `started`.
    return sorted(set(started))


async def scenario_kills(run: Run, chaos: bool, args) -> list[str]:
    accounts = await dev_accounts(run, DEV_ACCOUNTS)
    stop = asyncio.Event()
    killer = asyncio.create_task(run.worker.killer(stop, 0.3, 2.0)) if chaos else None
    plays = await burst(run, accounts, 0.6, "d")
    if killer:
        while run.worker.kills < args.kills:  # kills land on retries and NPS batches still in flight
            await asyncio.sleep(0.2)
        stop.set()
        await killer
    await run.quiet(plays)
    return plays


async def scenario_outages(run: Run, chaos: bool, args) -> list[str]:
    accounts = await dev_accounts(run, 40)
    plays = await burst(run, accounts[:20], 0.05, "a")
    if chaos:
        await outage(run, "PostgreSQL", args.outage, plays, stop=lambda: stop_postgres_server(run.stack),
                     start=lambda: start_postgres_server(run.stack))
    await run.quiet(plays)
    more = await burst(run, accounts[20:], 0.05, "b")
    plays += more
    if chaos:
        await outage(run, "SMTP relay", args.outage, more, stop=run.stop_relay, start=run.start_relay)
    await run.quiet(plays)
    return plays


async def outage(run: Run, what: str, seconds: float, plays: list[str], stop, start) -> None:
    log = run.stack.root / run.worker.log_name
    before = log.read_text(errors="replace").count("\n")
    say(f"  {what} down for {seconds:.0f} s")
    await asyncio.to_thread(stop)
    await asyncio.sleep(seconds / 2)
    retrying = await run.pending(plays)
    await asyncio.sleep(seconds / 2)
    await asyncio.to_thread(start)
    lines = log.read_text(errors="replace").splitlines()[before:]
    failed = [ln for ln in lines if "retry" in ln.lower() or "failed" in ln.lower()]
    say(f"  {what} back; mid-outage {len(retrying)} activities were retrying, as the Temporal UI shows them:")
    for wid, activity, attempt, failure in retrying[:4]:
        say(f"    {wid}  {activity}  attempt {attempt}  last failure: {failure[:90]}")
    say(f"  worker log during the outage: {len(failed)} lines about failed attempts, e.g.")
    for ln in failed[:2]:
        say(f"    {ln[:200]}")


SCENARIOS = {"kills": scenario_kills, "outages": scenario_outages,
             "chat": lambda run, chaos, args: chaos_deliveries.scenario_chat(run, chaos, args, dev_accounts),
             "crm": lambda run, chaos, args: chaos_deliveries.scenario_crm(run, chaos, args, dev_accounts)}


# -- comparing -------------------------------------------------------------------------------------
def compare(leg: str, ref: Observed, chaos: Observed) -> bool:
    say(f"\n{leg}: reference {ref.seconds:.0f} s, chaos {chaos.seconds:.0f} s with {chaos.kills} SIGKILLs")
    ok = True
    for what in ("emails", "tasks", "escalations"):
        r, k = getattr(ref, what), getattr(chaos, what)
        lost = sorted(set(r) - set(k))
        extra = sorted(set(k) - set(r))
        dups = sum(n - 1 for n in k.values() if n > 1)
        say(f"  {what:<12} reference {sum(r.values()):>5} in {len(r):>5} (workflow, step)  chaos {sum(k.values()):>5}"
            f"  lost {len(lost)}  duplicates {dups}  not in the reference {len(extra)}")
        for key in lost[:5]:
            say(f"    lost: {key}")
        for key, n in [(key, n) for key, n in k.items() if n > 1][:5]:
            say(f"    {n}x: {key}")
        for key in extra[:5]:
            say(f"    only after the chaos: {key}")
        ok = ok and not lost and not dups
    say(f"  outbox rows still pending {chaos.pending_outbox}; marked sent but never at the relay "
        f"{chaos.sent_not_received}; the same message (same Message-ID) delivered again {chaos.redelivered}")
    ok = ok and not chaos.pending_outbox and not chaos.sent_not_received
    if leg in DELIVERY_LEGS:
        ok = chaos_deliveries.compare(ref, chaos, say) and ok
    for note in chaos.notes:
        say(f"  {note}")
    return ok


async def run_leg(leg: str, args, stack: Stack) -> tuple[Observed, Observed]:
    scenario = SCENARIOS[leg]
    seen = []
    for n, chaos in enumerate((False, True)):
        say(f"- {leg}: {'chaos' if chaos else 'reference'} run")
        started = time.monotonic()
        fakes = await chaos_deliveries.serve_fakes() if leg in DELIVERY_LEGS else None
        async with Run(stack, f"{leg}_{n}", chaos_deliveries.worker_env(fakes) if fakes else None, fakes) as run:
            plays = await scenario(run, chaos, args)
            observed = await run.observe()
            observed.seconds = time.monotonic() - started
            observed.notes += run.notes
            if fakes:
                await chaos_deliveries.observe(run, observed)
                await chaos_deliveries.stop_fakes(fakes)
            for wid in plays:
                try:
                    desc = await run.client.get_workflow_handle(wid).describe()
                except RPCError:
                    continue
                if desc.status == WorkflowExecutionStatus.FAILED:
                    observed.notes.append(f"FAILED play: {wid}")
            say(f"  {len(plays)} plays, {sum(observed.emails.values())} e-mails, {sum(observed.tasks.values())} tasks,"
                f" {observed.kills} kills, {observed.seconds:.0f} s")
        seen.append(observed)
    return seen[0], seen[1]


async def main_async(args) -> int:
    random.seed(args.seed)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    stack = Stack(Path(tempfile.mkdtemp(prefix="chaos-")))
    try:
        await asyncio.to_thread(start_postgres, stack)
        results = {}
        for leg in args.leg or LEGS:
            ref, chaos = await run_leg(leg, args, stack)
            results[leg] = compare(leg, ref, chaos)
        say("\n" + "  ".join(f"{leg}: {'0 lost, 0 duplicates' if ok else 'LOST OR DOUBLED'}"
                             for leg, ok in results.items()))
        return 0 if all(results.values()) else 1
    finally:
        await stack.stop_temporal()
        stack.stop(args.keep)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leg", action="append", choices=LEGS, help="run only this leg (repeatable)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per chaos run, at least")
    parser.add_argument("--outage", type=float, default=60, help="seconds PostgreSQL and the relay stay down")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs) afterwards")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
