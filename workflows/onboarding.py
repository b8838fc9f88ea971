"""The 30-day onboarding play (SPEC "Playbook 1"; seed 001 sections 4.1 and 5)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.accounts import AccountActivities
    from activities.email import EmailActivities
    from activities.escalation import EscalationActivities
    from activities.tasks import TaskActivities
    from core.models import (
        Account, CompleteTaskRequest, CreateTaskRequest, EscalateRequest, EscalationReport,
        PlayRef, RescheduleTasksRequest, RiskPointsRequest, SendEmailRequest,
    )
    from workflows.calendar import local_date
    from workflows.common import (
        ACCOUNT_ID, CSM_EMAIL, NEXT_ACTION_AT, PHASE, PLAYBOOK, SearchAttributeTracker, business_failure,
        play_log, run_activity,
    )
    from workflows.onboarding_messages import (
        ONBOARDING, BlockerReport, BlockerResolved, MoveGoLive, MoveGoLiveResult, OnboardingInput,
        OnboardingResult, OnboardingStatus, ReadinessSignoff,
    )
    from workflows.messages import TaskCompleted
    from workflows.onboarding_timeline import Action, Blocker, OnboardingState, OnboardingTimeline


@workflow.defn(name="OnboardingPlan")
class OnboardingPlan:
    """Runs one account's 30-day onboarding: six phases, their tasks and
    milestones, the onboarding e-mails, the day-22 readiness gate, blocker
    alerts, slip escalations and the churn-risk mark for a long delay.

    Signals: `task_completed` (from the task list), `sign_readiness_checklist`,
    `report_blocker`, `resolve_blocker`. Update: `move_go_live` (returns the
    new schedule). Query: `status`.
    """

    @workflow.init
    def __init__(self, input: OnboardingInput) -> None:
        self._input = input
        self._content = input.playbook.content
        now = workflow.now()
        self._state = input.state or OnboardingState(
            started_at=now, start_date=local_date(now, self._content.timezone)
        )
        self._timeline = OnboardingTimeline(self._content, self._state)
        self._woken = False
        self._signoffs: list[str] = []  # milestone steps completed by signal, to close in the task list
        self._search = SearchAttributeTracker(input.search_attributes)
        self._account: Account | None = None
        info = workflow.info()
        self._play = PlayRef(
            workflow_id=info.workflow_id, play_id=info.first_execution_run_id, account_id=input.account_id
        )

    # -- main loop -----------------------------------------------------------
    @workflow.run
    async def run(self, input: OnboardingInput) -> OnboardingResult:
        self._account = await run_activity(AccountActivities.load_account, input.account_id)
        self._search.set(ACCOUNT_ID, input.account_id)
        self._search.set(PLAYBOOK, ONBOARDING)
        self._search.set(CSM_EMAIL, str(self._account.csm.email))
        self._log("onboarding.started", version=self._content.version, digest=input.playbook.digest)
        while True:
            await self._close_signed_tasks()
            await self._reschedule_tasks()
            now = workflow.now()
            due = self._timeline.due(now)
            for action in due:
                await self._perform(action)
            if due:
                continue
            if self._timeline.finished(now):
                break
            step, wake = self._timeline.next_action(now)
            self._search.set(PHASE, self._content.phases[self._timeline.current_phase_index()].key)
            self._search.set(NEXT_ACTION_AT, wake)
            self._woken = False
            wait = self._timeline.next_wake(now)
            try:
                await workflow.wait_condition(lambda: self._woken, timeout=(wait - now) if wait else None)
            except asyncio.TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._search.set(PHASE, "completed")
        self._search.set(NEXT_ACTION_AT, None)
        self._log("onboarding.completed", slip_days=self._timeline.slip_base())
        return OnboardingResult(
            account_id=input.account_id,
            go_live_at=self._state.milestones_done.get(self._content.go_live_milestone),
            slip_days=self._timeline.slip_base(),
            escalations=[s for s in self._state.done_steps if s.startswith("escalation/")],
            emails_sent=sum(1 for s in self._state.done_steps if s.startswith("email/")),
            tasks_created=len(self._state.tasks),
            skipped_steps=self._state.skipped_steps,
            failed_steps=self._state.failed_steps,
        )

    async def _perform(self, action: Action) -> None:
        try:
            if action.kind == "phase":
                await self._start_phase(action.ref)
            elif action.kind == "email":
                await self._send_email(action)
            elif action.kind == "escalation":
                await self._escalate_slip(action)
            elif action.kind == "churn_risk":
                await self._record_churn_risk(action)
            elif action.kind == "blocker_alert":
                await self._alert_blocker(action)
        except ActivityError as err:
            # A business failure (bad template, nobody to send to) must not end a
            # month-long play: record it, show it in `status`, carry on.
            cause = business_failure(err)
            self._state.failed_steps[action.step] = cause
            self._log("onboarding.step_failed", step=action.step, error=cause, severity="error")
        self._timeline.mark_done(action.step)

    # -- steps ---------------------------------------------------------------
    async def _start_phase(self, phase_key: str) -> None:
        phase = next(p for p in self._content.phases if p.key == phase_key)
        self._search.set(PHASE, phase.key)
        refs = await asyncio.gather(*(
            self._activity(TaskActivities.create_task, CreateTaskRequest(
                play=self._play, step=task.step, title=task.title, detail=task.detail,
                owner_role=task.owner_role, due_at=self._timeline.due_at(task.day), priority=task.priority,
                milestone=task.milestone,
            ))
            for task in phase.tasks
        ))
        for ref in refs:
            self._state.tasks.setdefault(ref.step, ref)
        self._log("onboarding.phase_started", phase=phase.key, tasks=len(refs))

    async def _send_email(self, action: Action, extra: dict | None = None) -> None:
        email = next(e for e in self._content.emails if e.key == action.ref)
        data = self._timeline.status_data(workflow.now())
        if email.trigger.kind == "daily_after_milestone":
            data["health_check_day"] = action.occurrence
        await self._email(action.step, action.ref, email.to, email.cc, {**data, **(extra or {})})

    async def _email(self, step: str, template_key: str, to: list, cc: list, data: dict) -> None:
        await self._activity(EmailActivities.send_templated_email, SendEmailRequest(
            play=self._play, step=step, template=self._input.playbook.template(template_key),
            to=to, cc=cc, data=data,
        ))

    async def _escalate_slip(self, action: Action) -> None:
        rule = self._content.slip_escalations[int(action.ref)]
        now = workflow.now()
        slip = self._timeline.slip_days(now)
        data = self._timeline.status_data(now)
        late = [t.title for t in self._timeline.open_milestones_started()]
        report = EscalationReport(
            title=f"{rule.label}: {self._account.name} is {slip} days behind plan",
            severity=rule.severity,
            business_impact=(
                f"Go-live planned for {data['go_live_date']} (day {data['go_live_day']}); "
                f"{slip} days of slip against the plan."
            ),
            reported_at=now,
            tried=[f"Milestone overdue: {t}" for t in late] or ["Earlier milestones completed late"],
            why=[f"Timeline impact over {rule.over_days} days (seed 001 section 5.2)"],
            needs=["Decision on recovery plan or timeline extension", "Owner for each overdue milestone"],
            success_criteria=["Overdue milestones completed", "Customer timeline adjusted with acceptance"],
            next_steps=[f"{self._account.csm.name}: agree recovery plan with {self._account.sponsor.name}"],
        )
        await self._activity(EscalationActivities.escalate, EscalateRequest(
            play=self._play, step=action.step, level=rule.level, to_role=rule.to_role,
            reason=f"slip of {slip} days exceeds {rule.over_days}", report=report,
            template=self._input.playbook.template("escalation"),
        ))
        self._log("onboarding.escalated", escalation_level=rule.level, slip_days=slip, label=rule.label)

    async def _record_churn_risk(self, action: Action) -> None:
        rule = self._content.churn_risk
        slip = self._timeline.slip_days(workflow.now())
        await self._activity(EscalationActivities.record_risk_points, RiskPointsRequest(
            play=self._play, step=action.step, indicator=rule.indicator, points=rule.points,
            reason=f"onboarding delayed {slip} days (over {rule.over_days})",
        ))

    async def _alert_blocker(self, action: Action) -> None:
        rule = self._content.blockers
        blocker = self._state.blockers[action.ref]
        now = workflow.now()
        data = self._timeline.status_data(now)
        data["blocker"] = {"key": blocker.key, "title": blocker.title, "opened_at": blocker.opened_at,
                           "open_days": (now - blocker.opened_at).days}
        await self._email(action.step, "blocker_alert", rule.alert.to, rule.alert.cc, data)
        ref = await self._activity(TaskActivities.create_task, CreateTaskRequest(
            play=self._play, step=f"{blocker.step}/task", title=f"{rule.task_title}: {blocker.title}",
            owner_role=rule.task_owner_role, priority=rule.task_priority,
            due_at=now + timedelta(days=rule.task_due_days),
        ))
        self._state.tasks.setdefault(ref.step, ref)

    async def _close_signed_tasks(self) -> None:
        while self._signoffs:
            step = self._signoffs[0]
            ref = await self._activity(TaskActivities.complete_task, CompleteTaskRequest(
                play=self._play, step=step, completed_by="signal",
            ))
            self._state.tasks[step] = ref
            self._signoffs.pop(0)

    async def _reschedule_tasks(self) -> None:
        changes = self._timeline.rescheduled_tasks()
        if not changes:
            return
        await self._activity(TaskActivities.reschedule_tasks, RescheduleTasksRequest(play=self._play, due_dates=changes))
        for step, due in changes.items():
            self._state.tasks[step] = self._state.tasks[step].model_copy(update={"due_at": due})

    async def _activity(self, method, arg):
        return await run_activity(method, arg)

    def _log(self, event: str, severity: str = "info", **fields) -> None:
        play_log(event, self._input.account_id, severity, **fields)

    # -- messages ------------------------------------------------------------
    def _complete_milestone(self, milestone: str, by: str) -> None:
        shift = self._timeline.complete_milestone(milestone, workflow.now())
        self._log("onboarding.milestone_completed", milestone=milestone, by=by,
                  late_days=shift.days if shift else 0)

    @workflow.signal
    def task_completed(self, done: TaskCompleted) -> None:
        ref = self._state.tasks.get(done.step)
        if ref is None or ref.task_id != done.task_id:
            self._log("onboarding.unknown_task_signal", step=done.step, task_id=done.task_id, severity="warning")
            return
        if ref.status != "completed":
            self._state.tasks[done.step] = ref.model_copy(
                update={"status": "completed", "completed_at": workflow.now()}
            )
        if ref.milestone:
            self._complete_milestone(ref.milestone, done.completed_by)
        self._woken = True

    @workflow.signal
    def sign_readiness_checklist(self, signoff: ReadinessSignoff) -> None:
        gate = self._content.readiness_gate
        step = self._timeline.milestone_task(gate).step
        if step not in self._state.tasks:
            self._log("onboarding.readiness_signed_too_early", signed_by=signoff.signed_by, severity="warning")
            return
        if gate not in self._state.milestones_done:
            self._complete_milestone(gate, signoff.signed_by)
            self._signoffs.append(step)
        self._woken = True

    @workflow.signal
    def report_blocker(self, report: BlockerReport) -> None:
        now = workflow.now()
        existing = self._state.blockers.get(report.key)
        if existing and existing.resolved_at is None:
            return
        occurrence = existing.occurrence + 1 if existing else 1
        self._state.blockers[report.key] = Blocker(key=report.key, title=report.title, opened_at=now, occurrence=occurrence)
        self._log("onboarding.blocker_reported", blocker=report.key)
        self._woken = True

    @workflow.signal
    def resolve_blocker(self, resolved: BlockerResolved) -> None:
        blocker = self._state.blockers.get(resolved.key)
        if blocker and blocker.resolved_at is None:
            blocker.resolved_at = workflow.now()
            self._woken = True

    @workflow.update
    def move_go_live(self, move: MoveGoLive) -> MoveGoLiveResult:
        now = workflow.now()
        shift = self._timeline.move_go_live(move.day, now, move.reason)
        self._log("onboarding.go_live_moved", day=move.day, shift_days=shift.days, reason=move.reason)
        self._woken = True
        go_live = self._timeline.milestone_task(self._content.go_live_milestone)
        return MoveGoLiveResult(
            go_live_day=self._timeline.go_live_day(), go_live_at=self._timeline.due_at(go_live.day),
            shifted_by_days=shift.days, schedule=self._timeline.schedule(now),
        )

    @move_go_live.validator
    def _validate_move_go_live(self, move: MoveGoLive) -> None:
        problem = self._timeline.move_go_live_problem(move.day, workflow.now())
        if problem:
            raise ApplicationError(f"cannot move go-live to day {move.day}: {problem}", type="InvalidMove")

    @workflow.query
    def status(self) -> OnboardingStatus:
        now = workflow.now()
        t = self._timeline
        phase = self._content.phases[t.current_phase_index()]
        step, at = t.next_action(now)
        finished = t.finished(now)
        return OnboardingStatus(
            as_of=now,
            account_id=self._input.account_id,
            playbook_version=self._content.version,
            playbook_digest=self._input.playbook.digest,
            phase="completed" if finished else phase.key,
            phase_name="Completed" if finished else phase.name,
            day=t.today(now),
            go_live_day=t.go_live_day(),
            slip_days=t.slip_days(now),
            open_tasks=[r for r in self._state.tasks.values() if r.status != "completed"],
            next_action=step,
            next_action_at=at,
            milestones_done=self._state.milestones_done,
            blockers=list(self._state.blockers.values()),
            shifts=self._state.shifts,
            escalations=[s for s in self._state.done_steps if s.startswith("escalation/")],
            failed_steps=self._state.failed_steps,
            schedule=t.schedule(now),
            finished=finished,
        )
