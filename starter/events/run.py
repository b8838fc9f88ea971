"""Running the internal events one vendor event turned into, in order, and saying what they did."""

from __future__ import annotations

from starter.adapters.common import WebhookRefused
from starter.events.context import Context, Result
from starter.events.routing import CrmEvent, WaitFor, act, plan
from starter.steering import SteeringError


async def run_events(ctx: Context, events: list[CrmEvent], account_id: str | None, notes: list[str]) -> Result:
    """Plan and act on each event. A play that has not started makes the whole vendor event wait
    (raised as WaitFor: what already happened is idempotent when it is acted on again); a refusal
    of one (a renewal date in the past) is recorded in the outcome and the others go on."""
    parts = list(notes)
    workflow_id = trigger = None
    refused = routed = acted = 0
    for event in events:
        try:
            p = plan(event, ctx.triggers)
        except WebhookRefused as exc:
            parts.append(f"{event.propertyName or event.subscriptionType}: refused: {exc.detail}")
            refused += 1
            continue
        if p.trigger is None:
            continue
        routed += 1
        try:
            outcome = await act(p, ctx.client, ctx.pool, ctx.settings)
        except SteeringError as exc:
            parts.append(f"{p.trigger_name}: refused: {exc}")
            refused += 1
            continue
        except WaitFor as wait:
            raise WaitFor(wait.connection, wait.object_type, wait.crm_id, f"{p.trigger_name}: {wait.reason}",
                          parts) from None
        if outcome == "started":
            ctx.resolved("*", "play", [p.workflow_id])
        parts.append(f"{p.trigger_name}: {outcome} {p.workflow_id}")
        acted += 1
        workflow_id, trigger = p.workflow_id, p.trigger_name
    if events and not routed and not refused and not parts:
        parts.append("ignored: no trigger matches")
    # Refused: what the event should have done was refused (the console lists it for someone to look at).
    status = "refused" if refused and not acted else "done"
    return Result("; ".join(parts) or "recorded", status, account_id=account_id, workflow_id=workflow_id,
                  trigger=trigger)
