"""The client's address as the service sees it.

Behind a reverse proxy, uvicorn rewrites the client address from X-Forwarded-For only for
proxies listed in FORWARDED_ALLOW_IPS (`./run.sh` passes it; without it, forwarded headers are
ignored, so nobody can claim another address to dodge the login throttle).
"""

from __future__ import annotations

from starlette.requests import HTTPConnection


def client_ip(request: HTTPConnection) -> str:
    """The peer's IP address, or "unknown" (a test transport, a Unix socket)."""
    client = request.client
    return client.host if client and client.host else "unknown"
