"""The survey answer page: GET shows the question, POST records the answer.

Plain server-rendered HTML (autoescaped Jinja2), so a respondent needs no
login and no JavaScript; every refusal is a clear page with its 4xx status.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, select_autoescape

from starter import steering
from starter.steering import SteeringError

router = APIRouter()
_env = Environment(autoescape=select_autoescape(default=True))
PAGE = _env.from_string("""<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body style="font-family: Arial, sans-serif; max-width: 40em; margin: 2em auto">
<h2>{{ title }}</h2>
{% if message %}<p>{{ message }}</p>{% endif %}
{% if form %}
<form method="post">
<p>{{ question }}</p>
<p>{% for n in scores %}<label><input type="radio" name="score" value="{{ n }}"{% if n == score %} checked{% endif %}> {{ n }}</label> {% endfor %}</p>
<p><label>Anything to add? (optional)<br><textarea name="comment" rows="4" cols="60"></textarea></label></p>
<p><button type="submit">Send</button></p>
</form>
{% endif %}
</body></html>""")


# The page cannot be framed (clickjacking a score), sends no referrer (the link is a credential),
# runs no script and posts only to itself.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


NPS_QUESTION = "How likely are you to recommend TAI Autonomic Systems to a friend or colleague?"


def page(title: str, status: int = 200, message: str = "", form: bool = False, score: int | None = None,
         question: str = NPS_QUESTION, scores: range | list = range(11)) -> HTMLResponse:
    """A survey page (NPS by default; the CSAT page passes its question and 1-5 scale), with HEADERS."""
    return HTMLResponse(PAGE.render(title=title, message=message, form=form, score=score, question=question,
                                    scores=list(scores)), status_code=status, headers=HEADERS)


def read_answer(content_type: str, body: bytes) -> tuple[int, str]:
    """(score, comment) of a survey form post or JSON body: {"score": N, "comment": "..."}. Raises
    ValueError when the score is missing or not a number or the body cannot be read."""
    try:
        if content_type.startswith("application/json"):
            data = json.loads(body or b"{}")
        else:
            data = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        return int(str(data.get("score", "")).strip()[:3]), str(data.get("comment", "") or "")
    except (UnicodeDecodeError, AttributeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def deps(request: Request):
    return request.app.state


@router.get("/nps/{token}", response_class=HTMLResponse, summary="The survey question for a signed link")
async def survey_form(token: str, score: int | None = None, state=Depends(deps)):
    from datetime import datetime, timezone

    from activities.survey_links import LinkRefused, verify_link
    from starter.nps_links import LinkClosed, check_open

    try:
        link = verify_link(state.settings.nps_link_secret.get_secret_value(), token, datetime.now(timezone.utc))
        await check_open(state.client, state.pool, link)
    except (LinkRefused, LinkClosed) as exc:
        return page("This survey link cannot be used", exc.status, exc.detail)
    return page("One question", form=True, score=score if score is not None and 0 <= score <= 10 else None)


@router.post("/nps/{token}", response_class=HTMLResponse, status_code=201,
             summary="Record an answer (form or JSON: score 0-10, optional comment)",
             responses={403: {"description": "forged or damaged link"}, 409: {"description": "already answered"},
                        410: {"description": "expired link"}, 422: {"description": "score missing or out of range"}})
async def survey_answer(token: str, request: Request, state=Depends(deps)):
    from datetime import datetime, timezone

    from activities.survey_links import LinkRefused, verify_link

    try:  # the link first: a forged one learns nothing, not even the form
        verify_link(state.settings.nps_link_secret.get_secret_value(), token, datetime.now(timezone.utc))
    except LinkRefused as exc:
        return page("This survey link cannot be used", exc.status, exc.detail)
    try:
        score, comment = read_answer(request.headers.get("content-type", ""), await request.body())
    except ValueError:
        return page("Please choose a score", 422, "score: choose a number from 0 to 10", form=True)
    try:
        await steering.record_nps_answer(state.client, state.pool, state.settings, token, score, comment)
    except SteeringError as exc:
        return page("Your answer was not recorded", exc.status, str(exc))
    return page("Thank you!", 201, "Your answer is recorded. It helps us serve you better.")
