"""One durable delivery: a chat message, a CRM write or a signed webhook (activities/delivery.py).

Why a workflow per delivery rather than a step of the play: a Slack or CRM outage must delay the
message, never the play, and the back-off (hours, for a day or a week) must survive any worker.
The play's activity records the event; the relay (starter/relay.py) writes the
delivery row and starts `DeliverItem` with the workflow id `delivery-<row id>` (`-r<n>` for the
n-th replay), so starting it twice starts it once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.delivery import DeliveryActivities, DeliveryOutcome, GiveUpRequest
    from core.models import Model
    from workflows.common import ACTIVITY_RETRY


class DeliveryInput(Model):
    """`give_up_hours`: how long the delivery is tried (the kind's give-up time); the back-off
    doubles from `retry_initial_seconds` to `retry_max_seconds` (a Retry-After wins);
    `attempt_seconds`: one attempt's limit (a worker that dies is noticed after it)."""

    delivery_id: int
    kind: str
    give_up_hours: float
    retry_initial_seconds: float
    retry_max_seconds: float
    attempt_seconds: float


def delivery_workflow_id(delivery_id: int, replays: int = 0) -> str:
    return f"delivery-{delivery_id}" + (f"-r{replays}" if replays else "")


@workflow.defn(name="DeliverItem")
class DeliverItem:
    """Delivers one `deliveries` row, retried with back-off until delivered, refused, or the
    give-up time has passed (then marked failed, replayable). No signals or queries: the row
    and its attempts in PostgreSQL are what the console shows."""

    @workflow.run
    async def run(self, inp: DeliveryInput) -> DeliveryOutcome:
        try:
            return await workflow.execute_activity_method(
                DeliveryActivities.deliver, inp.delivery_id,
                start_to_close_timeout=timedelta(seconds=inp.attempt_seconds),
                schedule_to_close_timeout=timedelta(hours=inp.give_up_hours),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=inp.retry_initial_seconds), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=max(inp.retry_max_seconds, inp.retry_initial_seconds)),
                    non_retryable_error_types=["DeliveryRefused", "DeliveryMissing"]),
                summary=f"deliver item {inp.delivery_id} (retried for up to {inp.give_up_hours:g} hours)",
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                reason = cause.message
            elif isinstance(cause, TemporalTimeoutError):
                last = cause.cause.message if isinstance(cause.cause, ApplicationError) else ""
                reason = f"gave up after {inp.give_up_hours:g} hours" + (f"; last: {last}" if last else "")
            else:
                reason = str(err)
            await workflow.execute_activity_method(
                DeliveryActivities.give_up_delivery, GiveUpRequest(delivery_id=inp.delivery_id, reason=reason),
                start_to_close_timeout=timedelta(seconds=60), retry_policy=ACTIVITY_RETRY,
                summary=f"mark delivery {inp.delivery_id} failed: {reason}"[:200])
            return DeliveryOutcome(delivery_id=inp.delivery_id, status="failed", detail=reason)
