"""The web console's pages: server-rendered Jinja2, autoescaped, one small script.

Every page needs a logged-in CS user; every POST carries the session's CSRF
token; every action ends in a redirect (so a reload never repeats it) whose
page shows the outcome once. Refusals are pages with their 4xx status and a
sentence; internal errors are a 500 page that points at the service log.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.datastructures import FormData

from activities.accounts import fetch_account
from activities.churn import risk_summary
from activities.nps import nps_report
from activities.sla import sla_attainment
from core.logs import get_logger
from playbooks.loader import PlaybookError
from starter import steering
from starter.console import auth, data
from starter.console.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, ConsoleUser, LoginRefused
from starter.steering import SteeringError

log = get_logger("console")
HERE = Path(__file__).parent
NY = ZoneInfo("America/New_York")
LAUNCHABLE = {"onboarding": "30-day onboarding", "renewal": "Renewal countdown"}
# Previews run a time-skipping Temporal server each; a few at a time is plenty for a CS team.
_previews = asyncio.Semaphore(2)

router = APIRouter(prefix="/console", include_in_schema=False)


# -- rendering --------------------------------------------------------------------------
def _dt(value, fmt: str = "%a %Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = data._when(value)
    if isinstance(value, datetime):
        return value.astimezone(NY).strftime(fmt)
    return value.strftime("%a %Y-%m-%d") if isinstance(value, date) else str(value)


def _money(value) -> str:
    return f"${value:,.0f}"


def _money_in(value, currency: str | None) -> str:
    """An amount in its own currency, the way an English reader expects it (€85,000, ¥9,600,000)."""
    from babel.numbers import format_currency

    return format_currency(value, currency or "USD", format="¤#,##0", locale="en_US", currency_digits=False)


templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                        trim_blocks=True, lstrip_blocks=True)
templates.filters.update(dt=_dt, money=_money, money_in=_money_in)


class LoginRequired(Exception):
    def __init__(self, next_path: str):
        self.next_path = next_path


class Refused(Exception):
    """A console request that cannot be served: a page with `status` and the sentence."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


SECURITY_HEADERS = {
    # The e-mail preview is an iframe srcdoc: it inherits this policy, and its sandbox runs no script.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# What base.html needs on a page shown to nobody in particular (login, errors).
ANONYMOUS = {"user": None, "csrf": "", "flash": None, "nav": "", "temporal_ui": ""}


def page(name: str, status: int = 200, **context) -> HTMLResponse:
    html = templates.get_template(name).render(**{**ANONYMOUS, **context})
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


async def render(request: Request, user: ConsoleUser, name: str, **context) -> HTMLResponse:
    flash = await auth.take_flash(request.app.state.pool, user)
    return page(name, user=user, csrf=user.csrf_token, flash=flash, nav=name.removesuffix(".html"),
                temporal_ui=request.app.state.settings.temporal_ui_url, **context)


def error_page(status: int, message: str) -> HTMLResponse:
    return page("error.html", status=status, message=message, nav="error")


def install(app: FastAPI) -> None:
    """Mount the console on the HTTP service: routes, static files, its error pages."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(LoginRequired)
    async def login_required(_: Request, exc: LoginRequired):
        return RedirectResponse(f"/console/login?next={_quote(exc.next_path)}", status_code=303)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused):
        return error_page(exc.status, str(exc))

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/console/", status_code=307)


def _quote(path: str) -> str:
    return quote(path, safe="/")


def local_path(candidate: str | None, default: str = "/console/") -> str:
    """Only our own pages as redirect targets: no other host, no scheme-relative URL."""
    if candidate and candidate.startswith("/console") and not candidate.startswith("//") and "\\" not in candidate:
        return candidate
    return default


# -- who is asking ----------------------------------------------------------------------
async def current_user(request: Request) -> ConsoleUser:
    user = await auth.session_user(request.app.state.pool, request.cookies.get(SESSION_COOKIE))
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/console/")
    return user


async def posted_form(request: Request, user: ConsoleUser = Depends(current_user)) -> FormData:
    form = await request.form()
    if not auth.same_token(form.get("csrf_token"), user.csrf_token):
        log.warning("console.csrf_refused", user=user.email, path=request.url.path)
        raise Refused("This form has expired or did not come from the console. Go back, reload the page and "
                      "try again.", 403)
    return form


def state(request: Request):
    return request.app.state


async def done(request: Request, user: ConsoleUser, to: str, kind: str, text: str,
               lines: list[str] | None = None) -> RedirectResponse:
    await auth.set_flash(request.app.state.pool, user, kind, text, lines)
    return RedirectResponse(local_path(to), status_code=303)


# -- login ------------------------------------------------------------------------------
@router.get("/login")
async def login_form(request: Request, next: str = "/console/", problem: str = ""):
    token = secrets.token_urlsafe(32)
    response = page("login.html", status=401 if problem else 200, next=local_path(next), csrf=token,
                    problem=problem, nav="login")
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/console/login",
                        secure=request.app.state.settings.console_secure_cookie)
    return response


@router.post("/login")
async def login(request: Request, st=Depends(state)):
    form = await request.form()
    target = local_path(str(form.get("next") or ""))
    if not auth.same_token(form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE) or ""):
        raise Refused("This login form has expired; reload the page and try again.", 403)
    try:
        token, name = await auth.log_in(st.pool, st.settings, str(form.get("email") or ""),
                                        str(form.get("password") or ""))
    except LoginRefused as exc:
        log.info("console.login_refused", email=str(form.get("email") or "")[:200], reason=str(exc))
        return await login_form(request, next=target, problem=str(exc))
    log.info("console.login", email=str(form.get("email")).lower())
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", path="/",
                        max_age=st.settings.console_session_hours * 3600,
                        secure=st.settings.console_secure_cookie)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/logout")
async def logout(request: Request, form=Depends(posted_form), user=Depends(current_user)):
    await auth.log_out(request.app.state.pool, user)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- portfolio and account --------------------------------------------------------------
@router.get("/")
async def portfolio(request: Request, csm: str = "", tier: str = "", band: str = "",
                    user=Depends(current_user), st=Depends(state)):
    if tier and tier not in data.TIERS:
        raise Refused(f"unknown tier {tier!r}: one of {', '.join(data.TIERS)}")
    if band and band not in data.BANDS:
        raise Refused(f"unknown risk band {band!r}: one of {', '.join(data.BANDS)}")
    view = await data.portfolio(st.pool, st.client, csm or None, tier or None, band or None)
    return await render(request, user, "portfolio.html", view=view, filters={"csm": csm, "tier": tier, "band": band},
                        tiers=data.TIERS, bands=data.BANDS)


@router.get("/accounts/{account_id}")
async def account(request: Request, account_id: str, user=Depends(current_user), st=Depends(state)):
    view = await data.account_page(st.pool, st.client, account_id)
    if view is None:
        raise Refused(f"There is no account {account_id!r}.", 404)
    links = {p.workflow_id: data.temporal_ui_link(st.settings, p) for p in view["plays"]}
    return await render(request, user, "account.html", view=view, links=links)


def _back(form: FormData) -> str:
    account_id = str(form.get("account_id") or "")
    return f"/console/accounts/{_quote(account_id)}" if account_id else "/console/"


async def _steer(request: Request, user: ConsoleUser, form: FormData, workflow_id: str, action: str, call):
    try:
        outcome = await call
    except SteeringError as exc:
        return await done(request, user, _back(form), "error", f"{workflow_id}: {exc}")
    log.info("console.action", user=user.email, action=action, workflow_id=workflow_id)
    return await done(request, user, _back(form), "ok", outcome)


@router.post("/plays/{workflow_id}/pause")
async def pause(request: Request, workflow_id: str, form=Depends(posted_form), user=Depends(current_user)):
    reason = str(form.get("reason") or "")[:500]

    async def go():
        await steering.pause_play(request.app.state.client, workflow_id, user.email, reason)
        return f"{workflow_id} paused: it acts on nothing until resumed"
    return await _steer(request, user, form, workflow_id, "pause", go())


@router.post("/plays/{workflow_id}/resume")
async def resume(request: Request, workflow_id: str, form=Depends(posted_form), user=Depends(current_user)):
    async def go():
        await steering.resume_play(request.app.state.client, workflow_id, user.email)
        return f"{workflow_id} resumed"
    return await _steer(request, user, form, workflow_id, "resume", go())


@router.post("/plays/{workflow_id}/skip")
async def skip(request: Request, workflow_id: str, form=Depends(posted_form), user=Depends(current_user)):
    step = str(form.get("step") or "")
    if not step:
        return await done(request, user, _back(form), "error", "choose the step to skip")

    async def go():
        result = await steering.skip_step(request.app.state.client, workflow_id, step, user.email,
                                          str(form.get("reason") or "")[:500])
        nxt = f"; next: {result.next_step} at {_dt(result.next_at)}" if result.next_step else ""
        return f"{workflow_id}: skipped {result.skipped}{nxt}"
    return await _steer(request, user, form, workflow_id, "skip_step", go())


@router.post("/plays/{workflow_id}/cancel")
async def cancel(request: Request, workflow_id: str, form=Depends(posted_form), user=Depends(current_user)):
    async def go():
        await steering.cancel_play(request.app.state.client, workflow_id)
        return f"{workflow_id} cancelled: its open tasks are cancelled and it ends as cancelled"
    return await _steer(request, user, form, workflow_id, "cancel", go())


# -- tasks ------------------------------------------------------------------------------
@router.get("/tasks")
async def my_tasks(request: Request, owner: str = "", user=Depends(current_user), st=Depends(state)):
    owner = owner.strip().lower() or user.email
    view = await data.tasks_for(st.pool, owner)
    return await render(request, user, "tasks.html", view=view, owner=owner, people=await data.people(st.pool),
                        now=datetime.now(timezone.utc))


@router.post("/tasks/{task_id}/complete")
async def complete_task(request: Request, task_id: int, form=Depends(posted_form), user=Depends(current_user),
                        st=Depends(state)):
    back = local_path(str(form.get("back") or ""), "/console/tasks")
    try:
        row = await steering.complete_task(st.client, st.pool, task_id, user.email)
    except SteeringError as exc:
        return await done(request, user, back, "error", str(exc))
    log.info("console.action", user=user.email, action="complete_task", task_id=task_id,
             workflow_id=row["workflow_id"])
    return await done(request, user, back, "ok", f"task {task_id} completed; {row['workflow_id']} was told")


# -- launch -----------------------------------------------------------------------------
async def _launch_choice(st, playbook: str, account_ids: list[str]):
    if playbook not in LAUNCHABLE:
        raise Refused(f"unknown playbook {playbook!r}: one of {', '.join(LAUNCHABLE)}", 422)
    if not account_ids:
        raise Refused("choose at least one account", 422)
    accounts = []
    for account_id in account_ids:
        try:
            accounts.append(await fetch_account(st.pool, account_id))
        except LookupError:
            raise Refused(f"unknown account {account_id!r}", 404) from None
    return accounts


@router.get("/launch")
async def launch_form(request: Request, user=Depends(current_user), st=Depends(state)):
    accounts = await st.pool.fetch("SELECT id, name, status, csm_name, renewal_date FROM accounts"
                                   " WHERE status <> 'churned' ORDER BY name, id")
    return await render(request, user, "launch.html", accounts=accounts, playbooks=LAUNCHABLE, preview=None,
                        chosen=[], playbook="onboarding")


@router.get("/launch/preview")
async def launch_preview(request: Request, playbook: str = "", user=Depends(current_user), st=Depends(state)):
    from starter.preview import preview

    account_ids = request.query_params.getlist("account")
    accounts = await _launch_choice(st, playbook, account_ids)
    first = accounts[0]
    days_out = 180
    if playbook == "renewal":
        if first.renewal_date is None:
            raise Refused(f"{first.name} has no renewal date; set it in the CRM first", 422)
        days_out = (first.renewal_date - date.today()).days
        if days_out < 0:
            raise Refused(f"{first.name}'s renewal date {first.renewal_date} has passed", 422)
    try:
        async with _previews:
            entries = await preview(playbook, first, renewal_days_out=days_out,
                                    playbooks_dir=st.settings.playbooks_dir)
    except PlaybookError as exc:
        raise Refused(f"the {playbook} playbook is invalid: {exc}", 422) from None
    return await render(request, user, "launch_preview.html", playbook=playbook, title=LAUNCHABLE[playbook],
                        accounts=accounts, first=first, entries=entries)


@router.post("/launch")
async def launch(request: Request, form=Depends(posted_form), user=Depends(current_user), st=Depends(state)):
    playbook = str(form.get("playbook") or "")
    accounts = await _launch_choice(st, playbook, [str(a) for a in form.getlist("account")])
    started, refused = [], []
    for account in accounts:
        try:
            if playbook == "onboarding":
                handle = await steering.launch_onboarding(st.client, st.pool, st.settings, account.id, user.email)
            else:
                handle = await steering.launch_renewal(st.client, st.pool, st.settings, account.id, user.email)
            started.append(f"started {handle.id}")
            log.info("console.action", user=user.email, action="launch", workflow_id=handle.id)
        except SteeringError as exc:
            refused.append(f"{account.name}: {exc}")
    kind = "ok" if not refused else "error" if not started else "warn"
    to = f"/console/accounts/{_quote(accounts[0].id)}" if len(accounts) == 1 else "/console/"
    return await done(request, user, to, kind, f"{LAUNCHABLE[playbook]}: {len(started)} started, "
                      f"{len(refused)} refused", started + refused)


# -- outbox -----------------------------------------------------------------------------
@router.get("/outbox")
async def outbox(request: Request, q: str = "", page_no: int = 1, user=Depends(current_user), st=Depends(state)):
    view = await data.outbox(st.pool, q[:200], max(page_no, 1))
    return await render(request, user, "outbox.html", view=view)


@router.get("/outbox/{message_id}")
async def outbox_message(request: Request, message_id: int, user=Depends(current_user), st=Depends(state)):
    row = await data.message(st.pool, message_id)
    if row is None:
        raise Refused(f"There is no message {message_id}.", 404)
    return await render(request, user, "message.html", m=row)


# -- reports ----------------------------------------------------------------------------
def _month(value: str) -> date:
    if not value:
        return date.today().replace(day=1)
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise Refused(f"month {value!r} must look like 2027-01", 422) from None


@router.get("/reports")
async def reports(request: Request, month: str = "", cycle: str = "", user=Depends(current_user),
                  st=Depends(state)):
    day = _month(month)
    cycles = await data.nps_cycles(st.pool)
    if cycle and cycle not in cycles:
        raise Refused(f"no NPS cycle {cycle!r}", 404)
    cycle = cycle or (cycles[0] if cycles else "")
    nps = await nps_report(st.pool, cycle) if cycle else None
    risk = await risk_summary(st.pool, day)
    sla = await sla_attainment(st.pool, day)
    return await render(request, user, "reports.html", month=day.strftime("%Y-%m"), cycles=cycles, cycle=cycle,
                        nps=nps, risk=risk, sla=sla, bands=data.BANDS)
