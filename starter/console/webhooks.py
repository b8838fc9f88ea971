"""The console's Webhooks page: what the CRMs sent that is waiting for an object the book does
not have yet (and why), what is pending a retry, and what was refused, per vendor.

A page of its own (router, template); it reads crm_events through starter/book/waiting.py and
links each waiting event's account when it has one.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from starter.book.waiting import event_counts, waiting_events
from starter.console.pages import Refused, current_user, render, state

router = APIRouter(prefix="/console", include_in_schema=False)
SOURCES = ("generic", "hubspot", "salesforce", "zendesk")


@router.get("/webhooks")
async def webhooks_page(request: Request, source: str = "", user=Depends(current_user), st=Depends(state)):
    """Waiting events (what for, why, since when) and refused or retrying ones, optionally for one vendor."""
    if source and source not in SOURCES:
        raise Refused(f"unknown source {source!r}: one of {', '.join(SOURCES)}", 422)
    waiting = await waiting_events(st.pool, 500, source or None)
    troubled = await st.pool.fetch(
        """
        SELECT event_id, source, subscription, object_type, object_id, status, outcome, last_error, attempts,
               next_attempt_at, updated_at, account_id
        FROM crm_events WHERE (status = 'refused' OR (status = 'pending' AND last_error IS NOT NULL))
          AND ($1::text IS NULL OR source = $1)
        ORDER BY updated_at DESC LIMIT 100
        """, source or None)
    return await render(request, user, "webhooks.html", waiting=waiting, troubled=troubled,
                        counts=await event_counts(st.pool), source=source, sources=SOURCES)
