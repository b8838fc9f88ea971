"""The console's Deliveries pages: every chat message, CRM write and outbound webhook (next to the
e-mails of the Outbox), each one's attempts as the vendor answered them, what is configured on
or off, and the replay of a failed delivery.

A module of its own (router, templates). Roles (issue 16): the list and a delivery's page are for
every console user (like the Outbox); a replay sends something again on the team's behalf, so it
is a CS manager's (or an admin's), and it is in the audit log.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request

from core.logs import get_logger
from starter.console.access import actor, require
from starter.console.pages import Refused, current_user, done, posted_form, render, state
from starter.security.audit import audited
from starter.deliveries_data import KINDS, STATUSES, configuration, delivery_detail, list_deliveries
from starter.relay import ReplayRefused, replay_delivery

router = APIRouter(prefix="/console", include_in_schema=False)
log = get_logger("console")


def _workflow_link(settings, workflow_id: str | None) -> str:
    """The workflow (its latest run) in the Temporal UI."""
    if not workflow_id:
        return ""
    return (f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{quote(settings.temporal_namespace, safe='')}"
            f"/workflows/{quote(workflow_id, safe='')}")


@router.get("/deliveries")
async def deliveries_page(request: Request, kind: str = "", status: str = "", account: str = "", q: str = "",
                          page_no: int = 1, user=Depends(current_user), st=Depends(state)):
    """Chat messages, CRM writes and webhooks, newest first, filtered; and what is on or off."""
    if kind and kind not in KINDS:
        raise Refused(f"unknown kind {kind!r}: one of {', '.join(KINDS)}", 422)
    if status and status not in STATUSES:
        raise Refused(f"unknown status {status!r}: one of {', '.join(STATUSES)}", 422)
    view = await list_deliveries(st.pool, kind or None, status or None, account[:63] or None, q[:200],
                                 max(page_no, 1))
    switches, problems = configuration(st.settings)
    return await render(request, user, "deliveries.html", view=view, switches=switches, problems=problems,
                        filters={"kind": kind, "status": status, "account": account[:63], "q": q[:200]},
                        kinds=KINDS, statuses=STATUSES)


@router.get("/deliveries/{delivery_id}")
async def delivery_page(request: Request, delivery_id: int, user=Depends(current_user), st=Depends(state)):
    """One delivery: what was sent where, every attempt and the vendor's answer, its workflow."""
    detail = await delivery_detail(st.pool, delivery_id)
    if detail is None:
        raise Refused(f"There is no delivery {delivery_id}.", 404)
    d = detail["d"]
    payload = d["payload"]
    sent = payload.get("body") if isinstance(payload, dict) else payload
    if isinstance(sent, str):
        try:
            sent = json.loads(sent)
        except ValueError:
            pass
    shown = {k: v for k, v in payload.items() if k not in ("body",)} if isinstance(payload, dict) else {}
    return await render(request, user, "delivery.html", detail=detail, d=d,
                        sent=json.dumps(sent, indent=2, ensure_ascii=False, default=str),
                        details=json.dumps(shown, indent=2, ensure_ascii=False, default=str),
                        workflow_link=_workflow_link(st.settings, d["delivery_workflow"]),
                        play_link=_workflow_link(st.settings, d["workflow_id"]))


@router.post("/deliveries/{delivery_id}/replay")
async def replay(request: Request, delivery_id: int, form=Depends(posted_form), user=Depends(require("cs_manager")),
                 st=Depends(state)):
    """Deliver a failed delivery again (a webhook keeps its webhook-id)."""
    back = f"/console/deliveries/{delivery_id}"
    try:
        async with audited(st.pool, actor(request, user), "delivery.replay", f"delivery:{delivery_id}"):
            wid = await replay_delivery(st.pool, st.client, st.settings, delivery_id, user.email)
    except ReplayRefused as exc:
        if exc.status == 404:
            raise Refused(str(exc), 404) from None
        return await done(request, user, back, "error", str(exc))
    log.info("console.action", user=user.email, action="replay_delivery", delivery_id=delivery_id, workflow_id=wid)
    return await done(request, user, back, "ok", f"delivery {delivery_id} is being delivered again ({wid})")
