"""The 30-day onboarding play (SPEC "Playbook 1"; seed 001 sections 4.1 and 5)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.models import EscalationReport
    from workflows.calendar import local_date
    from workflows.common import NEXT_ACTION_AT, PHASE
    from workflows.messages import TaskCompleted
    from workflows.onboarding_messages import (
        ONBOARDING, BlockerReport, BlockerResolved, MoveGoLive, MoveGoLiveResult, OnboardingInput,
        OnboardingResult, OnboardingStatus, ReadinessSignoff,
    )
    from workflows.onboarding_timeline import Action, Blocker, OnboardingState, OnboardingTimeline
    from workflows.play import Play, SteerablePlay

# Patch: an onboarding launched after our team's due hour gets its day-1 tasks due the next working day
# (they were created already overdue). Plays launched before it keep their first tasks' due times.
DUE_AFTER_LAUNCH = "due-after-launch-v1"

@workflow.defn(name="OnboardingPlan")
class OnboardingPlan(SteerablePlay):
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
        self._signoffs: list[str] = []  # milestone steps completed by signal, to close in the task list
        self._play = Play(ONBOARDING, input.account_id, input.playbook, input.search_attributes, self._state.control,
                          tasks=self._state.tasks)
        self._search = self._play.search

    # -- main loop -----------------------------------------------------------
    @workflow.run
    async def run(self, input: OnboardingInput) -> OnboardingResult:
        return await self._play.run_cancellable(self._run(input), self._state.tasks)

    async def _run(self, input: OnboardingInput) -> OnboardingResult:
        await self._play.load_account()
        if self._play.calendars is not None:
            if input.state is None:  # launched on working days: day 1 is the account's first working day
                self._state.working_days = True
                self._timeline.use_calendars(self._play.calendars)
                self._state.start_date = self._timeline.first_day(self._state.started_at)
            self._timeline.use_calendars(self._play.calendars)
        if input.state is None and workflow.patched(DUE_AFTER_LAUNCH):
            self._state.due_after_launch = True  # an evening launch's day-1 tasks fall due the next working day
        self._play.log("started", version=self._content.version, digest=input.playbook.digest)
        while True:
            await self._play.hold_while_paused()
            await self._close_signed_tasks()
            await self._play.reschedule_tasks(self._state.tasks, self._timeline.rescheduled_tasks(),
                                              summary="the plan moved (a late milestone or a new go-live day)")
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
            wake = self._timeline.next_wake(now)
            await self._play.sleep_until(wake, step, day=f"day {self._timeline.today(wake)}" if wake else "",
                                         waiting_for="task completions, the readiness sign-off or a blocker")
        await self._play.finish("completed")
        self._play.log("completed", slip_days=self._timeline.slip_base())
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
        run = {
            "phase": lambda: self._start_phase(action.ref),
            "email": lambda: self._send_email(action),
            "escalation": lambda: self._escalate_slip(action),
            "churn_risk": lambda: self._record_churn_risk(action),
            "blocker_alert": lambda: self._alert_blocker(action),
        }[action.kind]
        await self._play.attempt(action.step, self._state.failed_steps, run())
        self._timeline.mark_done(action.step)

    # -- steps ---------------------------------------------------------------
    async def _start_phase(self, phase_key: str) -> None:
        phase = next(p for p in self._content.phases if p.key == phase_key)
        self._search.set(PHASE, phase.key)
        refs = await self._play.create_tasks(self._state.tasks, summary=f"{phase.name} phase task", requests=[
            dict(step=task.step, title=task.title, detail=task.detail, owner_role=task.owner_role,
                 due_at=self._timeline.due_at(task.day), priority=task.priority, milestone=task.milestone)
            for task in phase.tasks
        ])
        self._play.log("phase_started", phase=phase.key, tasks=len(refs))

    async def _send_email(self, action: Action, extra: dict | None = None) -> None:
        email = next(e for e in self._content.emails if e.key == action.ref)
        data = self._timeline.status_data(workflow.now())
        if email.trigger.kind == "daily_after_milestone":
            data["health_check_day"] = action.occurrence
        occurrence = f" #{action.occurrence}" if action.occurrence else ""
        await self._play.email(action.step, action.ref, email.to, email.cc, {**data, **(extra or {})},
                               summary=f"{action.ref.replace('_', ' ')} e-mail{occurrence}")

    async def _escalate_slip(self, action: Action) -> None:
        rule = self._content.slip_escalations[int(action.ref)]
        now = workflow.now()
        slip = self._timeline.slip_days(now)
        data = self._timeline.status_data(now)
        late = [t.title for t in self._timeline.open_milestones_started()]
        report = EscalationReport(
            title=f"{rule.label}: {self._play.account.name} is {slip} days behind plan",
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
            next_steps=[f"{self._play.account.csm.name}: agree recovery plan with {self._play.account.sponsor.name}"],
        )
        await self._play.escalate(action.step, rule.level, rule.to_role, f"slip of {slip} days exceeds {rule.over_days}",
                                  report, summary=f"{rule.label} (onboarding slip)")
        self._play.log("escalated", escalation_level=rule.level, slip_days=slip, label=rule.label)

    async def _record_churn_risk(self, action: Action) -> None:
        rule = self._content.churn_risk
        slip = self._timeline.slip_days(workflow.now())
        await self._play.record_risk(action.step, rule.indicator, rule.points,
                                     f"onboarding delayed {slip} days (over {rule.over_days})",
                                     summary="churn risk of a long onboarding delay")

    async def _alert_blocker(self, action: Action) -> None:
        rule = self._content.blockers
        blocker = self._state.blockers[action.ref]
        now = workflow.now()
        data = self._timeline.status_data(now)
        data["blocker"] = {"key": blocker.key, "title": blocker.title, "opened_at": blocker.opened_at,
                           "open_days": (now - blocker.opened_at).days}
        await self._play.email(action.step, "blocker_alert", rule.alert.to, rule.alert.cc, data,
                               summary=f"blocker alert e-mail ({blocker.title})")
        await self._play.create_tasks(self._state.tasks, summary="blocker task", requests=[dict(
            step=f"{blocker.step}/task", title=f"{rule.task_title}: {blocker.title}",
            owner_role=rule.task_owner_role, priority=rule.task_priority,
            due_at=self._play.staff_due(now, rule.task_due_days),
        )])

    async def _close_signed_tasks(self) -> None:
        while self._signoffs:
            await self._play.complete_tasks(self._state.tasks, [self._signoffs[0]], "signal",
                                            summary="close the signed-off milestone task")
            self._signoffs.pop(0)

    # -- steering (SteerablePlay) ---------------------------------------------------
    def _skippable(self) -> dict[str, str]:
        # A phase cannot be skipped: its milestones gate the rest of the plan.
        return {a.step: f"{a.kind}: {a.ref}" for a in self._timeline.pending(workflow.now()) if a.kind != "phase"}

    def _skip(self, step: str, why: str) -> None:
        self._timeline.mark_skipped(step)

    def _next(self):
        return self._timeline.next_action(workflow.now())

    # -- messages ------------------------------------------------------------
    def _complete_milestone(self, milestone: str, by: str) -> None:
        shift = self._timeline.complete_milestone(milestone, workflow.now())
        self._play.log("milestone_completed", milestone=milestone, by=by,
                  late_days=shift.days if shift else 0)

    @workflow.signal
    def task_completed(self, done: TaskCompleted) -> None:
        ref = self._play.task_completed(self._state.tasks, done)
        if ref is None:
            return
        if ref.milestone:
            self._complete_milestone(ref.milestone, done.completed_by)
        self._play.wake()

    @workflow.signal
    def sign_readiness_checklist(self, signoff: ReadinessSignoff) -> None:
        gate = self._content.readiness_gate
        step = self._timeline.milestone_task(gate).step
        if step not in self._state.tasks:
            self._play.log("readiness_signed_too_early", signed_by=signoff.signed_by, severity="warning")
            return
        if gate not in self._state.milestones_done:
            self._complete_milestone(gate, signoff.signed_by)
            self._signoffs.append(step)
        self._play.wake()

    @workflow.signal
    def report_blocker(self, report: BlockerReport) -> None:
        now = workflow.now()
        existing = self._state.blockers.get(report.key)
        if existing and existing.resolved_at is None:
            return
        occurrence = existing.occurrence + 1 if existing else 1
        self._state.blockers[report.key] = Blocker(key=report.key, title=report.title, opened_at=now, occurrence=occurrence)
        self._play.log("blocker_reported", blocker=report.key)
        self._play.wake()

    @workflow.signal
    def resolve_blocker(self, resolved: BlockerResolved) -> None:
        blocker = self._state.blockers.get(resolved.key)
        if blocker and blocker.resolved_at is None:
            blocker.resolved_at = workflow.now()
            self._play.wake()

    @workflow.update
    def move_go_live(self, move: MoveGoLive) -> MoveGoLiveResult:
        now = workflow.now()
        shift = self._timeline.move_go_live(move.day, now, move.reason)
        self._play.log("go_live_moved", day=move.day, shift_days=shift.days, reason=move.reason)
        self._play.wake()
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
            control=self._state.control,
        )
