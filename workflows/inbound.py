"""What happens to mail that comes back (issue 17): one short play per message received."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.inbound import InboundActivities
    from workflows.common import run_activity
    from workflows.inbound_messages import InboundInput, InboundOutcome


@workflow.defn(name="InboundMail")
class InboundMail:
    """Acts on one message the inbound listener recorded: a hard bounce suppresses the address and
    gives the CSM a task; a soft one sends the e-mail to that recipient again after a back-off
    (durable timers here, so a restart loses nothing); a complaint suppresses and tells the CSM; a
    reply goes on the account's timeline and to the CSM; an unsubscribe by mail is recorded."""

    @workflow.run
    async def run(self, input: InboundInput) -> InboundOutcome:
        outcome = await run_activity(InboundActivities.apply_inbound_mail, input.inbound_id,
                                     summary=f"act on inbound message {input.inbound_id} (bounce, complaint or reply)")
        while outcome.retry_at is not None:
            await workflow.sleep(max(outcome.retry_at - workflow.now(), timedelta(0)),
                                 summary=f"wait until resending after a soft bounce, "
                                         f"{outcome.retry_at:%Y-%m-%d %H:%M} UTC")
            outcome = await run_activity(InboundActivities.resend_after_soft_bounce, input.inbound_id,
                                         summary=f"resend the e-mail soft-bounced by message {input.inbound_id}")
        return outcome
