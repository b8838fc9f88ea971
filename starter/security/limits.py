"""The first thing every request meets: host, headers, body size and depth, security headers.

A pure ASGI middleware (no request object, no buffering beyond the route's limit):

- Host: only ALLOWED_HOSTS (and PUBLIC_BASE_URL's host) are answered, 400 otherwise, so a web
  page cannot reach a CSM's local instance by DNS rebinding;
- headers that carry credentials or signatures must be printable ASCII (400 naming the header);
- the body: at most the route's limit (BODY_LIMITS, longest prefix wins), counted as it streams,
  chunked or not (413 `body larger than N bytes`, without reading the rest); received within
  BODY_TIMEOUT_SECONDS (408); JSON nested deeper than HTTP_MAX_JSON_DEPTH is 422;
- every answer gets nosniff, a Referrer-Policy, anti-framing headers unless the route set its
  own, and HSTS when PUBLIC_BASE_URL is https (RFC 6797).

Other modules register their own limit: `register_body_limit("/console/import", lambda s: 20_000_000)`.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from typing import Callable
from urllib.parse import urlsplit

from core.settings import Settings, get_settings

HSTS = "max-age=31536000; includeSubDomains"
# Route prefix -> its body limit in bytes (a function of the settings); longest prefix wins.
BODY_LIMITS: dict[str, Callable[[Settings], int]] = {
    "/webhooks/": lambda s: s.crm_webhook_max_bytes,
    "/nps/": lambda s: s.survey_max_body_bytes,
    "/csat/": lambda s: s.survey_max_body_bytes,
    "/console/": lambda s: s.console_max_body_bytes,
}
_CHECKED_HEADERS = re.compile(rb"^(authorization|content-type|content-length|host|x-[a-z0-9-]*(signature|timestamp)[a-z0-9-]*)$")
_PRINTABLE = re.compile(rb"^[\x20-\x7e\t]*$")
_STRUCTURE = re.compile(rb'[\[\]{}"\\]')
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def register_body_limit(prefix: str, limit: Callable[[Settings], int]) -> None:
    """Give routes under `prefix` their own body limit (bytes, from the settings)."""
    BODY_LIMITS[prefix] = limit


def body_limit(settings: Settings, path: str) -> int:
    """The body limit (bytes) of the route at `path`: its longest registered prefix, else HTTP_MAX_BODY_BYTES."""
    best = max((p for p in BODY_LIMITS if path.startswith(p)), key=len, default=None)
    return BODY_LIMITS[best](settings) if best else settings.http_max_body_bytes


def json_too_deep(body: bytes, limit: int) -> bool:
    """True if the JSON text nests arrays and objects more than `limit` deep (strings skipped).
    Linear, and fast: it only looks at brackets, quotes and backslashes."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth, in_string, skip_until = 0, False, -1
    for match in _STRUCTURE.finditer(body):
        i = match.start()
        if i < skip_until:
            continue
        c = body[i]
        if in_string:
            if c == 0x5C:
                skip_until = i + 2
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif c in (0x5D, 0x7D):
            depth -= 1
    return False


def allowed_host(settings: Settings, host: str) -> bool:
    """True if the Host header `host` (with or without port, IPv6 in brackets) is ours to answer."""
    allowed = {h.lower() for h in settings.allowed_hosts}
    if "*" in allowed:
        return True
    if settings.public_base_url:
        allowed.add((urlsplit(settings.public_base_url).hostname or "").lower())
    name = host.lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in allowed or name.rstrip(".") in allowed


async def refuse(scope, send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer without the app: JSON {"detail": ...}, or a small page for the console and surveys."""
    path = scope.get("path", "")
    if path.startswith(("/console", "/nps/", "/csat/")):
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{status}</title></head><body>"
                f"<h1>That did not work</h1><p id='problem'>{html.escape(detail)}</p></body></html>").encode()
        kind = b"text/html; charset=utf-8"
    else:
        body, kind = json.dumps({"detail": detail}).encode(), b"application/json"
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _utf8(body: bytes) -> bool:
    """True if `body` is UTF-8 text (a body that is not is refused as such by its route)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _has_nul(encoded: bytes) -> bool:
    """True if URL-encoded text (a query string, a form body) holds NUL, raw or as %00."""
    return b"\x00" in encoded or b"%00" in encoded


class SecurityMiddleware:
    """See the module docstring. Settings are read per request from `app.state.settings`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        app = scope.get("app")
        settings: Settings = getattr(getattr(app, "state", None), "settings", None) or get_settings()
        send = self._with_headers(scope, send, settings)
        headers = dict(scope["headers"])
        if not allowed_host(settings, headers.get(b"host", b"").decode("latin-1")):
            host = headers.get(b"host", b"").decode("latin-1")[:100]
            return await refuse(scope, send, 400, f"Host: {host!r} is not served here (ALLOWED_HOSTS)")
        for name, value in scope["headers"]:
            if _CHECKED_HEADERS.match(name) and not _PRINTABLE.match(value):
                return await refuse(scope, send, 400, f"{name.decode('latin-1')}: must be printable ASCII")
        # PostgreSQL text cannot hold NUL (U+0000): refused at the door, never a 500 further in.
        if "\x00" in scope["path"] or b"%00" in scope.get("raw_path", b"") or _has_nul(scope.get("query_string", b"")):
            return await refuse(scope, send, 400, "URL: a NUL character (%00) is not allowed")
        if scope["method"] not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        limit = body_limit(settings, scope["path"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status = 413 if declared.isdigit() else 400
            return await refuse(scope, send, status, f"body larger than {limit} bytes" if status == 413
                                else "content-length: not a number")
        try:
            body = await asyncio.wait_for(self._read(receive, limit), settings.body_timeout_seconds)
        except _TooLarge:
            return await refuse(scope, send, 413, f"body larger than {limit} bytes")
        except _Disconnected:
            return None
        except asyncio.TimeoutError:
            return await refuse(scope, send, 408, f"body: not received within {settings.body_timeout_seconds:g} s")
        kind = headers.get(b"content-type", b"").lower()
        if b"json" in kind and json_too_deep(body, settings.http_max_json_depth):
            return await refuse(scope, send, 422, f"body: JSON nested deeper than {settings.http_max_json_depth} levels")
        if (b"json" in kind and (b"\\u0000" in body or (b"\x00" in body and _utf8(body)))) or (
                b"x-www-form-urlencoded" in kind and _has_nul(body)):
            return await refuse(scope, send, 422, "body: a NUL character (U+0000) is not allowed in a value")
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    async def _read(receive, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _with_headers(scope, send, settings: Settings):
        async def sending(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(b"x-content-type-options", b"nosniff")]
                if b"referrer-policy" not in present:
                    extra.append((b"referrer-policy", b"same-origin"))
                if b"x-frame-options" not in present:
                    extra.append((b"x-frame-options", b"DENY"))
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
                if settings.https_public:
                    extra.append((b"strict-transport-security", HSTS.encode()))
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in extra if k not in present]]}
            await send(message)
        return sending


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass
