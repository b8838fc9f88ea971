"""The inbound SMTP listener (aiosmtpd): bounces, complaints, replies and unsubscribes by mail.

Every outbound copy names its recipient in a return path `bounce+<token>@INBOUND_MAIL_DOMAIN`
(VERP), every customer e-mail carries a Reply-To `reply+<token>@...`, and List-Unsubscribe a
`mailto:unsubscribe+<token>@...`. The domain's MX points here. This listener:

- accepts only those mailboxes, with a token that exists (RCPT: 550 5.1.1 otherwise, and
  550 5.7.1 for any other domain: it relays nothing);
- reads the message with the `email` package: a bounce address must get a delivery status
  notification (RFC 3464) or a feedback report (RFC 5965); anything else there is refused
  with 550 5.6.0, and a success notice (Action: delivered) is accepted and dropped;
- records what came (`inbound_mail`, once per token and Message-ID) and starts an `InboundMail`
  play for it, which does the rest durably (suppress, tell the CSM, retry a soft bounce). If
  PostgreSQL or Temporal is down it answers 451 (try again later): the sending MTA retries.

Run on its own with `python -m starter.inbound_mail` (./run.sh starts it); tests start it in
their own event loop with `start_listener`.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal

import asyncpg
from aiosmtpd.smtp import SMTP
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.dsn import NotUnderstood, body_text, is_automatic, parse_message, read_report, sender_of
from activities.mail_links import mailbox_token
from core.logs import configure_logging, get_logger
from core.settings import Settings, get_settings
from workflows.inbound import InboundMail
from workflows.inbound_messages import InboundInput, inbound_workflow_id

log = get_logger("inbound_mail")
TRY_LATER = "451 4.3.0 temporary failure: try again later"


class InboundHandler:
    """aiosmtpd handler; `pool`, `client` and `settings` are the product's."""

    def __init__(self, pool: asyncpg.Pool, client: Client, settings: Settings, task_queue: str | None = None):
        self.pool, self.client, self.settings = pool, client, settings
        self.task_queue = task_queue or settings.task_queue

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        local, _, domain = address.rpartition("@")
        if domain.lower().rstrip(".") != self.settings.inbound_mail_domain.lower():
            return "550 5.7.1 relaying denied: this server only takes mail for its own mailboxes"
        found = mailbox_token(local)
        if found is None:
            return "550 5.1.1 no such mailbox"
        try:
            known = await self._message_of(*found)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return TRY_LATER
        if known is None:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def _message_of(self, kind: str, token: str) -> asyncpg.Record | None:
        """(communication id, recipient id or None, account id) a token stands for."""
        if kind == "reply":
            return await self.pool.fetchrow(
                "SELECT id AS communication_id, NULL::bigint AS recipient_id, account_id FROM communications"
                " WHERE reply_token = $1", token)
        return await self.pool.fetchrow(
            "SELECT r.communication_id, r.id AS recipient_id, c.account_id FROM communication_recipients r"
            " JOIN communications c ON c.id = r.communication_id WHERE r.token = $1", token)

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = parse_message(raw)
        events = []
        try:
            for rcpt in envelope.rcpt_tos:
                kind, token = mailbox_token(rcpt.rpartition("@")[0])
                event = self._event(kind, token, msg, raw, envelope.mail_from or "")
                if event is not None:
                    events.append(event)
        except NotUnderstood as exc:
            log.info("inbound.refused", reason=str(exc), mail_from=(envelope.mail_from or "")[:200])
            return f"550 {exc}"
        try:
            for event in events:
                await self._record_and_start(event)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RPCError) as exc:
            log.warning("inbound.try_later", error=f"{type(exc).__name__}: {exc}")
            return TRY_LATER
        return "250 2.6.0 thank you"

    def _event(self, kind: str, token: str, msg, raw: bytes, envelope_from: str) -> dict | None:
        """What this message says to this mailbox, as an `inbound_mail` row; None: nothing to act on."""
        from_name, from_address = sender_of(msg)
        message_id = str(msg.get("Message-ID", "")).strip()[:500]
        event = {"token": token, "envelope_from": envelope_from[:500], "from_name": from_name[:200],
                 "from_address": from_address[:320], "subject": " ".join(str(msg.get("Subject", "")).split())[:500],
                 "message_id": message_id, "raw_size": len(raw), "status_code": "", "action": "", "diagnostic": "",
                 "reporting_mta": "", "body_text": "", "lookup": "reply" if kind == "reply" else "recipient"}
        if kind == "bounce":
            report = read_report(msg)
            if report is None:
                raise NotUnderstood("5.6.0 this address only takes delivery status notifications (RFC 3464) "
                                    "and feedback reports (RFC 5965)")
            if report.kind == "feedback":
                event.update(kind="complaint", action=report.feedback_type, reporting_mta=report.reporting_mta[:300])
            else:
                block = report.recipients[0]
                event.update(kind={"bounce": "bounce", "soft": "bounce", "delay": "delay"}.get(block.kind, ""),
                             status_code=block.status, action=block.action, diagnostic=block.diagnostic,
                             reporting_mta=(report.reporting_mta or block.remote_mta)[:300])
                if not event["kind"]:
                    return None  # a delivered / relayed notice: good news, nothing to do
        elif kind == "reply":
            event.update(kind="reply", body_text=body_text(msg),
                         action="automatic" if is_automatic(msg) else "")
        else:
            event.update(kind="unsubscribe")
        digest = message_id or hashlib.sha256(raw).hexdigest()
        event["dedupe_key"] = f"{event['kind']}:{token}:{digest}"[:900]
        return event

    async def _record_and_start(self, event: dict) -> None:
        kind = "reply" if event.pop("lookup") == "reply" else "recipient"
        found = await self._message_of("reply" if kind == "reply" else "bounce", event["token"])
        if found is None:
            return
        inbound_id = await self.pool.fetchval(
            """
            INSERT INTO inbound_mail (kind, dedupe_key, token, communication_id, recipient_id, account_id,
                envelope_from, from_address, from_name, subject, message_id, status_code, action, diagnostic,
                reporting_mta, body_text, raw_size)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
            ON CONFLICT (dedupe_key) DO UPDATE SET dedupe_key = EXCLUDED.dedupe_key RETURNING id
            """,
            event["kind"], event["dedupe_key"], event["token"], found["communication_id"], found["recipient_id"],
            found["account_id"], event["envelope_from"], event["from_address"], event["from_name"],
            event["subject"], event["message_id"], event["status_code"], event["action"], event["diagnostic"],
            event["reporting_mta"], event["body_text"], event["raw_size"],
        )
        # Started once per row: a redelivered message finds its play there and changes nothing.
        await self.client.start_workflow(
            InboundMail.run, InboundInput(inbound_id=inbound_id), id=inbound_workflow_id(inbound_id),
            task_queue=self.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"inbound {event['kind']} for account {found['account_id']} (message {inbound_id})",
        )
        log.info("inbound.received", kind=event["kind"], inbound_id=inbound_id, status=event["status_code"])


async def start_listener(pool: asyncpg.Pool, client: Client, settings: Settings, host: str | None = None,
                         port: int | None = None, task_queue: str | None = None) -> asyncio.base_events.Server:
    """The listener on this event loop (close the returned server to stop it)."""
    handler = InboundHandler(pool, client, settings, task_queue)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, data_size_limit=settings.inbound_max_bytes, enable_SMTPUTF8=True,
                     hostname=settings.inbound_mail_domain, ident="csplay inbound"),
        host=host or settings.inbound_smtp_host, port=port or settings.inbound_smtp_port,
    )


async def main() -> None:
    from activities.db import create_pool, database_url
    from core.temporal import connect

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    pool = await create_pool(database_url(settings), 4)
    client = await connect(settings)
    server = await start_listener(pool, client, settings)
    log.info("inbound.listening", host=settings.inbound_smtp_host, port=settings.inbound_smtp_port,
             domain=settings.inbound_mail_domain)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
