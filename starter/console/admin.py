"""Admin pages: console users and their roles, API tokens, and the security settings in force.

Admins only (require("admin")); every change is audited. A new token is shown once, on the page
that follows its creation, and never again (only its SHA-256 is kept). An admin cannot demote
or disable themselves, so a console always keeps at least the admin who is using it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from starter.console import auth
from starter.console.access import Refused, actor, posted_form, require
from starter.console.auth import ROLE_NAMES, ROLES
from starter.console.pages import done, render
from starter.security import exposure
from starter.security.audit import audit
from starter.security.passwords import WeakPassword
from starter.security.tokens import SCOPES, TokenError, create_token, list_tokens, revoke_token

router = APIRouter(prefix="/console/admin", include_in_schema=False)


# -- users ------------------------------------------------------------------------------
@router.get("/users")
async def users(request: Request, user=Depends(require("admin"))):
    rows = await request.app.state.pool.fetch(
        "SELECT email, name, role, disabled_at, created_at, last_login_at FROM console_users ORDER BY email")
    return await render(request, user, "admin_users.html", users=rows, roles=ROLES, role_names=ROLE_NAMES)


@router.post("/users")
async def add_user(request: Request, form=Depends(posted_form), user=Depends(require("admin"))):
    pool = request.app.state.pool
    email, name = str(form.get("email") or "").strip().lower()[:320], str(form.get("name") or "").strip()[:200]
    role = str(form.get("role") or "viewer")
    try:
        created = await auth.add_user(pool, email, name, str(form.get("password") or ""), role)
    except (WeakPassword, ValueError) as exc:
        await audit(pool, actor(request, user), "user.add", f"user:{email}", "refused", detail=str(exc))
        return await done(request, user, "/console/admin/users", "error", f"{email or 'the user'}: {exc}")
    await audit(pool, actor(request, user), "user.add" if created else "user.password", f"user:{email}",
                detail=f"role {role}")
    return await done(request, user, "/console/admin/users", "ok",
                      f"{email} {'added' if created else 'given a new password'} ({ROLE_NAMES[role]})")


@router.post("/users/{email}/role")
async def change_role(request: Request, email: str, form=Depends(posted_form), user=Depends(require("admin"))):
    pool, role = request.app.state.pool, str(form.get("role") or "")
    if email.lower() == user.email and role != "admin":
        raise Refused("You cannot take the admin role from yourself; ask another admin.", 409)
    try:
        await auth.set_role(pool, email, role)
    except (LookupError, ValueError) as exc:
        await audit(pool, actor(request, user), "user.role", f"user:{email[:320]}", "refused", detail=str(exc))
        raise Refused(str(exc), 404 if isinstance(exc, LookupError) else 422) from None
    await audit(pool, actor(request, user), "user.role", f"user:{email}", detail=f"role {role}")
    return await done(request, user, "/console/admin/users", "ok", f"{email} is now a {ROLE_NAMES[role]}")


@router.post("/users/{email}/disable")
async def disable(request: Request, email: str, form=Depends(posted_form), user=Depends(require("admin"))):
    pool = request.app.state.pool
    enable = str(form.get("enable") or "") == "1"
    if email.lower() == user.email and not enable:
        raise Refused("You cannot disable yourself; ask another admin.", 409)
    try:
        await auth.set_disabled(pool, email, not enable)
    except LookupError as exc:
        raise Refused(str(exc), 404) from None
    await audit(pool, actor(request, user), "user.enable" if enable else "user.disable", f"user:{email}")
    return await done(request, user, "/console/admin/users", "ok", f"{email} {'enabled' if enable else 'disabled'}")


# -- API tokens -------------------------------------------------------------------------
@router.get("/tokens")
async def tokens(request: Request, user=Depends(require("admin"))):
    rows = await list_tokens(request.app.state.pool, include_revoked=True)
    return await render(request, user, "admin_tokens.html", tokens=rows, scopes=SCOPES, new_token=None)


@router.post("/tokens")
async def new_token(request: Request, form=Depends(posted_form), user=Depends(require("admin"))):
    pool = request.app.state.pool
    name, scopes = str(form.get("name") or "")[:100], [str(s) for s in form.getlist("scope")]
    days = str(form.get("expires_in_days") or "").strip()
    try:
        expires = int(days) if days else None
        token, record = await create_token(pool, name, scopes, user.email, expires)
    except (TokenError, ValueError) as exc:
        await audit(pool, actor(request, user), "token.create", f"token:{name}", "refused", detail=str(exc))
        return await done(request, user, "/console/admin/tokens", "error", str(exc))
    await audit(pool, actor(request, user), "token.create", f"token:{record.name}",
                detail=f"scopes {', '.join(record.scopes)}")
    rows = await list_tokens(pool, include_revoked=True)
    # Shown on this page only (not a redirect, not a flash stored in the session).
    return await render(request, user, "admin_tokens.html", tokens=rows, scopes=SCOPES,
                        new_token={"name": record.name, "token": token, "scopes": record.scopes})


@router.post("/tokens/{name}/revoke")
async def revoke(request: Request, name: str, form=Depends(posted_form), user=Depends(require("admin"))):
    pool = request.app.state.pool
    try:
        await revoke_token(pool, name, user.email)
    except TokenError as exc:
        raise Refused(str(exc), 404) from None
    await audit(pool, actor(request, user), "token.revoke", f"token:{name}")
    return await done(request, user, "/console/admin/tokens", "ok", f"token {name} revoked")


# -- settings ---------------------------------------------------------------------------
@router.get("/settings")
async def settings_page(request: Request, user=Depends(require("admin"))):
    s = request.app.state.settings
    secrets = {name.upper(): exposure.secret_problem(
        getattr(s, name).get_secret_value() if getattr(s, name, None) is not None else None) or "set"
        for name in exposure.REQUIRED_SECRETS}
    rows = [
        ("Reachable from outside", exposure.exposed_because(s) or "no: this machine only"),
        ("ALLOWED_HOSTS", ", ".join(s.allowed_hosts)),
        ("PUBLIC_BASE_URL", s.public_base_url or "not set"),
        ("HSTS and Secure cookies", "on" if s.https_public else "off (PUBLIC_BASE_URL is not https)"),
        ("Single sign-on", f"on ({s.oidc_issuer})" if s.oidc_enabled else "off"),
        ("Login throttle", f"{s.console_max_failed_logins} per client and account, {s.login_max_failures_per_ip} per "
                           f"client, {s.login_max_failures_per_account} per account from new browsers, "
                           f"per {s.console_lockout_minutes} min"),
        ("Body limits", f"{s.http_max_body_bytes:,} B API, {s.crm_webhook_max_bytes:,} B webhooks, "
                        f"{s.survey_max_body_bytes:,} B surveys, {s.console_max_body_bytes:,} B console; "
                        f"JSON depth {s.http_max_json_depth}"),
        ("Concurrency", f"{s.max_inflight_webhooks} webhooks, {s.max_inflight_requests} other requests at once; "
                        f"503 after {s.overload_wait_seconds:g} s waiting"),
        ("Database timeouts", f"{s.db_acquire_timeout_seconds:g} s for a connection, "
                              f"{s.db_statement_timeout_seconds:g} s per statement"),
        *[(f"{name}", state) for name, state in secrets.items()],
    ]
    return await render(request, user, "admin_settings.html", rows=rows)
