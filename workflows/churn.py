"""An account's churn watch and intervention plays (SPEC "Playbook 4"; seed 001 section 13),
and the monthly risk summary (section 13.4)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.churn import ChurnActivities, RiskSummaryActivities
    from core.models import BandChangeRecord, EscalationReport, RiskRecord, RiskSummaryRequest
    from workflows.churn_messages import (
        CHURN, ChurnInput, ChurnStatus, IndicatorFlag, MetricsReading, ScoreView, ScoringUpdate, SummaryInput,
    )
    from workflows.churn_timeline import Action, ChurnState, ChurnTimeline
    from workflows.common import NEXT_ACTION_AT, PHASE, RISK_BAND, run_activity
    from workflows.messages import TaskCompleted
    from workflows.play import Play, SteerablePlay


@workflow.defn(name="ChurnWatch")
class ChurnWatch(SteerablePlay):
    """Watches one account for as long as it is a customer: rescores on every
    indicator flag, metric reading or new scoring model, keeps the `RiskBand`
    search attribute current, and runs the band's intervention play.

    Signals: `flag_indicator`, `read_metrics`, `task_completed` (and pause /
    resume). Updates: `apply_scoring`, `skip_step`. Query: `status`.
    Continues as new past its history limit, carrying its state.
    """

    @workflow.init
    def __init__(self, input: ChurnInput) -> None:
        self._input = input
        self._content = input.playbook.content
        self._state = input.state or ChurnState(started_at=workflow.now())
        self._timeline = ChurnTimeline(self._content, input.scoring, self._state)
        self._play = Play(CHURN, input.account_id, input.playbook, input.search_attributes, self._state.control,
                          keep_timers=True, tasks=self._state.tasks)
        self._changed = True

    @workflow.run
    async def run(self, input: ChurnInput) -> None:
        return await self._play.run_cancellable(self._run(), self._state.tasks)

    async def _run(self) -> None:
        await self._play.load_account()
        self._play.log("started" if self._state.runs == 1 else "continued", band=self._state.band,
                       score=self._state.score)
        while True:
            await self._play.hold_while_paused()
            await self._record_risk()
            now = workflow.now()
            due = self._timeline.due(now)
            for action in due:
                await self._perform(action)
            if due:
                continue
            self._play.search.set(PHASE, self._timeline.phase())
            self._play.search.set(NEXT_ACTION_AT, self._timeline.next_action(now)[1])
            await self._play.continue_as_new_if_long(self._input, self._state)
            await self._play.sleep_until(self._timeline.next_wake(now), self._timeline.next_action(now)[0],
                                         waiting_for=f"a risk signal (band {self._state.band}, "
                                                     f"score {self._state.score})")

    async def _perform(self, action: Action) -> None:
        run = {
            "band": lambda: self._start_band(action),
            "deadline": lambda: self._deadline(action),
            "checkin": lambda: self._recurring(action, self._content.daily_checkin),
            "monitor": lambda: self._recurring(action, self._content.monitoring),
        }[action.kind]
        await self._play.attempt(action.step, self._state.failed_steps, run())
        self._timeline.mark_done(action.step)
        if action.kind == "checkin":
            self._state.last_checkin = action.at

    # -- steps ---------------------------------------------------------------
    async def _start_band(self, action: Action) -> None:
        play, st = self._content.band_play(action.band), self._state
        tasks = [dict(step=self._timeline.task_step(action.band, a.step), title=a.title, detail=a.detail,
                      owner_role=a.owner_role, priority=a.priority, due_at=action.at + timedelta(hours=a.due_hours))
                 for a in play.actions]
        await self._play.create_tasks(st.tasks, tasks, summary=f"{play.name} task")
        previous = st.band_changes[-1].from_band if st.band_changes else "GREEN"
        data = {"band": action.band, "previous_band": previous, "score": st.score, "play": play.name,
                "indicators": self._timeline.breakdown(),
                "actions": [{"title": t["title"], "owner": t["owner_role"], "due": t["due_at"]} for t in tasks]}
        await self._play.email(f"{action.step}/alert", f"{action.band}/alert", play.alert.to, play.alert.cc, data,
                               summary=f"{action.band} churn-risk alert e-mail (score {st.score})")
        for a in play.actions:
            if a.email is not None:
                await self._play.email(f"{action.step}/{a.key}/email", f"{action.band}/{a.key}", a.email.to,
                                       a.email.cc, data, summary=f"{play.name}: {a.title} e-mail")
        self._play.log("intervention", band=action.band, spell=st.spell, score=st.score, severity="warning")

    async def _deadline(self, action: Action) -> None:
        st = self._state
        task = st.tasks.get(self._timeline.task_step(action.band, f"action/{action.key}"))
        if task is None or task.status == "completed":
            return
        play = self._content.band_play(action.band)
        account, now = self._play.account, workflow.now()
        report = EscalationReport(
            title=f"{account.name} ({action.band}, risk {st.score}): '{task.title}' missed its deadline",
            severity="P0" if action.band == "RED" else "P1",
            business_impact=f"ARR ${account.arr:,.0f} at {action.band} churn risk; the intervention is behind.",
            reported_at=now,
            timeline=[f"Entered {action.band}: {st.entered[action.band]:%Y-%m-%d %H:%M UTC}",
                      f"Action due: {task.due_at:%Y-%m-%d %H:%M UTC}"],
            tried=[f"{i['label']} ({i['points']:+d})" for i in self._timeline.breakdown()],
            why=[f"{play.name}: action past its deadline (seed 001 section 13.3)"],
            needs=[f"Owner for '{task.title}' today"],
            success_criteria=["Action done", "Risk score back to GREEN"],
            next_steps=[f"{task.owner_email or task.owner_role}: complete '{task.title}'"],
            status_updates="Daily until the account is back to YELLOW",
        )
        await self._play.escalate(action.step, play.escalation_level, play.escalate_to,
                                  f"intervention action past its deadline: {task.title}", report,
                                  summary=f"{play.name} deadline missed")

    async def _recurring(self, action: Action, rule) -> None:
        await self._play.create_tasks(self._state.tasks, summary=f"{action.kind} task", requests=[dict(
            step=f"{action.step}/task", title=rule.title, owner_role=rule.owner_role, priority=rule.priority,
            due_at=action.at + timedelta(hours=rule.due_hours),
        )])

    async def _record_risk(self) -> None:
        if not self._changed:
            return
        st = self._state
        self._play.search.set(RISK_BAND, st.band)
        changes = st.band_changes[st.recorded_changes:]
        await run_activity(ChurnActivities.record_risk, RiskRecord(
            play=self._play.ref, score=st.score, band=st.band, indicators=st.present, at=workflow.now(),
            first_change=st.recorded_changes,
            changes=[BandChangeRecord(from_band=c.from_band, to_band=c.to_band, score=c.score, at=c.at)
                     for c in changes],
            # An argument, not a command: histories recorded before it replay unchanged.
            health_score=self._timeline.health(),
        ), summary=f"record risk score {st.score} ({st.band})" + (
            f", band changes: {', '.join(f'{c.from_band}->{c.to_band}' for c in changes)}" if changes else ""))
        st.recorded_changes += len(changes)
        self._changed = False

    def _rescore(self, why: str) -> ScoreView:
        st = self._state
        before = st.band
        change = self._timeline.rescore(workflow.now())
        self._changed = True
        self._play.wake()
        if change is not None:
            self._play.log("band_changed", from_band=change.from_band, to_band=change.to_band, score=st.score, why=why)
        return ScoreView(score=st.score, band=st.band, previous_band=before, indicators=self._timeline.breakdown(),
                         health_score=self._timeline.health(), scoring_version=self._timeline.scoring.version)

    # -- steering (SteerablePlay) --------------------------------------------------
    def _skippable(self) -> dict[str, str]:
        return {a.step: a.kind for a in self._timeline.pending(workflow.now())}

    def _skip(self, step: str, why: str) -> None:
        self._timeline.skip(step)

    def _next(self):
        return self._timeline.next_action(workflow.now())

    # -- messages ------------------------------------------------------------------
    @workflow.signal
    def flag_indicator(self, flag: IndicatorFlag) -> None:
        if self._timeline.scoring.indicator(flag.indicator) is None:
            self._play.log("unknown_indicator", indicator=flag.indicator, source=flag.source, severity="warning")
            return
        if self._timeline.flag(flag.indicator, flag.present, flag.source, flag.note, workflow.now()):
            self._rescore(f"{flag.indicator} {'present' if flag.present else 'gone'} ({flag.source})")

    @workflow.signal
    def read_metrics(self, reading: MetricsReading) -> None:
        self._timeline.read_metrics(reading.values, reading.health, workflow.now())
        self._rescore(f"metrics from {reading.source}")

    @workflow.signal
    def task_completed(self, done: TaskCompleted) -> None:
        self._play.task_completed(self._state.tasks, done)

    @workflow.update
    def apply_scoring(self, update: ScoringUpdate) -> ScoreView:
        self._timeline.scoring = update.scoring
        self._input = self._input.model_copy(update={"scoring": update.scoring})  # carried by continue-as-new
        return self._rescore(f"scoring model v{update.scoring.version} applied by {update.by}")

    @workflow.query
    def status(self) -> ChurnStatus:
        st, now, t = self._state, workflow.now(), self._timeline
        step, at = t.next_action(now)
        return ChurnStatus(
            as_of=now, account_id=self._input.account_id, score=st.score, band=st.band, health_score=t.health(),
            indicators=t.breakdown(), flags={k: f.source for k, f in st.flags.items()}, metrics=st.metrics,
            phase=t.phase(), intervention_band=st.intervention_band, spell=st.spell, band_changes=st.band_changes,
            monitoring_since=st.monitoring_since,
            open_tasks=[r for r in st.tasks.values() if r.status not in ("completed", "cancelled")],
            next_action=step, next_action_at=at, failed_steps=st.failed_steps,
            scoring_version=t.scoring.version, run_count=st.runs, control=st.control,
        )


@workflow.defn(name="MonthlyRiskSummary")
class MonthlyRiskSummary:
    """Run by a Temporal Schedule on the 1st of each month: e-mails last month's
    churn-risk summary to CS leadership (once per month, however often it runs)."""

    @workflow.run
    async def run(self, input: SummaryInput) -> dict:
        month = input.month or (workflow.now().date().replace(day=1) - timedelta(days=1)).replace(day=1)
        snapshot = input.playbook
        return await run_activity(RiskSummaryActivities.send_risk_summary, RiskSummaryRequest(
            month=month, template=snapshot.template("summary"), to=snapshot.content.summary.to,
        ), summary=f"churn-risk summary of {month:%B %Y} to {', '.join(snapshot.content.summary.to)}")

