"""/readyz without waiting on anyone: PostgreSQL, its schema migrations, Temporal and the SMTP relay
are checked every second by a background task, and the endpoint answers the latest result at once.

A busy Temporal server or a pool under load used to make /healthz itself slow, and a load
balancer then took a live service out of rotation. Now the answer costs nothing but the event
loop's attention; a result older than STALE_SECONDS (the checker itself stuck) is a 503.
"""

from __future__ import annotations

import asyncio
import time

import aiosmtplib
import asyncpg
from temporalio.client import Client

from activities.db import migration_files
from core.logs import get_logger
from core.settings import Settings

log = get_logger("health")
EVERY_SECONDS = 1.0
CHECK_SECONDS = 2.0
STALE_SECONDS = 10.0
LAG_WARNING_SECONDS = 0.1


async def _postgres(pool: asyncpg.Pool) -> str:
    await pool.fetchval("SELECT 1")
    return "ok"


async def _migrations(pool: asyncpg.Pool) -> str:
    applied = {r["version"] for r in await pool.fetch("SELECT version FROM schema_migrations")}
    missing = [version for version, _ in migration_files() if version not in applied]
    return f"down: migrations not applied: {', '.join(missing)}" if missing else "ok"


async def _temporal(client: Client) -> str:
    await client.service_client.check_health()
    return "ok"


async def _smtp(settings: Settings) -> str:
    smtp = aiosmtplib.SMTP(hostname=settings.smtp_host, port=settings.smtp_port, timeout=CHECK_SECONDS,
                           start_tls=False)
    await smtp.connect()
    try:
        await smtp.noop()
    finally:
        smtp.close()
    return "ok"


async def _one(work) -> str:
    try:
        return await asyncio.wait_for(work, CHECK_SECONDS)
    except Exception as exc:  # report, don't raise: this is the readiness check
        return f"down: {type(exc).__name__}"


async def check(pool: asyncpg.Pool, client: Client, settings: Settings) -> dict[str, str]:
    """Each dependency, side by side: "ok" or "down: <what went wrong>", within CHECK_SECONDS each:
    {"postgres", "migrations" (every migration of this version applied), "temporal", "smtp"}."""
    postgres, migrations, temporal, smtp = await asyncio.gather(
        _one(_postgres(pool)), _one(_migrations(pool)), _one(_temporal(client)), _one(_smtp(settings)))
    return {"postgres": postgres, "migrations": migrations, "temporal": temporal, "smtp": smtp}


class HealthMonitor:
    """Runs `check` every EVERY_SECONDS; `latest()` is (checks, healthy) without waiting."""

    def __init__(self, pool: asyncpg.Pool, client: Client, settings: Settings):
        self.pool, self.client, self.settings = pool, client, settings
        self.checks: dict[str, str] = dict.fromkeys(("postgres", "migrations", "temporal", "smtp"), "not checked yet")
        self.checked_at = 0.0
        self.max_lag = 0.0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._once()
        self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _once(self) -> None:
        checks = await check(self.pool, self.client, self.settings)
        if checks != self.checks:
            log.info("health.changed", **checks)
        self.checks, self.checked_at = checks, time.monotonic()

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(EVERY_SECONDS)
            # How late the loop woke us: the time every request waited behind other work.
            lag = time.monotonic() - began - EVERY_SECONDS
            self.max_lag = max(self.max_lag, lag)
            if lag > LAG_WARNING_SECONDS:
                log.warning("health.event_loop_lag", seconds=round(lag, 3))
            await self._once()

    def latest(self) -> tuple[dict[str, str], bool]:
        age = time.monotonic() - self.checked_at
        checks = dict(self.checks)
        if age > STALE_SECONDS:
            checks["checked"] = f"{age:.0f} s ago"
            return checks, False
        return checks, all(v == "ok" for v in checks.values())
