"""Drives an onboarding play through skipped time the way a CS team would:
each half day, complete the tasks due that day, except the ones held late
(by working days: onboarding counts the account's working days)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Awaitable, Callable
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from core.holiday_calendars import work_calendar
from core.models import CalendarPlace
from core.working_time import WorkCalendar
from starter.steering import complete_task
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import OnboardingResult, OnboardingStatus

ET = ZoneInfo("America/New_York")


def us_calendar(around: datetime | None = None) -> WorkCalendar:
    """The demo account's working days (New York, US public holidays), as its plays get them."""
    year = (around or datetime.now(ET)).date().replace(month=1, day=1)
    return work_calendar(CalendarPlace(tz="America/New_York", country="US"), year.replace(year=year.year - 1), 4)


def plan_day(cal: WorkCalendar, start_date, moment: datetime) -> int:
    """The onboarding plan's day number of a moment: working days since day 1 (`start_date`)."""
    return 1 + cal.working_days_after(start_date, cal.local_date(moment))


async def skip_to_next_monday(env: WorkflowEnvironment, hour: int = 10) -> datetime:
    """Start every play on a Monday morning in New York, so days and weekdays are fixed: the next
    Monday that is a working day (not Memorial Day, say), whatever date the suite runs on."""
    now = await env.get_current_time()
    local = now.astimezone(ET)
    day = local.date() + timedelta(days=(7 - local.weekday()) % 7 or 7)
    cal = us_calendar(now)
    while not cal.is_working_day(day):
        day += timedelta(days=7)
    target = datetime.combine(day, time(hour), tzinfo=ET)
    await env.sleep(target - now)
    return target


class PlayDriver:
    def __init__(self, env: WorkflowEnvironment, pool, handle: WorkflowHandle, calendar: WorkCalendar | None = None):
        self.env, self.pool, self.handle = env, pool, handle
        self.calendar = calendar or us_calendar()
        self.completed: list[str] = []

    async def status(self) -> OnboardingStatus:
        # A query right after a worker died can go to its sticky queue and time
        # out once; a CS manager's console would simply ask again.
        for _ in range(2):
            try:
                return await self.handle.query(OnboardingPlan.status, rpc_timeout=timedelta(seconds=15))
            except RPCError:
                pass
        return await self.handle.query(OnboardingPlan.status, rpc_timeout=timedelta(seconds=15))

    async def run(
        self,
        hold: dict[str, int] | None = None,
        tick: timedelta = timedelta(hours=12),
        on_tick: Callable[[OnboardingStatus], Awaitable[None]] | None = None,
        max_ticks: int = 200,
    ) -> OnboardingResult:
        """Complete tasks on their due day; a milestone in `hold` is completed that many days late."""
        hold = hold or {}
        for _ in range(max_ticks):
            st = await self.status()
            if on_tick:
                await on_tick(st)
            if st.finished or (st.open_tasks == [] and st.phase == "stabilization" and len(st.milestones_done) == 12):
                return await self.handle.result()
            now = await self.env.get_current_time()
            for task in st.open_tasks:
                due_day = task.due_at.astimezone(ET).date()
                late = hold.get(task.milestone or "", 0)
                held = self.calendar.working_days_after(due_day, now.astimezone(ET).date())
                if held >= late and now.astimezone(ET).date() >= due_day and now + timedelta(hours=12) >= task.due_at:
                    await complete_task(self.handle._client, self.pool, task.task_id, "driver")
                    self.completed.append(task.step)
            await self.env.sleep(tick)
        raise AssertionError(f"play not finished after {max_ticks} ticks: {await self.status()}")
