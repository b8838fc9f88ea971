"""What every playbook workflow does the same way.

A `Play` knows which play instance it is (the idempotency scope of every row
it writes), loads its account, keeps its search attributes, calls the shared
activities with one retry policy, and keeps a months-long play going past a
step's business failure. Only for use inside a workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.accounts import AccountActivities
    from activities.calendars import CalendarActivities
    from activities.escalation import EscalationActivities
    from activities.play_events import PlayEventActivities
    from activities.tasks import TaskActivities
    from core.models import (
        Account, CalendarPlace, CalendarsRequest, CompleteTaskRequest, CreateTaskRequest, CreateTasksRequest,
        EscalateRequest, EscalationReport, NewTask, PlayCalendars, PlayContextRequest,
        PlayEventRequest, PlayEventsRequest, PlayRef, RescheduleTasksRequest, RiskPointsRequest, Role,
        TaskRef,
    )
    from playbooks.schema import PlaybookSnapshot
    from workflows.common import (
        ACCOUNT_ID, ACTIVITY_RETRY, ACTIVITY_TIMEOUT, CSM_EMAIL, NEXT_ACTION_AT, PHASE, PLAYBOOK,
        SearchAttributeTracker, business_failure, local_time, play_log, run_activity, short,
    )
    from workflows.summaries import describe_step, markdown_text
    from workflows.play_email import CANCEL_IN_STEP, PlayEmail
    from workflows.messages import (
        PlayControl, TaskCompleted,
    )

# Play events (started, step done, finished) for chat, CRM write-back and outbound webhooks came
# after plays were in flight: each is a new activity, so each is behind a patch. A play that
# replays history recorded before the patch takes the old path for the rest of that run; the
# three are separate so that an older play still reports its end. tests/histories/ holds both.
STARTED_PATCH = "play-events-started"
STEPS_PATCH = "play-events-steps"
FINISHED_PATCH = "play-events-finished"


# Plays started from here on run on working days and send customer e-mail in its window, with
# send-time checks (issue 17). Runs started before replay without it: they never load calendars.
WORKING_TIME = "working-time-v1"
# Issue 18, fewer activities per play (a backlog of launches drains faster): the account and both
# calendars in one activity, all the tasks of a step in one, the play events of a stretch of work
# in one (sent when the play next waits). A run that recorded the old commands replays without them.
PLAY_CONTEXT = "play-context-v1"
BATCHED_TASKS = "batched-tasks-v1"
BATCHED_EVENTS = "batched-play-events-v1"
CALENDAR_YEARS = 5  # a renewal may be launched three years out, and runs a month past its date


class Play(PlayEmail):
    def __init__(self, playbook: str, account_id: str, snapshot: PlaybookSnapshot, search_attributes: bool,
                 control: PlayControl, keep_timers: bool = False, tasks: dict[str, TaskRef] | None = None):
        info = workflow.info()
        self.control = control
        self.playbook = playbook
        self.ref = PlayRef(workflow_id=info.workflow_id, play_id=info.first_execution_run_id, account_id=account_id)
        self.snapshot = snapshot
        self.search = SearchAttributeTracker(search_attributes)
        self.account: Account | None = None
        self._woken = False
        # With keep_timers, a wake-up by signal leaves the pending timer running
        # instead of cancelling it: plays that re-plan often (SLA clocks) never
        # send CancelTimer, which the time-skipping test server rejects when the
        # timer fires during the same workflow task (sdk-java issue 2606).
        self._keep_timers = keep_timers
        self._timer: asyncio.Future | None = None
        self._timer_at: datetime | None = None
        self._events: list[asyncio.Future] = []  # play events on their way (see play_event)
        self._queued: list[PlayEventRequest] = []  # play events to send as one batch (BATCHED_EVENTS)
        # Loaded with the account by plays started with WORKING_TIME; None: a play from before it.
        self.calendars: PlayCalendars | None = None
        self.tasks = tasks  # the play's task ledger, for the tasks Play itself creates (reach a customer)

    # -- what the Temporal UI shows -------------------------------------------------
    @property
    def tz(self) -> str:
        """The zone people read this play's times in: the account's once loaded, else the playbook's."""
        return self.account.timezone if self.account is not None else self.snapshot.content.timezone

    def when(self, at: datetime) -> str:
        """A moment as the UI shows it: "Tue 2026-12-01 09:00 America/New_York" (the account's zone)."""
        return local_time(at, self.tz)

    def show(self, waiting_for: str, next_action: str | None = None, next_at: datetime | None = None) -> None:
        """Keep the play's current details (Temporal UI, `describe()`) up to date: phase, what it waits
        for, the next action and when. Metadata only: no command, nothing a replay compares."""
        lines = [f"**Phase:** {self.search.get(PHASE) or 'starting'}", f"**Waiting for:** {waiting_for}"]
        if next_action:
            lines.append(f"**Next action:** {describe_step(next_action)}"
                         + (f", {self.when(next_at)}" if next_at else ""))
        if self.control.paused_at is not None:
            lines.append(f"**Paused** by {markdown_text(self.control.paused_by)}: "
                         f"{markdown_text(self.control.pause_reason or 'no reason given')}")
        workflow.set_current_details("\n\n".join(lines))

    def wake(self) -> None:
        """A signal or update changed the plan: the main loop looks again now."""
        self._woken = True

    async def sleep_until(self, wake_at: datetime | None, next_step: str, *, day: str = "",
                          waiting_for: str = "") -> None:
        """Sleep until the next planned action (or for good) unless woken first. `next_step` is the
        step due at `wake_at` (the timer's summary and the current details name it); `day` the plan's
        own name for the date ("day 2"); `waiting_for` what else wakes the play (a signal)."""
        await self.flush_events()
        self._woken = False
        what = describe_step(next_step)
        summary = short(f"wait until {what}, {(day + ' ') if day else ''}{self.when(wake_at)}") if wake_at else ""
        self.show(summary.removeprefix("wait until ") if wake_at else (waiting_for or "a signal (nothing planned)"),
                  next_step, wake_at)
        if self._keep_timers:
            await self._sleep_keeping_timers(wake_at, summary)
            return
        timeout = wake_at - workflow.now() if wake_at else None
        try:
            await workflow.wait_condition(lambda: self._woken, timeout=timeout, timeout_summary=summary or None)
        except asyncio.TimeoutError:
            pass

    async def _sleep_keeping_timers(self, wake_at: datetime | None, summary: str) -> None:
        if wake_at is not None and wake_at != self._timer_at:
            self._timer_at = wake_at
            # workflow.sleep starts the same timer command as asyncio.sleep, with a summary
            self._timer = asyncio.ensure_future(workflow.sleep(wake_at - workflow.now(), summary=summary))
        timer = self._timer
        await workflow.wait_condition(lambda: self._woken or (timer is not None and timer.done()))
        if timer is not None and timer.done():
            self._timer, self._timer_at = None, None

    async def hold_while_paused(self) -> None:
        """A paused play acts on nothing (signals still land) until resumed; what fell due
        meanwhile is then handled by the playbook's own catch-up rules."""
        if self.control.paused_at is None:
            return
        await self.flush_events()
        self.search.set(PHASE, "paused")
        self.search.set(NEXT_ACTION_AT, None)
        self.show("resume_play (the play is paused)")
        await workflow.wait_condition(lambda: self.control.paused_at is None)

    async def run_cancellable(self, main: Awaitable, tasks: dict[str, TaskRef]):
        """Run the play; on cancellation, take its open tasks off everyone's list, then end as cancelled."""
        try:
            return await main
        except asyncio.CancelledError:
            # New activities still run after a cancel request: the cleanup is durable too.
            for ref in await run_activity(TaskActivities.cancel_open_tasks, self.ref,
                                          summary="cancel the play's open tasks (play cancelled)"):
                tasks[ref.step] = ref
            self.log("cancelled", open_tasks_cancelled=sum(1 for t in tasks.values() if t.status == "cancelled"))
            await self.play_event(FINISHED_PATCH, "play.finished", outcome="cancelled")
            await self.flush_events()
            raise

    async def continue_as_new_if_long(self, input, state) -> None:
        """Keep a play that lives for months on a bounded history: past `input.max_history_events`
        (or when the server suggests it) start the next run with the state learnt so far."""
        info = workflow.info()
        if not (info.is_continue_as_new_suggested() or info.get_current_history_length() >= input.max_history_events):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self.flush_events()
        state.runs += 1
        self.log("continue_as_new", events=info.get_current_history_length(), run=state.runs)
        workflow.continue_as_new(input.model_copy(update={"state": state}))

    async def finish(self, phase: str) -> None:
        """Let running handlers end, then show the play as done in the UI."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.search.set(PHASE, phase)
        self.search.set(NEXT_ACTION_AT, None)
        self.show(f"nothing: the play ended ({phase})")
        await self.play_event(FINISHED_PATCH, "play.finished", outcome=phase)
        await self.flush_events()

    async def load_account(self) -> Account:
        content = self.snapshot.content
        staff = CalendarPlace(tz=content.timezone, country=content.team_country, region=content.team_region)
        start = workflow.now().date() - timedelta(days=1)
        if workflow.patched(PLAY_CONTEXT):
            context = await run_activity(AccountActivities.load_play_context, PlayContextRequest(
                account_id=self.ref.account_id, calendars=workflow.patched(WORKING_TIME), staff=staff, start=start,
                years=CALENDAR_YEARS), summary=f"load account {self.ref.account_id} and its working days "
                                               f"(staff {content.timezone}, {CALENDAR_YEARS} years)")
            self.account, self.calendars = context.account, context.calendars
            self._set_account_attributes()
        else:
            self.account = await run_activity(AccountActivities.load_account, self.ref.account_id,
                                              summary=f"load account {self.ref.account_id}")
            self._set_account_attributes()
            if workflow.patched(WORKING_TIME):
                where = "/".join(p for p in (self.account.country, self.account.region) if p)
                self.calendars = await run_activity(CalendarActivities.load_calendars, CalendarsRequest(
                    account=CalendarPlace(tz=self.account.timezone, country=self.account.country,
                                          region=self.account.region),
                    staff=staff, start=start, years=CALENDAR_YEARS,
                ), summary=f"load working days: account {self.account.timezone}{' ' + where if where else ''}, "
                           f"staff {content.timezone}, {CALENDAR_YEARS} years")
        if workflow.info().continued_run_id is None:  # a continued run is the same play going on
            await self.play_event(STARTED_PATCH, "play.started")
        return self.account

    def _set_account_attributes(self) -> None:
        self.search.set(ACCOUNT_ID, self.ref.account_id)
        self.search.set(PLAYBOOK, self.playbook)
        self.search.set(CSM_EMAIL, str(self.account.csm.email))

    async def play_event(self, patch: str, event: str, step: str | None = None, outcome: str | None = None) -> None:
        """Tell chat, CRM write-back and webhook subscribers (activities/play_events.py). The
        activity runs beside the play's next steps (it never delays them); `flush_events` waits
        for what is on its way before the play sleeps, continues as new or ends. Recording never
        fails the play: a business failure is logged and the play goes on."""
        if not workflow.patched(patch):
            return
        req = PlayEventRequest(play=self.ref, event=event, playbook=self.playbook, at=workflow.now(), step=step,
                               phase=self.search.get(PHASE), outcome=outcome[:500] if outcome else None)
        if workflow.patched(BATCHED_EVENTS):
            self._queued.append(req)  # sent with the others when the play next waits (send_events)
            return
        self._events = [e for e in self._events if not e.done()]
        self._events.append(workflow.start_activity_method(
            PlayEventActivities.record_play_event, req,
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY,
            summary=short(f"tell chat, CRM and webhooks: {event}" + (f" {step}" if step else "")
                          + (f" ({outcome})" if outcome else ""))))

    def send_events(self) -> None:
        """Send the queued play events as one activity, without waiting for it (BATCHED_EVENTS)."""
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        self._events = [e for e in self._events if not e.done()]
        names = ", ".join(dict.fromkeys(e.event for e in queued))
        self._events.append(workflow.start_activity_method(
            PlayEventActivities.record_play_events, PlayEventsRequest(events=queued),
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY,
            summary=short(f"tell chat, CRM and webhooks: {len(queued)} play event(s): {names}")))

    async def flush_events(self) -> None:
        """Send the queued play events and wait for those on their way (none: no command, no history event)."""
        self.send_events()
        pending, self._events = self._events, []
        for handle in pending:
            try:
                await handle
            except ActivityError as err:
                self.log("play_event_failed", error=business_failure(err), severity="warning")

    def staff_due(self, moment: datetime, working_days: int = 0) -> datetime:
        """An internal task's due time: `due_hour` in our team's zone, `working_days` staff working
        days after the local date of `moment` (rolled to a working day). Every day counts in a play
        from before calendars."""
        content = self.snapshot.content
        if self.calendars is None:
            return moment + timedelta(days=working_days)
        staff = self.calendars.staff
        return staff.at_hour(staff.add_working_days(staff.local_date(moment), working_days), content.due_hour)

    def log(self, event: str, severity: str = "info", **fields) -> None:
        play_log(f"{self.playbook}.{event}", self.ref.account_id, severity, **fields)

    async def attempt(self, step: str, failed_steps: dict[str, str], work: Awaitable[None]) -> None:
        """Run a step; a business failure (bad template, nobody to send to) must not end
        a play that lives for weeks: record it, show it in `status`, carry on."""
        outcome = "done"
        try:
            await work
        except ActivityError as err:
            if isinstance(err.cause, CancelledError) and workflow.patched(CANCEL_IN_STEP):
                raise asyncio.CancelledError(f"cancelled during {step}") from err
            cause = business_failure(err)
            failed_steps[step] = cause
            self.log("step_failed", step=step, error=cause, severity="error")
            outcome = f"failed: {cause}"
        await self.play_event(STEPS_PATCH, "play.step_done", step=step, outcome=outcome)

    # -- the shared activities ----------------------------------------------------
    async def create_tasks(self, tasks: dict[str, TaskRef], requests: list[dict], *, summary: str) -> list[TaskRef]:
        """Create a step's tasks (one activity and one transaction for all of them; in parallel, one
        activity each, in a run from before BATCHED_TASKS); `tasks` learns them in the order asked for.
        `summary` says what they are for ("kickoff phase tasks"); the UI's summary adds the titles,
        owners and due times."""
        if not requests:
            return []
        n = len(requests)

        def one(i: int, fields: dict) -> str:
            return (f"{i}/{n}: {fields['title']!r} for {fields['owner_role']}"
                    + (f", due {self.when(fields['due_at'])}" if fields.get("due_at") else ""))

        if workflow.patched(BATCHED_TASKS):
            refs = await run_activity(TaskActivities.create_tasks, CreateTasksRequest(
                play=self.ref, tasks=[NewTask(**fields) for fields in requests]),
                summary=f"{summary}: " + "; ".join(one(i, f) for i, f in enumerate(requests, start=1)))
        else:
            refs = await asyncio.gather(*(
                run_activity(TaskActivities.create_task, CreateTaskRequest(play=self.ref, **fields),
                             summary=f"{summary} {one(i, fields)}")
                for i, fields in enumerate(requests, start=1)
            ))
        for ref in refs:
            tasks.setdefault(ref.step, ref)
        return refs

    async def complete_tasks(self, tasks: dict[str, TaskRef], steps: list[str], completed_by: str, *,
                             summary: str) -> None:
        """Mark tasks completed (one call each); `summary` says why ("close tasks made moot by the renewal")."""
        refs = await asyncio.gather(*(
            run_activity(TaskActivities.complete_task, CompleteTaskRequest(
                play=self.ref, step=step, completed_by=completed_by,
            ), summary=f"{summary}: {tasks[step].title if step in tasks else step}")
            for step in steps
        ))
        for ref in refs:
            tasks[ref.step] = ref

    async def reschedule_tasks(self, tasks: dict[str, TaskRef], changes: dict[str, datetime], *, summary: str) -> None:
        """Give open tasks new due times (UTC); `summary` says why ("the plan moved")."""
        if not changes:
            return
        await run_activity(TaskActivities.reschedule_tasks, RescheduleTasksRequest(play=self.ref, due_dates=changes),
                           summary=f"re-date {len(changes)} open task{'s' if len(changes) != 1 else ''}: {summary}")
        for step, due in changes.items():
            tasks[step] = tasks[step].model_copy(update={"due_at": due})

    async def escalate(self, step: str, level: int, to_role: Role, reason: str, report: EscalationReport, *,
                       summary: str) -> None:
        """Escalate (e-mail and record); `summary` names it for the UI ("slip escalation")."""
        await run_activity(EscalationActivities.escalate, EscalateRequest(
            play=self.ref, step=step, level=level, to_role=to_role, reason=reason, report=report,
            template=self.snapshot.template("escalation"),
        ), summary=f"{summary}: L{level} to {to_role}, {reason}")

    async def record_risk(self, step: str, indicator: str, points: int, reason: str, *, summary: str) -> None:
        """Add churn-risk points; `summary` names the rule for the UI."""
        await run_activity(EscalationActivities.record_risk_points, RiskPointsRequest(
            play=self.ref, step=step, indicator=indicator, points=points, reason=reason,
        ), summary=f"{summary}: +{points} risk points ({indicator}), {reason}")

    # -- messages ------------------------------------------------------------------
    def task_completed(self, tasks: dict[str, TaskRef], done: TaskCompleted) -> TaskRef | None:
        """Mark a task of this play completed; None (and a warning) for a task it does not know."""
        ref = tasks.get(done.step)
        if ref is None or ref.task_id != done.task_id:
            self.log("unknown_task_signal", step=done.step, task_id=done.task_id, severity="warning")
            return None
        if ref.status != "completed":
            tasks[done.step] = ref.model_copy(update={"status": "completed", "completed_at": workflow.now()})
        return ref


from workflows.steerable import SteerablePlay  # noqa: E402,F401 (re-exported: every play imports it from here)
