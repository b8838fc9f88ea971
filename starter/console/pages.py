"""The web console's pages: server-rendered Jinja2, autoescaped, one small script.

Every page needs a logged-in user, and every action the role it needs (viewer reads; a CSM
steers and launches their own book; CS managers and admins everything: starter/console/
access.py), checked here on the server whatever the page showed. Every POST carries the
session's CSRF token; every action is in the audit log and ends in a redirect (so a reload
never repeats it) whose page shows the outcome once. Refusals are pages with their 4xx status
and a sentence; internal errors are a 500 page that points at the service log.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
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
from playbooks.profiles import profile_of
from starter import steering
from starter.console import auth, data
from starter.console.access import (
    LoginRequired, Refused, account_of_play, actor, current_user, ensure_can_steer, in_book, posted_form, require,
)
from starter.console.auth import ConsoleUser
from starter.security.audit import audit, audit_rows
from starter.steering import SteeringError

__all__ = ["LoginRequired", "Refused", "current_user", "posted_form", "require", "router", "install", "page",
           "render", "error_page"]

log = get_logger("console")
HERE = Path(__file__).parent
NY = ZoneInfo("America/New_York")
LAUNCHABLE = {"onboarding": "30-day onboarding", "renewal": "Renewal countdown"}
# Previews run a time-skipping Temporal server each; a few at a time is plenty for a CS team.
_previews = asyncio.Semaphore(2)

router = APIRouter(prefix="/console", include_in_schema=False)
# Workflow ids of plays: onboarding-acme, sla-T-1001, nps-2027-01-lee.park@acme.example, ...
PlayId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9@._+-]{0,254}$")]


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
    from starter.console import admin, audit_page, login

    app.include_router(login.router)
    app.include_router(router)
    app.include_router(admin.router)
    app.include_router(audit_page.router)
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


_LOCAL = re.compile(r"^/console(?:[/?#][\x21-\x7e]*)?$")


def local_path(candidate: str | None, default: str = "/console/") -> str:
    """Only our own pages as redirect targets: no other host, no scheme-relative URL, nothing
    but printable ASCII (a CR or LF would break the Location header)."""
    if candidate and len(candidate) <= 2000 and _LOCAL.match(candidate) and "\\" not in candidate \
            and "//" not in candidate.split("?", 1)[0]:
        return candidate
    return default


# -- who is asking: starter/console/access.py ---------------------------------------------
def state(request: Request):
    return request.app.state


async def done(request: Request, user: ConsoleUser, to: str, kind: str, text: str,
               lines: list[str] | None = None) -> RedirectResponse:
    await auth.set_flash(request.app.state.pool, user, kind, text, lines)
    return RedirectResponse(local_path(to), status_code=303)


# -- portfolio and account --------------------------------------------------------------
@router.get("/")
async def portfolio(request: Request, csm: str = "", tier: str = "", band: str = "",
                    user=Depends(current_user), st=Depends(state)):
    tiers = profile_of(st.settings).tier_names
    if tier and tier not in tiers:
        raise Refused(f"unknown tier {tier!r}: one of {', '.join(tiers)}")
    if band and band not in data.BANDS:
        raise Refused(f"unknown risk band {band!r}: one of {', '.join(data.BANDS)}")
    view = await data.portfolio(st.pool, st.client, csm or None, tier or None, band or None)
    return await render(request, user, "portfolio.html", view=view, filters={"csm": csm, "tier": tier, "band": band},
                        tiers=tiers, bands=data.BANDS)


@router.get("/accounts/{account_id}")
async def account(request: Request, account_id: str = PathParam(max_length=63), user=Depends(current_user),
                  st=Depends(state)):
    view = await data.account_page(st.pool, st.client, account_id)
    if view is None:
        raise Refused(f"There is no account {account_id!r}.", 404)
    links = {p.workflow_id: data.temporal_ui_link(st.settings, p) for p in view["plays"]}
    history = await audit_rows(st.pool, account_id=account_id, limit=50)
    return await render(request, user, "account.html", view=view, links=links, history=history,
                        may_steer=in_book(user, view["account"]["csm_email"]))


def _back(form: FormData) -> str:
    account_id = str(form.get("account_id") or "")
    return f"/console/accounts/{_quote(account_id)}" if account_id else "/console/"


async def _steer(request: Request, user: ConsoleUser, form: FormData, workflow_id: str, action: str, call):
    """Check the user may steer this play's account, do it, audit it, and say how it went."""
    account_id = await account_of_play(request, workflow_id)
    try:
        await ensure_can_steer(request, user, account_id)
    except Refused as exc:
        call.close()
        await audit(request.app.state.pool, actor(request, user), action, workflow_id, "refused",
                    account_id=account_id, detail=str(exc))
        raise
    try:
        outcome = await call
    except SteeringError as exc:
        await audit(request.app.state.pool, actor(request, user), action, workflow_id, "refused",
                    account_id=account_id, detail=str(exc))
        return await done(request, user, _back(form), "error", f"{workflow_id}: {exc}")
    await audit(request.app.state.pool, actor(request, user), action, workflow_id, "ok", account_id=account_id,
                detail=str(form.get("reason") or form.get("step") or "")[:500])
    log.info("console.action", user=user.email, action=action, workflow_id=workflow_id)
    return await done(request, user, _back(form), "ok", outcome)


@router.post("/plays/{workflow_id}/pause")
async def pause(request: Request, workflow_id: PlayId, form=Depends(posted_form),
                user=Depends(require("csm"))):
    reason = str(form.get("reason") or "")[:500]

    async def go():
        await steering.pause_play(request.app.state.client, workflow_id, user.email, reason)
        return f"{workflow_id} paused: it acts on nothing until resumed"
    return await _steer(request, user, form, workflow_id, "pause", go())


@router.post("/plays/{workflow_id}/resume")
async def resume(request: Request, workflow_id: PlayId, form=Depends(posted_form),
                 user=Depends(require("csm"))):
    async def go():
        await steering.resume_play(request.app.state.client, workflow_id, user.email)
        return f"{workflow_id} resumed"
    return await _steer(request, user, form, workflow_id, "resume", go())


@router.post("/plays/{workflow_id}/skip")
async def skip(request: Request, workflow_id: PlayId, form=Depends(posted_form),
               user=Depends(require("csm"))):
    step = str(form.get("step") or "")[:200]
    if not step:
        return await done(request, user, _back(form), "error", "choose the step to skip")

    async def go():
        result = await steering.skip_step(request.app.state.client, workflow_id, step, user.email,
                                          str(form.get("reason") or "")[:500])
        nxt = f"; next: {result.next_step} at {_dt(result.next_at)}" if result.next_step else ""
        return f"{workflow_id}: skipped {result.skipped}{nxt}"
    return await _steer(request, user, form, workflow_id, "skip_step", go())


@router.post("/plays/{workflow_id}/cancel")
async def cancel(request: Request, workflow_id: PlayId, form=Depends(posted_form),
                 user=Depends(require("csm"))):
    async def go():
        await steering.cancel_play(request.app.state.client, workflow_id)
        return f"{workflow_id} cancelled: its open tasks are cancelled and it ends as cancelled"
    return await _steer(request, user, form, workflow_id, "cancel", go())


# -- tasks ------------------------------------------------------------------------------
@router.get("/tasks")
async def my_tasks(request: Request, owner: str = "", user=Depends(current_user), st=Depends(state)):
    owner = owner.strip().lower()[:320] or user.email
    view = await data.tasks_for(st.pool, owner)
    shown = list({t["account_id"] for t in view["overdue"] + view["due"]})
    books = {r["id"]: r["csm_email"] for r in await st.pool.fetch(
        "SELECT id, csm_email FROM accounts WHERE id = ANY($1::text[])", shown)}
    may_complete = {t["id"] for t in view["overdue"] + view["due"]
                    if in_book(user, books.get(t["account_id"])) or (user.at_least("csm") and t["owner_email"] == user.email)}
    return await render(request, user, "tasks.html", view=view, owner=owner, people=await data.people(st.pool),
                        now=datetime.now(timezone.utc), may_complete=may_complete)


@router.post("/tasks/{task_id}/complete")
async def complete_task(request: Request, task_id: int = PathParam(ge=1, le=2**63 - 1), form=Depends(posted_form),
                        user=Depends(require("csm")), st=Depends(state)):
    back = local_path(str(form.get("back") or ""), "/console/tasks")
    task = await st.pool.fetchrow("SELECT t.account_id, t.owner_email, a.csm_email FROM tasks t"
                                  " JOIN accounts a ON a.id = t.account_id WHERE t.id = $1", task_id)
    who = actor(request, user)
    # A CSM completes the tasks of their own book and the tasks given to them by name.
    if task is not None and not (in_book(user, task["csm_email"]) or task["owner_email"] == user.email):
        await audit(st.pool, who, "complete_task", f"task:{task_id}", "refused", account_id=task["account_id"],
                    detail="not in the user's book")
        raise Refused(f"Task {task_id} belongs to {task['account_id']}, which is not in your book of accounts.", 403)
    account_id = task["account_id"] if task else None
    try:
        row = await steering.complete_task(st.client, st.pool, task_id, user.email)
    except SteeringError as exc:
        await audit(st.pool, who, "complete_task", f"task:{task_id}", "refused", account_id=account_id,
                    detail=str(exc))
        return await done(request, user, back, "error", str(exc))
    await audit(st.pool, who, "complete_task", f"task:{task_id}", "ok", account_id=account_id,
                detail=row["workflow_id"])
    log.info("console.action", user=user.email, action="complete_task", task_id=task_id,
             workflow_id=row["workflow_id"])
    return await done(request, user, back, "ok", f"task {task_id} completed; {row['workflow_id']} was told")


# -- launch -----------------------------------------------------------------------------
async def _launch_choice(st, user: ConsoleUser, playbook: str, account_ids: list[str]):
    if playbook not in LAUNCHABLE:
        raise Refused(f"unknown playbook {playbook!r}: one of {', '.join(LAUNCHABLE)}", 422)
    if not account_ids:
        raise Refused("choose at least one account", 422)
    if len(account_ids) > 500:
        raise Refused("choose at most 500 accounts at a time", 422)
    accounts = []
    for account_id in dict.fromkeys(account_ids):
        try:
            accounts.append(await fetch_account(st.pool, account_id[:63]))
        except LookupError:
            raise Refused(f"unknown account {account_id[:63]!r}", 404) from None
    outside = [a.id for a in accounts if not in_book(user, str(a.csm.email))]
    if outside:
        raise Refused(f"not in your book of accounts: {', '.join(outside)}; only their CSM or a CS manager may "
                      "launch for them", 403)
    return accounts


@router.get("/launch")
async def launch_form(request: Request, user=Depends(require("csm")), st=Depends(state)):
    # A CSM launches for their own book only; CS managers and admins for every account.
    accounts = await st.pool.fetch("SELECT id, name, status, csm_name, renewal_date FROM accounts"
                                   " WHERE status <> 'churned' AND ($1::text IS NULL OR csm_email = $1)"
                                   " ORDER BY name, id", None if user.at_least("cs_manager") else user.email)
    return await render(request, user, "launch.html", accounts=accounts, playbooks=LAUNCHABLE, preview=None,
                        chosen=[], playbook="onboarding")


@router.get("/launch/preview")
async def launch_preview(request: Request, playbook: str = "", user=Depends(require("csm")), st=Depends(state)):
    from starter.preview import preview

    account_ids = request.query_params.getlist("account")
    accounts = await _launch_choice(st, user, playbook, account_ids)
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
                                    playbooks_dir=st.settings.playbooks_dir, profile=st.settings.profile)
    except PlaybookError as exc:
        raise Refused(f"the {playbook} playbook is invalid: {exc}", 422) from None
    return await render(request, user, "launch_preview.html", playbook=playbook, title=LAUNCHABLE[playbook],
                        accounts=accounts, first=first, entries=entries)


@router.post("/launch")
async def launch(request: Request, form=Depends(posted_form), user=Depends(require("csm")), st=Depends(state)):
    playbook = str(form.get("playbook") or "")
    who = actor(request, user)
    try:
        accounts = await _launch_choice(st, user, playbook, [str(a) for a in form.getlist("account")])
    except Refused as exc:
        await audit(st.pool, who, "launch", playbook[:40], "refused", detail=str(exc))
        raise
    started, refused = [], []
    for account in accounts:
        try:
            if playbook == "onboarding":
                handle = await steering.launch_onboarding(st.client, st.pool, st.settings, account.id, user.email)
            else:
                handle = await steering.launch_renewal(st.client, st.pool, st.settings, account.id, user.email)
            started.append(f"started {handle.id}")
            await audit(st.pool, who, "launch", handle.id, "ok", account_id=account.id)
            log.info("console.action", user=user.email, action="launch", workflow_id=handle.id)
        except SteeringError as exc:
            await audit(st.pool, who, "launch", f"{playbook}-{account.id}", "refused", account_id=account.id,
                        detail=str(exc))
            refused.append(f"{account.name}: {exc}")
    kind = "ok" if not refused else "error" if not started else "warn"
    to = f"/console/accounts/{_quote(accounts[0].id)}" if len(accounts) == 1 else "/console/"
    return await done(request, user, to, kind, f"{LAUNCHABLE[playbook]}: {len(started)} started, "
                      f"{len(refused)} refused", started + refused)


# -- outbox -----------------------------------------------------------------------------
@router.get("/outbox")
async def outbox(request: Request, q: str = "", page_no: int = Query(1, ge=1, le=10_000),
                 user=Depends(current_user), st=Depends(state)):
    view = await data.outbox(st.pool, q[:200], page_no)
    return await render(request, user, "outbox.html", view=view)


@router.get("/outbox/{message_id}")
async def outbox_message(request: Request, message_id: int = PathParam(ge=1, le=2**63 - 1), user=Depends(current_user),
                         st=Depends(state)):
    row = await data.message(st.pool, message_id)
    if row is None:
        raise Refused(f"There is no message {message_id}.", 404)
    return await render(request, user, "message.html", m=row)


# -- reports ----------------------------------------------------------------------------
def _month(value: str) -> date:
    """The report's month (its first day); this month in New York time, as the reports count it."""
    if not value:
        from activities.churn import NY

        return datetime.now(NY).date().replace(day=1)
    try:
        return datetime.strptime(value[:7], "%Y-%m").date()
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
