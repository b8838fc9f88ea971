"""A support ticket's SLA clock and escalation ladder (SPEC "Playbook 5"; seed 001 sections 3, 8, 9)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.sla import SlaActivities
    from core.models import EscalationReport, ServiceCreditRequest, TicketRecord
    from workflows.common import NEXT_ACTION_AT, PHASE, run_activity
    from workflows.messages import TaskCompleted
    from workflows.play import Play, SteerablePlay
    from workflows.sla_comms import SlaComms
    from workflows.sla_messages import (
        SLA, Acknowledged, CsatAnswered, OnHold, PriorityChanged, Reopened, Resolved, Resumed, SlaInput, SlaResult,
        SlaStatus,
    )
    from workflows.sla_timeline import Action, CsatAnswer, Escalation, Interval, SlaState, SlaTimeline

# Issue 19 (session 25): ladder rules that name a role, send their own notice, credit by priority,
# skip a 0 % credit or cap a month's credits. Content without these fields runs as before.
RULE_ROLES = "sla-rule-roles-v1"

# Seed 001 section 3.2: how often the customer hears from us, by priority.
UPDATE_CADENCE = {"P0": "Every 30 minutes until resolved", "P1": "Every 4 hours", "P2": "Daily", "P3": "On change"}


@workflow.defn(name="SlaClock")
class SlaClock(SteerablePlay):
    """Runs one ticket's response and resolution clocks against the tier x
    priority targets, climbs the escalation ladder at the SLA, past it and
    at twice it (with a service credit), keeps a P0's customer updated every
    30 minutes, and asks for a root-cause report after a P0.

    Signals: `acknowledged`, `priority_changed`, `on_hold`, `resumed`,
    `resolved`, `reopened`. Query: `status`. Continues as new past its
    history limit, carrying its state.
    """

    @workflow.init
    def __init__(self, input: SlaInput) -> None:
        self._input = input
        self._content = input.playbook.content
        self._state = input.state or SlaState(
            ticket_id=input.ticket_id, subject=input.subject, tier=input.tier, priority=input.priority,
            opened_at=input.opened_at, running=[Interval(start=input.opened_at)],
        )
        self._timeline = SlaTimeline(self._content, self._state, input.holidays, input.calendar)
        if input.state is None:
            self._timeline.start()
        self._play = Play(SLA, input.account_id, input.playbook, input.search_attributes, self._state.control,
                          keep_timers=True, tasks=self._state.tasks)
        self._changed = True  # the ticket row needs writing
        self._comms = SlaComms(self._play, self._timeline, input.requester, input.assignee)

    @workflow.run
    async def run(self, input: SlaInput) -> SlaResult:
        return await self._play.run_cancellable(self._run(input), self._state.tasks)

    async def _run(self, input: SlaInput) -> SlaResult:
        self._comms.decide(continued=input.state is not None)
        await self._play.load_account()
        self._play.log("started" if self._state.runs == 1 else "continued", ticket_id=input.ticket_id,
                       priority=self._state.priority, tier=self._state.tier)
        while True:
            await self._play.hold_while_paused()
            await self._record_ticket()
            now = workflow.now()
            due = self._timeline.due(now)
            for action in due:
                await self._perform(action)
            if due:
                continue
            if self._timeline.finished():
                break
            self._play.search.set(PHASE, self._state.status)
            self._play.search.set(NEXT_ACTION_AT, self._timeline.next_action()[1])
            await self._play.continue_as_new_if_long(input, self._state)
            await self._play.sleep_until(self._timeline.next_wake(now), self._timeline.next_action()[0],
                                         waiting_for=f"ticket {self._state.ticket_id} updates")
        await self._play.finish("closed")
        st, now = self._state, workflow.now()
        self._play.log("closed", level=st.level, credits=st.credits)
        return SlaResult(
            ticket_id=st.ticket_id, priority=st.priority, response_met=self._timeline.met("response", now),
            resolution_met=self._timeline.met("resolution", now), escalation_level=st.level,
            escalations=st.escalations, credits=st.credits,
            p0_updates=sum(1 for s in st.done_steps if s.startswith("p0-update/")), reopens=st.reopens,
        )

    async def _perform(self, action: Action) -> None:
        run = {
            "ladder": lambda: self._climb(action),
            "p0_update": lambda: self._p0_update(action),
            "root_cause": lambda: self._root_cause(action),
            "close": self._close,
            "comms": lambda: self._comms.perform(action),
        }[action.kind]
        await self._play.attempt(action.step, self._state.failed_steps, run())
        self._timeline.mark_done(action.step)
        self._changed = True

    # -- steps ---------------------------------------------------------------
    async def _climb(self, action: Action) -> None:
        st, rule = self._state, self._timeline.rule(action.rule)
        now = workflow.now()
        target = rule.level_for(st.priority)
        label = rule.label if action.clock is None else f"{rule.label} ({action.clock})"
        direct = None  # a role off the tier's ladder, escalated to once (seed 001 section 3.2)
        if rule.role is not None and workflow.patched(RULE_ROLES):
            rung = self._timeline.ladder_level(rule.role)
            if rung is not None:
                target = max(target, rung)
            elif not any(e.to_role == rule.role for e in st.escalations):
                direct = rule.role
        for level in range(st.level + 1, target + 1):
            role = self._timeline.ladder_role(level)
            await self._play.escalate(f"escalation/L{level}", level, role, label, self._report(label, action, now),
                                      summary=f"SLA escalation of {st.priority} ticket {st.ticket_id}")
            st.escalations.append(Escalation(level=level, to_role=role, rule=label, at=now))
            st.level = level
        if direct is not None:
            level = max(st.level, 1)
            await self._play.escalate(f"escalation/{action.step}/{direct}", level, direct, label,
                                      self._report(label, action, now),
                                      summary=f"SLA escalation of {st.priority} ticket {st.ticket_id}")
            st.escalations.append(Escalation(level=level, to_role=direct, rule=label, at=now))
        if rule.notify and rule.notice is not None and workflow.patched(RULE_ROLES):
            await self._play.email(f"{action.step}/notify", f"ladder/{action.rule}/notice", rule.notify, [],
                                   self._notice_data(label, action),
                                   summary=f"notice e-mail ({label}, ticket {st.ticket_id})")
        elif rule.notify:
            await self._play.email(f"{action.step}/notify", "breach_notice", rule.notify,
                                   self._content.breach_notice.cc, self._notice_data(label, action),
                                   summary=f"breach notice e-mail ({label}, ticket {st.ticket_id})")
        if rule.credit and action.clock is not None and action.clock not in st.credits:
            rates = self._content.tiers[st.tier].credits
            percent = rates.percent(action.clock, st.priority)
            repeat, review = rates.repeat, rates.review
            if percent == 0 and workflow.patched(RULE_ROLES):
                self._play.log("ladder", rule=label, level=st.level, severity="warning")
                return  # this tier's SLA earns no credit for this miss (seed 004: Free; P3 and P4 resolution)
            await run_activity(SlaActivities.record_service_credit, ServiceCreditRequest(
                play=self._play.ref, step=f"credit/{action.clock}", ticket_id=st.ticket_id, clock=action.clock,
                missed_at=action.at,
                percent=percent, reason=f"{st.priority} {action.clock} SLA ({self._timeline.target(action.clock)}) "
                                        f"missed: {label}",
                repeat_misses=repeat.misses if repeat else None, repeat_percent=repeat.percent if repeat else None,
                review_misses=review.misses if review else None, review_title=review.title if review else None,
                review_owner_role=review.owner_role if review else None,
                review_due_days=review.due_days if review else 7,
                cap_percent=rates.monthly_cap,
            ), summary=f"service credit {percent}% on ticket {st.ticket_id} ({action.clock} SLA missed)")
            st.credits[action.clock] = percent
        self._play.log("ladder", rule=label, level=st.level, severity="warning")

    def _report(self, label: str, action: Action, now) -> EscalationReport:
        st, account = self._state, self._play.account
        clocks = {c.clock: c for c in self._timeline.clocks(now)}
        ack = st.acknowledged_at.strftime("%Y-%m-%d %H:%M UTC") if st.acknowledged_at else "not yet"
        return EscalationReport(
            title=f"{label}: {st.priority} ticket {st.ticket_id} at {account.name}: {st.subject}",
            severity=st.priority,
            business_impact=f"{st.priority} issue for a {st.tier} customer (ARR ${account.arr:,.0f}); "
                            f"status {st.status.replace('_', ' ')}",
            reported_at=now,
            timeline=[
                f"Reported: {st.opened_at:%Y-%m-%d %H:%M UTC}",
                f"First response: {ack}",
                f"Escalated: {now:%Y-%m-%d %H:%M UTC} (level {st.level + 1}, open "
                f"{int(self._timeline.open_time(now).total_seconds() // 60)} minutes)",
            ],
            tried=[f"{c.clock.capitalize()} clock: {c.elapsed_minutes} min of {c.target}" for c in clocks.values()],
            why=[f"{label} (seed 001 section 9.1)", "SLA at risk" if action.clock is None else f"{action.clock} SLA"],
            needs=["Engineering resource assigned" if st.priority in ("P0", "P1") else "Owner and fix date",
                   "Customer communication on next steps"],
            success_criteria=["System is back up and stable", "Customer has agreed to solution"],
            next_steps=[f"{self._timeline.ladder_role(st.level + 1)}: act within 30 minutes",
                        f"{account.csm.name}: keep {account.sponsor.name} informed"],
            status_updates=UPDATE_CADENCE.get(st.priority, "On change"),
        )

    def _notice_data(self, label: str, action: Action) -> dict:
        target = self._timeline.target(action.clock or "resolution")
        return {"ticket": self._timeline.ticket_data(), "clock": action.clock or "resolution", "rule": label,
                "target": str(target), "due_at": self._timeline.deadline(action.clock or "resolution") or action.at,
                "level": self._state.level}

    async def _p0_update(self, action: Action) -> None:
        c = self._content.p0_updates
        data = {"ticket": self._timeline.ticket_data(), "update_number": action.occurrence,
                "every_minutes": c.every_minutes, "level": self._state.level}
        await self._play.email(action.step, "p0_update", c.to, c.cc, data,
                               summary=f"P0 status update #{action.occurrence} e-mail (ticket {self._state.ticket_id})")
        self._state.p0_updates_sent = action.occurrence

    async def _root_cause(self, action: Action) -> None:
        rule = self._content.root_cause
        await self._play.create_tasks(self._state.tasks, summary="root-cause task", requests=[dict(
            step=f"{action.step}/task", title=f"{rule.title}: ticket {self._state.ticket_id}", detail=rule.detail,
            owner_role=rule.owner_role, priority=rule.priority, due_at=action.at + timedelta(hours=rule.due_hours),
        )])

    async def _close(self) -> None:
        self._timeline.close()

    async def _record_ticket(self) -> None:
        if not self._changed:
            return
        st, now, t = self._state, workflow.now(), self._timeline
        await run_activity(SlaActivities.record_ticket, TicketRecord(
            play=self._play.ref, ticket_id=st.ticket_id, tier=st.tier, priority=st.priority, subject=st.subject,
            status=st.status, opened_at=st.opened_at, acknowledged_at=st.acknowledged_at,
            resolved_at=st.resolved_at, response_due_at=t.deadline("response"),
            resolution_due_at=t.deadline("resolution"), response_met=t.met("response", now),
            resolution_met=t.met("resolution", now), escalation_level=st.level, incident=t.urgent(st.priority),
        ), summary=f"record ticket {st.ticket_id}: {st.priority}, {st.status.replace('_', ' ')}, level {st.level}")
        self._changed = False

    # -- steering (SteerablePlay) ---------------------------------------------------
    def _skippable(self) -> dict[str, str]:
        # Closing the ticket is not optional; escalations, updates and the root-cause task are.
        return {a.step: f"{a.kind}: {a.clock or ''}".rstrip(": ") for a in self._timeline.pending()
                if a.kind != "close"}

    def _skip(self, step: str, why: str) -> None:
        self._timeline.skip(step)

    def _next(self):
        return self._timeline.next_action()

    # -- ticket events ------------------------------------------------------------
    def _event(self, name: str, changed: bool, **fields) -> None:
        if changed:
            self._play.log(name, ticket_id=self._state.ticket_id, **fields)
            self._changed = True
            self._play.wake()
        else:
            self._play.log(f"{name}_ignored", status=self._state.status, severity="warning", **fields)

    @workflow.signal
    def acknowledged(self, ack: Acknowledged) -> None:
        self._event("acknowledged", self._timeline.acknowledge(workflow.now(), ack.by), by=ack.by)

    @workflow.signal
    def priority_changed(self, change: PriorityChanged) -> None:
        previous = self._state.priority
        changed = self._timeline.change_priority(change.priority, workflow.now(), change.by)
        self._event("priority_changed", changed, from_priority=previous, to_priority=change.priority)

    @workflow.signal
    def on_hold(self, hold: OnHold) -> None:
        self._event("on_hold", self._timeline.hold(workflow.now(), hold.reason), reason=hold.reason)

    @workflow.signal
    def resumed(self, resumed: Resumed) -> None:
        self._event("resumed", self._timeline.resume(workflow.now()), by=resumed.by)

    @workflow.signal
    def resolved(self, resolved: Resolved) -> None:
        self._event("resolved", self._timeline.resolve(workflow.now()), by=resolved.by)

    @workflow.signal
    def reopened(self, reopened: Reopened) -> None:
        self._event("reopened", self._timeline.reopen(workflow.now()), reason=reopened.reason)

    @workflow.signal
    def csat_answered(self, answer: CsatAnswered) -> None:
        st = self._state
        known = any(a.round == answer.round for a in st.csat_answers)
        if not known:
            st.csat_answers.append(CsatAnswer(score=answer.score, at=workflow.now(), round=answer.round, by=answer.by))
        self._event("csat_answered", not known, score=answer.score, round=answer.round)

    @workflow.signal
    def task_completed(self, done: TaskCompleted) -> None:
        self._play.task_completed(self._state.tasks, done)

    @workflow.query
    def status(self) -> SlaStatus:
        st, now, t = self._state, workflow.now(), self._timeline
        step, at = t.next_action()
        return SlaStatus(
            as_of=now, ticket_id=st.ticket_id, account_id=self._input.account_id, tier=st.tier,
            priority=st.priority, status=st.status, opened_at=st.opened_at, clocks=t.clocks(now),
            escalation_level=st.level, escalations=st.escalations, credits=st.credits,
            priority_changes=st.priority_changes,
            open_tasks=[r for r in st.tasks.values() if r.status != "completed"],
            next_action=step, next_action_at=at, failed_steps=st.failed_steps, run_count=st.runs,
            control=self._state.control,
        )
