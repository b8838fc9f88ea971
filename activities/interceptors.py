"""Activity failures that read as causes in the Temporal UI.

An activity that meets a stopped PostgreSQL fails with asyncpg's `[Errno 2] No such file or
directory` (the socket is gone), and one that meets a stopped relay with `Connect call failed`.
`ReadableFailures` turns such infrastructure errors into a retryable ApplicationError whose
message says what is down and where ("PostgreSQL unavailable at 127.0.0.1:5432/playbooks",
"SMTP relay unreachable at 127.0.0.1:2525"), keeping the original error as its cause, so the
UI's failure reads as a cause and the retry policy still waits the outage out. Business
failures (ApplicationError) pass through unchanged.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiosmtplib
import asyncpg
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.settings import Settings


def database_place(url: str) -> str:
    """host:port/database of a PostgreSQL URL (or the socket folder), never the user or password."""
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    host = parts.hostname or query.get("host", "localhost")
    port = parts.port or query.get("port", 5432)
    return f"{host}:{port}{parts.path or ''}"


def _raised_in(exc: BaseException, package: str) -> bool:
    """Whether any frame of the exception's traceback (or its causes') is in `package`."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_globals.get("__name__", "").startswith(package):
                return True
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


def readable(exc: BaseException, database: str, smtp: str) -> ApplicationError | None:
    """The cause-first error for an infrastructure failure, or None when it is not one."""
    if isinstance(exc, ApplicationError):
        return None
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return ApplicationError(f"SMTP relay refused: {exc.code} {exc.message}", type="SmtpRefused")
    if isinstance(exc, (aiosmtplib.SMTPException, )) or (isinstance(exc, OSError) and _raised_in(exc, "aiosmtplib")):
        return ApplicationError(f"SMTP relay unreachable at {smtp}: {exc}", type="SmtpUnavailable")
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                        asyncpg.TooManyConnectionsError)) or (
            isinstance(exc, (OSError, asyncio.TimeoutError)) and _raised_in(exc, "asyncpg")):
        return ApplicationError(f"PostgreSQL unavailable at {database}: {exc or type(exc).__name__}",
                                type="DatabaseUnavailable")
    return None


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, database: str, smtp: str):
        super().__init__(next)
        self._database, self._smtp = database, smtp

    async def execute_activity(self, input: ExecuteActivityInput):
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            better = readable(exc, self._database, self._smtp)
            if better is None:
                raise
            raise better from exc


class ReadableFailures(Interceptor):
    """Worker interceptor: infrastructure errors of activities as retryable, cause-first failures."""

    def __init__(self, settings: Settings, database_url: str):
        self._database = database_place(database_url)
        self._smtp = f"{settings.smtp_host}:{settings.smtp_port}"

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self._database, self._smtp)
