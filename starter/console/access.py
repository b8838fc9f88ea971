"""Who may see and do what in the console: the session, the CSRF check, roles and books.

Roles (migration 0020), each including the ones before it:

- `viewer`: reads every page;
- `csm`: also steers (pause, resume, skip, cancel), launches and completes tasks, but only for
  the accounts in their own book (accounts.csm_email is their e-mail) and tasks they own;
- `cs_manager`: steers, launches and completes on every account; sees the audit log;
- `admin`: also users, API tokens and settings.

For any router (new pages too):

    @router.get("/thing")
    async def thing(request: Request, user: ConsoleUser = Depends(require("cs_manager"))): ...

    @router.post("/thing")
    async def do(request: Request, form=Depends(posted_form), user=Depends(require("csm"))):
        await ensure_can_steer(request, user, account_id)   # a CSM: only their own book
        ...

`require(role)` answers 403 (a page with a sentence) to a lower role and sends a stranger to the
login page; `posted_form` checks the session's CSRF token; `actor(request, user)` is the
audit-log Actor for that user.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from fastapi import Depends, Request
from starlette.datastructures import FormData

from core.logs import get_logger
from starter.console import auth
from starter.console.auth import ROLE_NAMES, ROLES, SESSION_COOKIE, ConsoleUser
from starter.security.audit import Actor
from starter.security.clients import client_ip

log = get_logger("console")


class LoginRequired(Exception):
    """No session: the console answers with a redirect to its login page, coming back to `next_path`."""

    def __init__(self, next_path: str):
        self.next_path = next_path


class Refused(Exception):
    """A console request that cannot be served: a page with `status` and the sentence."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


async def current_user(request: Request) -> ConsoleUser:
    """The logged-in user, or LoginRequired (a redirect to the login page)."""
    user = await auth.session_user(request.app.state.pool, request.cookies.get(SESSION_COOKIE))
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/console/")
    return user


def require(role: str) -> Callable:
    """A dependency: the logged-in user if their role is `role` or above, else a 403 page."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(request: Request, user: ConsoleUser = Depends(current_user)) -> ConsoleUser:
        if not user.at_least(role):
            log.warning("console.role_refused", user=user.email, role=user.role, needs=role, path=request.url.path)
            raise Refused(f"This needs the {ROLE_NAMES[role]} role or above; you are a {user.role_name}. "
                          "Ask an admin if you need it.", 403)
        return user

    dependency.__name__ = f"require_{role}"
    return dependency


async def posted_form(request: Request, user: ConsoleUser = Depends(current_user)) -> FormData:
    """The posted form, if it carries this session's CSRF token; else Refused (403)."""
    form = await request.form()
    if not auth.same_token(form.get("csrf_token"), user.csrf_token):
        log.warning("console.csrf_refused", user=user.email, path=request.url.path)
        raise Refused("This form has expired or did not come from the console. Go back, reload the page and "
                      "try again.", 403)
    return form


def actor(request: Request, user: ConsoleUser) -> Actor:
    """The audit-log actor for a console user's request."""
    return Actor(user.email, "user", client_ip(request), role=user.role)


def in_book(user: ConsoleUser, csm_email: str | None) -> bool:
    """May `user` steer an account whose CSM is `csm_email`? CS managers and admins: every
    account; a CSM: their own; a viewer: none."""
    if user.at_least("cs_manager"):
        return True
    return user.role == "csm" and bool(csm_email) and csm_email.lower() == user.email


async def ensure_can_steer(request: Request, user: ConsoleUser, account_id: str | None) -> None:
    """Refused (403) unless `user` may steer and launch for `account_id` (None: an account
    nobody can tell, which only CS managers and admins may touch)."""
    if not user.at_least("csm"):
        raise Refused(f"Viewers cannot change anything; you are a {user.role_name}.", 403)
    if user.at_least("cs_manager"):
        return
    csm = await request.app.state.pool.fetchval("SELECT csm_email FROM accounts WHERE id = $1", account_id) \
        if account_id else None
    if not in_book(user, csm):
        log.warning("console.book_refused", user=user.email, account_id=account_id, path=request.url.path)
        raise Refused(f"{account_id or 'This play'} is not in your book of accounts: only its CSM or a CS manager "
                      "may change it.", 403)


async def account_of_play(request: Request, workflow_id: str) -> str | None:
    """The account a play belongs to: its AccountId search attribute, else its status query's
    `account_id`; None when neither tells (the play is then a CS manager's to steer)."""
    from temporalio.service import RPCError

    client = request.app.state.client
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError:
        return None
    for pair in desc.typed_search_attributes:
        if pair.key.name == "AccountId" and pair.value:
            return str(pair.value)
    try:
        state = await asyncio.wait_for(handle.query("status"), 5.0)
    except Exception:  # a play that does not answer: nobody can tell
        return None
    account_id = state.get("account_id") if isinstance(state, dict) else getattr(state, "account_id", None)
    return str(account_id) if account_id else None
