"""What every playbook workflow shares: search attribute keys and activity options."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

ACCOUNT_ID = SearchAttributeKey.for_keyword("AccountId")
PLAYBOOK = SearchAttributeKey.for_keyword("Playbook")
PHASE = SearchAttributeKey.for_keyword("Phase")
RISK_BAND = SearchAttributeKey.for_keyword("RiskBand")
CSM_EMAIL = SearchAttributeKey.for_keyword("CsmEmail")
NEXT_ACTION_AT = SearchAttributeKey.for_datetime("NextActionAt")

# Outages of PostgreSQL or SMTP are waited out, not failed: a play lives for
# weeks and a step late by an hour beats a step lost. Business errors are
# raised non-retryable by the activities themselves.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
ACTIVITY_TIMEOUT = timedelta(seconds=60)


def play_search_attributes(account_id: str, playbook: str, csm_email: str, phase: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(ACCOUNT_ID, account_id),
        SearchAttributePair(PLAYBOOK, playbook),
        SearchAttributePair(CSM_EMAIL, csm_email),
        SearchAttributePair(PHASE, phase),
    ])


class SearchAttributeTracker:
    """Upserts a search attribute only when its value changes, to keep histories short."""

    def __init__(self, enabled: bool = True) -> None:
        self._last: dict[str, object] = {}
        self._enabled = enabled

    def set(self, key: SearchAttributeKey, value: str | datetime | None) -> None:
        # The value is remembered even where the server cannot index it (play events carry the phase).
        if self._last.get(key.name, ...) == value:
            return
        self._last[key.name] = value
        if self._enabled:
            workflow.upsert_search_attributes([key.value_set(value) if value is not None else key.value_unset()])

    def get(self, key: SearchAttributeKey):
        """The value last set (None if never)."""
        return self._last.get(key.name)


SUMMARY_LIMIT = 200  # characters; the server refuses user metadata summaries over a few hundred bytes


def short(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """`text` on one line, cut to `limit` characters (with an ellipsis): fit for a UI summary."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def local_time(at: datetime, tz: str) -> str:
    """`at` as a person reads it in zone `tz`: "Tue 2026-12-01 09:00 America/New_York"."""
    return f"{at.astimezone(ZoneInfo(tz)):%a %Y-%m-%d %H:%M} {tz}"


async def run_activity(method, arg, *, summary: str, timeout: timedelta = ACTIVITY_TIMEOUT,
                       heartbeat: timedelta | None = None):
    """Every play step runs its activities with the same retry policy (and, but for long batches, timeout).
    `summary` is what the Temporal UI shows for the call ("welcome e-mail to champion, sponsor"):
    metadata only, never part of the commands a replay compares."""
    return await workflow.execute_activity_method(
        method, arg, start_to_close_timeout=timeout, heartbeat_timeout=heartbeat, retry_policy=ACTIVITY_RETRY,
        summary=short(summary),
    )


def business_failure(err: ActivityError) -> str:
    """What a step's non-retryable failure says, for the play's `failed_steps`."""
    return err.cause.message if isinstance(err.cause, ApplicationError) else str(err)


def play_log(event: str, account_id: str, severity: str = "info", **fields) -> None:
    getattr(workflow.logger, severity)(event, extra={"account_id": account_id, **fields})
