"""Ticket communications of the SLA clock (issue 19; content: sla.yaml `communications`,
playbooks/schema_sla_comms.py). `CommsPlan` is pure and deterministic like the timeline it extends;
`SlaComms` performs its steps inside the play.

Rules (seed 001 sections 3.1 templates 1 and 4, 3.2 update frequency, 9.2 level 1):
- `comms/ack`: the acknowledgement, when the clock starts (due at the opening).
- `comms/approaching/<clock>`: once per clock, when the running clock reaches `at_fraction` of its
  target (business time for a business target): an internal warning to the assignee.
- `comms/update/<spell>-<n>`: while the ticket runs (open or acknowledged) at a priority of the
  cadence, the n-th update is due `n` intervals after the spell began (the last resume, reopen or
  opening, or the last priority change if later). A hold or the resolution stops them; of several
  missed (workers down), only the latest goes out.
- `comms/resolution/<r>` at the resolution; `comms/closing/<r>` and then `comms/csat/<r>` when the
  confirmation window (24/7 hours) has passed without a reopen (`r`: the reopen count).
- `comms/csat-answer/<r>`: a CSAT answer signalled by the survey endpoint: the account's CSAT
  average goes to its churn watch; a low score opens the follow-up task.
All of it only in plays that decided `comms` (workflow.patched COMMS_PATCH at their first run).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.sla_comms import SlaCommsActivities
    from core.models import CsatFeedRequest, CsatSurveyRequest, Person
    from playbooks.schema_sla_comms import Every, TicketComms
    from workflows.common import run_activity
    from workflows.sla_timeline import CLOCKS, Action, SlaTimeline

COMMS_PATCH = "sla-ticket-comms"
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def spell_key(since: datetime) -> str:
    """A spell's part of its update steps: its start in UTC, "20270111T150000"."""
    return since.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S")


def hours_text(timeline: SlaTimeline) -> str:
    """The support region's business hours as a person reads them: "Mon-Fri 09:00-18:00 (America/New_York)"."""
    cal = timeline.business
    week = cal.week or tuple(((cal.open_hour * 60, cal.close_hour * 60),) if d < 5 else () for d in range(7))

    def spells(day) -> str:
        return ", ".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in day)

    groups: list[list] = []  # [first day, last day, spells text] of runs of days with the same hours
    for i, day in enumerate(week):
        text = spells(day)
        if groups and groups[-1][2] == text and groups[-1][1] == i - 1:
            groups[-1][1] = i
        else:
            groups.append([i, i, text])
    parts = [f"{DAYS[a]}{'-' + DAYS[b] if b > a else ''} {text}" for a, b, text in groups if text]
    return f"{'; '.join(parts)} ({cal.tz})"


class CommsPlan:
    """The pending communication steps of a ticket, from its timeline's state (no side effects)."""

    def __init__(self, timeline: SlaTimeline):
        self.t = timeline
        self.content: TicketComms | None = timeline.content.communications

    @property
    def on(self) -> bool:
        return self.content is not None and self.t.state.comms is True

    def cadence(self) -> Every | None:
        return self.content.updates.every.get(self.t.state.priority) if self.content else None

    def spell(self) -> datetime | None:
        """When the current spell of regular updates began; None while they are stopped."""
        st = self.t.state
        if st.status not in ("open", "acknowledged") or not st.running or st.running[-1].end is not None:
            return None
        since = st.running[-1].start
        if st.priority_changes:
            since = max(since, st.priority_changes[-1].at)
        return since

    def update_at(self, since: datetime, every: Every, n: int) -> datetime:
        """The n-th update of a spell: n intervals after `since` (business time for a business cadence)."""
        cal = self.t.business if every.business else self.t.around
        return cal.add(since, every.duration(self.t.day_hours) * n)

    def latest_update(self, since: datetime, every: Every, now: datetime, at_least: int) -> int:
        """The number of the last update due by `now` (at least `at_least`)."""
        n = at_least
        while self.update_at(since, every, n + 1) <= now:
            n += 1
        return n

    def pending(self) -> list[Action]:
        if not self.on:
            return []
        st, c = self.t.state, self.content
        out = [Action(step="comms/ack", kind="comms", at=st.opened_at)]
        if st.status in ("open", "acknowledged"):
            for clock in CLOCKS:
                at = self.t.deadline(clock, c.approaching.at_fraction)
                if at is not None:
                    out.append(Action(step=f"comms/approaching/{clock}", kind="comms", at=at, clock=clock))
        since, every = self.spell(), self.cadence()
        if since is not None and every is not None:
            key = spell_key(since)
            n = (st.updates_sent if st.update_spell == key else 0) + 1
            while self.t.is_done(f"comms/update/{key}-{n}"):  # a person skipped it
                n += 1
            out.append(Action(step=f"comms/update/{key}-{n}", kind="comms", at=self.update_at(since, every, n),
                              occurrence=n))
        if st.status == "resolved":
            r = st.reopens
            closing = st.resolved_at + timedelta(hours=c.closing.after_hours)
            out += [Action(step=f"comms/resolution/{r}", kind="comms", at=st.resolved_at),
                    Action(step=f"comms/closing/{r}", kind="comms", at=closing),
                    Action(step=f"comms/csat/{r}", kind="comms", at=closing)]
        out += [Action(step=f"comms/csat-answer/{a.round}", kind="comms", at=a.at, occurrence=a.score)
                for a in st.csat_answers]
        return out


class SlaComms:
    """Sends the ticket's communications for the play (workflows/sla.py)."""

    def __init__(self, play, timeline: SlaTimeline, requester: Person | None, assignee: Person | None):
        self.play, self.t, self.plan = play, timeline, CommsPlan(timeline)
        self.requester, self.assignee = requester, assignee
        timeline.more_actions = self.plan.pending

    def decide(self, continued: bool) -> None:
        """At a run's start: a play from before ticket communications never sends them (a run it
        continued as new carries no decision: False too); a new one always."""
        st = self.t.state
        if st.comms is None:
            st.comms = False if continued else workflow.patched(COMMS_PATCH)

    def _customer(self, email) -> tuple[list, list[Person]]:
        return ([], [self.requester]) if self.requester else (list(email.to), [])

    async def _send(self, step: str, key: str, email, data: dict, what: str) -> None:
        to, people = self._customer(email)
        await self.play.email(step, key, to, email.cc, {"ticket": self.t.ticket_data(), **data}, people=people,
                              summary=f"{what} e-mail (ticket {self.t.state.ticket_id})")

    async def perform(self, action: Action) -> None:
        kind = action.step.split("/")[1]
        await getattr(self, "_" + kind.replace("-", "_"))(action)

    async def _ack(self, action: Action) -> None:
        c, t = self.plan.content, self.t
        target, every = t.target("response"), self.plan.cadence()
        p0 = t.urgent(t.state.priority)
        await self._send(action.step, "ticket_acknowledgement", c.acknowledgement, {
            "response_target": str(target), "business": target.business, "hours": hours_text(t),
            "response_due_at": t.deadline("response") or action.at,
            "update_every": f"{t.content.p0_updates.every_minutes} minutes" if p0 else str(every) if every else "",
        }, "acknowledgement")

    async def _approaching(self, action: Action) -> None:
        c, t = self.plan.content.approaching, self.t
        data = {"ticket": t.ticket_data(), "clock": action.clock, "target": str(t.target(action.clock)),
                "percent": round(c.at_fraction * 100), "due_at": t.deadline(action.clock) or action.at}
        await self.play.email(action.step, "ticket_approaching", [] if self.assignee else c.to, c.cc, data,
                              people=[self.assignee] if self.assignee else [],
                              summary=f"SLA approaching ({action.clock}) warning (ticket {t.state.ticket_id})")

    async def _update(self, action: Action) -> None:
        st, every, since = self.t.state, self.plan.cadence(), self.plan.spell()
        if every is None or since is None:  # held, resolved or re-prioritised while earlier steps ran
            return
        n = self.plan.latest_update(since, every, workflow.now(), action.occurrence)
        await self._send(action.step, "ticket_updates", self.plan.content.updates,
                         {"update_number": n, "every": str(every)}, f"update #{n}")
        st.update_spell, st.updates_sent = action.step.split("/")[2].rsplit("-", 1)[0], n

    async def _resolution(self, action: Action) -> None:
        await self._send(action.step, "ticket_resolution", self.plan.content.resolution,
                         {"confirm_hours": round(self.plan.content.closing.after_hours)}, "resolution notice")

    async def _closing(self, action: Action) -> None:
        await self._send(action.step, "ticket_closing", self.plan.content.closing,
                         {"reopen_days": self.t.content.reopen_window_days}, "closing")

    async def _csat(self, action: Action) -> None:
        st = self.t.state
        to = self.requester or self.play.account.sponsor
        expires = st.resolved_at + timedelta(days=self.t.content.reopen_window_days)
        await run_activity(SlaCommsActivities.send_csat_survey, CsatSurveyRequest(
            play=self.play.ref, step=action.step, template=self.play.snapshot.template("ticket_csat"), to=to,
            ticket_id=st.ticket_id, round=st.reopens, expires_at=expires, data={"ticket": self.t.ticket_data()},
        ), summary=f"CSAT survey e-mail (ticket {st.ticket_id}) to the {'requester' if self.requester else 'sponsor'}")

    async def _csat_answer(self, action: Action) -> None:
        c, st, score = self.plan.content.csat, self.t.state, action.occurrence
        await run_activity(SlaCommsActivities.feed_account_csat, CsatFeedRequest(
            play=self.play.ref, days=c.average_days), summary=f"feed the account's CSAT ({score}/5)")
        if score <= c.low_score:
            f = c.followup
            await self.play.create_tasks(st.tasks, summary="low CSAT follow-up task", requests=[dict(
                step=f"{action.step}/task", title=f"{f.title}: ticket {st.ticket_id} scored {score}/5",
                detail=f.detail, owner_role=f.owner_role, priority=f.priority,
                due_at=action.at + timedelta(hours=f.due_hours),
            )])
