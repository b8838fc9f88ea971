"""Is a survey link still good? Its signature and expiry (activities/survey_links.py) are not
enough: the link must have been sent (an `nps_invitations` row for that cycle, account and
contact), its invitation not closed, and its cycle neither closed nor cancelled.

So a link forged with a leaked secret cannot make the product write to an address it never
surveyed, and a cancelled cycle's links stop recording answers at once (410), not at expiry.
"""

from __future__ import annotations

import re

import asyncpg
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.survey_links import SurveyLink
from workflows.nps_messages import cycle_workflow_id, followup_workflow_id

FORGED = "this survey link is damaged or was not issued by us"
_RESURVEY = re.compile(r"^(?P<base>.+)-r\d+$")
_ENDED = {WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.FAILED,
          WorkflowExecutionStatus.TIMED_OUT}


class LinkClosed(Exception):
    """The link cannot be used: `status` 403 (never sent) or 410 (closed or cancelled)."""

    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail
        super().__init__(detail)


def owner_of(link: SurveyLink) -> tuple[str, bool]:
    """The play that sent the link, and whether it is the cycle itself (a re-survey is sent by
    the respondent's follow-up play, its cycle named `<cycle>-r<n>`)."""
    resurvey = _RESURVEY.match(link.cycle_id)
    if resurvey:
        return followup_workflow_id(resurvey["base"], link.contact_email), False
    return cycle_workflow_id(link.cycle_id), True


async def check_open(client: Client, pool: asyncpg.Pool, link: SurveyLink) -> None:
    """Raise LinkClosed unless the link was sent and its invitation and cycle are still open."""
    row = await pool.fetchrow(
        "SELECT closed_at FROM nps_invitations WHERE cycle_id = $1 AND contact_email = $2 AND account_id = $3",
        link.cycle_id, link.contact_email, link.account_id,
    )
    if row is None:
        raise LinkClosed(403, FORGED)
    if row["closed_at"] is not None:
        raise LinkClosed(410, f"this survey closed on {row['closed_at']:%Y-%m-%d}; thank you all the same")
    workflow_id, is_cycle = owner_of(link)
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return  # its history is gone (retention): the invitation row decides
        raise
    if desc.status in _ENDED:
        raise LinkClosed(410, "this survey was cancelled; thank you all the same")
    if is_cycle and desc.status == WorkflowExecutionStatus.COMPLETED:
        raise LinkClosed(410, "this survey has closed; thank you all the same")
