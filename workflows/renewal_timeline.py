"""The renewal countdown as data: what is due when, given the renewal date
and what has happened. Pure and deterministic, like the onboarding timeline.

Rules (SPEC "Playbook 2"; seeds 002, 003; seed 001 section 13.2):

- A countdown step fires `days_before` the renewal date; a post-renewal
  step `days_after` it, but only once the renewal is signed (and at once if
  that date has already passed when it is signed).
- A step dated before the day the play started is recorded as skipped.
- When several countdown steps are due at once (the renewal date moved
  earlier, or the workers were down), the latest fires and so does every
  step marked `catch_up`; the others are skipped, so a customer never gets a
  burst of renewal e-mails.
- Entering the final window records its churn-risk points once; so does
  the renewal date passing without `renewed`, which also escalates.
- `renewed` skips what is left of the countdown and runs the post-renewal
  steps; `churned` skips everything and runs the close-out.
- Working days (issue 17; plays launched since, `state.working_days`): a step
  whose date is a weekend or public holiday of the account fires on its last
  working day before (a countdown step keeps its lead time) or, after the
  renewal, its next one, at `work_start_hour` in its time zone; tasks, risk marks and
  escalations (internal) fall on our staff's working days in our team's zone.
  An e-mail's `follow_ups` go `after_working_days` of the account after its
  step fired, unless someone replied (the send-time check says "stopped").
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.models import PlayCalendars, TaskRef, Tier
from workflows.plan_calendars import PlanCalendars
from playbooks.schema import CountdownStep, RenewalContent, RenewalStep, StepTask
from workflows.messages import PlayControl

Outcome = Literal["renewed", "churned"]
ActionKind = Literal["step", "outcome", "final_window", "past_due", "past_due_escalation", "churn_close", "follow_up"]
CHURN_CLOSE = "churned"
PAST_DUE = "past-due"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DateChange(Model):
    from_date: date
    to_date: date
    recorded_at: datetime
    reason: str = ""


class RenewalState(Model):
    """Everything the countdown has learnt; carried whole across continue-as-new."""

    started_at: datetime
    start_date: date
    tier: Tier
    renewal_date: date
    original_renewal_date: date
    date_changes: list[DateChange] = []
    outcome: Outcome | None = None
    outcome_at: datetime | None = None
    outcome_by: str = ""
    churn_reason: str = ""
    new_renewal_date: date | None = None
    done_steps: list[str] = []
    fired_at: dict[str, datetime] = {}  # step key -> when it fired; its tasks fall due from then
    skipped_steps: dict[str, str] = {}  # step -> why
    failed_steps: dict[str, str] = {}
    tasks: dict[str, TaskRef] = {}
    emails_sent: list[str] = []
    runs: int = 1  # runs of the workflow chain so far (continue-as-new starts the next)
    control: PlayControl = PlayControl()
    working_days: bool = False  # dates on the account's and our staff's working days (issue 17)


class Action(Model):
    step: str
    kind: ActionKind
    at: datetime
    ref: str = ""  # step key, or index of the past-due escalation
    order: int = 0  # of steps due at the same moment, the playbook's order wins


class ScheduleEntry(Model):
    step: str
    title: str
    date: date
    at: datetime
    status: Literal["done", "skipped", "failed", "due", "planned", "if renewed"]
    note: str = ""


def step_id(key: str) -> str:
    return f"step/{key}"


def task_step(step: str, task: StepTask) -> str:
    return f"{step}/task/{task.key}"


def email_step(step: str, email_key: str) -> str:
    """The play step of a step's e-mail (`step/proposal/email/proposal`)."""
    return f"{step}/email/{email_key}"


def follow_up_step(email: str, n: int) -> str:
    return f"{email}/follow-up/{n}"


class RenewalTimeline:
    def __init__(self, content: RenewalContent, state: RenewalState, calendars: PlayCalendars | None = None):
        self.content, self.state = content, state
        self.use_calendars(calendars)

    def use_calendars(self, calendars: PlayCalendars | None) -> None:
        """Plan on these calendars (a play from before them keeps every day a working day)."""
        self.cal = PlanCalendars(self.content.timezone, calendars, self.state.working_days,
                                 roll=self.content.dates_on_days_off == "next_working_day")
        self.account = self.cal.account

    # -- dates ----------------------------------------------------------------
    @property
    def tz(self) -> str:
        return self.account.tz

    def at(self, day: date, back: bool = False) -> datetime:
        """A customer-facing step at `work_start_hour` account time (a countdown step rolls `back`: it
        keeps its lead time)."""
        return self.cal.customer_at(day, self.content.work_start_hour, back)

    def staff_at(self, day: date, hour: int) -> datetime:
        """Internal work (tasks, risk marks, escalations): our team's zone, our staff's working days."""
        return self.cal.staff_at(day, hour)

    def step_date(self, step: RenewalStep) -> date:
        if isinstance(step, CountdownStep):
            return self.state.renewal_date - timedelta(days=step.days_before)
        return self.state.renewal_date + timedelta(days=step.days_after)

    def step_at(self, step: RenewalStep) -> datetime:
        at = self.at(self.step_date(step), back=isinstance(step, CountdownStep))
        if not isinstance(step, CountdownStep) and self.state.outcome_at:
            at = max(at, self.state.outcome_at)
        return at

    def days_to_renewal(self, now: datetime) -> int:
        return (self.state.renewal_date - self.account.local_date(now)).days

    def task_due(self, step: RenewalStep | None, task: StepTask, fired: datetime) -> datetime:
        """Due `due_days` after the step's date, or after it actually fired if that was later."""
        anchor = self.account.local_date(fired)
        if step is not None:
            anchor = max(anchor, self.step_date(step))
        return self.staff_at(anchor + timedelta(days=task.due_days), self.content.due_hour)

    # -- which steps -------------------------------------------------------------
    def countdown(self) -> list[CountdownStep]:
        tier = self.state.tier
        return [s for s in self.content.countdown if s.tasks_for(tier) or s.emails_for(tier)]

    def post_renewal(self) -> list[RenewalStep]:
        tier = self.state.tier
        return [s for s in self.content.post_renewal if s.tasks_for(tier) or s.emails_for(tier)]

    def step_by_id(self, step: str) -> RenewalStep:
        return self.content.step(step.removeprefix("step/"))

    # -- bookkeeping ------------------------------------------------------------
    def is_settled(self, step: str) -> bool:
        return step in self.state.done_steps or step in self.state.skipped_steps

    def mark_done(self, step: str, at: datetime) -> None:
        if not self.is_settled(step):
            self.state.done_steps.append(step)
        if step.startswith("step/"):
            self.state.fired_at.setdefault(step.removeprefix("step/"), at)

    def skip(self, step: str, why: str) -> None:
        if not self.is_settled(step):
            self.state.skipped_steps[step] = why

    def skip_before_start(self) -> None:
        """A play started late does not replay the steps it missed."""
        for s in self.countdown():
            day = self.step_date(s)
            if day < self.state.start_date:
                self.skip(step_id(s.key), f"dated before the play started on {self.state.start_date.isoformat()}")

    # -- what is due --------------------------------------------------------------
    def pending(self) -> list[Action]:
        """Every action not yet settled, earliest first."""
        st, c = self.state, self.content
        actions: list[Action] = []
        if st.outcome is not None:
            actions.append(Action(step=f"outcome/{st.outcome}", kind="outcome", at=st.outcome_at))
        if st.outcome == "churned":
            actions.append(Action(step=CHURN_CLOSE, kind="churn_close", at=st.outcome_at))
        elif st.outcome == "renewed":
            actions.extend(
                Action(step=step_id(s.key), kind="step", at=self.step_at(s), ref=s.key, order=n)
                for n, s in enumerate(self.post_renewal(), start=1)
            )
        else:
            actions.extend(
                Action(step=step_id(s.key), kind="step", at=self.step_at(s), ref=s.key, order=n)
                for n, s in enumerate(self.countdown(), start=1)
            )
            hour = c.work_start_hour
            window = self.staff_at(st.renewal_date - timedelta(days=c.final_window.days_before), hour)
            actions.append(Action(
                step=f"risk/{c.final_window.indicator}", kind="final_window", at=max(window, st.started_at),
            ))
            past_due = self.staff_at(st.renewal_date + timedelta(days=c.past_due.after_days), hour)
            actions.append(Action(step=PAST_DUE, kind="past_due", at=past_due))
            for i, rung in enumerate(c.past_due.escalations):
                actions.append(Action(
                    step=f"escalation/past-due-{rung.after_days}d", kind="past_due_escalation",
                    at=self.staff_at(st.renewal_date + timedelta(days=rung.after_days), hour), ref=str(i),
                ))
        actions.extend(self._follow_ups())
        return sorted((a for a in actions if not self.is_settled(a.step)), key=lambda a: (a.at, a.order, a.step))

    def _follow_ups(self) -> list[Action]:
        """The reminders of e-mails already sent, in plays on working days (issue 17)."""
        st = self.state
        if not st.working_days:
            return []
        steps = self.countdown() if st.outcome is None else self.post_renewal() if st.outcome == "renewed" else []
        out = []
        for s in steps:
            fired = st.fired_at.get(s.key)
            if fired is None:
                continue
            for e in s.emails_for(st.tier):
                parent = email_step(step_id(s.key), e.key)
                if parent not in st.emails_sent:
                    continue
                for n, f in enumerate(e.follow_ups, start=1):
                    day = self.account.add_working_days(self.account.local_date(fired), f.after_working_days)
                    out.append(Action(step=follow_up_step(parent, n), kind="follow_up", at=self.at(day),
                                      ref=f"{s.key}|{e.key}|{n}"))
        return out

    def due(self, now: datetime) -> list[Action]:
        """Actions due now; of several countdown steps due at once, only the
        latest and the `catch_up` ones fire, the others are skipped."""
        due = [a for a in self.pending() if a.at <= now]
        steps = [a for a in due if a.kind == "step" and self.state.outcome is None]
        if len(steps) > 1:
            latest = steps[-1]
            for a in steps[:-1]:
                if not self.content.step(a.ref).catch_up:
                    self.skip(a.step, f"overtaken by {self.content.step(latest.ref).name!r}; not sent late")
            due = [a for a in due if not self.is_settled(a.step)]
        return due

    def next_wake(self, now: datetime) -> datetime | None:
        return min((a.at for a in self.pending() if a.at > now), default=None)

    def finished(self) -> bool:
        return self.state.outcome is not None and not self.pending()

    # -- outcome and re-planning ----------------------------------------------------
    def record_outcome(self, outcome: Outcome, at: datetime, by: str, reason: str = "",
                       new_renewal_date: date | None = None) -> None:
        st = self.state
        why = f"the account {outcome}"
        for follow_up in self._follow_ups():  # the countdown's reminders stop with it
            self.skip(follow_up.step, why)
        st.outcome, st.outcome_at, st.outcome_by = outcome, at, by
        settled = [step_id(s.key) for s in self.countdown()]
        settled += [f"risk/{self.content.final_window.indicator}", PAST_DUE]
        settled += [f"escalation/past-due-{r.after_days}d" for r in self.content.past_due.escalations]
        if outcome == "churned":
            st.churn_reason = reason
            settled += [step_id(s.key) for s in self.post_renewal()]
        else:
            st.new_renewal_date = new_renewal_date or _one_year_after(st.renewal_date)
        for step in settled:
            self.skip(step, why)

    def open_tasks_to_close(self) -> list[str]:
        """Open tasks the outcome made moot: the countdown's (renewed), all but the close-out (churned)."""
        post = {step_id(s.key) for s in self.content.post_renewal}
        out = []
        for step, ref in self.state.tasks.items():
            if ref.status == "completed" or step.startswith(CHURN_CLOSE + "/"):
                continue
            if self.state.outcome == "churned" or not any(step.startswith(p + "/") for p in post):
                out.append(step)
        return out

    def change_date_problem(self, new: date, now: datetime) -> str | None:
        st = self.state
        if st.outcome is not None:
            return f"the account has already {st.outcome}; the countdown is over"
        today = self.account.local_date(now)
        if new < today:
            return f"it is in the past (today is {today.isoformat()})"
        if new == st.renewal_date:
            return f"the renewal date is already {new.isoformat()}"
        limit = today + timedelta(days=self.content.max_days_ahead)
        if new > limit:
            return f"it is more than {self.content.max_days_ahead} days ahead (the latest is {limit.isoformat()})"
        return None

    def change_date(self, new: date, now: datetime, reason: str) -> DateChange:
        change = DateChange(from_date=self.state.renewal_date, to_date=new, recorded_at=now, reason=reason)
        self.state.date_changes.append(change)
        self.state.renewal_date = new
        return change

    def rescheduled_tasks(self) -> dict[str, datetime]:
        """Open step tasks whose due date moved with the renewal date: step -> new due."""
        out = {}
        for s in self.content.steps:
            fired = self.state.fired_at.get(s.key)
            if fired is None:
                continue
            for task in s.tasks:
                step = task_step(step_id(s.key), task)
                ref = self.state.tasks.get(step)
                if ref is not None and ref.status != "completed":
                    due = self.task_due(s, task, fired)
                    if due != ref.due_at:
                        out[step] = due
        return out

    # -- reporting ------------------------------------------------------------------
    def phase(self) -> str:
        st = self.state
        if st.outcome == "churned":
            return "churned"
        if st.outcome == "renewed":
            return "renewed" if self.finished() else "post_renewal"
        if PAST_DUE in st.done_steps:
            return "past_due"
        fired = [s for s in self.content.countdown if s.key in st.fired_at]
        return fired[-1].phase if fired else "scheduled"

    def schedule(self, now: datetime) -> list[ScheduleEntry]:
        st = self.state
        entries = []
        pending = {a.step: a for a in self.pending()}
        steps = [*self.countdown(), *self.post_renewal()]
        for s in steps:
            sid = step_id(s.key)
            at = st.fired_at.get(s.key) or self.step_at(s)
            if sid in st.failed_steps:
                status, note = "failed", st.failed_steps[sid]
            elif sid in st.done_steps:
                status, note = "done", ""
            elif sid in st.skipped_steps:
                status, note = "skipped", st.skipped_steps[sid]
            elif sid in pending:
                status, note = ("due" if at <= now else "planned"), ""
            else:
                status, note = "if renewed", ""
            entries.append(ScheduleEntry(step=sid, title=s.name, date=self.account.local_date(at), at=at,
                                         status=status, note=note))
        for a in pending.values():
            if a.kind != "step":
                title = {
                    "final_window": f"Final {self.content.final_window.days_before} days: churn risk "
                                    f"+{self.content.final_window.points}",
                    "past_due": f"Renewal past due: churn risk +{self.content.past_due.points}, task",
                    "past_due_escalation": "Escalation if still not renewed",
                    "churn_close": "Close out the churned account",
                    "outcome": f"Record the outcome ({self.state.outcome}) on the account, close moot tasks",
                    "follow_up": f"Follow-up e-mail {a.ref.rsplit('|', 1)[-1]} unless the customer replies",
                }[a.kind]
                entries.append(ScheduleEntry(step=a.step, title=title, date=self.account.local_date(a.at), at=a.at,
                                             status="due" if a.at <= now else "planned"))
        return sorted(entries, key=lambda e: e.at)  # stable: same moment keeps the playbook order

    def next_action(self) -> tuple[str, datetime | None]:
        pending = self.pending()
        if pending:
            return pending[0].step, pending[0].at
        return ("nothing" if self.finished() else "waiting for renewed or churned"), None

    def status_data(self, now: datetime, step: RenewalStep | None = None) -> dict:
        """What every renewal template may use as `data` (see playbooks/samples.py)."""
        st = self.state
        open_ = [t for t in st.tasks.values() if t.status != "completed"]
        upcoming = [
            {"key": s.key, "name": s.name, "date": self.step_date(s)}
            for s in self.countdown() if not self.is_settled(step_id(s.key)) and (step is None or s.key != step.key)
        ]
        return {
            "renewal_date": st.renewal_date,
            "original_renewal_date": st.original_renewal_date,
            "new_renewal_date": st.new_renewal_date,
            "days_to_renewal": self.days_to_renewal(now),
            "tier": st.tier,
            "step": step.name if step else "",
            "phase": self.phase(),
            "open_tasks": [
                {"title": t.title, "due": t.due_at, "owner": t.owner_email or t.owner_role, "priority": t.priority,
                 "step": t.step, "task_id": t.task_id}
                for t in open_
            ],
            "upcoming_steps": upcoming,
            "churn_reason": st.churn_reason,
            "outcome": st.outcome,
        }


def _one_year_after(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)
