"""The renewal countdown (SPEC "Playbook 2"; seeds 002 and 003; seed 001 section 13.2)."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.accounts import AccountActivities
    from activities.email import EmailActivities
    from activities.escalation import EscalationActivities
    from activities.tasks import TaskActivities
    from core.models import (
        Account, CompleteTaskRequest, CreateTaskRequest, EscalateRequest, EscalationReport, PlayRef,
        RenewalOutcomeRequest, RescheduleTasksRequest, RiskPointsRequest, SendEmailRequest,
    )
    from playbooks.schema import RenewalStep, StepTask, email_key
    from workflows.calendar import local_date
    from workflows.common import (
        ACCOUNT_ID, CSM_EMAIL, NEXT_ACTION_AT, PHASE, PLAYBOOK, SearchAttributeTracker, business_failure,
        play_log, run_activity,
    )
    from workflows.messages import TaskCompleted
    from workflows.renewal_messages import (
        RENEWAL, ChangeRenewalDate, Churned, RenewalInput, RenewalPlan, RenewalResult, RenewalStatus, Renewed,
    )
    from workflows.renewal_timeline import (
        CHURN_CLOSE, PAST_DUE, Action, RenewalState, RenewalTimeline, step_id, task_step,
    )


@workflow.defn(name="RenewalCountdown")
class RenewalCountdown:
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
        self._woken = False
        self._search = SearchAttributeTracker(input.search_attributes)
        self._account: Account | None = None
        info = workflow.info()
        self._play = PlayRef(
            workflow_id=info.workflow_id, play_id=info.first_execution_run_id, account_id=input.account_id
        )

    # -- main loop -----------------------------------------------------------
    @workflow.run
    async def run(self, input: RenewalInput) -> RenewalResult:
        self._account = await run_activity(AccountActivities.load_account, input.account_id)
        self._search.set(ACCOUNT_ID, input.account_id)
        self._search.set(PLAYBOOK, RENEWAL)
        self._search.set(CSM_EMAIL, str(self._account.csm.email))
        self._log("renewal.started" if self._state.runs == 1 else "renewal.continued",
                  renewal_date=self._state.renewal_date.isoformat(), tier=self._state.tier,
                  version=self._content.version, digest=input.playbook.digest, run=self._state.runs,
                  skipped=list(self._state.skipped_steps))
        while True:
            await self._reschedule_tasks()
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
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._state.runs += 1
                self._log("renewal.continue_as_new", events=workflow.info().get_current_history_length())
                workflow.continue_as_new(input.model_copy(update={"state": self._state}))
            self._woken = False
            wait = self._timeline.next_wake(now)
            try:
                await workflow.wait_condition(lambda: self._woken, timeout=(wait - now) if wait else None)
            except asyncio.TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._search.set(PHASE, self._timeline.phase())
        self._search.set(NEXT_ACTION_AT, None)
        st = self._state
        self._log("renewal.completed", outcome=st.outcome, runs=st.runs)
        return RenewalResult(
            account_id=input.account_id, outcome=st.outcome, renewal_date=st.renewal_date,
            new_renewal_date=st.new_renewal_date, emails_sent=len(st.emails_sent), tasks_created=len(st.tasks),
            done_steps=st.done_steps, skipped_steps=st.skipped_steps, failed_steps=st.failed_steps,
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._input.max_history_events

    async def _perform(self, action: Action) -> None:
        try:
            if action.kind == "step":
                await self._run_step(self._content.step(action.ref))
            elif action.kind == "outcome":
                await self._apply_outcome()
            elif action.kind == "final_window":
                rule = self._content.final_window
                await self._risk(action.step, rule.indicator, rule.points,
                                 f"renewal on {self._state.renewal_date.isoformat()}: final {rule.days_before} days")
            elif action.kind == "past_due":
                await self._past_due(action)
            elif action.kind == "past_due_escalation":
                await self._escalate_past_due(action)
            elif action.kind == "churn_close":
                await self._close_churned()
        except ActivityError as err:
            # A business failure (bad template, nobody to send to) must not end a
            # months-long countdown: record it, show it in `status`, carry on.
            cause = business_failure(err)
            self._state.failed_steps[action.step] = cause
            self._log("renewal.step_failed", step=action.step, error=cause, severity="error")
        self._timeline.mark_done(action.step, workflow.now())

    # -- steps ---------------------------------------------------------------
    async def _run_step(self, step: RenewalStep) -> None:
        tier, sid, now = self._state.tier, step_id(step.key), workflow.now()
        self._state.fired_at.setdefault(step.key, now)
        self._search.set(PHASE, step.phase)
        await asyncio.gather(*(self._create_task(sid, t, step) for t in step.tasks_for(tier)))
        data = self._timeline.status_data(now, step)
        for email in step.emails_for(tier):
            await self._email(f"{sid}/email/{email.key}", email_key(step.key, email.key), email.to, email.cc, data)
        self._log("renewal.step", step=sid, phase=step.phase, days_to_renewal=data["days_to_renewal"])

    async def _create_task(self, parent: str, task: StepTask, step: RenewalStep | None) -> None:
        ref = await run_activity(TaskActivities.create_task, CreateTaskRequest(
            play=self._play, step=task_step(parent, task), title=task.title, detail=task.detail,
            owner_role=task.owner_for(self._state.tier), priority=task.priority,
            due_at=self._timeline.task_due(step, task, workflow.now()),
        ))
        self._state.tasks.setdefault(ref.step, ref)

    async def _email(self, step: str, template_key: str, to: list, cc: list, data: dict) -> None:
        await run_activity(EmailActivities.send_templated_email, SendEmailRequest(
            play=self._play, step=step, template=self._input.playbook.template(template_key), to=to, cc=cc,
            data=data,
        ))
        if step not in self._state.emails_sent:
            self._state.emails_sent.append(step)

    async def _risk(self, step: str, indicator: str, points: int, reason: str) -> None:
        await run_activity(EscalationActivities.record_risk_points, RiskPointsRequest(
            play=self._play, step=step, indicator=indicator, points=points, reason=reason,
        ))

    async def _past_due(self, action: Action) -> None:
        rule = self._content.past_due
        date = self._state.renewal_date.isoformat()
        await self._create_task(PAST_DUE, rule.task, None)
        await self._risk(f"{PAST_DUE}/risk", rule.indicator, rule.points, f"renewal date {date} passed without renewal")
        self._log("renewal.past_due", renewal_date=date, severity="warning")

    async def _escalate_past_due(self, action: Action) -> None:
        rung = self._content.past_due.escalations[int(action.ref)]
        now, st, account = workflow.now(), self._state, self._account
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
        await run_activity(EscalationActivities.escalate, EscalateRequest(
            play=self._play, step=action.step, level=rung.level, to_role=rung.to_role,
            reason=f"renewal {overdue} days past due", report=report,
            template=self._input.playbook.template("escalation"),
        ))
        self._log("renewal.escalated", escalation_level=rung.level, days_past_due=overdue)

    async def _apply_outcome(self) -> None:
        st = self._state
        await run_activity(AccountActivities.record_renewal_outcome, RenewalOutcomeRequest(
            play=self._play, outcome=st.outcome, new_renewal_date=st.new_renewal_date,
        ))
        moot = self._timeline.open_tasks_to_close()
        refs = await asyncio.gather(*(
            run_activity(TaskActivities.complete_task, CompleteTaskRequest(
                play=self._play, step=step, completed_by=f"renewal {st.outcome}",
            ))
            for step in moot
        ))
        for ref in refs:
            st.tasks[ref.step] = ref
        self._log(f"renewal.{st.outcome}", by=st.outcome_by, closed_tasks=len(moot))

    async def _close_churned(self) -> None:
        rule = self._content.churned
        await self._create_task(CHURN_CLOSE, rule.task, None)
        data = self._timeline.status_data(workflow.now())
        await self._email(f"{CHURN_CLOSE}/email", "churn_notice", rule.notify.to, rule.notify.cc, data)

    async def _reschedule_tasks(self) -> None:
        changes = self._timeline.rescheduled_tasks()
        if not changes:
            return
        await run_activity(TaskActivities.reschedule_tasks, RescheduleTasksRequest(play=self._play, due_dates=changes))
        for step, due in changes.items():
            self._state.tasks[step] = self._state.tasks[step].model_copy(update={"due_at": due})

    def _log(self, event: str, severity: str = "info", **fields) -> None:
        play_log(event, self._input.account_id, severity, **fields)

    # -- messages ------------------------------------------------------------
    @workflow.signal
    def renewed(self, signed: Renewed) -> None:
        st = self._state
        if st.outcome is not None:
            self._log("renewal.outcome_ignored", got="renewed", outcome=st.outcome, severity="warning")
            return
        new_date = signed.new_renewal_date
        if new_date is not None and new_date <= st.renewal_date:
            self._log("renewal.new_date_ignored", new_renewal_date=new_date.isoformat(), severity="warning")
            new_date = None
        self._timeline.record_outcome("renewed", workflow.now(), signed.signed_by, new_renewal_date=new_date)
        self._woken = True

    @workflow.signal
    def churned(self, churn: Churned) -> None:
        st = self._state
        if st.outcome is not None:
            self._log("renewal.outcome_ignored", got="churned", outcome=st.outcome, severity="warning")
            return
        self._timeline.record_outcome("churned", workflow.now(), churn.recorded_by, reason=churn.reason)
        self._woken = True

    @workflow.signal
    def task_completed(self, done: TaskCompleted) -> None:
        ref = self._state.tasks.get(done.step)
        if ref is None or ref.task_id != done.task_id:
            self._log("renewal.unknown_task_signal", step=done.step, task_id=done.task_id, severity="warning")
            return
        if ref.status != "completed":
            self._state.tasks[done.step] = ref.model_copy(update={"status": "completed", "completed_at": workflow.now()})

    @workflow.update
    def change_renewal_date(self, change: ChangeRenewalDate) -> RenewalPlan:
        now = workflow.now()
        moved = self._timeline.change_date(change.renewal_date, now, change.reason)
        self._timeline.due(now)  # settles steps the new date overtook, so the schedule shows them skipped
        self._log("renewal.date_changed", from_date=moved.from_date.isoformat(),
                  to_date=moved.to_date.isoformat(), reason=change.reason)
        self._woken = True
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
        )
