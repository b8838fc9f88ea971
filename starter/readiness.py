"""Readiness of the HTTP service's dependencies, for `/readyz` (and `./run.sh`'s wait).

Each check answers "ok" or "down: <cause>" within its timeout (2 s), so a load balancer's
probe never hangs on a dead dependency. Causes name the service, never a secret.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiosmtplib
import asyncpg
from temporalio.client import Client

from activities.db import migration_files
from core.settings import Settings

TIMEOUT_SECONDS = 2.0


async def _postgres(pool: asyncpg.Pool) -> str:
    async with pool.acquire(timeout=TIMEOUT_SECONDS) as conn:
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations",
                                                          timeout=TIMEOUT_SECONDS)}
    missing = [version for version, _ in migration_files() if version not in applied]
    return f"down: migrations not applied: {', '.join(missing)}" if missing else "ok"


async def _temporal(client: Client) -> str:
    await client.service_client.check_health(timeout=timedelta(seconds=TIMEOUT_SECONDS))
    return "ok"


async def _smtp(settings: Settings) -> str:
    smtp = aiosmtplib.SMTP(hostname=settings.smtp_host, port=settings.smtp_port, timeout=TIMEOUT_SECONDS,
                           start_tls=False)
    await smtp.connect()
    try:
        await smtp.noop()
    finally:
        smtp.close()
    return "ok"


async def _check(name: str, work) -> tuple[str, str]:
    try:
        return name, await asyncio.wait_for(work, TIMEOUT_SECONDS + 1)
    except Exception as exc:  # report, never raise: this is the readiness probe
        return name, f"down: {type(exc).__name__}"


async def readiness(pool: asyncpg.Pool, client: Client, settings: Settings) -> dict[str, str]:
    """{"postgres": ..., "temporal": ..., "smtp": ...}, each "ok" or "down: <cause>"."""
    results = await asyncio.gather(_check("postgres", _postgres(pool)), _check("temporal", _temporal(client)),
                                   _check("smtp", _smtp(settings)))
    return dict(results)
