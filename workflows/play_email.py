"""How every play writes to people (a part of `workflows.play.Play`, split by concern).

A customer e-mail waits for the account's send window on a durable timer and follows the
activity's deferrals (suppressions, the weekly cap); a meeting invitation gets a slot in both
sides' working hours; a customer the e-mail did not reach, where the step matters, gets the CSM a
task to reach them another way (issue 17). Only for use inside a workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from core.models import EmailResult, Meeting, Person, SendEmailRequest
    from core.working_time import SendWindow, meeting_slot
    from workflows.common import NEXT_ACTION_AT, business_failure, run_activity, short
    from workflows.summaries import recipients

STAFF_HOURS = SendWindow()  # our staff's working hours, for choosing a meeting slot that suits both sides
# A cancel that arrives while a step's activity runs reaches the play as that activity's
# failure (cause: CancelledError). Before this patch `attempt` recorded it as a failed step and
# the play went on, losing the cancel; with it, the cancel ends the play (run_cancellable).
CANCEL_IN_STEP = "cancel-in-step-v1"


class PlayEmail:
    """The e-mail steps of a `Play` (the attributes it reads are the Play's: ref, snapshot,
    calendars, tasks, control)."""

    async def email(self, step: str, template_key: str, to: list, cc: list, data: dict, *, summary: str,
                    people: list[Person] | None = None, stop_if_replied: list[str] | None = None,
                    still_wanted: Callable[[], bool] | None = None) -> EmailResult | None:
        """Send a playbook e-mail once. A lifecycle or survey e-mail waits for the account's send
        window (a durable timer, visible in the history); the activity checks suppressions and the
        weekly cap at send time and may answer "deferred until T": the play waits and asks again.
        `still_wanted` is asked after every wait (a renewal signed meanwhile): None when it says no.
        `summary` names the e-mail for the Temporal UI ("welcome e-mail"); the recipients are added.
        Returns the outcome; None when it was no longer wanted."""
        summary = f"{summary} to {self.recipients(to, cc, people)}"
        req = SendEmailRequest(play=self.ref, step=step, template=self.snapshot.template(template_key), to=to,
                               cc=cc, data=data, people=people or [], stop_if_replied=stop_if_replied or [])
        if self.calendars is None:
            return await run_activity(EmailActivities.send_templated_email, req, summary=summary)
        try:
            result = await self._email_in_window(req, still_wanted, summary)
        except ActivityError as err:
            if isinstance(err.cause, CancelledError) and workflow.patched(CANCEL_IN_STEP):
                raise asyncio.CancelledError(f"cancelled during {req.step}") from err
            await self._reach_out(req, [business_failure(err)])
            raise
        if result is not None:
            await self._reach_out(req, [f"{r.name} <{r.address}>: {r.status}" + (f" ({r.reason})" if r.reason else "")
                                        for r in result.unreached_customers()])
        return result

    def recipients(self, to: list, cc: list, people: list[Person] | None = None) -> str:
        """Who an e-mail goes to, for a summary (see workflows/summaries.recipients)."""
        return recipients(to, cc, people, self.account)

    async def _email_in_window(self, req: SendEmailRequest, still_wanted, summary: str) -> EmailResult | None:
        template, cal = req.template, self.calendars.account
        planned = workflow.now()
        while True:
            await self.hold_while_paused()
            if still_wanted is not None and not still_wanted():
                self.log("email_not_wanted", step=req.step)
                return None
            now = workflow.now()
            send_by = None
            if template.window is not None:
                slot = template.window.next_slot(now, cal)
                if slot > now:
                    self.log("email_held", step=req.step, until=slot.isoformat(),
                             why=f"outside the send window ({template.window.describe()}, {cal.tz})")
                    await self._wait(slot, still_wanted, f"the send window for the {summary}, {self.when(slot)}")
                    continue
                send_by = template.window.closes_at(now, cal)
            if template.meeting is not None and req.meeting is None:
                req = self._with_meeting(req, now)
            result = await run_activity(EmailActivities.send_templated_email, req.model_copy(update={
                "send_by": send_by, "planned_at": planned if planned < now else None}), summary=summary)
            if result.outcome != "deferred":
                return result
            until = max(result.deferred_until or now, now + timedelta(minutes=1))
            self.log("email_deferred", step=req.step, until=until.isoformat(), why=result.reason)
            await self._wait(until, still_wanted, f"a new try of the {summary} ({result.reason}), {self.when(until)}")

    def _with_meeting(self, req: SendEmailRequest, now: datetime) -> SendEmailRequest:
        """The meeting the e-mail proposes: a working-hours slot in the account's zone (see meeting_slot)."""
        spec, cals = req.template.meeting, self.calendars
        hours = req.template.window or SendWindow()
        start = meeting_slot(now, spec.lead_working_days, spec.duration_minutes, spec.earliest, cals.account, hours,
                             cals.staff, STAFF_HOURS)
        meeting = Meeting(title=spec.title or "", start=start, end=start + timedelta(minutes=spec.duration_minutes),
                          tz=cals.account.tz, location=spec.location)
        data = {**req.data, "meeting": {"start": start, "end": meeting.end, "tz": meeting.tz,
                                        "minutes": spec.duration_minutes, "location": spec.location}}
        return req.model_copy(update={"meeting": meeting, "data": data})

    async def _wait(self, until: datetime, still_wanted, what: str) -> None:
        """Sleep until `until`; with `still_wanted`, wake early when it stops holding or the play is paused.
        `what` is what the play waits for (the timer's summary and the current details)."""
        now = workflow.now()
        if until <= now:
            return
        self.search.set(NEXT_ACTION_AT, until)
        if self._queued:  # BATCHED_EVENTS: what the play did before an e-mail's wait is news now
            await self.flush_events()  # and awaited, so that the play then rests on its timer alone
        self.show(what)
        summary = short(f"wait until {what}")
        if still_wanted is None:
            await workflow.sleep(until - now, summary=summary)  # no CancelTimer: plays that keep their timers need that
            return
        try:
            await workflow.wait_condition(lambda: not still_wanted() or self.control.paused_at is not None,
                                          timeout=until - now, timeout_summary=summary)
        except asyncio.TimeoutError:
            pass

    async def _reach_out(self, req: SendEmailRequest, missed: list[str]) -> None:
        """Where a step matters, a customer the e-mail did not reach gets the CSM a task to reach them another way."""
        if not (req.template.reach_another_way and missed and self.tasks is not None):
            return
        await self.create_tasks(self.tasks, summary="reach-out task", requests=[dict(
            step=f"{req.step}/reach-out", title=f"Reach the customer another way: {req.step} was not e-mailed",
            detail="Not reached by e-mail: " + "; ".join(missed), owner_role="csm", priority="P1",
            due_at=self.staff_due(workflow.now(), 1),
        )])
