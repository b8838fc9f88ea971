"""Logging in and out of the console: password (throttled, one answer for every refusal) and,
when configured, OpenID Connect single sign-on (starter/security/sso.py).

A successful password login also sets a trusted-browser cookie (`csplay_device`): attempts from
that browser count on their own (starter/security/throttle.py), so nobody can keep a person
out of the browser they usually log in from. Logins, failed logins and logouts are audited.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from core.logs import get_logger
from core.metrics import count
from starter.console import auth
from starter.console.access import Refused, actor, current_user, posted_form
from starter.console.auth import DEVICE_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE, LoginBusy, LoginRefused
from starter.console.pages import local_path, page
from starter.security import sso
from starter.security.audit import Actor, audit
from starter.security.clients import client_ip

log = get_logger("console")
router = APIRouter(prefix="/console", include_in_schema=False)
SSO_COOKIE = "csplay_sso"


def _secure(request: Request) -> bool:
    return request.app.state.settings.console_secure_cookie


@router.get("/login")
async def login_form(request: Request, next: str = "/console/", problem: str = ""):
    return await login_page(request, next, problem[:300])


async def login_page(request: Request, next: str = "/console/", problem: str = "", status: int | None = None):
    token = secrets.token_urlsafe(32)
    settings = request.app.state.settings
    response = page("login.html", status=status or (401 if problem else 200), next=local_path(next), csrf=token,
                    problem=problem, nav="login",
                    sso_label=settings.oidc_button_label if settings.oidc_enabled else "")
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/console/login",
                        secure=_secure(request))
    return response


def _open(request: Request, target: str, token: str) -> RedirectResponse:
    settings = request.app.state.settings
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", path="/",
                        max_age=settings.console_session_hours * 3600, secure=_secure(request))
    return response


@router.post("/login")
async def login(request: Request):
    st = request.app.state
    form = await request.form()
    target = local_path(str(form.get("next") or ""))
    if not auth.same_token(form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE) or ""):
        raise Refused("This login form has expired; reload the page and try again.", 403)
    ip = client_ip(request)
    try:
        result = await auth.log_in(st.pool, st.settings, str(form.get("email") or ""),
                                   str(form.get("password") or ""), ip, request.cookies.get(DEVICE_COOKIE))
    except LoginRefused as exc:
        # Never what was typed: people type passwords into the e-mail box.
        log.info("console.login_refused", ip=ip)
        return await login_page(request, target, str(exc))
    except LoginBusy as exc:
        response = await login_page(request, target, f"{exc}.", status=503)
        response.headers["Retry-After"] = str(st.settings.overload_retry_after_seconds)
        return response
    log.info("console.login", user=result.email, ip=ip)
    response = _open(request, target, result.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    if result.device_token:
        response.set_cookie(DEVICE_COOKIE, result.device_token, httponly=True, samesite="strict",
                            path="/console/login", max_age=365 * 86400, secure=_secure(request))
    return response


@router.post("/logout")
async def logout(request: Request, form=Depends(posted_form), user=Depends(current_user)):
    await auth.log_out(request.app.state.pool, user)
    await audit(request.app.state.pool, actor(request, user), "logout", f"user:{user.email}")
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- single sign-on -----------------------------------------------------------------------
def _callback_url(request: Request) -> str:
    base = request.app.state.settings.public_base_url or str(request.base_url)
    return base.rstrip("/") + "/console/sso/callback"


@router.get("/sso/start")
async def sso_start(request: Request, next: str = "/console/"):
    st = request.app.state
    if not st.settings.oidc_enabled:
        raise Refused("Single sign-on is not configured here.", 404)
    try:
        cookie, url = await sso.begin(st.pool, st.settings, _callback_url(request), local_path(next))
    except sso.SsoRefused as exc:
        raise Refused(f"Single sign-on is not available: {exc}.", 503) from None
    response = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the identity provider sends the browser back with a cross-site navigation.
    response.set_cookie(SSO_COOKIE, cookie, httponly=True, samesite="lax", path="/console/sso",
                        max_age=sso.LOGIN_MINUTES * 60, secure=_secure(request))
    return response


@router.get("/sso/callback")
async def sso_callback(request: Request, code: str = "", state: str = "", error: str = ""):
    st = request.app.state
    if not st.settings.oidc_enabled:
        raise Refused("Single sign-on is not configured here.", 404)
    ip = client_ip(request)
    try:
        if error:
            raise sso.SsoRefused(f"the identity provider said {error[:100]!r}")
        email, target = await sso.finish(st.pool, st.settings, request.cookies.get(SSO_COOKIE), state, code,
                                         _callback_url(request))
    except sso.SsoRefused as exc:
        await audit(st.pool, Actor("(single sign-on)", "anonymous", ip), "login.failed", "", "refused",
                    detail=f"sso: {exc}")
        count("login_failures", reason="sso refused")
        return await login_page(request, "/console/", f"Single sign-on did not work: {exc}.")
    known = await st.pool.fetchval("SELECT 1 FROM console_users WHERE email = $1 AND disabled_at IS NULL", email)
    if not known:
        await audit(st.pool, Actor(email, "anonymous", ip), "login.failed", "", "refused",
                    detail="sso: no enabled console user with this e-mail")
        count("login_failures", reason="sso: no console user")
        return await login_page(request, "/console/", "Single sign-on worked, but you have no console access "
                                                      "here; ask an admin to add you.", status=403)
    token = await auth.open_session(st.pool, st.settings, email)
    await audit(st.pool, Actor(email, "user", ip), "login", f"user:{email}", "ok", detail="single sign-on")
    log.info("console.login", user=email, ip=ip, via="sso")
    response = _open(request, local_path(target), token)
    response.delete_cookie(SSO_COOKIE, path="/console/sso")
    return response
