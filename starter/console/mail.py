"""The console's mail pages (issue 17): the suppression list, shown and edited, and what customers'
mail did (replies, bounces, complaints) for an account's timeline.

The list is every suppression of ours (unsubscribes, hard bounces, complaints, added by hand) and
every CRM opt-out (HubSpot hs_email_optout, Salesforce HasOptedOutOfEmail), which the CRM owns:
those are shown but changed in the CRM. Adding and removing take the session's CSRF token and
are audited; a CSM or above adds one (a customer asked by phone), only a CS manager or an admin
removes one (mail to someone who opted out is a legal matter, CAN-SPAM / GDPR).
"""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Depends, Request

from activities.addresses import AddressProblem, parse_address
from activities.mail_events import suppress
from core.logs import get_logger
from starter.console.access import actor, require
from starter.console.pages import current_user, done, posted_form, render, state
from starter.security.audit import audit

log = get_logger("console")
router = APIRouter(prefix="/console", include_in_schema=False)
CATEGORIES = {
    "lifecycle": "account and renewal e-mails",
    "survey": "surveys",
    "all": "every non-transactional e-mail",
    "undeliverable": "every e-mail (the address does not work)",
}
PER_PAGE = 50


async def suppression_list(pool: asyncpg.Pool, q: str, page: int) -> dict:
    like = f"%{q.strip().lower()}%" if q.strip() else None
    rows = await pool.fetch(
        "SELECT s.*, a.name AS account_name FROM effective_suppressions s LEFT JOIN accounts a ON a.id = s.account_id"
        " WHERE $1::text IS NULL OR s.address_key LIKE $1 OR lower(coalesce(s.account_id, '')) LIKE $1"
        " OR s.reason LIKE $1 ORDER BY s.created_at DESC, s.address_key LIMIT $2 OFFSET $3",
        like, PER_PAGE + 1, (page - 1) * PER_PAGE,
    )
    return {"rows": rows[:PER_PAGE], "more": len(rows) > PER_PAGE, "page": page, "q": q}


async def account_mail(pool: asyncpg.Pool, account_id: str) -> dict:
    """What came back from the account's people (newest first) and which of them are suppressed."""
    inbound = await pool.fetch(
        "SELECT i.id, i.kind, i.from_name, i.from_address, i.subject, i.status_code, i.diagnostic, i.outcome,"
        " i.received_at, i.body_text, c.id AS communication_id, c.subject AS original_subject, r.address AS recipient"
        " FROM inbound_mail i JOIN communications c ON c.id = i.communication_id"
        " LEFT JOIN communication_recipients r ON r.id = i.recipient_id"
        " WHERE i.account_id = $1 ORDER BY i.received_at DESC LIMIT 100", account_id,
    )
    suppressed = await pool.fetch(
        "SELECT DISTINCT ON (s.address_key, s.category) s.address_key, s.category, s.reason, s.created_at"
        " FROM effective_suppressions s WHERE s.address_key IN (SELECT lower(email) FROM contacts WHERE account_id = $1"
        " UNION SELECT lower(sponsor_email) FROM accounts WHERE id = $1) ORDER BY s.address_key, s.category", account_id,
    )
    return {"inbound": inbound, "suppressed": suppressed}


@router.get("/suppressions")
async def suppressions(request: Request, q: str = "", page_no: int = 1, user=Depends(current_user), st=Depends(state)):
    view = await suppression_list(st.pool, q[:200], max(page_no, 1))
    return await render(request, user, "suppressions.html", view=view, categories=CATEGORIES)


@router.post("/suppressions")
async def add_suppression(request: Request, form=Depends(posted_form), user=Depends(require("csm")),
                          st=Depends(state)):
    back = "/console/suppressions"
    address = str(form.get("address") or "").strip()
    category = str(form.get("category") or "")
    note = str(form.get("note") or "")[:500]
    try:
        key = parse_address(address).key
    except AddressProblem as exc:
        return await done(request, user, back, "error", f"address: {exc}")
    if category not in CATEGORIES:
        return await done(request, user, back, "error", f"category: choose one of {', '.join(CATEGORIES)}")
    new = await suppress(st.pool, key, category, "manual", "console", user.email, None, note)
    await audit(st.pool, actor(request, user), "suppression.add", f"address:{key}",
                detail=f"category {category}" + ("" if new else " (already suppressed)"))
    log.info("console.action", user=user.email, action="suppress", category=category, new=new)
    return await done(request, user, back, "ok" if new else "warn",
                      f"{key} suppressed from {CATEGORIES[category]}" if new else
                      f"{key} was already suppressed from {CATEGORIES[category]}")


@router.post("/suppressions/{suppression_id}/remove")
async def remove_suppression(request: Request, suppression_id: int, form=Depends(posted_form),
                             user=Depends(require("cs_manager")), st=Depends(state)):
    back = "/console/suppressions"
    row = await st.pool.fetchrow("DELETE FROM suppressions WHERE id = $1 RETURNING address_key, category, reason",
                                 suppression_id)
    if row is None:
        return await done(request, user, back, "error", f"there is no suppression {suppression_id} (a CRM opt-out "
                                                        "is changed in the CRM)")
    await audit(st.pool, actor(request, user), "suppression.remove", f"address:{row['address_key']}",
                detail=f"category {row['category']}, was {row['reason']}")
    log.info("console.action", user=user.email, action="unsuppress", category=row["category"], reason=row["reason"])
    return await done(request, user, back, "ok", f"{row['address_key']} may get {CATEGORIES[row['category']]} again")
