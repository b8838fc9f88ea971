"""The renewal countdown (SPEC "Playbook 2"; seeds 002 and 003; seed 001 section 13.2)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.accounts import AccountActivities
    from core.models import EscalationReport, RenewalOutcomeRequest
    from playbooks.schema import CountdownStep, RenewalStep, StepTask, email_key, follow_up_key
    from workflows.calendar import local_date
    from workflows.common import NEXT_ACTION_AT, PHASE, run_activity
    from workflows.messages import TaskCompleted
    from workflows.play import Play, SteerablePlay
    from workflows.renewal_messages import (
        RENEWAL, ChangeRenewalDate, Churned, RenewalInput, RenewalPlan, RenewalResult, RenewalStatus, Renewed,
    )
    from workflows.renewal_timeline import (
        CHURN_CLOSE, PAST_DUE, Action, RenewalState, RenewalTimeline, email_step, follow_up_step, step_id, task_step,
    )


@workflow.defn(name="RenewalCountdown")
class RenewalCountdown(SteerablePlay):
    """Runs one account's renewal: the countdown steps from 180 days out, the
    churn-risk marks of the final 90 days and of a missed date, past-due
    escalations, then the post-renewal steps (renewed) or the close-out
    (churned).

    Signals: `renewed`, `churned`, `task_completed`. Update:
    `change_renewal_date` (returns the new schedule). Query: `status`.
    Continues as new when its history grows long, carrying its state.
    """

    @workflow.init
    def __init__(self, input: RenewalInput) -> None:
        self._input = input
        self._content = input.playbook.content
        now = workflow.now()
        self._state = input.state or RenewalState(
            started_at=now, start_date=local_date(now, self._content.timezone), tier=input.tier,
            renewal_date=input.renewal_date, original_renewal_date=input.renewal_date,
        )
        self._timeline = RenewalTimeline(self._content, self._state)
        if input.state is None:
            self._timeline.skip_before_start()
        self._play = Play(RENEWAL, input.account_id, input.playbook, input.search_attributes, self._state.control,
                          tasks=self._state.tasks)
        self._search = self._play.search

    # -- main loop -----------------------------------------------------------
    @workflow.run
    async def run(self, input: RenewalInput) -> RenewalResult:
        return await self._play.run_cancellable(self._run(input), self._state.tasks)

    async def _run(self, input: RenewalInput) -> RenewalResult:
        await self._play.load_account()
        if self._play.calendars is not None:
            if input.state is None:
                self._state.working_days = True  # a play launched on working days stays on them
            self._timeline.use_calendars(self._play.calendars)
        self._log("started" if self._state.runs == 1 else "continued",
                  renewal_date=self._state.renewal_date.isoformat(), tier=self._state.tier,
                  version=self._content.version, digest=input.playbook.digest, run=self._state.runs,
                  skipped=list(self._state.skipped_steps))
        while True:
            await self._play.hold_while_paused()
            await self._play.reschedule_tasks(self._state.tasks, self._timeline.rescheduled_tasks(),
                                              summary="the renewal date moved")
            now = workflow.now()
            due = self._timeline.due(now)
            for action in due:
                await self._perform(action)
            if due:
                continue
            if self._timeline.finished():
                break
            self._search.set(PHASE, self._timeline.phase())
            self._search.set(NEXT_ACTION_AT, self._timeline.next_action()[1])
            await self._play.continue_as_new_if_long(input, self._state)
            wake = self._timeline.next_wake(now)
            days = f"{self._timeline.days_to_renewal(wake)} days to renewal," if wake else ""
            await self._play.sleep_until(wake, self._timeline.next_action()[0], day=days.rstrip(","),
                                         waiting_for="renewed or churned, or a task completion")
        await self._play.finish(self._timeline.phase())
        st = self._state
        self._log("completed", outcome=st.outcome, runs=st.runs)
        return RenewalResult(
            account_id=input.account_id, outcome=st.outcome, renewal_date=st.renewal_date,
            new_renewal_date=st.new_renewal_date, emails_sent=len(st.emails_sent), tasks_created=len(st.tasks),
            done_steps=st.done_steps, skipped_steps=st.skipped_steps, failed_steps=st.failed_steps,
        )

    async def _perform(self, action: Action) -> None:
        run = {
            "step": lambda: self._run_step(self._content.step(action.ref)),
            "outcome": self._apply_outcome,
            "final_window": lambda: self._final_window(action),
            "past_due": self._past_due,
            "past_due_escalation": lambda: self._escalate_past_due(action),
            "churn_close": self._close_churned,
            "follow_up": lambda: self._follow_up(action),
        }[action.kind]
        await self._play.attempt(action.step, self._state.failed_steps, run())
        self._timeline.mark_done(action.step, workflow.now())

    # -- steps ---------------------------------------------------------------
    async def _run_step(self, step: RenewalStep) -> None:
        tier, sid, now = self._state.tier, step_id(step.key), workflow.now()
        self._state.fired_at.setdefault(step.key, now)
        self._search.set(PHASE, step.phase)
        await self._create_tasks(sid, step.tasks_for(tier), step)
        data = self._timeline.status_data(now, step)
        # A countdown e-mail held for the send window is dropped if the renewal is decided meanwhile.
        wanted = (lambda: self._state.outcome is None) if isinstance(step, CountdownStep) else None
        for email in step.emails_for(tier):
            await self._email(email_step(sid, email.key), email_key(step.key, email.key), email.to, email.cc, data,
                              still_wanted=wanted, summary=f"{step.name}: {email.key.replace('_', ' ')} e-mail")
        self._log("step", step=sid, phase=step.phase, days_to_renewal=data["days_to_renewal"])

    async def _create_tasks(self, parent: str, tasks: list[StepTask], step: RenewalStep | None) -> None:
        now = workflow.now()
        what = f"{step.name} task" if step is not None else f"{parent} task"
        await self._play.create_tasks(self._state.tasks, summary=what, requests=[
            dict(step=task_step(parent, task), title=task.title, detail=task.detail,
                 owner_role=task.owner_for(self._state.tier), priority=task.priority,
                 due_at=self._timeline.task_due(step, task, now))
            for task in tasks
        ])

    async def _email(self, step: str, template_key: str, to: list, cc: list, data: dict, **kw):
        result = await self._play.email(step, template_key, to, cc, data, **kw)
        # Plays on working days count what was sent (follow-ups go after those); older ones every attempt.
        if self._play.calendars is None or (result is not None and result.outcome == "sent"):
            if step not in self._state.emails_sent:
                self._state.emails_sent.append(step)
        return result

    async def _follow_up(self, action: Action) -> None:
        """A reminder of a step's e-mail, to the same people; a reply to it or to an earlier reminder stops it."""
        step_key, key, n = action.ref.split("|")
        step = self._content.step(step_key)
        email = next(e for e in step.emails if e.key == key)
        parent = email_step(step_id(step_key), key)
        earlier = [parent] + [follow_up_step(parent, k) for k in range(1, int(n))]
        data = self._timeline.status_data(workflow.now(), step)
        result = await self._email(action.step, follow_up_key(step_key, key, int(n)), email.to, email.cc, data,
                                   stop_if_replied=earlier, still_wanted=lambda: self._state.outcome is None,
                                   summary=f"{step.name}: {key.replace('_', ' ')} reminder #{n}")
        if result is None:
            self._timeline.skip(action.step, f"the account {self._state.outcome}")
        elif result.outcome == "stopped":
            self._timeline.skip(action.step, "the customer replied")

    async def _final_window(self, action: Action) -> None:
        rule = self._content.final_window
        await self._play.record_risk(action.step, rule.indicator, rule.points,
                                     f"renewal on {self._state.renewal_date.isoformat()}: final {rule.days_before} days",
                                     summary="final window before the renewal")

    async def _past_due(self) -> None:
        rule = self._content.past_due
        date = self._state.renewal_date.isoformat()
        await self._create_tasks(PAST_DUE, [rule.task], None)
        await self._play.record_risk(f"{PAST_DUE}/risk", rule.indicator, rule.points,
                                     f"renewal date {date} passed without renewal", summary="renewal past due")
        self._log("past_due", renewal_date=date, severity="warning")

    async def _escalate_past_due(self, action: Action) -> None:
        rung = self._content.past_due.escalations[int(action.ref)]
        now, st, account = workflow.now(), self._state, self._play.account
        overdue = -self._timeline.days_to_renewal(now)
        open_tasks = [t.title for t in st.tasks.values() if t.status != "completed"]
        report = EscalationReport(
            title=f"{rung.label}: {account.name} ({st.tier}) has not renewed, {overdue} days after "
                  f"{st.renewal_date.isoformat()}",
            severity=rung.severity,
            business_impact=f"ARR ${account.arr:,.0f} at risk; the contract ended on {st.renewal_date.isoformat()}.",
            reported_at=now,
            tried=[f"Open: {t}" for t in open_tasks] or ["All countdown tasks completed"],
            why=[f"Renewal {overdue} days past due without a signed agreement (seed 001 section 13.2: +25 risk)"],
            needs=["Decision from the sponsor: sign, extend, or confirm churn", "Executive contact with the sponsor"],
            success_criteria=["Signed renewal agreement", "Or a confirmed churn with close-out started"],
            next_steps=[f"{account.csm.name}: call {account.sponsor.name} today"],
        )
        await self._play.escalate(action.step, rung.level, rung.to_role, f"renewal {overdue} days past due", report,
                                  summary=rung.label)
        self._log("escalated", escalation_level=rung.level, days_past_due=overdue)

    async def _apply_outcome(self) -> None:
        st = self._state
        await run_activity(AccountActivities.record_renewal_outcome, RenewalOutcomeRequest(
            play=self._play.ref, outcome=st.outcome, new_renewal_date=st.new_renewal_date,
        ), summary=f"record the account {st.outcome}" + (
            f" (next renewal {st.new_renewal_date.isoformat()})" if st.new_renewal_date else ""))
        moot = self._timeline.open_tasks_to_close()
        await self._play.complete_tasks(st.tasks, moot, f"renewal {st.outcome}",
                                        summary=f"close a task made moot: the account {st.outcome}")
        self._log(st.outcome, by=st.outcome_by, closed_tasks=len(moot))

    async def _close_churned(self) -> None:
        rule = self._content.churned
        await self._create_tasks(CHURN_CLOSE, [rule.task], None)
        data = self._timeline.status_data(workflow.now())
        await self._email(f"{CHURN_CLOSE}/email", "churn_notice", rule.notify.to, rule.notify.cc, data,
                          summary="churn notice e-mail")

    def _log(self, event: str, severity: str = "info", **fields) -> None:
        self._play.log(event, severity, **fields)

    # -- steering (SteerablePlay) ---------------------------------------------------
    def _skippable(self) -> dict[str, str]:
        # The outcome bookkeeping and the churn close-out are not optional.
        return {a.step: f"{a.kind}: {a.ref}" for a in self._timeline.pending()
                if a.kind not in ("outcome", "churn_close")}

    def _skip(self, step: str, why: str) -> None:
        self._timeline.skip(step, why)

    def _next(self):
        return self._timeline.next_action()

    # -- messages ------------------------------------------------------------
    @workflow.signal
    def renewed(self, signed: Renewed) -> None:
        st = self._state
        if st.outcome is not None:
            self._log("outcome_ignored", got="renewed", outcome=st.outcome, severity="warning")
            return
        new_date = signed.new_renewal_date
        if new_date is not None and new_date <= st.renewal_date:
            self._log("new_date_ignored", new_renewal_date=new_date.isoformat(), severity="warning")
            new_date = None
        self._timeline.record_outcome("renewed", workflow.now(), signed.signed_by, new_renewal_date=new_date)
        self._play.wake()

    @workflow.signal
    def churned(self, churn: Churned) -> None:
        st = self._state
        if st.outcome is not None:
            self._log("outcome_ignored", got="churned", outcome=st.outcome, severity="warning")
            return
        self._timeline.record_outcome("churned", workflow.now(), churn.recorded_by, reason=churn.reason)
        self._play.wake()

    @workflow.signal
    def task_completed(self, done: TaskCompleted) -> None:
        self._play.task_completed(self._state.tasks, done)

    @workflow.update
    def change_renewal_date(self, change: ChangeRenewalDate) -> RenewalPlan:
        now = workflow.now()
        moved = self._timeline.change_date(change.renewal_date, now, change.reason)
        self._timeline.due(now)  # settles steps the new date overtook, so the schedule shows them skipped
        self._log("date_changed", from_date=moved.from_date.isoformat(),
                  to_date=moved.to_date.isoformat(), reason=change.reason)
        self._play.wake()
        return RenewalPlan(
            renewal_date=self._state.renewal_date, previous_date=moved.from_date,
            days_to_renewal=self._timeline.days_to_renewal(now), schedule=self._timeline.schedule(now),
        )

    @change_renewal_date.validator
    def _validate_change_renewal_date(self, change: ChangeRenewalDate) -> None:
        problem = self._timeline.change_date_problem(change.renewal_date, workflow.now())
        if problem:
            raise ApplicationError(f"cannot move the renewal date to {change.renewal_date.isoformat()}: {problem}",
                                   type="InvalidRenewalDate")

    @workflow.query
    def status(self) -> RenewalStatus:
        now, st, t = workflow.now(), self._state, self._timeline
        step, at = t.next_action()
        return RenewalStatus(
            as_of=now, account_id=self._input.account_id, tier=st.tier,
            playbook_version=self._content.version, playbook_digest=self._input.playbook.digest,
            renewal_date=st.renewal_date, original_renewal_date=st.original_renewal_date,
            days_to_renewal=t.days_to_renewal(now), phase=t.phase(), outcome=st.outcome,
            next_action=step, next_action_at=at,
            open_tasks=[r for r in st.tasks.values() if r.status != "completed"],
            date_changes=st.date_changes, failed_steps=st.failed_steps, schedule=t.schedule(now),
            run_count=st.runs, finished=t.finished(),
            control=self._state.control,
        )
