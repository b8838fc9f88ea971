"""What every activity module shares: errors that say what is wrong, and a logger
that carries the play's workflow id, run id and account."""

from __future__ import annotations

from datetime import datetime, timezone

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.logs import get_logger
from core.models import PlayRef


def play_logger(name: str, play: PlayRef, step: str | None = None):
    info = activity.info() if activity.in_activity() else None
    return get_logger(name).bind(
        workflow_id=play.workflow_id,
        run_id=info.workflow_run_id if info else None,
        account_id=play.account_id,
        step=step,
        attempt=info.attempt if info else None,
    )


def not_retryable(message: str, type_: str) -> ApplicationError:
    """A business failure that no retry can fix: the play decides what to do."""
    return ApplicationError(message, type=type_, non_retryable=True)


def needs_setup(message: str, type_: str) -> ApplicationError:
    """Missing configuration (a staff role, say): retried, so fixing the data unblocks the play."""
    return ApplicationError(message, type=type_)


def activity_now() -> datetime:
    """The moment an activity acts at, for rules that count time (send windows, the weekly cap,
    back-off): the wall clock, or the time the play scheduled this attempt if that is later. Plays
    run on workflow time; a time-skipping server (tests, `csplay preview`) runs it ahead of the wall
    clock, and the rules must follow the play's clock, not the machine's."""
    now = datetime.now(timezone.utc)
    if activity.in_activity():
        scheduled = activity.info().current_attempt_scheduled_time
        if scheduled is not None and scheduled > now:
            return scheduled
    return now
