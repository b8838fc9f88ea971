"""The quarterly NPS survey cycle and each answer's follow-up (SPEC "Playbook 3"; seed 001 section 14)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.nps import NpsActivities, category_of, cycle_for
    from core.models import (
        DeferredInvitationsRequest, EscalationReport, PlayRef, RespondentEmailRequest, SurveyBatchRequest,
    )
    from playbooks.schema import FollowUpAction
    from workflows.calendar import local_date
    from workflows.common import NEXT_ACTION_AT, PHASE, run_activity
    from workflows.messages import TaskCompleted
    from workflows.nps_messages import (
        NPS, ChoosePath, CycleInput, CycleProgress, CycleState, FollowUpInput, FollowUpState, FollowUpStatus, Lane,
    )
    from workflows.play import Play, SteerablePlay


# A batch of up to 5,000 e-mails takes tens of seconds; it heartbeats every 100 e-mails,
# so a stuck one is noticed within a minute and a slow one is not cut off.
BATCH_TIMEOUT = timedelta(minutes=15)
BATCH_HEARTBEAT = timedelta(seconds=60)
# Cycles started from here on invite each contact inside their own send window (issue 17).
SEND_CHECKS = "nps-send-checks-v1"
# Cycles started from here on split their contacts into shards whose batches run side by side, so that
# every worker process takes part in a big cycle (issue 18). Older cycles go on with their one cursor.
SHARDED = "nps-sharded-batches-v1"


@workflow.defn(name="NpsCycle")
class NpsCycle:
    """One survey cycle: invite every contact of the chosen accounts in batches,
    remind the silent ones, close the rest as non-responses when links expire.
    Answers do not come here: each starts its own follow-up play. Continues as
    new between batches when the history grows, so 100,000 accounts fit."""

    @workflow.init
    def __init__(self, input: CycleInput) -> None:
        self._state = input.state or CycleState(started_at=workflow.now())
        c = input.playbook.content
        if input.cycle_id is None:
            input = input.model_copy(update={"cycle_id": cycle_for(local_date(self._state.started_at, c.timezone))})
        self._input = input
        self._expires_at = self._state.started_at + timedelta(days=c.expires_after_days)
        self._remind_at = self._state.started_at + timedelta(days=c.reminder_after_days)

    @workflow.run
    async def run(self, input: CycleInput) -> CycleProgress:
        st, input = self._state, self._input
        if input.state is None and workflow.patched(SEND_CHECKS):
            st.defers = True
        if input.state is None and workflow.patched(SHARDED):
            st.shards = input.playbook.content.parallel_batches
        if st.phase in ("sending", "reminding"):
            await self._batches(st.phase)
        if st.phase == "waiting":
            await self._wait_sweeping(self._remind_at)
            st.phase, st.cursor = "reminding", None
            await self._batches("reminding")
        if st.phase == "closing":
            await self._wait_sweeping(self._expires_at)
            st.closed = await run_activity(NpsActivities.close_nonresponses, input.cycle_id,
                                           summary=f"close cycle {input.cycle_id}: unanswered invitations expire")
            st.phase = "closed"
        workflow.logger.info("nps.cycle_closed", extra={"cycle": input.cycle_id, "sent": st.sent,
                                                         "reminded": st.reminded, "closed": st.closed})
        return self.progress()

    async def _batches(self, phase: str) -> None:
        if self._state.shards > 1:
            await self._sharded_batches(phase)
            return
        st, c = self._state, self._input.playbook.content
        kind = "survey" if phase == "sending" else "reminder"
        while True:
            result = await run_activity(NpsActivities.send_survey_batch, SurveyBatchRequest(
                play=_cycle_play(self._input.cycle_id), cycle_id=self._input.cycle_id, kind=kind,
                template=self._input.playbook.template(kind), expires_at=self._expires_at,
                account_ids=self._input.account_ids, tiers=self._input.tiers, after=st.cursor, limit=c.batch_size,
                defer=st.defers,
            ), timeout=BATCH_TIMEOUT, heartbeat=BATCH_HEARTBEAT,
                summary=f"{kind} batch {st.batches + 1} of cycle {self._input.cycle_id}: up to {c.batch_size} contacts"
                        + (f" after {st.cursor}" if st.cursor else ""))
            st.cursor, st.batches = result.last, st.batches + 1
            self._count(kind, result)
            if result.done:
                break
            self._continue_as_new_if_long()
        st.phase, st.cursor = ("waiting" if phase == "sending" else "closing"), None

    async def _sharded_batches(self, phase: str) -> None:
        """The shards' batches side by side (one batch of each shard at a time, on whichever workers
        poll the queue); when the history grows, the lanes finish their batch and the cycle continues
        as new with each shard's cursor."""
        st, c, cycle = self._state, self._input.playbook.content, self._input.cycle_id
        kind = "survey" if phase == "sending" else "reminder"
        if st.lanes is None:
            st.lanes = [Lane() for _ in range(st.shards)]
        handing_over = False

        async def lane(i: int) -> None:
            nonlocal handing_over
            while not st.lanes[i].done and not handing_over:
                result = await run_activity(NpsActivities.send_survey_batch, SurveyBatchRequest(
                    play=_cycle_play(cycle), cycle_id=cycle, kind=kind, template=self._input.playbook.template(kind),
                    expires_at=self._expires_at, account_ids=self._input.account_ids, tiers=self._input.tiers,
                    after=st.lanes[i].cursor, limit=c.batch_size, defer=st.defers, shard=i, shards=st.shards,
                ), timeout=BATCH_TIMEOUT, heartbeat=BATCH_HEARTBEAT,
                    summary=f"{kind} batch of up to {c.batch_size}, shard {i + 1}/{st.shards}"
                            + (f" after {st.lanes[i].cursor}" if st.lanes[i].cursor else ""))
                st.lanes[i] = Lane(cursor=result.last, done=result.done)
                st.batches += 1
                earlier = st.deferred_next
                self._count(kind, result)
                if earlier is not None and st.deferred_next is not None:  # lanes answer out of order
                    st.deferred_next = min(earlier, st.deferred_next)
                info = workflow.info()
                if info.is_continue_as_new_suggested() or \
                        info.get_current_history_length() >= self._input.max_history_events:
                    handing_over = True

        await asyncio.gather(*(lane(i) for i in range(st.shards)))
        if not all(lane_.done for lane_ in st.lanes):
            st.runs += 1
            workflow.continue_as_new(self._input.model_copy(update={"state": st}))
        st.phase, st.lanes = ("waiting" if phase == "sending" else "closing"), None

    def _count(self, kind: str, result) -> None:
        st = self._state
        if kind == "survey":
            st.sent += result.sent + result.already
        else:
            st.reminded += result.sent + result.already
        st.suppressed += result.suppressed
        if result.next_at is not None or result.deferred:
            st.deferred_next = result.next_at

    def _continue_as_new_if_long(self) -> None:
        info = workflow.info()
        if info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._input.max_history_events:
            self._state.runs += 1
            workflow.continue_as_new(self._input.model_copy(update={"state": self._state}))

    async def _wait_sweeping(self, until) -> None:
        """Sleep until `until`, sending deferred invitations as their time comes (a contact in Tokyo is
        invited at 09:00 Tokyo time, one over the weekly cap when there is room)."""
        st = self._state
        while st.deferred_next is not None and st.deferred_next < until:
            await workflow.sleep(max(st.deferred_next - workflow.now(), timedelta(0)),
                                 summary=f"wait until deferred invitations fall due, "
                                         f"{st.deferred_next:%Y-%m-%d %H:%M} UTC")
            playbook = self._input.playbook
            result = await run_activity(NpsActivities.send_deferred_invitations, DeferredInvitationsRequest(
                play=_cycle_play(self._input.cycle_id), cycle_id=self._input.cycle_id,
                survey=playbook.template("survey"), reminder=playbook.template("reminder"),
                expires_at=self._expires_at, limit=playbook.content.batch_size,
            ), timeout=BATCH_TIMEOUT, heartbeat=BATCH_HEARTBEAT,
                summary=f"deferred invitations of cycle {self._input.cycle_id} now in their window (up to "
                        f"{playbook.content.batch_size})")
            st.batches += 1
            st.sent += result.sent  # a deferred reminder counts as sent: it is rare, and sent it was
            st.suppressed += result.suppressed
            st.deferred_next = result.next_at
            if result.done:
                self._continue_as_new_if_long()
        what = "the reminders" if st.phase == "waiting" else "the links expire"
        await workflow.sleep(max(until - workflow.now(), timedelta(0)),
                             summary=f"wait until {what}, {until:%Y-%m-%d %H:%M} UTC")

    def progress(self) -> CycleProgress:
        st = self._state
        return CycleProgress(cycle_id=self._input.cycle_id, phase=st.phase, sent=st.sent, reminded=st.reminded,
                             closed=st.closed, batches=st.batches, expires_at=self._expires_at, run_count=st.runs,
                             suppressed=st.suppressed, deferred_until=st.deferred_next)

    @workflow.query
    def status(self) -> CycleProgress:
        return self.progress()


def _cycle_play(cycle_id: str) -> PlayRef:
    # The idempotency scope of a cycle's e-mails: the cycle, whichever run sends them.
    return PlayRef(workflow_id=f"nps-cycle-{cycle_id}", play_id=cycle_id, account_id="")


@workflow.defn(name="NpsFollowUp")
class NpsFollowUp(SteerablePlay):
    """One answer's follow-up: the category's actions (promoter, passive,
    detractor), each `after_hours` after the answer; a detractor's path chosen
    by signal (`choose_path`), escalated if nobody chooses in time; re-surveys."""

    @workflow.init
    def __init__(self, input: FollowUpInput) -> None:
        self._input = input
        self._content = input.playbook.content
        self._category = category_of(input.score)
        self._state = FollowUpState()
        self._play = Play(NPS, input.account_id, input.playbook, input.search_attributes, self._state.control,
                          tasks=self._state.tasks)
        # Offsets count from when the play started (the answer's arrival on the server's clock).
        self._t0 = workflow.info().start_time

    @workflow.run
    async def run(self, input: FollowUpInput) -> FollowUpStatus:
        return await self._play.run_cancellable(self._run(), self._state.tasks)

    async def _run(self) -> FollowUpStatus:
        await self._play.load_account()
        self._play.log("followup_started", category=self._category, score=self._input.score)
        await self._play.attempt("nps-metric", self._state.failed_steps,
                                 run_activity(NpsActivities.feed_account_nps, self._play.ref,
                                              summary=f"feed the account's NPS ({self._input.score}/10, "
                                                      f"{self._category})"))
        while True:
            await self._play.hold_while_paused()
            now = workflow.now()
            due = [(step, at, action) for step, at, action in self._pending() if at <= now]
            for step, at, action in due:
                await self._play.attempt(step, self._state.failed_steps, self._perform(step, at, action))
                self._state.done_steps.append(step)
            if due:
                continue
            if self._finished():
                break
            step, at = self._next()
            self._play.search.set(PHASE, self._state.path or self._category)
            self._play.search.set(NEXT_ACTION_AT, at)
            await self._play.sleep_until(at, step, waiting_for="a detractor path (choose_path) or a task completion")
        await self._play.finish("done")
        return self.status()

    # -- the plan ------------------------------------------------------------------
    def _pending(self) -> list[tuple[str, datetime, FollowUpAction | None]]:
        st = self._state
        out = [(f"{self._category}/{a.key}", self._t0 + timedelta(hours=a.after_hours), a)
               for a in self._content.actions_for(self._category)]
        if self._category == "detractor":
            if st.path is None:
                out.append(("path/escalation", self._t0 + timedelta(days=self._content.choose_path_within_days),
                            None))
            else:
                path = next(p for p in self._content.detractor_paths if p.key == st.path)
                out += [(f"path/{path.key}/{a.key}", st.path_chosen_at + timedelta(hours=a.after_hours), a)
                        for a in path.actions]
        done = set(st.done_steps) | set(st.skipped_steps)
        return sorted((p for p in out if p[0] not in done), key=lambda p: (p[1], p[0]))

    def _finished(self) -> bool:
        return not self._pending() and (self._category != "detractor" or self._state.path is not None)

    async def _perform(self, step: str, at: datetime, action: FollowUpAction | None) -> None:
        if action is None:
            await self._escalate_unchosen(step)
            return
        inp = self._input
        data = {"score": inp.score, "comment": inp.comment, "cycle": inp.cycle_id,
                "respondent": inp.respondent.model_dump(mode="json")}
        template_prefix = step.rsplit("/", 1)[0] if step.startswith("path/") else self._category
        if action.task:
            t = action.task
            await self._play.create_tasks(self._state.tasks, summary=f"{self._category} follow-up task", requests=[dict(
                step=f"{step}/task", title=f"{t.title} ({inp.respondent.name}, {inp.score}/10)", detail=t.detail,
                owner_role=t.owner_role, priority=t.priority, due_at=at + timedelta(hours=t.due_hours),
            )])
        if action.email:
            await self._play.email(f"{step}/email", f"{template_prefix}/{action.key}/email", action.email.to,
                                   action.email.cc, data, summary=f"{self._category} follow-up: {action.key} e-mail")
        if action.to_respondent:
            key = f"{template_prefix}/{action.key}/respondent"
            if self._play.calendars is not None:  # the respondent's send window, suppressions, the cap
                await self._play.email(f"{step}/respondent", key, [], ["csm"], data, people=[inp.respondent],
                                       summary=f"{action.key} e-mail to the respondent")
            else:
                await run_activity(NpsActivities.email_respondent, RespondentEmailRequest(
                    play=self._play.ref, step=f"{step}/respondent", to=inp.respondent, data=data,
                    template=inp.playbook.template(key),
                ), summary=f"{action.key} e-mail to the respondent {inp.respondent.name}")
        if action.resurvey:
            self._state.resurveys += 1
            cycle = f"{inp.cycle_id}-r{self._state.resurveys}"
            await run_activity(NpsActivities.send_survey_batch, SurveyBatchRequest(
                play=self._play.ref, cycle_id=cycle, kind="survey", template=inp.playbook.template("survey"),
                expires_at=workflow.now() + timedelta(days=self._content.expires_after_days),
                account_ids=[inp.account_id], only_email=str(inp.respondent.email), limit=1,
            ), summary=f"re-survey {inp.respondent.name} (cycle {cycle})")  # a re-survey goes at once: the respondent just answered; suppressions still hold

    async def _escalate_unchosen(self, step: str) -> None:
        inp, account = self._input, self._play.account
        report = EscalationReport(
            title=f"Detractor at {account.name} without a recovery path after "
                  f"{self._content.choose_path_within_days} days",
            severity="P1", business_impact=f"{inp.respondent.name} scored {inp.score}; churn risk rises.",
            reported_at=workflow.now(), why=["No path chosen: fix and re-survey, graceful churn or escalated engagement"],
            needs=["A decision on the path"], success_criteria=["Path chosen and under way"],
            next_steps=[f"{account.csm.name}: choose the path with the CS manager"],
        )
        await self._play.escalate(step, 1, "cs_manager", "detractor path not chosen in time", report,
                                  summary=f"detractor {inp.respondent.name} ({inp.score}/10)")

    def _next(self) -> tuple[str, datetime | None]:
        pending = self._pending()
        if pending:
            return pending[0][0], pending[0][1]
        return ("waiting for a path" if self._category == "detractor" and self._state.path is None else "done"), None

    # -- steering (SteerablePlay) ---------------------------------------------------
    def _skippable(self) -> dict[str, str]:
        return {step: "follow-up action" for step, _, _ in self._pending()}

    def _skip(self, step: str, why: str) -> None:
        self._state.skipped_steps.append(step)

    # -- messages ------------------------------------------------------------------
    @workflow.update
    def choose_path(self, choice: ChoosePath) -> FollowUpStatus:
        self._state.path, self._state.path_chosen_at = choice.path, workflow.now()
        self._play.log("path_chosen", path=choice.path, by=choice.by)
        self._play.wake()
        return self.status()

    @choose_path.validator
    def _validate_choose_path(self, choice: ChoosePath) -> None:
        keys = [p.key for p in self._content.detractor_paths]
        if self._category != "detractor":
            raise ApplicationError(f"only a detractor's follow-up has paths (this one is a {self._category})")
        if self._state.path is not None:
            raise ApplicationError(f"the path is already {self._state.path!r}")
        if choice.path not in keys:
            raise ApplicationError(f"unknown path {choice.path!r}: one of {', '.join(keys)}")

    @workflow.signal
    def task_completed(self, done: TaskCompleted) -> None:
        self._play.task_completed(self._state.tasks, done)

    @workflow.query
    def status(self) -> FollowUpStatus:
        inp, st = self._input, self._state
        step, at = self._next()
        return FollowUpStatus(
            as_of=workflow.now(), cycle_id=inp.cycle_id, account_id=inp.account_id, respondent=inp.respondent,
            score=inp.score, category=self._category, path=st.path, next_action=step, next_action_at=at,
            done_steps=st.done_steps, open_tasks=[t for t in st.tasks.values() if t.status not in ("completed", "cancelled")],
            failed_steps=st.failed_steps, control=st.control,
        )
