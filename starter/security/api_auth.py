"""Who may call the JSON API: a bearer token (RFC 6750) with the scope the route needs.

Every route needs one unless it is listed in PUBLIC_ROUTES, with the reason it may be public;
tests/starter/api_auth_test.py walks every route of the app and fails on one that is neither
listed nor guarded, so a new endpoint cannot be left open by mistake.

Tokens are only accepted in the `Authorization` header, never from a cookie, so a web page a
CSM visits cannot make their browser call the API (no CSRF on the API).
"""

from __future__ import annotations

from typing import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.logs import get_logger
from starter.security.audit import Actor
from starter.security.clients import client_ip
from starter.security.tokens import SCOPES, token_for

log = get_logger("api_auth")

# Path prefixes served without a token, and why. Everything else needs require_scope(...).
PUBLIC_ROUTES: dict[str, str] = {
    "/healthz": "liveness for load balancers; says only that the process answers",
    "/readyz": "readiness for load balancers; says only which dependency is ok or down",
    "/webhooks/": "CRM webhooks carry their own signatures (HubSpot v3 and the vendors' schemes)",
    "/nps/": "survey answers come from customers through HMAC-signed links",
    "/csat/": "support CSAT answers come from customers through HMAC-signed links (a key of their own)",
    "/unsubscribe/": "customers unsubscribe from their e-mail's link or one-click POST (RFC 8058): HMAC-signed, expiring tokens",
    "/console": "the web console: its own login sessions, roles and CSRF tokens",
    "/docs": "the API documentation: a console login or any live token (docs_access)",
    "/openapi.json": "the API description: a console login or any live token (docs_access)",
    "/": "redirects to the console",
}

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="An API token: `csplay token create NAME --scope read` (or the console's "
                                "Admin > API tokens page); send it as `Authorization: Bearer csp_...`.")


def is_public(path: str) -> bool:
    """True if `path` is served without a token (it falls under PUBLIC_ROUTES)."""
    return any(path == p or (p.endswith("/") and path.startswith(p)) or path.startswith(p + "/")
               for p in PUBLIC_ROUTES if p != "/") or path == "/"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="csplay"'})


def require_scope(scope: str) -> Callable:
    """A dependency: the Actor (the token's name, the client's IP) if the request carries a live
    token allowed `scope`; else 401 (no, unknown, revoked or expired token) or 403 (scope missing),
    each with a `detail` naming the Authorization header or the scope."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Actor:
        if credentials is None:
            raise _unauthorized("Authorization: a bearer token is required (create one with `csplay token create`)")
        token = await token_for(request.app.state.pool, credentials.credentials)
        if token is None:
            log.warning("api.token_refused", path=request.url.path, ip=client_ip(request))
            raise _unauthorized("Authorization: unknown, revoked or expired token")
        if not token.allows(scope):
            log.warning("api.scope_refused", token=token.name, needs=scope, path=request.url.path)
            raise HTTPException(
                403, f"scope: token {token.name!r} has {', '.join(token.scopes)}; this needs {scope!r}",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})
        request.state.actor = Actor(token.name, "token", client_ip(request), scopes=frozenset(token.scopes))
        return request.state.actor

    dependency.__name__ = f"require_{scope}"
    return dependency


async def docs_access(request: Request) -> None:
    """The API docs and description: for a logged-in console user or any live token. A browser
    without either is sent to the console's login page; anything else gets 401."""
    from starter.console.auth import SESSION_COOKIE, session_user

    pool = request.app.state.pool
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and await token_for(pool, header[7:].strip()) is not None:
        return
    if await session_user(pool, request.cookies.get(SESSION_COOKIE)) is not None:
        return
    if "text/html" in request.headers.get("accept", ""):
        raise HTTPException(303, "log in first", headers={"Location": "/console/login?next=/docs"})
    raise _unauthorized("Authorization: the API description needs a console login or a bearer token")
