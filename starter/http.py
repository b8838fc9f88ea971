"""HTTP service: CRM webhooks, health, accounts, launching and steering plays, tasks, outbox.

OpenAPI docs at /docs. Every refusal is a 4xx with a one-line `detail`;
an unexpected error is a 500 that says to look at the service log.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import date

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, Field

from activities.db import create_pool, database_url
from core.logs import configure_logging, get_logger
from core.settings import get_settings
from core.temporal import connect
from playbooks.loader import PlaybookError
from starter import console, survey_page, unsubscribe_page, webhooks
from starter.console.pages import error_page
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
    app.state.settings = settings
    app.state.pool = await create_pool(database_url(settings), settings.db_pool_max)
    app.state.client = await connect(settings)
    yield
    await app.state.pool.close()


app = FastAPI(title="Customer lifecycle playbooks", lifespan=lifespan)
app.include_router(webhooks.router)
app.include_router(survey_page.router)
app.include_router(unsubscribe_page.router)
console.install(app)


def for_console(request: Request) -> bool:
    return request.url.path.startswith("/console")


@app.exception_handler(SteeringError)
async def steering_error(_: Request, exc: SteeringError):
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


@app.exception_handler(PlaybookError)
async def playbook_error(_: Request, exc: PlaybookError):
    return JSONResponse({"detail": "invalid playbook", "problems": str(exc).splitlines()}, status_code=422)


@app.exception_handler(Exception)
async def internal_error(request: Request, exc: Exception):
    log.exception("http.internal_error", path=request.url.path)
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
    if for_console(request):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return error_page(422, f"That request was not understood ({problems}).")
    return await request_validation_exception_handler(request, exc)


def deps(request: Request):
    return request.app.state


class LaunchRequest(BaseModel):
    account_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    launched_by: str = "http"


class Launched(BaseModel):
    workflow_id: str
    run_id: str


class CompleteRequest(BaseModel):
    completed_by: str = Field(min_length=1)


@app.get("/healthz")
async def healthz(state=Depends(deps)):
    checks = {}
    try:
        await state.pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # report, don't raise: this is the health endpoint
        checks["postgres"] = f"down: {type(exc).__name__}"
    try:
        await state.client.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"down: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(checks, status_code=200 if ok else 503)


@app.get("/accounts")
async def accounts(state=Depends(deps)):
    rows = await state.pool.fetch("SELECT id, name, status, health, arr, csm_email FROM accounts ORDER BY id")
    return [dict(r) for r in rows]


@app.post("/plays/onboarding", status_code=202, response_model=Launched)
async def launch(req: LaunchRequest, state=Depends(deps)):
    handle = await launch_onboarding(state.client, state.pool, state.settings, req.account_id, req.launched_by)
    return Launched(workflow_id=handle.id, run_id=handle.result_run_id or "")


@app.get("/plays/onboarding/{account_id}", response_model=OnboardingStatus)
async def play_status(account_id: str, state=Depends(deps)):
    return await query_status(state.client, onboarding_workflow_id(account_id), OnboardingPlan.status,
                              f"no onboarding play for account {account_id!r}")


class RenewalLaunch(LaunchRequest):
    renewal_date: date | None = Field(None, description="default: the account's renewal date")


@app.post("/plays/renewal", status_code=202, response_model=Launched)
async def launch_renewal_play(req: RenewalLaunch, state=Depends(deps)):
    handle = await launch_renewal(state.client, state.pool, state.settings, req.account_id, req.launched_by,
                                  req.renewal_date)
    return Launched(workflow_id=handle.id, run_id=handle.result_run_id or "")


@app.get("/plays/renewal/{account_id}", response_model=RenewalStatus)
async def renewal_play_status(account_id: str, state=Depends(deps)):
    return await renewal_status(state.client, account_id)


@app.post("/plays/renewal/{account_id}/renewal-date", response_model=RenewalPlan)
async def move_renewal_date(account_id: str, change: ChangeRenewalDate, state=Depends(deps)):
    return await change_renewal_date(state.client, account_id, change)


@app.post("/plays/renewal/{account_id}/renewed", status_code=202)
async def renewed(account_id: str, signed: Renewed, state=Depends(deps)):
    await mark_renewed(state.client, account_id, signed)
    return {"account_id": account_id, "outcome": "renewed"}


@app.post("/plays/renewal/{account_id}/churned", status_code=202)
async def churned(account_id: str, churn: Churned, state=Depends(deps)):
    await mark_churned(state.client, account_id, churn)
    return {"account_id": account_id, "outcome": "churned"}


@app.post("/tasks/{task_id}/complete")
async def complete(task_id: int, req: CompleteRequest, state=Depends(deps)):
    row = await complete_task(state.client, state.pool, task_id, req.completed_by)
    return {"task_id": row["id"], "status": row["status"], "workflow_id": row["workflow_id"]}


@app.get("/outbox")
async def outbox(account_id: str | None = None, limit: int = 50, state=Depends(deps)):
    rows = await state.pool.fetch(
        "SELECT id, workflow_id, step, to_addrs, subject, status, sent_at FROM communications "
        "WHERE ($1::text IS NULL OR account_id = $1) ORDER BY id DESC LIMIT $2",
        account_id, min(max(limit, 1), 500),
    )
    return [dict(r) for r in rows]
