"""Unsubscribing: the link in every non-transactional customer e-mail (issue 17).

`GET /unsubscribe/{token}` shows who and what the link is for, with buttons; it changes nothing
(mail scanners open links). `POST /unsubscribe/{token}` unsubscribes, without a session or a
CSRF token: the signed token is the authority. A body `List-Unsubscribe=One-Click` is RFC 8058's
one-click request, which mailbox providers send from their own "Unsubscribe" button; it
suppresses the kind of e-mail the link came with (survey or lifecycle). The page's second button
adds `scope=all`: every non-transactional e-mail. A forged or damaged token is 403, an expired
one 410, any other body 422; a refusal records nothing. Pages refuse to be framed and keep the
token out of referrers.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, select_autoescape

from activities.mail_events import suppress
from activities.mail_links import LinkRefused, UnsubscribeLink, verify_unsubscribe
from activities.mail_message import CATEGORY_WORDS
from core.logs import get_logger

log = get_logger("unsubscribe")
router = APIRouter()
MAX_BODY = 10_000
HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_env = Environment(autoescape=select_autoescape(default=True))
PAGE = _env.from_string("""<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: Arial, sans-serif; max-width: 40em; margin: 2em auto">
<h2>{{ title }}</h2>
{% if message %}<p>{{ message }}</p>{% endif %}
{% if link %}
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="via" value="page">
<p><button type="submit">Unsubscribe {{ link.address_key }} from {{ words }}</button></p></form>
<form method="post"><input type="hidden" name="scope" value="all"><input type="hidden" name="via" value="page">
<p><button type="submit">Unsubscribe from every e-mail but service notices</button></p></form>
<p style="color:#666">Updates about support tickets you opened still reach you.</p>
{% endif %}
</body></html>""")


def page(title: str, status: int = 200, message: str = "", link: UnsubscribeLink | None = None) -> HTMLResponse:
    words = CATEGORY_WORDS.get(link.category, "these e-mails") if link else ""
    return HTMLResponse(PAGE.render(title=title, message=message, link=link, words=words), status_code=status,
                        headers=HEADERS)


def deps(request: Request):
    return request.app.state


def _check(state, token: str) -> UnsubscribeLink:
    return verify_unsubscribe(state.settings.email_link_secret.get_secret_value(), token, datetime.now(timezone.utc))


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, summary="What an unsubscribe link is for")
async def unsubscribe_form(token: str, state=Depends(deps)):
    try:
        link = _check(state, token)
    except LinkRefused as exc:
        return page("This unsubscribe link cannot be used", exc.status, exc.detail)
    return page("Unsubscribe", link=link)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse,
             summary="Unsubscribe (RFC 8058 one-click: body List-Unsubscribe=One-Click; or scope=all)",
             responses={403: {"description": "forged or damaged link"}, 410: {"description": "expired link"},
                        422: {"description": "not a one-click request"}})
async def unsubscribe(token: str, request: Request, state=Depends(deps)):
    try:
        link = _check(state, token)
    except LinkRefused as exc:
        return page("This unsubscribe link cannot be used", exc.status, exc.detail)
    body = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if len(body) > MAX_BODY or ctype not in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
            raise ValueError
        if ctype == "multipart/form-data":
            form = {k: [str(v)] for k, v in (await request.form()).multi_items()}
        else:
            form = parse_qs(body.decode("utf-8"), strict_parsing=bool(body))
    except (ValueError, UnicodeDecodeError):
        return page("Not unsubscribed", 422, "List-Unsubscribe: send List-Unsubscribe=One-Click as a form body")
    one_click = form.get("List-Unsubscribe") == ["One-Click"]
    everything = form.get("scope") == ["all"]
    if not (one_click or everything):
        return page("Not unsubscribed", 422, "List-Unsubscribe: send List-Unsubscribe=One-Click as a form body")
    category = "all" if everything else link.category
    source = "unsubscribe page" if form.get("via") == ["page"] else "one-click"
    new = await suppress(state.pool, link.address_key, category, "unsubscribed", source, link.address_key,
                         link.account_id or None)
    log.info("unsubscribe.done", category=category, source=source, new=new)
    words = "every e-mail but service notices" if everything else CATEGORY_WORDS[link.category]
    return page("You are unsubscribed", 200,
                f"{link.address_key} will get no more {words} from us." if new else
                f"{link.address_key} was already unsubscribed from {words}.")
