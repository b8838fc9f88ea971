"""Bounded work instead of a stalled service: 503 with Retry-After under overload.

Requests are served at most N at a time per kind (webhooks, everything else); one that finds no
free place within OVERLOAD_WAIT_SECONDS is answered 503 with `Retry-After` (RFC 9110 section
10.2.3), which CRMs and HTTP clients honour, instead of queueing until every request times out.
`/healthz` is never queued, so a load balancer sees a busy service as alive.

The webhook limit also bounds the pool connections webhooks hold: with MAX_INFLIGHT_WEBHOOKS at
most half of DB_POOL_MAX, even a handler that holds one connection while taking a second cannot
empty the pool. Anything that still waits for a connection gives up after
DB_ACQUIRE_TIMEOUT_SECONDS and is answered 503 (starter/http.py).

The middleware runs after the body has been read (starter/security/limits.py), so a client
trickling its body does not hold a place.
"""

from __future__ import annotations

import asyncio

from core.settings import Settings, get_settings
from starter.security.limits import refuse


class _Kind:
    """A semaphore that knows how many are waiting; created lazily on the running loop."""

    def __init__(self, size: int):
        self.size = size
        self.sem: asyncio.Semaphore | None = None
        self.waiting = 0
        self.busy = 0


class OverloadGuard:
    """See the module docstring. `kind_of(path)` decides which limit a request counts against."""

    def __init__(self, app):
        self.app = app
        self._kinds: dict[tuple[str, int], _Kind] = {}

    @staticmethod
    def kind_of(path: str) -> str | None:
        """"webhook", "request", or None for what is never queued (/healthz, static files)."""
        if path == "/healthz" or path.startswith(("/console/static/", "/docs/static/")):
            return None
        return "webhook" if path.startswith("/webhooks/") else "request"

    def _kind(self, name: str, settings: Settings) -> _Kind:
        size = settings.max_inflight_webhooks if name == "webhook" else settings.max_inflight_requests
        key = (name, size)
        if key not in self._kinds:
            self._kinds[key] = _Kind(size)
        return self._kinds[key]

    def stats(self) -> dict[str, dict[str, int]]:
        """Places busy and requests waiting, per kind (for the bench and the settings page)."""
        return {name: {"size": k.size, "busy": k.busy, "waiting": k.waiting} for (name, _), k in self._kinds.items()}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        name = self.kind_of(scope["path"])
        if name is None:
            return await self.app(scope, receive, send)
        app = scope.get("app")
        settings: Settings = getattr(getattr(app, "state", None), "settings", None) or get_settings()
        kind = self._kind(name, settings)
        if kind.sem is None:
            kind.sem = asyncio.Semaphore(kind.size)
        kind.waiting += 1
        try:
            await asyncio.wait_for(kind.sem.acquire(), settings.overload_wait_seconds)
        except asyncio.TimeoutError:
            return await refuse(scope, send, 503, "the service is busy; retry after "
                                f"{settings.overload_retry_after_seconds} s",
                                [(b"retry-after", str(settings.overload_retry_after_seconds).encode())])
        finally:
            kind.waiting -= 1
        kind.busy += 1
        try:
            await self.app(scope, receive, send)
        finally:
            kind.busy -= 1
            kind.sem.release()

