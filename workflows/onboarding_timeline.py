"""The onboarding plan as data: what is due when, given what has happened.

Pure and deterministic (no Temporal calls), so the rules are table-tested
on their own and the workflow only asks "what is due now, and when do I
wake next?". Rules (seed 001 sections 4.1, 5.1, 5.2, 13.2):

- A phase starts on its first day (its tasks are created then), but only
  once every milestone of the phases before it is complete.
- A milestone completed late shifts every later day of the plan by the
  days it was late, so dates follow reality ("go-live moved to day 28").
- The slip of the plan (days late, summed over completed milestones, plus
  the days the most overdue open milestone is late now) drives the
  escalations and the churn-risk points, each once per play.
- Moving go-live is an agreed re-plan, not a slip: it shifts the dates
  from the readiness gate on (or from go-live once the gate is signed).
- Working days (issue 17; plays launched since, `state.working_days`): with
  `day_unit: business_days` day N is the account's Nth working day and every
  offset, slip and shift counts working days; steps fire and customer dates
  fall on the account's working days (in its time zone), internal tasks are
  due at `due_hour` on our staff's working days (in our team's zone), and the
  daily and weekly e-mails skip days off. Without calendars (a play from
  before), every day is a working day in the playbook's time zone: the old
  calendar-day plan, to the minute.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.models import PlayCalendars, TaskRef
from workflows.onboarding_reporting import OnboardingReporting, ScheduleEntry  # noqa: F401 (ScheduleEntry: re-exported)
from workflows.plan_calendars import PlanCalendars
from playbooks.schema import EmailStep, OnboardingContent, TaskContent
from workflows.calendar import weekly_dates
from workflows.messages import PlayControl


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Shift(Model):
    from_day: int
    days: int
    reason: Literal["slip", "move"]
    recorded_at: datetime
    note: str = ""


class Blocker(Model):
    key: str
    title: str
    occurrence: int = 1
    opened_at: datetime
    resolved_at: datetime | None = None

    @property
    def step(self) -> str:
        return f"blocker/{self.key}-{self.occurrence}"


ActionKind = Literal["phase", "email", "escalation", "churn_risk", "blocker_alert"]


class Action(Model):
    step: str
    kind: ActionKind
    at: datetime
    ref: str  # phase key, email key, blocker key, or index of the escalation rule
    occurrence: int = 0  # nth weekly / daily e-mail


class OnboardingState(Model):
    """Everything the play has learnt; carried whole across continue-as-new."""

    started_at: datetime
    start_date: date
    shifts: list[Shift] = []
    milestones_done: dict[str, datetime] = {}
    done_steps: list[str] = []
    skipped_steps: list[str] = []
    failed_steps: dict[str, str] = {}
    tasks: dict[str, TaskRef] = {}
    blockers: dict[str, Blocker] = {}
    control: PlayControl = PlayControl()
    working_days: bool = False  # the plan runs on the account's and our staff's working days (issue 17)
    due_after_launch: bool = False  # no task is due before the launch (patch "due-after-launch-v1")


class OnboardingTimeline(OnboardingReporting):
    def __init__(self, content: OnboardingContent, state: OnboardingState, calendars: PlayCalendars | None = None):
        self.content, self.state = content, state
        self._done = set(state.done_steps) | set(state.skipped_steps)
        self.use_calendars(calendars)

    def use_calendars(self, calendars: PlayCalendars | None) -> None:
        """Plan on these calendars from now on (a play from before them keeps every day a working day)."""
        c = self.content
        self.cal = PlanCalendars(c.timezone, calendars, self.state.working_days, c.day_unit == "business_days",
                                 c.dates_on_days_off == "next_working_day")
        self.account, self.staff, self.days, self.roll = self.cal.account, self.cal.staff, self.cal.days, self.cal.roll

    def first_day(self, started_at: datetime) -> date:
        """The plan's day 1 for a play started then: that local date, or the next working day."""
        return self.days.roll_forward(self.account.local_date(started_at))

    # -- dates -------------------------------------------------------------
    @property
    def tz(self) -> str:
        return self.account.tz

    def effective_day(self, planned_day: int) -> int:
        return planned_day + sum(s.days for s in self.state.shifts if planned_day >= s.from_day)

    def date_of(self, day: int) -> date:
        """The account-local date of plan day `day` (day 1 is `state.start_date`)."""
        return self.days.add_working_days(self.state.start_date, day - 1)

    def add_days(self, day: date, n: int) -> date:
        """`n` plan days after a date (working days, or calendar days)."""
        return self.days.add_working_days(day, n)

    def customer_at(self, day: date, hour: int) -> datetime:
        return self.cal.customer_at(day, hour)

    def staff_at(self, day: date, hour: int) -> datetime:
        return self.cal.staff_at(day, hour)

    def day_at(self, day: int) -> datetime:
        return self.customer_at(self.date_of(day), self.content.work_start_hour)

    def due_at(self, planned_day: int) -> datetime:
        """When a task of plan day `planned_day` is due (UTC): `due_hour` in our team's zone on that day.
        A play launched after our team's due hour (an evening launch) would create its day-1 tasks already
        overdue; with `state.due_after_launch` such a task is due at `due_hour` of our staff's next working
        day after the launch instead."""
        due = self.staff_at(self.date_of(self.effective_day(planned_day)), self.content.due_hour)
        started = self.state.started_at
        if self.state.due_after_launch and due <= started:
            due = self.staff_at(self.staff.local_date(started) + timedelta(days=1), self.content.due_hour)
        return due

    def today(self, now: datetime) -> int:
        local = self.account.local_date(now)
        start = self.state.start_date
        return 1 + (self.days.working_days_after(start, local) if local >= start else (local - start).days)

    def days_late(self, due: datetime, done: datetime) -> int:
        """Whole plan days between the due date and the completion date, never negative."""
        if done <= due:
            return 0
        return self.days.working_days_after(self.account.local_date(due), self.account.local_date(done))

    def milestone_task(self, milestone: str) -> TaskContent:
        return next(t for t in self.content.tasks if t.milestone == milestone)

    # -- bookkeeping ---------------------------------------------------------
    def is_done(self, step: str) -> bool:
        return step in self._done

    def mark_done(self, step: str) -> None:
        if step not in self._done:
            self._done.add(step)
            self.state.done_steps.append(step)

    def mark_skipped(self, step: str) -> None:
        if step not in self._done:
            self._done.add(step)
            self.state.skipped_steps.append(step)

    def phase_started(self, index: int) -> bool:
        return self.is_done(f"phase/{self.content.phases[index].key}")

    def current_phase_index(self) -> int:
        started = [i for i in range(len(self.content.phases)) if self.phase_started(i)]
        return started[-1] if started else 0

    def milestones(self) -> list[str]:
        return [t.milestone for t in self.content.tasks if t.milestone]

    def open_milestones_started(self) -> list[TaskContent]:
        """Milestones whose phase has begun and that are not yet complete."""
        out = []
        for i, phase in enumerate(self.content.phases):
            if self.phase_started(i):
                out.extend(t for t in phase.tasks if t.milestone and t.milestone not in self.state.milestones_done)
        return out

    def complete_milestone(self, milestone: str, at: datetime, note: str = "") -> Shift | None:
        """Record a milestone; returns the slip shift it causes, if it was late."""
        if milestone in self.state.milestones_done or milestone not in self.milestones():
            return None
        self.state.milestones_done[milestone] = at
        task = self.milestone_task(milestone)
        late = self.days_late(self.due_at(task.day), at)
        if late <= 0:
            return None
        shift = Shift(from_day=task.day + 1, days=late, reason="slip", recorded_at=at, note=note or milestone)
        self.state.shifts.append(shift)
        return shift

    # -- slip ---------------------------------------------------------------
    def slip_base(self) -> int:
        return sum(s.days for s in self.state.shifts if s.reason == "slip")

    def slip_days(self, now: datetime) -> int:
        overdue = [self.days_late(self.due_at(t.day), now) for t in self.open_milestones_started()]
        return self.slip_base() + max(overdue, default=0)

    def slip_crossing(self, over_days: int, now: datetime) -> datetime | None:
        """When the slip first exceeds `over_days`, if it can with what is open now."""
        base = self.slip_base()
        if base > over_days:
            return now
        times = []
        for task in self.open_milestones_started():
            crossing = self.add_days(self.account.local_date(self.due_at(task.day)), over_days - base + 1)
            times.append(self.staff_at(crossing, self.content.work_start_hour))
        return min(times, default=None)

    # -- what is due --------------------------------------------------------
    def _phase_actions(self) -> list[Action]:
        for i, phase in enumerate(self.content.phases):
            step = f"phase/{phase.key}"
            if self.is_done(step):
                continue
            earlier = [t.milestone for p in self.content.phases[:i] for t in p.tasks if t.milestone]
            if all(m in self.state.milestones_done for m in earlier):
                at = max(self.day_at(self.effective_day(phase.first_day)), self.state.started_at)
                return [Action(step=step, kind="phase", at=at, ref=phase.key)]
            return []
        return []

    def _in_window(self, email: EmailStep, at: datetime) -> datetime:
        """On working days, a customer e-mail triggered by an event goes when its send window is next
        open (the play would hold it until then anyway; planned so, the dates after it follow)."""
        if not self.roll or not email.customer_facing:
            return at
        return (email.send_window or self.content.send_window).window().next_slot(at, self.account)

    def _email_actions(self, email: EmailStep, now: datetime) -> list[Action]:
        trig, base = email.trigger, f"email/{email.key}"
        hour = self.content.work_start_hour
        if trig.kind == "start":
            return [Action(step=base, kind="email", at=self._in_window(email, self.state.started_at), ref=email.key)]
        if trig.kind == "after_milestone":
            done = self.state.milestones_done.get(trig.milestone)
            if done is None:
                return []
            at = self._in_window(email, done) if trig.offset_days == 0 else self.customer_at(
                self.add_days(self.account.local_date(done), trig.offset_days), hour
            )
            return [Action(step=base, kind="email", at=at, ref=email.key)]
        if trig.kind == "daily_after_milestone":
            done = self.state.milestones_done.get(trig.milestone)
            if done is None:
                return []
            done = self._in_window(email, done)
            first = self.account.local_date(done)
            days = [self.add_days(first, n - 1) for n in range(1, trig.days + 1)]
            if self.roll:  # the daily e-mails of a working week: days off are skipped, not piled up
                days = [self.account.add_working_days(first, n - 1) for n in range(1, trig.days + 1)]
            return [
                Action(step=f"{base}/{n}", kind="email", ref=email.key, occurrence=n,
                       at=max(done, self.customer_at(day, hour)))
                for n, day in enumerate(days, start=1)
            ]
        # weekly, until a milestone completes
        until_done = self.state.milestones_done.get(trig.until_milestone)
        last = (self.account.local_date(until_done) if until_done
                else self.account.local_date(now) + timedelta(days=7))
        out = []
        for n, day in enumerate(weekly_dates(self.state.start_date, trig.weekday, last), start=1):
            at = self.customer_at(day, hour)
            if until_done is None or at < until_done:
                out.append(Action(step=f"{base}/{day.isoformat()}", kind="email", at=at, ref=email.key, occurrence=n))
        return out

    def pending(self, now: datetime) -> list[Action]:
        """Every action not yet done whose time is known, earliest first."""
        actions = self._phase_actions()
        for email in self.content.emails:
            actions.extend(self._email_actions(email, now))
        for i, rule in enumerate(self.content.slip_escalations):
            at = self.slip_crossing(rule.over_days, now)
            if at is not None:
                actions.append(Action(step=f"escalation/slip-over-{rule.over_days}d", kind="escalation", at=at, ref=str(i)))
        risk = self.content.churn_risk
        at = self.slip_crossing(risk.over_days, now)
        if at is not None:
            actions.append(Action(step=f"churn-risk/{risk.indicator}", kind="churn_risk", at=at, ref=risk.indicator))
        alert_after = timedelta(days=self.content.blockers.alert_after_days)
        for blocker in self.state.blockers.values():
            if blocker.resolved_at is None:
                at = blocker.opened_at + alert_after
                if self.roll:  # an internal alert: on our staff's next working day
                    at = self.staff.roll_instant(at, self.content.work_start_hour)
                actions.append(Action(step=f"{blocker.step}/alert", kind="blocker_alert", at=at, ref=blocker.key))
        return sorted((a for a in actions if not self.is_done(a.step)), key=lambda a: (a.at, a.step))

    def due(self, now: datetime) -> list[Action]:
        """Actions due now. Of several missed occurrences of a recurring e-mail
        (the worker was down for days), only the latest is sent; the rest are
        recorded as skipped rather than sent in a burst."""
        due = [a for a in self.pending(now) if a.at <= now]
        latest: dict[str, Action] = {}
        for a in due:
            if a.occurrence:
                latest[a.ref] = a
        out = []
        for a in due:
            if a.occurrence and latest[a.ref] is not a:
                self.mark_skipped(a.step)
            else:
                out.append(a)
        return out

    def next_wake(self, now: datetime) -> datetime | None:
        future = [a.at for a in self.pending(now) if a.at > now]
        return min(future, default=None)

    def finished(self, now: datetime) -> bool:
        if any(m not in self.state.milestones_done for m in self.milestones()):
            return False
        return not any(a.kind in ("phase", "email") for a in self.pending(now))

    # -- re-planning --------------------------------------------------------
    def go_live_day(self) -> int:
        return self.effective_day(self.content.go_live_day)

    def move_go_live_problem(self, day: int, now: datetime) -> str | None:
        """Why go-live cannot move to `day`, or None if it can."""
        c = self.content
        if c.go_live_milestone in self.state.milestones_done:
            return "go-live has already happened"
        if not 1 <= day <= c.max_go_live_day:
            return f"day must be between 1 and {c.max_go_live_day}"
        delta = day - self.go_live_day()
        if delta == 0:
            return f"go-live is already planned for day {day}"
        today = self.today(now)
        if day <= today:
            return f"day {day} is not in the future (today is day {today})"
        pivot = self._move_pivot()
        moved = self.effective_day(pivot) + delta
        what = "the readiness gate" if pivot == c.gate_day else "go-live"
        if moved < today:
            return (
                f"{what} would fall on day {moved}, before today (day {today}); "
                f"the earliest go-live now is day {today + self.go_live_day() - self.effective_day(pivot)}"
            )
        # Moving earlier must not put the gate (or go-live) before open work planned ahead of it;
        # work already done early does not hold it back.
        done = {step for step, ref in self.state.tasks.items() if ref.status == "completed"}
        before = [t for t in c.tasks if t.day < pivot and t.step not in done]
        last = max(before, key=lambda t: self.effective_day(t.day), default=None)
        if last is not None and moved <= self.effective_day(last.day):
            return (
                f"{what} would fall on day {moved}, not after {last.title!r} "
                f"(day {self.effective_day(last.day)}); the earliest go-live is day "
                f"{day + self.effective_day(last.day) + 1 - moved}"
            )
        return None

    def _move_pivot(self) -> int:
        c = self.content
        return c.gate_day if c.readiness_gate not in self.state.milestones_done else c.go_live_day

    def move_go_live(self, day: int, now: datetime, reason: str) -> Shift:
        shift = Shift(from_day=self._move_pivot(), days=day - self.go_live_day(), reason="move", recorded_at=now, note=reason)
        self.state.shifts.append(shift)
        return shift

    def rescheduled_tasks(self) -> dict[str, datetime]:
        """Open tasks whose due date changed under the current shifts: step -> new due."""
        by_key = {t.step: t for t in self.content.tasks}
        out = {}
        for step, ref in self.state.tasks.items():
            task = by_key.get(step)
            if task and ref.status != "completed":
                due = self.due_at(task.day)
                if due != ref.due_at:
                    out[step] = due
        return out
