"""The support CSAT survey (issue 19, ticket communications): GET /csat/{token}?score=N shows the
question with the score clicked in the e-mail chosen, POST records the answer (form or JSON: score
1-5, optional comment) once and signals the ticket's SLA play, which feeds the churn watch and, for
a low score, opens the follow-up task (workflows/sla_comms.py).

Links are signed like the NPS ones (activities/survey_links.py) with a key of their own; a refusal
is a clear page with its 4xx and records nothing: 403 forged or damaged link, 410 expired link or
closed ticket play, 409 already answered, 422 score missing or out of range, comment too long.
"""

from __future__ import annotations

from datetime import datetime, timezone

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.sla_comms import SCORES, csat_secret
from activities.survey_links import LinkRefused, SurveyLink, verify_link
from core.settings import Settings
from starter.steering import SteeringError
from starter.survey_page import deps, read_answer
from starter.survey_page import page as survey_page
from workflows.sla_messages import CsatAnswered, sla_workflow_id

router = APIRouter()
MAX_COMMENT = 5000


def page(title: str, status: int = 200, message: str = "", form: bool = False, score: int | None = None,
         ticket: str = "") -> HTMLResponse:
    """The CSAT page: survey_page's, with the 1-5 question about `ticket`."""
    question = (f"How satisfied are you with the support you received on ticket {ticket}? "
                "(1 = very dissatisfied, 5 = very satisfied)")
    return survey_page(title, status, message, form, score, question=question, scores=SCORES)


def ticket_of(link: SurveyLink) -> tuple[str, int]:
    """(ticket id, survey round) of a CSAT link (activities/sla_comms.csat_cycle)."""
    ticket_id, _, round_text = link.cycle_id.rpartition("/")
    return ticket_id, int(round_text)


def check_link(settings: Settings, token: str, now: datetime) -> SurveyLink:
    """The link, or SteeringError 403 (forged or damaged) / 410 (expired)."""
    try:
        return verify_link(csat_secret(settings), token, now)
    except LinkRefused as exc:
        raise SteeringError(exc.detail, exc.status) from None


async def record_csat_answer(client: Client, pool: asyncpg.Pool, settings: Settings, token: str, score: int,
                             comment: str = "", now: datetime | None = None) -> int:
    """Check the link and the answer, record it once (csat_responses) and signal the ticket's play;
    returns the row id. SteeringError (nothing recorded): 403/410 link, 422 score not 1-5 or comment
    over 5000 characters, 409 already answered, 410 the ticket's play has ended."""
    link = check_link(settings, token, now or datetime.now(timezone.utc))
    if score not in SCORES:
        raise SteeringError(f"score: {score} is not between 1 and 5", 422)
    if len(comment) > MAX_COMMENT:
        raise SteeringError(f"comment: longer than {MAX_COMMENT} characters", 422)
    ticket_id, round = ticket_of(link)
    async with pool.acquire() as conn, conn.transaction():
        row_id = await conn.fetchval(
            "INSERT INTO csat_responses (ticket_id, round, account_id, contact_email, score, comment)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ticket_id, round) DO NOTHING RETURNING id",
            ticket_id, round, link.account_id, link.contact_email, score, comment,
        )
        if row_id is None:
            raise SteeringError("you have already answered this survey; thank you", 409)
        # Inside the transaction: if the play cannot hear it, the answer is not kept either.
        try:
            await client.get_workflow_handle(sla_workflow_id(ticket_id)).signal(
                "csat_answered", CsatAnswered(score=score, round=round, by=link.contact_email))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise SteeringError("this survey is closed: the ticket's follow-up has ended", 410) from None
            raise
    return row_id


@router.get("/csat/{token}", response_class=HTMLResponse, summary="The CSAT question for a signed link")
async def csat_form(token: str, score: str | None = None, state=Depends(deps)):
    try:
        link = check_link(state.settings, token, datetime.now(timezone.utc))
    except SteeringError as exc:
        return page("This survey link cannot be used", exc.status, str(exc))
    ticket_id, round = ticket_of(link)
    if await state.pool.fetchval("SELECT 1 FROM csat_responses WHERE ticket_id = $1 AND round = $2",
                                 ticket_id, round):
        return page("Already answered", 409, "you have already answered this survey; thank you")
    chosen = int(score) if score is not None and score.isascii() and score.isdigit() and int(score) in SCORES else None
    return page("One question", form=True, score=chosen, ticket=ticket_id)


@router.post("/csat/{token}", response_class=HTMLResponse, status_code=201,
             summary="Record a CSAT answer (form or JSON: score 1-5, optional comment)",
             responses={403: {"description": "forged or damaged link"}, 409: {"description": "already answered"},
                        410: {"description": "expired link or ticket play ended"},
                        422: {"description": "score missing or out of range, comment too long"}})
async def csat_answer(token: str, request: Request, state=Depends(deps)):
    try:  # the link first: a forged one learns nothing, not even the form
        check_link(state.settings, token, datetime.now(timezone.utc))
    except SteeringError as exc:
        return page("This survey link cannot be used", exc.status, str(exc))
    try:
        score, comment = read_answer(request.headers.get("content-type", ""), await request.body())
    except ValueError:
        return page("Please choose a score", 422, "score: choose a number from 1 to 5", form=True)
    try:
        await record_csat_answer(state.client, state.pool, state.settings, token, score, comment)
    except SteeringError as exc:
        return page("Your answer was not recorded", exc.status, str(exc))
    return page("Thank you!", 201, "Your answer is recorded. It helps us serve you better.")
