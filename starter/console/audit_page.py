"""The audit log in the console: every entry, newest first, filterable by actor, action,
account, outcome and day; paged back by entry id (no page number to make expensive).

CS managers and admins (it shows source addresses and failed logins); each account's own
entries are also on its page, for everyone who can see the account.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from fastapi import APIRouter, Depends, Query, Request

from starter.console.access import Refused, require
from starter.console.pages import render
from starter.security.audit import audit_rows

router = APIRouter(prefix="/console", include_in_schema=False)
PER_PAGE = 100
OUTCOMES = ("ok", "refused", "failed")


def _day(value: str, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value[:10]), time(), tzinfo=timezone.utc)
    except ValueError:
        raise Refused(f"{field}: {value[:20]!r} is not a date (YYYY-MM-DD)", 422) from None


@router.get("/audit")
async def audit_log(request: Request, actor: str = Query("", max_length=200), action: str = Query("", max_length=100),
                    account: str = Query("", max_length=63), outcome: str = "", since: str = "", until: str = "",
                    before: int | None = Query(None, ge=1, le=2**63 - 1), user=Depends(require("cs_manager"))):
    if outcome and outcome not in OUTCOMES:
        raise Refused(f"outcome: one of {', '.join(OUTCOMES)}", 422)
    start, end = _day(since, "since"), _day(until, "until")
    rows = await audit_rows(request.app.state.pool, account_id=account or None, actor=actor or None,
                            action=action or None, outcome=outcome or None, since=start,
                            until=end + timedelta(days=1) if end else None, before_id=before, limit=PER_PAGE + 1)
    filters = {"actor": actor, "action": action, "account": account, "outcome": outcome, "since": since,
               "until": until}
    older = rows[PER_PAGE - 1]["id"] if len(rows) > PER_PAGE else None
    return await render(request, user, "audit.html", rows=rows[:PER_PAGE], filters=filters, outcomes=OUTCOMES,
                        older=older)
