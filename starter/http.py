"""HTTP service: CRM webhooks, health, accounts, launching and steering plays, tasks, outbox.

Every JSON endpoint but the webhooks (their own signatures), the survey pages (signed links)
and /healthz needs a bearer token with the route's scope (starter/security/api_auth.py); the
token's name is the actor recorded on every change and in the audit log. /docs and
/openapi.json need a console login or a token. Every refusal is a 4xx with a one-line
`detail` naming the field; an overloaded service answers 503 with Retry-After; an unexpected
error is a 500 that says to look at the service log.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager, suppress
from datetime import date
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from activities.db import create_pool, database_url
from core.logs import configure_logging, get_logger
from core.settings import get_settings
from core.telemetry import install_runtime, setup_tracing
from core.temporal import connect
from core.models import ACCOUNT_ID
from core.text import unsafe_characters, error_message
from playbooks.loader import PlaybookError
from starter import api_docs, console, csat_page, health, survey_page, unsubscribe_page, webhooks
from starter.console import deliveries as console_deliveries, webhooks as console_webhooks
from starter.console.pages import error_page
from starter.events.context import Context
from starter.events.pipeline import run_sweeper
from starter.health import HealthMonitor
from starter.security import exposure, passwords
from starter.security.api_auth import require_scope
from starter.security.audit import Actor, audited
from starter.security.limits import SecurityMiddleware
from starter.security.overload import OverloadGuard
from starter.steering import (
    SteeringError, change_renewal_date, complete_task, launch_onboarding, launch_renewal, mark_churned, mark_renewed,
    query_status, renewal_status,
)
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import OnboardingStatus, onboarding_workflow_id
from workflows.renewal_messages import ChangeRenewalDate, Churned, RenewalPlan, RenewalStatus, Renewed

log = get_logger("http")


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    install_runtime(settings.http_metrics_address)
    setup_tracing("cs-playbooks-http")
    try:
        exposure.check(settings)
    except exposure.ExposureRefused as exc:
        log.error("http.refused_to_start", problem=str(exc))
        raise
    passwords.set_max_waiting(settings.login_max_waiting)
    app.state.settings = settings
    url = database_url(settings)
    app.state.pool = await create_pool(url, settings.db_pool_max, acquire_timeout=settings.db_acquire_timeout_seconds,
                                       statement_timeout=settings.db_statement_timeout_seconds)
    # /healthz has a connection of its own, so a busy pool cannot make the service look dead, and
    # answers what a background check found (starter/health.py) instead of waiting on anyone.
    app.state.health_pool = await create_pool(url, 1, acquire_timeout=1.0, statement_timeout=2.0)
    app.state.client = await connect(settings)
    app.state.health = HealthMonitor(app.state.health_pool, app.state.client, settings)
    await app.state.health.start()
    # Webhook events queued, postponed or waiting for an object that arrived: acted on in the background.
    sweeper = asyncio.create_task(run_sweeper(
        lambda: Context(app.state.client, app.state.pool, app.state.settings), settings.webhook_sweep_seconds))
    yield
    sweeper.cancel()
    with suppress(asyncio.CancelledError):
        await sweeper
    await app.state.health.stop()
    await app.state.pool.close()
    await app.state.health_pool.close()


app = FastAPI(title="Customer lifecycle playbooks", lifespan=lifespan, docs_url=None, redoc_url=None,
              openapi_url=None)
app.add_middleware(OverloadGuard)
app.add_middleware(SecurityMiddleware)
# A server span per request (a no-op until tracing is on), continuing the caller's traceparent;
# the Temporal client's tracing interceptor carries it into the plays it starts or signals.
app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])
app.include_router(webhooks.router)
app.include_router(survey_page.router)
app.include_router(csat_page.router)
app.include_router(unsubscribe_page.router)
console.install(app)
app.include_router(console_webhooks.router)
app.include_router(console_deliveries.router)
api_docs.install(app)


def for_console(request: Request) -> bool:
    return request.url.path.startswith("/console")


@app.exception_handler(SteeringError)
async def steering_error(_: Request, exc: SteeringError):
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


@app.exception_handler(PlaybookError)
async def playbook_error(_: Request, exc: PlaybookError):
    return JSONResponse({"detail": "invalid playbook", "problems": str(exc).splitlines()}, status_code=422)


async def busy(request: Request, exc: Exception):
    """A pool or statement timeout: the service is overloaded, not broken, and the request did
    nothing (its transaction, if any, rolled back). 503 with Retry-After, no traceback."""
    log.warning("http.busy", path=request.url.path, error=type(exc).__name__)
    headers = {"Retry-After": str(request.app.state.settings.overload_retry_after_seconds)}
    if for_console(request):
        response = error_page(503, "The service is busy right now; nothing was changed. Try again in a moment.")
        response.headers.update(headers)
        return response
    return JSONResponse({"detail": "the service is busy; retry later"}, status_code=503, headers=headers)


for _busy in (asyncio.TimeoutError, asyncpg.exceptions.QueryCanceledError, asyncpg.exceptions.TooManyConnectionsError):
    app.add_exception_handler(_busy, busy)


@app.exception_handler(Exception)
async def internal_error(request: Request, exc: Exception):
    # The Salesforce endpoint's path holds its secret: never in a log.
    log.exception("http.internal_error", path=re.sub(r"^/webhooks/salesforce/.*", "/webhooks/salesforce/***",
                                                     request.url.path))
    if for_console(request):
        return error_page(500, "Something went wrong on our side; it is in the service log. Nothing was lost: "
                               "plays keep running.")
    return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException):
    if for_console(request):
        return error_page(exc.status_code, "There is no such page." if exc.status_code == 404 else str(exc.detail))
    return await http_exception_handler(request, exc)


@app.exception_handler(RequestValidationError)
async def bad_request(request: Request, exc: RequestValidationError):
    """422 with a one-line `detail` naming each field ("account_id: String should match ..."),
    and the usual list of errors under `errors` (without the refused input echoed back)."""
    errors = exc.errors()
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {error_message(e)}" for e in errors)
    if for_console(request):
        return error_page(422, f"That request was not understood ({problems}).")
    listed = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors]
    return JSONResponse({"detail": problems[:2000], "errors": listed[:20]}, status_code=422)


def deps(request: Request):
    return request.app.state


class ApiRequest(BaseModel):
    """Every request body: unknown fields are refused (422 naming them), so a client that still
    sends `launched_by` or `completed_by` learns that the token's name is the actor now."""

    model_config = ConfigDict(extra="forbid")


def _one_line(value: str, field: str) -> str:
    bad = unsafe_characters(value)
    if bad:
        raise ValueError(f"{field} contains control or bidi-override characters ({', '.join(bad)})")
    return value


AccountId = Annotated[str, Path(pattern=ACCOUNT_ID, description="the account's id")]


class LaunchRequest(ApiRequest):
    account_id: str = Field(pattern=ACCOUNT_ID)


class Launched(BaseModel):
    workflow_id: str
    run_id: str


@app.get("/healthz", summary="Liveness: the process answers (a load balancer's liveness probe)")
async def healthz():
    """{"status": "alive"}: answered by the event loop alone, so it is quick whatever the load."""
    return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})


@app.get("/readyz", summary="Readiness: PostgreSQL, Temporal and SMTP reachable, migrations current")
async def readyz(state=Depends(deps)):
    """{"postgres": "ok", "migrations": "ok", "temporal": "ok", "smtp": "ok"} and 200, or what is down and 503.
    Answered from the background monitor's latest check; checked inline where no monitor runs (tests)."""
    monitor = getattr(state, "health", None)
    if monitor is not None:
        checks, ok = monitor.latest()
    else:
        checks = await health.check(getattr(state, "health_pool", None) or state.pool, state.client, state.settings)
        ok = all(v == "ok" for v in checks.values())
    return JSONResponse(checks, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})


@app.get("/accounts", dependencies=[Depends(require_scope("read"))])
async def accounts(state=Depends(deps)):
    rows = await state.pool.fetch("SELECT id, name, status, health, arr, csm_email FROM accounts ORDER BY id")
    return [dict(r) for r in rows]


@app.post("/plays/onboarding", status_code=202, response_model=Launched)
async def launch(req: LaunchRequest, state=Depends(deps), actor: Actor = Depends(require_scope("launch"))):
    async with audited(state.pool, actor, "launch", onboarding_workflow_id(req.account_id),
                       account_id=req.account_id):
        handle = await launch_onboarding(state.client, state.pool, state.settings, req.account_id, actor.name)
    return Launched(workflow_id=handle.id, run_id=handle.result_run_id or "")


@app.get("/plays/onboarding/{account_id}", response_model=OnboardingStatus,
         dependencies=[Depends(require_scope("read"))])
async def play_status(account_id: AccountId, state=Depends(deps)):
    return await query_status(state.client, onboarding_workflow_id(account_id), OnboardingPlan.status,
                              f"no onboarding play for account {account_id!r}")


class RenewalLaunch(LaunchRequest):
    renewal_date: date | None = Field(None, description="default: the account's renewal date")


@app.post("/plays/renewal", status_code=202, response_model=Launched)
async def launch_renewal_play(req: RenewalLaunch, state=Depends(deps),
                              actor: Actor = Depends(require_scope("launch"))):
    async with audited(state.pool, actor, "launch", f"renewal-{req.account_id}", account_id=req.account_id,
                       detail=f"renewal date {req.renewal_date}" if req.renewal_date else ""):
        handle = await launch_renewal(state.client, state.pool, state.settings, req.account_id, actor.name,
                                      req.renewal_date)
    return Launched(workflow_id=handle.id, run_id=handle.result_run_id or "")


@app.get("/plays/renewal/{account_id}", response_model=RenewalStatus, dependencies=[Depends(require_scope("read"))])
async def renewal_play_status(account_id: AccountId, state=Depends(deps)):
    return await renewal_status(state.client, account_id)


class RenewalDateRequest(ApiRequest):
    renewal_date: date
    reason: str = Field("", max_length=500)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _one_line(value, "reason")


@app.post("/plays/renewal/{account_id}/renewal-date", response_model=RenewalPlan)
async def move_renewal_date(account_id: AccountId, change: RenewalDateRequest, state=Depends(deps),
                            actor: Actor = Depends(require_scope("steer"))):
    async with audited(state.pool, actor, "move_renewal_date", f"renewal-{account_id}", account_id=account_id,
                       detail=f"to {change.renewal_date}"):
        return await change_renewal_date(state.client, account_id,
                                         ChangeRenewalDate(renewal_date=change.renewal_date, reason=change.reason))


class RenewedRequest(ApiRequest):
    signed_by: str = Field(min_length=1, max_length=200, description="who signed, at the customer")
    new_renewal_date: date | None = Field(None, description="end of the new term; one year on if not given")

    @field_validator("signed_by")
    @classmethod
    def _signed(cls, value: str) -> str:
        return _one_line(value, "signed_by")


@app.post("/plays/renewal/{account_id}/renewed", status_code=202)
async def renewed(account_id: AccountId, signed: RenewedRequest, state=Depends(deps),
                  actor: Actor = Depends(require_scope("steer"))):
    async with audited(state.pool, actor, "renewed", f"renewal-{account_id}", account_id=account_id,
                       detail=f"signed by {signed.signed_by}; new term to {signed.new_renewal_date or 'one year on'}"):
        await mark_renewed(state.client, account_id, Renewed(signed_by=signed.signed_by,
                                                             new_renewal_date=signed.new_renewal_date))
    return {"account_id": account_id, "outcome": "renewed"}


class ChurnedRequest(ApiRequest):
    reason: str = Field("", max_length=500)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _one_line(value, "reason")


@app.post("/plays/renewal/{account_id}/churned", status_code=202)
async def churned(account_id: AccountId, churn: ChurnedRequest, state=Depends(deps),
                  actor: Actor = Depends(require_scope("steer"))):
    async with audited(state.pool, actor, "churned", f"renewal-{account_id}", account_id=account_id,
                       detail=churn.reason):
        await mark_churned(state.client, account_id, Churned(recorded_by=actor.name, reason=churn.reason))
    return {"account_id": account_id, "outcome": "churned"}


class CompleteRequest(ApiRequest):
    """Nothing is needed: the token's name is who completed it."""


@app.post("/tasks/{task_id}/complete")
async def complete(task_id: int = Path(ge=1, le=2**63 - 1), req: CompleteRequest | None = None,
                   state=Depends(deps), actor: Actor = Depends(require_scope("steer"))):
    account_id = await state.pool.fetchval("SELECT account_id FROM tasks WHERE id = $1", task_id)
    async with audited(state.pool, actor, "complete_task", f"task:{task_id}", account_id=account_id):
        row = await complete_task(state.client, state.pool, task_id, actor.name)
    return {"task_id": row["id"], "status": row["status"], "workflow_id": row["workflow_id"]}


@app.get("/outbox", dependencies=[Depends(require_scope("read"))])
async def outbox(account_id: str | None = Query(None, pattern=ACCOUNT_ID), limit: int = Query(50, ge=1, le=500),
                 state=Depends(deps)):
    rows = await state.pool.fetch(
        "SELECT id, workflow_id, step, to_addrs, subject, status, sent_at FROM communications "
        "WHERE ($1::text IS NULL OR account_id = $1) ORDER BY id DESC LIMIT $2",
        account_id, limit,
    )
    return [dict(r) for r in rows]

