"""What the onboarding plan reports: its schedule, its next action and the data every onboarding
template sees. A mixin of `OnboardingTimeline` (workflows/onboarding_timeline.py), split off by concern."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.models import TaskRef


class ScheduleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    title: str
    day: int | None
    at: datetime
    status: Literal["done", "due", "planned", "waiting"]


class OnboardingReporting:
    def schedule(self, now: datetime) -> list[ScheduleEntry]:
        entries = []
        pending = {a.step: a for a in self.pending(now)}
        for task in self.content.tasks:
            if not task.milestone:
                continue
            done = self.state.milestones_done.get(task.milestone)
            day = self.effective_day(task.day)
            entries.append(ScheduleEntry(
                step=f"milestone/{task.milestone}", title=task.title, day=day,
                at=done or self.due_at(task.day),
                status="done" if done else ("due" if self.due_at(task.day) <= now else "planned"),
            ))
        for phase in self.content.phases:
            step = f"phase/{phase.key}"
            if not self.is_done(step):
                a = pending.get(step)
                entries.append(ScheduleEntry(
                    step=step, title=f"Phase starts: {phase.name}", day=self.effective_day(phase.first_day),
                    at=a.at if a else self.day_at(self.effective_day(phase.first_day)),
                    status="planned" if a else "waiting",
                ))
        for a in pending.values():
            if a.kind == "email":
                entries.append(ScheduleEntry(step=a.step, title=f"E-mail: {a.ref}", day=self.today(a.at), at=a.at,
                                             status="due" if a.at <= now else "planned"))
        return sorted(entries, key=lambda e: (e.at, e.step))

    def next_action(self, now: datetime) -> tuple[str, datetime | None]:
        pending = self.pending(now)
        if pending:
            return pending[0].step, pending[0].at
        waiting = self.open_milestones_started()
        if waiting:
            return f"waiting for milestone {waiting[0].milestone}", self.due_at(waiting[0].day)
        return "nothing", None

    def _task_dict(self, ref: TaskRef) -> dict:
        return {"title": ref.title, "due": ref.due_at, "owner": ref.owner_email or ref.owner_role,
                "priority": ref.priority, "milestone": ref.milestone, "step": ref.step, "task_id": ref.task_id}

    def status_data(self, now: datetime) -> dict:
        """What every onboarding template may use as `data` (see playbooks/samples.py)."""
        c = self.content
        today = self.today(now)
        tasks = list(self.state.tasks.values())
        completed = [t for t in tasks if t.status == "completed"]
        open_ = [t for t in tasks if t.status != "completed"]
        week_ago = now - timedelta(days=7)
        slip = self.slip_days(now)
        open_blockers = [b for b in self.state.blockers.values() if b.resolved_at is None]
        go_live_day = self.go_live_day()
        rungs = [r.over_days for r in c.slip_escalations]
        health = "RED" if rungs and slip > rungs[0] else ("YELLOW" if slip or open_blockers else "GREEN")
        upcoming = [
            {"name": t.title, "key": t.milestone, "day": self.effective_day(t.day),
             "date": self.date_of(self.effective_day(t.day))}
            for t in c.tasks if t.milestone and t.milestone not in self.state.milestones_done
        ][:3]
        live = self.state.milestones_done.get(c.go_live_milestone)
        return {
            "day": today,
            "week": (today - 1) // 7 + 1,
            "phase": c.phases[self.current_phase_index()].name,
            "started_on": self.state.start_date,
            "go_live_day": go_live_day,
            "go_live_date": self.account.local_date(live) if live else self.date_of(go_live_day),
            "original_go_live_date": self.date_of(c.go_live_day),
            "slip_days": slip,
            "health_status": health,
            "completion_pct": round(100 * len(completed) / max(1, len(c.tasks))),
            "completed_tasks": [self._task_dict(t) for t in completed],
            "completed_this_week": [self._task_dict(t) for t in completed if t.completed_at and t.completed_at >= week_ago],
            "open_tasks": [self._task_dict(t) for t in open_],
            "overdue_tasks": [self._task_dict(t) for t in open_ if t.due_at < now],
            "next_milestones": upcoming,
            "blockers": [
                {"key": b.key, "title": b.title, "opened_at": b.opened_at, "open_days": (now - b.opened_at).days}
                for b in open_blockers
            ],
            "live_since": self.account.local_date(live) if live else None,
        }
