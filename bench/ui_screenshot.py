"""Screenshots of a play in the Temporal Web UI (issue 18): the summaries on its activities and
timers, its static summary and details, its current details.

Starts a private stack in a temp dir (embedded PostgreSQL, the dev server with its Web UI on a
free port, an SMTP sink, the product's worker in this process), seeds the demo account, launches
its onboarding play on round-the-clock playbooks (so it acts at once whatever the hour), waits
until it sleeps on its timer, and photographs its page with the system Chromium (headless,
Playwright). Everything is stopped at the end.

    .venv/bin/python bench/ui_screenshot.py [--out docs]

writes docs/ui-play-compact.png (event history, compact: each activity and timer with its summary),
docs/ui-play-timeline.png (the same as a timeline) and docs/ui-play-metadata.png (static summary and
details, current details).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from playwright.async_api import async_playwright  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool  # noqa: E402
from bench.stack import Stack, free_port, prepare_database, say, start_postgres  # noqa: E402
from core.settings import PROJECT_ROOT, Settings  # noqa: E402
from starter.demo import DEMO_ACCOUNT_ID, seed_demo  # noqa: E402
from starter.devstack import dev_server_args, temporal_cli  # noqa: E402
from starter.mail_sink import start_sink  # noqa: E402
from starter.steering import launch_onboarding  # noqa: E402
from tests.round_the_clock import round_the_clock  # noqa: E402
from worker import build_worker  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


async def asleep(handle, seconds: float = 120) -> None:
    """Until the play's history ends on a started timer with no activity pending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        desc = await handle.describe()
        events = (await handle.fetch_history()).events
        if not desc.raw_description.pending_activities and events and \
                events[-1].event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{handle.id} never settled on its timer within {seconds:.0f} s")


async def photograph(url: str, out: Path) -> list[Path]:
    """The workflow page (summary and details, then the event history) as PNGs under `out`."""
    shots = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1920, "height": 1300})
            await page.goto(url, wait_until="load", timeout=90_000)
            await page.get_by_text("welcome e-mail", exact=False).first.wait_for(timeout=60_000)
            for name, click in (("compact", "Compact"), ("timeline", "Timeline"), ("metadata", "User Metadata")):
                if click:
                    await page.get_by_text(click, exact=True).first.click()
                await page.wait_for_timeout(2000)  # let the UI finish laying out (a picture, not a test)
                path = out / f"ui-play-{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                shots.append(path)
        finally:
            await browser.close()
    return shots


async def main(args) -> None:
    root = Path(tempfile.mkdtemp(prefix="ui-shot-"))
    stack = Stack(root)
    try:
        start_postgres(stack)
        url = await prepare_database(stack, "cs")
        smtp_port, ui_port = free_port(), free_port()
        stack.sink_controller, _ = start_sink("127.0.0.1", smtp_port)
        server_args = dev_server_args(root / "temporal.db", free_port(), ui_port)
        stack.temporal = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter, dev_server_existing_path=temporal_cli(),
            dev_server_extra_args=server_args[server_args.index("--log-level"):], ui=True, ui_port=ui_port,
        )
        client = stack.temporal.client
        settings = Settings(_env_file=None, database_url=url, smtp_host="127.0.0.1", smtp_port=smtp_port,
                            task_queue="ui-screenshot", data_dir=root / "data", search_attributes=True,
                            playbooks_dir=round_the_clock(root))
        pool = await create_pool(url, 4)
        try:
            await seed_demo(pool, date.today())
            async with build_worker(client, pool, settings, settings.task_queue):
                handle = await launch_onboarding(client, pool, settings, DEMO_ACCOUNT_ID, "ui-screenshot",
                                                 settings.task_queue)
                await asleep(handle)
                run_id = (await handle.describe()).run_id
                page = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/{handle.id}/{run_id}/history"
                say(f"photographing {page}")
                for shot in await photograph(page, args.out):
                    say(f"wrote {shot.relative_to(PROJECT_ROOT) if shot.is_relative_to(PROJECT_ROOT) else shot}")
        finally:
            await pool.close()
    finally:
        await stack.stop_temporal()
        stack.stop(keep=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs")
    asyncio.run(main(parser.parse_args()))
