"""The relay: play events into deliveries, and each delivery into its durable workflow.

Every worker process runs one (worker.py). It wakes on PostgreSQL NOTIFY `play_events` (sent
when an event is recorded) and at least every NOTICE_POLL_SECONDS, then:

1. `route_pending`: takes unrouted events (FOR UPDATE SKIP LOCKED: several workers share the work
   and never route one event twice at once), writes the deliveries `notice_routing.route` makes
   (ON CONFLICT DO NOTHING: a relay that died before marking an event routed makes nothing
   twice) and marks the events routed, in one transaction. Content that does not validate
   holds routing (the events wait, the log says why) until it is fixed.
2. `start_pending`: starts `DeliverItem` for every delivery that has no workflow yet (its id is
   deterministic, so two relays starting it start it once) and notes the workflow id.

`replay_delivery` puts a failed delivery back to pending and starts a fresh workflow for it.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

import asyncpg
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.notice_routing import (
    Routing, account_info, current_connections, current_notifications, current_team, may_route, route,
)
from activities.play_events import NOTIFY_CHANNEL
from core.logs import get_logger
from core.settings import Settings
from playbooks.loader import PlaybookError
from workflows.delivery import DeliveryInput, delivery_workflow_id

log = get_logger("relay")
GIVE_UP = {"chat": "chat_give_up_hours", "webhook": "webhook_give_up_hours", "crm": "crm_give_up_hours"}
_INSERT = """
    INSERT INTO deliveries (idem_key, event_id, kind, channel, destination, operation, event, account_id,
                            workflow_id, step, summary, payload)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT DO NOTHING
"""


class ReplayRefused(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def delivery_input(settings: Settings, delivery_id: int, kind: str) -> DeliveryInput:
    return DeliveryInput(
        delivery_id=delivery_id, kind=kind, give_up_hours=getattr(settings, GIVE_UP[kind]),
        retry_initial_seconds=settings.delivery_retry_initial_seconds,
        retry_max_seconds=settings.delivery_retry_max_seconds,
        attempt_seconds=4 * settings.delivery_timeout_seconds + 10)


async def start_delivery(client: Client, settings: Settings, delivery_id: int, kind: str, replays: int,
                         task_queue: str | None = None) -> str:
    """Start (once) the workflow delivering this row; its workflow id."""
    wid = delivery_workflow_id(delivery_id, replays)
    with suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            "DeliverItem", delivery_input(settings, delivery_id, kind), id=wid,
            task_queue=task_queue or settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"{kind} delivery {delivery_id}" + (f" (replay {replays})" if replays else ""))
    return wid


class NoticeRelay:
    """Routes play events into deliveries and starts their workflows (see the module)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, client: Client, task_queue: str | None = None):
        self.pool, self.settings, self.client = pool, settings, client
        self.task_queue = task_queue or settings.task_queue
        self._wake = asyncio.Event()
        self._last_problem = ""

    def _routing_content(self):
        s = self.settings
        content = current_notifications(s)
        try:
            connections = current_connections(s) if s.write_back_connections else None
        except FileNotFoundError:
            connections = None
        return content, connections, current_team(s) if s.write_back_connections else None

    async def route_pending(self, limit: int = 200) -> int:
        """Route up to `limit` unrouted events; how many were routed."""
        try:
            content, connections, team = self._routing_content()
        except PlaybookError as exc:
            problem = str(exc)
            if problem != self._last_problem:
                log.error("relay.content_invalid", problem=problem[:2000])
                self._last_problem = problem
            return 0
        self._last_problem = ""
        async with self.pool.acquire() as conn, conn.transaction():
            events = await conn.fetch("SELECT * FROM play_events WHERE routed_at IS NULL ORDER BY id LIMIT $1"
                                      " FOR UPDATE SKIP LOCKED", limit)
            accounts: dict[str, object] = {}
            marks: list[tuple[int, int]] = []  # (event id, deliveries made)
            for e in events:
                event = dict(e)
                if not may_route(event, content, connections):
                    marks.append((e["id"], 0))
                    continue
                account_id = event["account_id"]
                if account_id and account_id not in accounts:
                    accounts[account_id] = await account_info(conn, account_id)
                email = None
                if event["event"] == "email.sent":
                    email = await conn.fetchrow("SELECT * FROM communications WHERE id = $1",
                                                (event["data"] or {}).get("communication_id"))
                routing = Routing(self.settings, content, connections, team, accounts.get(account_id),
                                  dict(email) if email else None)
                specs = route(event, routing)
                for d in specs:
                    await conn.execute(_INSERT, d["idem_key"][:1000], d["event_id"], d["kind"], d["channel"],
                                       d["destination"], d["operation"], d["event"], d["account_id"], d["workflow_id"],
                                       d["step"], d["summary"], d["payload"])
                marks.append((e["id"], len(specs)))
            if marks:
                await conn.execute("UPDATE play_events p SET routed_at = now(), deliveries = m.n"
                                   " FROM unnest($1::bigint[], $2::int[]) AS m(id, n) WHERE p.id = m.id",
                                   [m[0] for m in marks], [m[1] for m in marks])
        return len(events)

    async def start_pending(self, limit: int = 200) -> int:
        """Start the workflows of deliveries that have none yet; how many were started."""
        rows = await self.pool.fetch("SELECT id, kind, replays FROM deliveries WHERE delivery_workflow IS NULL"
                                     " AND status = 'pending' ORDER BY id LIMIT $1", limit)
        for row in rows:
            wid = await start_delivery(self.client, self.settings, row["id"], row["kind"], row["replays"],
                                       self.task_queue)
            await self.pool.execute("UPDATE deliveries SET delivery_workflow = $2 WHERE id = $1", row["id"], wid)
        return len(rows)

    async def run_once(self) -> int:
        """Route everything unrouted, then start every delivery without a workflow; work done."""
        done = 0
        while (routed := await self.route_pending()) > 0:
            done += routed
        while (started := await self.start_pending()) > 0:
            done += started
        return done

    def _notified(self, *_args) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: LISTEN for new events, relay, sleep until woken or the poll interval."""
        listener: asyncpg.Connection | None = None
        try:
            while True:
                try:
                    if listener is None or listener.is_closed():
                        listener = await self.pool.acquire()
                        await listener.add_listener(NOTIFY_CHANNEL, self._notified)
                    self._wake.clear()
                    await self.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - PostgreSQL or Temporal away: the next pass tries again
                    log.warning("relay.failed", error=f"{type(exc).__name__}: {exc}"[:500])
                    if listener is not None:
                        with suppress(Exception):
                            await self.pool.release(listener)
                        listener = None
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.notice_poll_seconds)
        finally:
            if listener is not None:
                with suppress(Exception):
                    await listener.remove_listener(NOTIFY_CHANNEL, self._notified)
                with suppress(Exception):
                    await self.pool.release(listener)


async def replay_delivery(pool: asyncpg.Pool, client: Client, settings: Settings, delivery_id: int,
                          by: str) -> str:
    """Deliver a failed delivery again (a webhook keeps its webhook-id); its new workflow id.
    Raises ReplayRefused (404 unknown, 409 not failed)."""
    row = await pool.fetchrow(
        "UPDATE deliveries SET status = 'pending', replays = replays + 1, last_error = NULL, next_attempt_at = now(),"
        " delivery_workflow = NULL, updated_at = now() WHERE id = $1 AND status = 'failed'"
        " RETURNING id, kind, replays", delivery_id)
    if row is None:
        status = await pool.fetchval("SELECT status FROM deliveries WHERE id = $1", delivery_id)
        if status is None:
            raise ReplayRefused(f"no delivery {delivery_id}", 404)
        raise ReplayRefused(f"delivery {delivery_id} is {status}: only a failed delivery is replayed", 409)
    wid = await start_delivery(client, settings, row["id"], row["kind"], row["replays"])
    await pool.execute("UPDATE deliveries SET delivery_workflow = $2 WHERE id = $1", row["id"], wid)
    log.info("delivery.replayed", delivery_id=delivery_id, by=by, workflow_id=wid)
    return wid
