"""Delivering one outbox row (`deliveries`): a chat message, a CRM write or a signed webhook.

The row is written (by the relay) before any call; `deliver` marks it `sending` and logs the
attempt before the call, and marks it `delivered` (with the vendor's id for it) after. A worker
that dies during the call leaves `sending` behind: the next attempt (Temporal retries the
activity once its heartbeat stops) logs that attempt as lost and, where the vendor allows it,
looks before sending again: Slack's Web API by the message's metadata, HubSpot by the
idempotency property (after its search index has settled), Salesforce by upserting on the
External ID; a webhook receiver sees the same `webhook-id`. Slack and Teams incoming webhooks
cannot be asked: there the window stays (README). A transient failure (`Retry`) raises a
retryable error with the vendor's Retry-After as the next delay; a refusal marks the row failed
and raises a non-retryable one; `give_up_delivery` marks it failed once the kind's give-up time
has passed. Every attempt is in `delivery_attempts`, which the console shows.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.chat import SlackApi, post_slack_webhook, post_teams
from activities.common import not_retryable
from activities.crm_write import HubSpotWriter, SalesforceWriter
from activities.delivery_http import SETUP_RETRY_SECONDS, Refused, Retry, Sent
from activities.notice_routing import account_values, current_connections, current_notifications
from activities.outbound_webhooks import post_webhook
from core.logs import get_logger
from core.metrics import count
from core.models import Model
from core.settings import Settings

log = get_logger("deliveries")
UNCERTAIN = ("sending", "lost", "unknown")
DEPENDENCY_RETRY_SECONDS = 30.0


class DeliveryOutcome(Model):
    delivery_id: int
    status: str
    detail: str = ""
    remote_id: str | None = None


class GiveUpRequest(Model):
    delivery_id: int
    reason: str


def _secret(mapping: dict, name: str | None, what: str) -> str:
    value = mapping.get(name or "")
    if value is None or not value.get_secret_value():
        raise Retry(f"{what} {name!r} is not configured any more", None, SETUP_RETRY_SECONDS, ours=True)
    return value.get_secret_value()


class DeliveryActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.pool, self.settings, self.transport = pool, settings, transport

    # -- the activity ------------------------------------------------------------------------
    @activity.defn(name="deliver")
    async def deliver(self, delivery_id: int) -> DeliveryOutcome:
        """Deliver the row once; raises a retryable ApplicationError (with the next delay) or a
        non-retryable one (refused)."""
        row = await self.pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id)
        if row is None:
            raise not_retryable(f"no delivery {delivery_id}", "DeliveryMissing")
        if row["status"] in ("delivered", "failed"):
            return DeliveryOutcome(delivery_id=delivery_id, status=row["status"], detail="already " + row["status"],
                                   remote_id=row["remote_id"])
        last = await self.pool.fetchrow(
            "SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id DESC LIMIT 1", delivery_id)
        if last is not None and last["outcome"] == "sending":
            await self.pool.execute(
                "UPDATE delivery_attempts SET outcome = 'lost', finished_at = now(), detail = $2 WHERE id = $1",
                last["id"], "the worker stopped during this attempt: it may have reached the vendor")
        uncertain = last is not None and (last["outcome"] in UNCERTAIN or (last["status_code"] or 0) >= 500)
        since = last["started_at"] if uncertain else None
        settle = self._settle_wait(row, since)
        if settle > 0:
            raise ApplicationError(f"waiting {settle:.0f} s for the CRM's search to show an earlier attempt",
                                   type="DeliveryRetry", next_retry_delay=timedelta(seconds=settle))
        attempt = await self.pool.fetchval(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, last_attempt_at = now(),"
            " updated_at = now() WHERE id = $1 AND status IN ('pending', 'sending') RETURNING attempts", delivery_id)
        if attempt is None:
            return DeliveryOutcome(delivery_id=delivery_id, status="unchanged", detail="delivered or failed meanwhile")
        attempt_id = await self.pool.fetchval(
            "INSERT INTO delivery_attempts (delivery_id, attempt, outcome) VALUES ($1, $2, 'sending') RETURNING id",
            delivery_id, attempt)
        activity.heartbeat()
        try:
            sent = await self._send(row, since)
        except Retry as r:
            if r.ours and r.retry_after is not None:
                r.retry_after = min(r.retry_after, self.settings.delivery_retry_max_seconds)
            await self._retrying(row, attempt_id, r)
            raise ApplicationError(r.detail, type="DeliveryRetry",
                                   next_retry_delay=timedelta(seconds=r.retry_after) if r.retry_after else None)
        except Refused as r:
            await self._refused(row, attempt_id, r)
            raise ApplicationError(r.detail, type="DeliveryRefused", non_retryable=True) from None
        except Exception as exc:  # noqa: BLE001 - noted, then Temporal retries it like any failure
            await self._safe_note(row["id"], attempt_id, f"{type(exc).__name__}: {exc}"[:500])
            raise
        await self._delivered(row, attempt_id, sent)
        return DeliveryOutcome(delivery_id=delivery_id, status="delivered", detail=sent.detail,
                               remote_id=sent.remote_id)

    @activity.defn(name="give_up_delivery")
    async def give_up_delivery(self, req: GiveUpRequest) -> None:
        """Mark the delivery failed (unless it was delivered meanwhile, or replayed since this
        workflow began: a replay's own workflow decides then): the console offers a replay."""
        replays = _replays_of(activity.info().workflow_id)
        await self.pool.execute(
            "UPDATE deliveries SET status = 'failed', last_error = $2, next_attempt_at = NULL, updated_at = now()"
            " WHERE id = $1 AND status <> 'delivered' AND ($3::int IS NULL OR replays = $3)",
            req.delivery_id, req.reason[:1000], replays)
        log.warning("delivery.failed", delivery_id=req.delivery_id, reason=req.reason[:300])

    # -- bookkeeping ---------------------------------------------------------------------------
    def _settle_wait(self, row, since: datetime | None) -> float:
        if since is None or row["channel"] != "hubspot" or row["operation"] not in ("create_task", "log_email"):
            return 0.0
        waited = (datetime.now(timezone.utc) - since).total_seconds()
        return max(0.0, self.settings.crm_search_settle_seconds - waited)

    async def _retrying(self, row, attempt_id: int, r: Retry) -> None:
        delay = r.retry_after if r.retry_after is not None else self.settings.delivery_retry_initial_seconds
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deliveries SET status = 'pending', last_status = $2, last_error = $3, updated_at = now(),"
                " next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1 AND status = 'sending'",
                row["id"], r.status_code, r.detail, float(delay))
            await conn.execute(
                "UPDATE delivery_attempts SET outcome = $2, status_code = $3, detail = $4, retry_after_seconds = $5,"
                " finished_at = now() WHERE id = $1",
                attempt_id, "unknown" if r.maybe_sent else "retry", r.status_code, r.detail, r.retry_after)
        log.info("delivery.retry", delivery_id=row["id"], kind=row["kind"], channel=row["channel"],
                 destination=row["destination"], reason=r.detail[:300], retry_after=r.retry_after)

    async def _refused(self, row, attempt_id: int, r: Refused) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deliveries SET status = 'failed', last_status = $2, last_error = $3, next_attempt_at = NULL,"
                " updated_at = now() WHERE id = $1", row["id"], r.status_code, r.detail)
            await conn.execute(
                "UPDATE delivery_attempts SET outcome = 'failed', status_code = $2, detail = $3, finished_at = now()"
                " WHERE id = $1", attempt_id, r.status_code, r.detail)
        count("deliveries_failed", kind=row["kind"], channel=row["channel"])
        log.warning("delivery.refused", delivery_id=row["id"], kind=row["kind"], channel=row["channel"],
                    destination=row["destination"], reason=r.detail[:300])

    async def _safe_note(self, delivery_id: int, attempt_id: int, detail: str) -> None:
        """An unexpected failure (the database, a bug): noted where possible; the attempt counts as unknown."""
        try:
            await self.pool.execute("UPDATE delivery_attempts SET outcome = 'unknown', detail = $2, finished_at = now()"
                                    " WHERE id = $1", attempt_id, detail)
            await self.pool.execute("UPDATE deliveries SET status = 'pending', last_error = $2, updated_at = now()"
                                    " WHERE id = $1 AND status = 'sending'", delivery_id, detail)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # the database is the problem: the next attempt marks this one lost

    async def _delivered(self, row, attempt_id: int, sent: Sent) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deliveries SET status = 'delivered', remote_id = $2, last_status = $3, last_error = NULL,"
                " next_attempt_at = NULL, delivered_at = now(), updated_at = now() WHERE id = $1",
                row["id"], sent.remote_id, sent.status_code)
            await conn.execute(
                "UPDATE delivery_attempts SET outcome = $2, status_code = $3, detail = $4, finished_at = now()"
                " WHERE id = $1", attempt_id, "found" if sent.found else "delivered", sent.status_code,
                sent.detail[:1000])
            p = row["payload"]
            if row["operation"] == "create_task" and sent.remote_id:
                await conn.execute(
                    "INSERT INTO crm_records (connection, object_type, our_key, crm_id, account_id, task_id)"
                    " VALUES ($1, 'task', $2, $3, $4, $5) ON CONFLICT (connection, object_type, our_key) DO NOTHING",
                    row["destination"], p["task_key"], sent.remote_id, row["account_id"], p.get("task_id"))
            elif row["operation"] == "log_email" and sent.remote_id:
                await conn.execute(
                    "INSERT INTO crm_records (connection, object_type, our_key, crm_id, account_id)"
                    " VALUES ($1, 'email', $2, $3, $4) ON CONFLICT (connection, object_type, our_key) DO NOTHING",
                    row["destination"], p["email_key"], sent.remote_id, row["account_id"])
        count("deliveries", kind=row["kind"], channel=row["channel"])
        log.info("delivery.delivered", delivery_id=row["id"], kind=row["kind"], channel=row["channel"],
                 destination=row["destination"], operation=row["operation"], remote_id=sent.remote_id,
                 found=sent.found)

    # -- the call -----------------------------------------------------------------------------
    async def _send(self, row, since: datetime | None) -> Sent:
        s = self.settings
        p = row["payload"]
        async with httpx.AsyncClient(timeout=s.delivery_timeout_seconds, transport=self.transport,
                                     follow_redirects=False) as http:
            channel = row["channel"]
            if channel == "slack_webhook":
                return await post_slack_webhook(http, _secret(s.chat_webhook_urls, p["webhook"], "CHAT_WEBHOOK_URLS"),
                                                p["body"])
            if channel == "teams_webhook":
                return await post_teams(http, _secret(s.chat_webhook_urls, p["webhook"], "CHAT_WEBHOOK_URLS"),
                                        p["body"])
            if channel == "slack_api":
                if s.slack_bot_token is None or not s.slack_bot_token.get_secret_value():
                    raise Retry("SLACK_BOT_TOKEN is not configured any more", None, SETUP_RETRY_SECONDS, ours=True)
                api = SlackApi(http, s.slack_api_url, s.slack_bot_token.get_secret_value())
                return await api.post(p["body"], row["idem_key"], since)
            if channel == "webhook":
                secret = _secret(s.outbound_webhook_secrets, row["destination"], "OUTBOUND_WEBHOOK_SECRETS")
                subs = {sub.name: sub for sub in current_notifications(s).webhooks}
                url = subs[row["destination"]].url if row["destination"] in subs else p["url"]
                return await post_webhook(http, url, secret, p["message_id"], p["body"])
            return await self._crm(http, row, p, since is not None)

    def _writer(self, http: httpx.AsyncClient, row) -> HubSpotWriter | SalesforceWriter:
        s = self.settings
        connection = current_connections(s).by_name.get(row["destination"])
        if connection is None or connection.mapping.write_back is None:
            raise Retry(f"CRM connection {row['destination']!r} has no write_back section any more", None,
                        SETUP_RETRY_SECONDS, ours=True)
        prop = connection.mapping.write_back.idempotency_property
        if row["channel"] == "hubspot":
            token = s.hubspot_access_token.get_secret_value() if s.hubspot_access_token else ""
            if not token:
                raise Retry("HUBSPOT_ACCESS_TOKEN is not configured", None, SETUP_RETRY_SECONDS, ours=True)
            return HubSpotWriter(http, s.hubspot_api_url, token, prop)
        token = s.salesforce_access_token.get_secret_value() if s.salesforce_access_token else ""
        if not token or not s.salesforce_instance_url:
            raise Retry("SALESFORCE_ACCESS_TOKEN / SALESFORCE_INSTANCE_URL are not configured", None,
                        SETUP_RETRY_SECONDS, ours=True)
        return SalesforceWriter(http, s.salesforce_instance_url, s.salesforce_api_version, token, prop)

    async def _crm(self, http: httpx.AsyncClient, row, p: dict, look_first: bool) -> Sent:
        writer = self._writer(http, row)
        op = row["operation"]
        if op == "create_task":
            return await writer.create_task(p, look_first)
        if op == "log_email":
            return await writer.log_email(p, look_first)
        if op == "complete_task":
            crm_id = await self.pool.fetchval(
                "SELECT crm_id FROM crm_records WHERE connection = $1 AND object_type = 'task' AND our_key = $2",
                row["destination"], p["task_key"])
            if crm_id is None:
                create = await self.pool.fetchrow(
                    "SELECT status, last_error FROM deliveries WHERE idem_key = $1", p["create_key"])
                if create is None or create["status"] == "failed":
                    raise Refused("the CRM task was never created" + (f" ({create['last_error']})" if create else ""))
                raise Retry("waiting for the CRM task to be created first", None, DEPENDENCY_RETRY_SECONDS, ours=True)
            return await writer.set_task_status(crm_id, p["status"])
        if op == "update_account":
            return await self._update_account(writer, row, p)
        raise Refused(f"unknown CRM operation {op!r}")

    async def _update_account(self, writer, row, p: dict) -> Sent:
        values = await account_values(self.pool, row["account_id"], p["properties"], p.get("phase_playbooks") or [])
        previous = await self.pool.fetchval(
            "SELECT payload -> 'written' FROM deliveries WHERE destination = $1 AND account_id = $2"
            " AND operation = 'update_account' AND status = 'delivered' AND payload ? 'written'"
            " ORDER BY delivered_at DESC, id DESC LIMIT 1", row["destination"], row["account_id"])
        await self.pool.execute("UPDATE deliveries SET payload = payload || jsonb_build_object('written', $2::jsonb)"
                                " WHERE id = $1", row["id"], values)
        if not values:
            return Sent(remote_id=p["company_id"], detail="nothing known yet to write")
        if previous == values:
            return Sent(remote_id=p["company_id"], detail="unchanged since the last write: nothing sent")
        return await writer.update_account(p["company_id"], values)


def _replays_of(workflow_id: str) -> int | None:
    """The replay number a DeliverItem workflow id carries (`delivery-7` is 0, `delivery-7-r2` is 2);
    None for an id of another shape (then no replay check)."""
    match = re.fullmatch(r"delivery-\d+(?:-r(\d+))?", workflow_id or "")
    if match is None:
        return None
    return int(match.group(1) or 0)
