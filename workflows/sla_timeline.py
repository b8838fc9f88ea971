"""A ticket's SLA clocks as data: what is due when, given what has happened.
Pure and deterministic, like the other timelines; business time comes from
`workflows.business_time` with the holidays passed in the play's input.

Rules (SPEC "Playbook 5"; seed 001 sections 3.2, 8.1, 9):

- Two clocks start when the ticket opens: response (stops when it is
  acknowledged) and resolution (stops when it is resolved; a reopen resumes
  it where it stopped). "On hold" stops both. A target in business units
  counts opening hours only; other targets run 24/7. A ticket opened outside
  business hours uses the tier's after-hours response target where it has one.
- A ladder rule fires once per clock when that clock reaches `at_sla` times
  its target, or once when the ticket has been open (24/7, holds excluded)
  `open_hours` at a priority the rule names. Firing raises the escalation
  level; every level passed on the way is escalated once, in order.
- A priority change re-plans both clocks against the new targets; what has
  fired stays fired, and what the new targets make overdue fires at once.
- A P0 (a priority of `p0_updates.priorities`) sends the customer an update
  every `every_minutes` until resolved (not while on hold); a resolved P0 gets
  a root-cause task; a resolved ticket closes after the reopen window.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.models import Priority, TicketStatus, Tier
from core.working_time import SupportCalendar
from playbooks.schema import Clock, LadderRule, SlaContent, SlaTarget
from workflows.business_time import AroundTheClock, BusinessCalendar
from workflows.messages import PlayLedger

CLOCKS: tuple[Clock, ...] = ("response", "resolution")
ActionKind = Literal["ladder", "p0_update", "root_cause", "close", "comms"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(Model):
    start: datetime
    end: datetime | None = None


class PriorityChange(Model):
    from_priority: Priority
    to_priority: Priority
    at: datetime
    by: str


class Escalation(Model):
    level: int
    to_role: str
    rule: str
    at: datetime


class CsatAnswer(Model):
    score: int
    at: datetime
    round: int
    by: str = ""


class SlaState(PlayLedger):
    """Everything the ticket's play has learnt; carried whole across continue-as-new."""

    ticket_id: str
    subject: str
    tier: Tier
    priority: Priority
    opened_at: datetime
    status: TicketStatus = "open"
    running: list[Interval]
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    resolved_at: datetime | None = None
    hold_reason: str = ""
    priority_changes: list[PriorityChange] = []
    p0_since: datetime | None = None  # start of the current spell of P0 updates
    p0_spell: int = 0  # spells so far: a hold, a reopen or a new P0 starts the count again
    p0_updates_sent: int = 0
    was_p0: bool = False
    reopens: int = 0
    level: int = 0
    escalations: list[Escalation] = []
    fired: list[str] = []
    credits: dict[str, float] = {}  # clock -> percent of the monthly fee
    runs: int = 1
    # Ticket communications (workflows/sla_comms.py): None until the play decides (a play from
    # before them keeps False); the current update spell's key and updates sent in it; CSAT answers.
    comms: bool | None = None
    update_spell: str = ""
    updates_sent: int = 0
    csat_answers: list[CsatAnswer] = []


class Action(Model):
    step: str
    kind: ActionKind
    at: datetime
    rule: int = -1
    clock: Clock | None = None
    occurrence: int = 0


class ClockView(Model):
    clock: Clock
    target: str
    business: bool
    elapsed_minutes: int
    due_at: datetime | None
    running: bool
    met: bool | None


class SlaTimeline:
    """`calendar`: the support region's hours and holidays (plays launched since organisation
    profiles); None: the playbook's Mon-Fri open_hour-close_hour in its time zone, with `holidays`."""

    def __init__(self, content: SlaContent, state: SlaState, holidays: list[date],
                 calendar: SupportCalendar | None = None):
        self.content, self.state = content, state
        if calendar is None:
            self.business = BusinessCalendar(content.timezone, content.open_hour, content.close_hour,
                                             frozenset(holidays))
            self.day_hours: float = content.business_day_hours
        else:
            self.business = BusinessCalendar(calendar.tz, holidays=frozenset(calendar.holidays), week=calendar.week)
            self.day_hours = calendar.business_day_hours
        self.around = AroundTheClock()
        self.more_actions = None  # a callable giving more pending actions (workflows/sla_comms.py)

    # -- clocks ----------------------------------------------------------------
    def target(self, clock: Clock) -> SlaTarget:
        targets = self.content.tiers[self.state.tier].targets[self.state.priority]
        if clock == "resolution":
            return targets.resolution
        if targets.response_after_hours and not self.business.is_open(self.state.opened_at):
            return targets.response_after_hours
        return targets.response

    def _calendar(self, target: SlaTarget):
        return self.business if target.business else self.around

    def _duration(self, target: SlaTarget) -> timedelta:
        return target.duration(self.day_hours)

    def _stop(self, clock: Clock) -> datetime | None:
        """When the clock stopped for good (response: on acknowledgement)."""
        return self.state.acknowledged_at if clock == "response" else None

    def _intervals(self, clock: Clock, now: datetime) -> list[tuple[datetime, datetime]]:
        stop = self._stop(clock)
        out = []
        for iv in self.state.running:
            end = iv.end or now
            if stop is not None:
                end = min(end, stop)
            if end > iv.start:
                out.append((iv.start, end))
        return out

    def elapsed(self, clock: Clock, now: datetime) -> timedelta:
        cal = self._calendar(self.target(clock))
        return sum((cal.elapsed(a, b) for a, b in self._intervals(clock, now)), timedelta(0))

    def is_running(self, clock: Clock) -> bool:
        last = self.state.running[-1] if self.state.running else None
        return last is not None and last.end is None and self._stop(clock) is None

    def deadline(self, clock: Clock, fraction: float = 1.0) -> datetime | None:
        """When the clock reaches `fraction` of its target, if it is running."""
        if not self.is_running(clock):
            return None
        current = self.state.running[-1].start
        target = self.target(clock)
        before = self.elapsed(clock, current)  # closed intervals only
        remaining = self._duration(target) * fraction - before
        if remaining <= timedelta(0):
            return current
        return self._calendar(target).add(current, remaining)

    def met(self, clock: Clock, now: datetime) -> bool | None:
        """True/False once known: stopped within target, or past it. None while it can still be met."""
        limit = self._duration(self.target(clock))
        stopped = self.state.acknowledged_at if clock == "response" else (
            self.state.resolved_at if self.state.status in ("resolved", "closed") else None
        )
        spent = self.elapsed(clock, stopped or now)
        if spent > limit:
            return False
        return True if stopped is not None else None

    def open_time(self, now: datetime) -> timedelta:
        """How long the ticket has been open, 24/7, holds and resolved spells excluded."""
        return sum(((iv.end or now) - iv.start for iv in self.state.running), timedelta(0))

    def _open_crossing(self, hours: float) -> datetime | None:
        if not self.state.running or self.state.running[-1].end is not None:
            return None
        current = self.state.running[-1].start
        remaining = timedelta(hours=hours) - self.open_time(current)
        return current + max(remaining, timedelta(0))

    # -- bookkeeping ---------------------------------------------------------------
    def is_done(self, step: str) -> bool:
        return step in self.state.done_steps or step in self.state.skipped_steps

    def mark_done(self, step: str) -> None:
        if not self.is_done(step):
            self.state.done_steps.append(step)

    def skip(self, step: str) -> None:
        """A person skipped a pending step; a skipped P0 update moves the count on to the next one."""
        if step.startswith("p0-update/"):
            self.state.p0_updates_sent = max(self.state.p0_updates_sent, int(step.rsplit("-", 1)[1]))
        if not self.is_done(step):
            self.state.skipped_steps.append(step)

    def urgent(self, priority: str) -> bool:
        """A priority whose tickets update the customer every few minutes and get a root-cause task
        (`p0_updates.priorities`: P0 in seed 001)."""
        return priority in self.content.p0_updates.priorities

    def ladder_role(self, level: int) -> str:
        ladder = self.content.tiers[self.state.tier].ladder
        return ladder[min(level, len(ladder)) - 1]

    def ladder_level(self, role: str) -> int | None:
        """The first level of the tier's ladder that goes to `role`; None when its ladder has no such rung."""
        ladder = self.content.tiers[self.state.tier].ladder
        return ladder.index(role) + 1 if role in ladder else None

    # -- what is due ----------------------------------------------------------------
    def pending(self) -> list[Action]:
        st, c = self.state, self.content
        actions: list[Action] = []
        if st.status not in ("resolved", "closed"):
            for i, rule in enumerate(c.ladder):
                if not rule.applies_to(st.priority):
                    continue
                if rule.at_sla is not None:
                    for clock in CLOCKS:
                        at = self.deadline(clock, rule.at_sla)
                        if at is not None:
                            actions.append(Action(step=f"ladder/{i}/{clock}", kind="ladder", at=at, rule=i, clock=clock))
                else:
                    at = self._open_crossing(rule.open_hours)
                    if at is not None:
                        actions.append(Action(step=f"ladder/{i}", kind="ladder", at=at, rule=i))
            if self.urgent(st.priority) and st.p0_since is not None and st.status != "on_hold":
                n = st.p0_updates_sent + 1
                every = timedelta(minutes=c.p0_updates.every_minutes)
                actions.append(Action(step=f"p0-update/{st.p0_spell}-{n}", kind="p0_update",
                                      at=st.p0_since + n * every, occurrence=n))
        elif st.status == "resolved":
            if st.was_p0:
                actions.append(Action(step=f"root-cause/{st.reopens}", kind="root_cause", at=st.resolved_at))
            close_at = st.resolved_at + timedelta(days=c.reopen_window_days)
            actions.append(Action(step=f"close/{st.reopens}", kind="close", at=close_at))
        if self.more_actions is not None:
            actions.extend(self.more_actions())
        return sorted((a for a in actions if not self.is_done(a.step)), key=lambda a: (a.at, a.step))

    def due(self, now: datetime) -> list[Action]:
        """Actions due now. Of several P0 updates missed (the workers were down),
        only the latest goes out: an update is about now, not about then."""
        due = [a for a in self.pending() if a.at <= now]
        for a in due:
            if a.kind == "p0_update":
                every = timedelta(minutes=self.content.p0_updates.every_minutes)
                latest = int((now - self.state.p0_since) / every)
                if latest > a.occurrence:
                    a.occurrence, a.step = latest, f"p0-update/{self.state.p0_spell}-{latest}"
        return due

    def next_wake(self, now: datetime) -> datetime | None:
        return min((a.at for a in self.pending() if a.at > now), default=None)

    def finished(self) -> bool:
        return self.state.status == "closed"

    def rule(self, index: int) -> LadderRule:
        return self.content.ladder[index]

    # -- events ------------------------------------------------------------------------
    def _stop_running(self, at: datetime) -> None:
        if self.state.running and self.state.running[-1].end is None:
            self.state.running[-1].end = at

    def _start_running(self, at: datetime) -> None:
        if not self.state.running or self.state.running[-1].end is not None:
            self.state.running.append(Interval(start=at))

    def _start_p0_spell(self, at: datetime) -> None:
        st = self.state
        st.p0_since, st.p0_spell, st.p0_updates_sent = at, st.p0_spell + 1, 0

    def start(self) -> None:
        """At the play's start: a P0 from the outset updates the customer from the opening."""
        if self.urgent(self.state.priority) and self.state.p0_spell == 0:
            self.state.was_p0 = True
            self._start_p0_spell(self.state.opened_at)

    def acknowledge(self, at: datetime, by: str) -> bool:
        st = self.state
        if st.acknowledged_at is not None or st.status in ("resolved", "closed"):
            return False
        st.acknowledged_at, st.acknowledged_by = at, by
        if st.status == "open":
            st.status = "acknowledged"
        return True

    def change_priority(self, priority: Priority, at: datetime, by: str) -> bool:
        st = self.state
        if priority == st.priority or st.status == "closed":
            return False
        if priority not in self.content.tiers[st.tier].targets:
            return False  # not a priority of this play's SLA matrix (launches and webhooks refuse it first)
        st.priority_changes.append(PriorityChange(from_priority=st.priority, to_priority=priority, at=at, by=by))
        st.priority = priority
        if self.urgent(priority):
            st.was_p0 = True
            self._start_p0_spell(at)
        return True

    def hold(self, at: datetime, reason: str) -> bool:
        st = self.state
        if st.status in ("on_hold", "resolved", "closed"):
            return False
        self._stop_running(at)
        st.status, st.hold_reason = "on_hold", reason
        return True

    def resume(self, at: datetime) -> bool:
        st = self.state
        if st.status != "on_hold":
            return False
        self._start_running(at)
        st.status, st.hold_reason = ("acknowledged" if st.acknowledged_at else "open"), ""
        if self.urgent(st.priority):
            self._start_p0_spell(at)
        return True

    def resolve(self, at: datetime) -> bool:
        st = self.state
        if st.status in ("resolved", "closed"):
            return False
        self._stop_running(at)
        st.status, st.resolved_at, st.hold_reason = "resolved", at, ""
        return True

    def reopen(self, at: datetime) -> bool:
        st = self.state
        if st.status != "resolved":
            return False
        st.reopens += 1
        self._start_running(at)
        st.status, st.resolved_at = ("acknowledged" if st.acknowledged_at else "open"), None
        if self.urgent(st.priority):
            self._start_p0_spell(at)
        return True

    def close(self) -> None:
        self.state.status = "closed"

    # -- reporting ------------------------------------------------------------------------
    def clocks(self, now: datetime) -> list[ClockView]:
        out = []
        for clock in CLOCKS:
            target = self.target(clock)
            out.append(ClockView(
                clock=clock, target=str(target), business=target.business,
                elapsed_minutes=int(self.elapsed(clock, now).total_seconds() // 60),
                due_at=self.deadline(clock), running=self.is_running(clock), met=self.met(clock, now),
            ))
        return out

    def ticket_data(self) -> dict:
        st = self.state
        return {"id": st.ticket_id, "subject": st.subject, "priority": st.priority, "status": st.status,
                "opened_at": st.opened_at}

    def next_action(self) -> tuple[str, datetime | None]:
        pending = self.pending()
        if pending:
            return pending[0].step, pending[0].at
        return ("closed" if self.finished() else f"waiting ({self.state.status})"), None
