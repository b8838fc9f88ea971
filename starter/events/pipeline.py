"""Acting on checked events: once each, in the order they happened, waiting for what is missing.

`receive` (one delivery): claim every event in one short transaction (duplicates and retries
found there), act on the claimed ones oldest first, then on the events that were waiting for an
object this delivery brought; the answer waits at most the delivery's time (the rest goes on in
the background). `sweep_once` (the HTTP service runs it every WEBHOOK_SWEEP_SECONDS): wakes
events whose object arrived some other way, and acts on every due pending event (queued,
postponed after a failure, or left by a process that died).

No connection is held while acting: each step takes its own short transaction. Events of one
CRM object are acted on one at a time in this process (their order matters).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass

from core.logs import get_logger
from playbooks.crm_connections import Connection
from starter.adapters.common import Incoming
from starter.events import companies, crm_tasks, deals, generic, ledger, lifecycle, tickets
from starter.events.context import Context, Result
from starter.events.routing import WaitFor, _play_state

log = get_logger("webhooks")
_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()
MAX_SETTLE_ROUNDS = 50


@dataclass
class Handled:
    """One event of a delivery and what became of it (`claim`: fresh, retry, duplicate, busy)."""

    inc: Incoming
    claim: str
    result: Result | None = None
    earlier: dict | None = None

    @property
    def outcome(self) -> str:
        if self.claim == "duplicate":
            return "duplicate"
        if self.claim == "busy":
            return "in progress: another delivery of this event is being acted on"
        return self.result.outcome if self.result else "accepted: acted on in the background"


def _lock(inc: Incoming) -> asyncio.Lock:
    key = f"{inc.connection}:{inc.object_type}:{inc.object_id}"
    lock = _locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _locks[key] = lock
    return lock


async def _dispatch(ctx: Context, inc: Incoming) -> Result:
    if inc.action == "ignore":
        return Result(f"ignored: {inc.note or 'not an event the product acts on'}")
    if inc.action == "route":
        return await generic.route(ctx, inc)
    conn: Connection = ctx.connection(inc.connection)
    if inc.action == "task_status":
        return await crm_tasks.task_status(ctx, inc, conn)
    if inc.action == "upsert":
        handler = {"company": companies.company, "contact": companies.contact, "deal": deals.deal,
                   "ticket": tickets.ticket}.get(inc.object_type)
        if handler is None:
            return Result(f"ignored: {inc.object_type} records are not acted on")
        return await handler(ctx, inc, conn)
    handler = {"associate": deals.associate, "merge": lifecycle.merge, "delete": lifecycle.delete,
               "restore": lifecycle.restore, "privacy_delete": lifecycle.privacy_delete}[inc.action]
    return await handler(ctx, inc, conn)


async def act_one(ctx: Context, inc: Incoming) -> Result:
    """Act on one claimed event and record its outcome. A failure that may pass (Temporal or the
    CRM unreachable) leaves it pending, to be tried again after a back-off."""
    async with _lock(inc):
        try:
            result = await _dispatch(ctx, inc)
        except WaitFor as wait:
            result = Result.waiting(wait)
        except Exception as exc:  # noqa: BLE001 - recorded, retried, and visible in the console
            reason = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("webhook.event_failed", event_id=inc.key, source=inc.source, error=reason, exc_info=True)
            seconds = await ledger.postpone(ctx.pool, inc.key, reason)
            return Result(f"will retry in {seconds:.0f} s: {reason}", "done")
    wait = result.wait
    retry_later = bool(wait and wait.object_type != "play" and ctx.lookups.enabled(inc.source))
    await ledger.finish(ctx.pool, inc.key, result.status, result.outcome, account_id=result.account_id,
                        workflow_id=result.workflow_id, trigger=result.trigger,
                        wait=(wait.connection, wait.object_type, wait.crm_id, wait.reason[:1000]) if wait else None,
                        retry_later=retry_later)
    log.info("webhook.event", event_id=inc.key, source=inc.source, connection=inc.connection, event_type=inc.name,
             object_type=inc.object_type, object_id=inc.object_id, status=result.status, outcome=result.outcome,
             account_id=result.account_id, workflow_id=result.workflow_id)
    return result


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


async def settle(ctx: Context, deadline: float | None = None) -> int:
    """Act on the events waiting for the objects that became known (and on what those bring)."""
    acted = 0
    for _ in range(MAX_SETTLE_ROUNDS):
        if not ctx.follow_ups:
            break
        connection, object_type, crm_ids = ctx.follow_ups.pop(0)
        if _expired(deadline):
            await ledger.take_waiting(ctx.pool, connection, object_type, crm_ids, None)
            continue
        woken = await ledger.take_waiting(ctx.pool, connection, object_type, crm_ids,
                                          ctx.settings.webhook_claim_seconds)
        for i, inc in enumerate(woken):
            if _expired(deadline):
                await ledger.release(ctx.pool, [w.key for w in woken[i:]])
                break
            await act_one(ctx, inc)
            acted += 1
    for connection, object_type, crm_ids in ctx.follow_ups:  # past the round limit: the sweeper's
        await ledger.take_waiting(ctx.pool, connection, object_type, crm_ids, None)
    ctx.follow_ups.clear()
    return acted


_background: set[asyncio.Task] = set()


async def receive(ctx: Context, incs: list[Incoming], seconds: float | None = None) -> list[Handled]:
    """Claim and act on one delivery's events, oldest first, then on what waited for the objects
    they brought. With `seconds`, the answer does not wait longer: what is not done by then goes on
    in the background (still claimed by this process; if it dies, the claims run out and the
    sweeper takes the events up). Returns one Handled per event, in delivery order."""
    claims = await ledger.claim(ctx.pool, incs, ctx.settings.webhook_claim_seconds)
    handled = [Handled(c.inc, c.state, earlier=c.earlier) for c in claims]
    todo = sorted((h for h in handled if h.claim in ("fresh", "retry")), key=lambda h: h.inc.occurred_at)

    async def work() -> None:
        for h in todo:
            h.result = await act_one(ctx, h.inc)
        await settle(ctx)

    if seconds is None:
        await work()
        return handled
    task = asyncio.create_task(work())
    _background.add(task)
    task.add_done_callback(_finished)
    await asyncio.wait({task}, timeout=seconds)
    return handled


def _finished(task: asyncio.Task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("webhook.background_failed", error=f"{type(task.exception()).__name__}: {task.exception()}"[:500])


async def sweep_once(ctx: Context, limit: int = 100) -> int:
    """One pass of the sweeper; returns how many events it acted on."""
    await ledger.wake_resolved(ctx.pool)
    await ledger.wake_due_lookups(ctx.pool, [s for s in ("hubspot", "salesforce") if ctx.lookups.enabled(s)])
    for workflow_id in await ledger.waiting_plays(ctx.pool):
        if await _play_state(ctx.client, workflow_id) is not None:
            ctx.resolved("*", "play", [workflow_id])
    acted = await settle(ctx)
    due = await ledger.take_due(ctx.pool, limit, ctx.settings.webhook_claim_seconds)
    for inc in due:
        await act_one(ctx, inc)
    return acted + len(due) + await settle(ctx)


async def run_sweeper(make_context, every: float) -> None:
    """The HTTP service's background task: sweep, then sleep `every` seconds, until cancelled."""
    while True:
        try:
            while await sweep_once(make_context()) > 0:
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the next pass tries again; the log says why
            log.warning("webhook.sweep_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        await asyncio.sleep(every)
