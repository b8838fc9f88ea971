"""The product as `./run.sh` starts it, driven by a real Chromium through Playwright.

`console_stack` runs `starter.devstack` (the README's run command) on its own
ports and data folder, with its own database on the tests' PostgreSQL, and
the browser logs in with the console user it created. Chromium is the
system's (Debian package `chromium`); Playwright never downloads a browser
here. CHROMIUM_PATH points elsewhere if needed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from playwright.sync_api import expect

from core.settings import PROJECT_ROOT
from tests.conftest import DEADLINE_SECONDS, _with_database, free_port
from tests.round_the_clock import round_the_clock

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts" / "console"
# As root in a container, with no network: no sandbox, no background fetches to Google.
# Playwright's own waits (5 s for an `expect`, 30 s for an action) assume an idle machine; the
# suite must pass while both cores are busy, so every wait gets the suite's deadline.
expect.set_options(timeout=DEADLINE_SECONDS * 1000)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


# pytest-playwright keeps one Playwright for the whole session. Its sync API runs an
# event loop in a greenlet of the main thread, which then looks like a running loop
# to every asyncio test after these; so Playwright lives for this folder only.
@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright, browser_name):
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args, browser_type):
    return lambda **kwargs: browser_type.launch(**{**browser_type_launch_args, **kwargs})


@pytest.fixture(scope="module")
def browser_context_args():
    return {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture(scope="module")
def browser(launch_browser):
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (./test.sh does it) or set CHROMIUM_PATH")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


def run(coro):
    """Run a coroutine on a loop of its own, away from pytest-asyncio's and Playwright's."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Stack:
    base_url: str
    db_url: str
    data_dir: Path
    email: str
    password: str
    log: Path
    env: dict

    issuer: str = ""

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """`csplay` against this stack, as a CS manager's terminal would run it."""
        done = subprocess.run([sys.executable, "-m", "starter", *args], env=self.env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=60, input=input)
        assert done.returncode == 0, done.stderr + done.stdout
        return done

    def add_user(self, email: str, name: str, role: str, password: str) -> None:
        self.cli("user", "add", email, "--name", name, "--role", role, "--password-stdin", input=password + "\n")

    def sql(self, query: str, *args):
        async def go():
            conn = await asyncpg.connect(self.db_url)
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()
        return run(go())


@pytest.fixture(scope="session")
def identity_provider():
    """A local OpenID Connect provider (oidc-provider-mock: authlib's server, discovery, JWKS,
    authorization code with a form to pick the person) for the single sign-on tests."""
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(port=free_port()) as server:
        yield f"http://localhost:{server.server_port}"


SSO_CLIENT = ("csplay-console", "a-client-secret-only-these-tests-use-1234")


@pytest.fixture(scope="session")
def console_stack(pg_admin_url, tmp_path_factory, identity_provider):
    name = f"console_{uuid.uuid4().hex[:10]}"

    async def create():
        conn = await asyncpg.connect(pg_admin_url)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
    run(create())
    data = tmp_path_factory.mktemp("console-stack")
    http_port, temporal_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data), "DATABASE_URL": _with_database(pg_admin_url, name),
        "HTTP_PORT": str(http_port), "SMTP_PORT": str(free_port()), "INBOUND_SMTP_PORT": str(free_port()),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}", "TEMPORAL_UI_URL": f"http://127.0.0.1:{free_port()}",
        "DEVSTACK_START_TEMPORAL": "1", "TASK_QUEUE": f"console-{uuid.uuid4().hex[:8]}", "PYTHONUNBUFFERED": "1",
        "OIDC_ISSUER": identity_provider, "OIDC_CLIENT_ID": SSO_CLIENT[0], "OIDC_CLIENT_SECRET": SSO_CLIENT[1],
        # Real-looking secrets, to check they appear in no process list and no log.
        "CRM_WEBHOOK_SECRET": "whsec-" + uuid.uuid4().hex, "NPS_LINK_SECRET": "nps-" + uuid.uuid4().hex,
        # Real time: plays must act at once whatever the hour or day the suite runs.
        "PLAYBOOKS_DIR": str(round_the_clock(data)),
    }
    env.pop("SMTP_HOST", None)
    log = data / "devstack.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "starter.devstack"], env=env, cwd=PROJECT_ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while "Ready in" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"./run.sh's stack did not start:\n{log.read_text()}")
        time.sleep(0.2)
    # The first password is in a file of its own (0600), never in the output.
    login_file = data / "console-login.txt"
    email, password = login_file.read_text().split()[:2]
    assert password not in log.read_text() and f"the first password is in {login_file}" in log.read_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield Stack(f"http://127.0.0.1:{http_port}", env["DATABASE_URL"], data, email, password, log, env,
                identity_provider)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def console(page, console_stack):
    """A browser page logged in as the demo CS manager."""
    page.set_default_timeout(DEADLINE_SECONDS * 1000)
    page.goto(console_stack.base_url + "/console/")
    page.fill("input[name=email]", console_stack.email)
    page.fill("input[name=password]", console_stack.password)
    page.click("button[type=submit]")
    page.wait_for_url(console_stack.base_url + "/console/")
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
