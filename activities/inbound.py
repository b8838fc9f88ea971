"""Acting on mail that came back (issue 17): the activities of the InboundMail play.

- A hard bounce (a DSN with Action failed and a 5.x.x status): the recipient is marked
  bounced, the address suppressed for every e-mail (`undeliverable`), and the CSM gets a task
  to fix it in the CRM.
- A soft bounce (failed with 4.x.x: the remote side gave up on a temporary problem): the
  recipient is tried again after 15 min, 1 h, 4 h, 12 h, 24 h (EMAIL_SOFT_BOUNCE_ATTEMPTS
  attempts in all), then given up and the CSM told.
- A delay notice (Action: delayed): noted on the timeline; the remote MTA keeps trying.
- A complaint (ARF): the address is suppressed for every non-transactional e-mail (`all`), and
  the CSM gets a task: the customer marked our e-mail as spam.
- A reply: on the account's timeline, and e-mailed to the CSM (common/reply_notice.html.j2); an
  automatic reply (out of office) is only noted. A reply stops the follow-ups of the e-mail it
  answers: the send-time check of each follow-up finds it.
- An unsubscribe by mail (List-Unsubscribe mailto): like the one-click link.

Each writes idempotently (one suppression per address and category, one task per recipient and
kind, one notice per inbound message), so a retried activity does nothing twice.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities.accounts import fetch_account, fetch_staff
from activities.common import activity_now, play_logger
from activities.email import Mailer
from activities.mail_events import suppress, task_for_csm
from activities.mail_policy import soft_bounce_delay
from activities.outbox import recipients_rows, settle
from core.metrics import count
from core.models import PlayRef
from core.settings import Settings
from playbooks.loader import standalone_template
from workflows.inbound_messages import InboundOutcome

REPLY_NOTICE = "common/reply_notice.html.j2"
REPLY_SUBJECT = "Reply from {{ data.from_name or data.from_address }} ({{ account.name }}): {{ data.subject }}"


class InboundActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool, self.settings = pool, settings
        self.mailer = Mailer(pool, settings)

    async def _load(self, inbound_id: int):
        row = await self.pool.fetchrow("SELECT * FROM inbound_mail WHERE id = $1", inbound_id)
        comm = await self.pool.fetchrow("SELECT * FROM communications WHERE id = $1", row["communication_id"])
        recipient = None
        if row["recipient_id"] is not None:
            recipient = dict(await self.pool.fetchrow("SELECT * FROM communication_recipients WHERE id = $1",
                                                      row["recipient_id"]))
        return row, comm, recipient

    async def _done(self, row, outcome: str, retry_at=None) -> InboundOutcome:
        await self.pool.execute("UPDATE inbound_mail SET processed_at = coalesce(processed_at, now()), outcome = $2"
                                " WHERE id = $1", row["id"], outcome)
        play = PlayRef(workflow_id=f"inbound-{row['id']}", play_id=str(row["id"]), account_id=row["account_id"] or "")
        play_logger("inbound", play).info("inbound.applied", kind=row["kind"], outcome=outcome)
        return InboundOutcome(kind=row["kind"], outcome=outcome, retry_at=retry_at)

    @activity.defn(name="apply_inbound_mail")
    async def apply_inbound_mail(self, inbound_id: int) -> InboundOutcome:
        row, comm, recipient = await self._load(inbound_id)
        kind = row["kind"]
        if kind in ("bounce", "complaint"):
            soft = kind == "bounce" and (row["status_code"] or "5").startswith("4")
            count("emails_bounced", kind="complaint" if kind == "complaint" else "soft" if soft else "hard")
        if kind == "bounce":
            return await self._bounce(row, comm, recipient)
        if kind == "delay":
            return await self._done(row, f"delayed ({row['status_code']}): the receiving side is still trying")
        if kind == "complaint":
            if recipient["customer"]:
                await suppress(self.pool, recipient["address_key"], "all", "complaint", "arf", "feedback report",
                               comm["account_id"], f"{row['action']} report by {row['reporting_mta'] or 'a mailbox provider'}")
                await task_for_csm(self.pool, comm, f"complaint/{recipient['token']}",
                                   f"{recipient['name']} marked our e-mail as spam",
                                   f"{recipient['address']} reported '{comm['subject']}' as spam. No more non-"
                                   "transactional e-mail goes to them; talk to them another way.", priority="P1")
            return await self._done(row, "complaint: suppressed from all non-transactional e-mail; CSM told")
        if kind == "unsubscribe":
            category = comm["category"] if comm["category"] in ("lifecycle", "survey") else "all"
            await suppress(self.pool, recipient["address_key"], category, "unsubscribed", "mailto",
                           recipient["address"], comm["account_id"])
            return await self._done(row, f"unsubscribed from {category} e-mail")
        return await self._reply(row, comm)

    async def _bounce(self, row, comm, recipient: dict) -> InboundOutcome:
        status = row["status_code"] or "5.0.0"
        why = f"{status} {row['diagnostic']}".strip()
        if status.startswith("4"):
            attempts = recipient["attempts"]
            if attempts < self.settings.email_soft_bounce_attempts:
                retry_at = activity_now() + soft_bounce_delay(attempts)
                await settle(self.pool, recipient, "deferred", f"soft bounce {why}; trying again", retry_at=retry_at)
                return await self._done(row, f"soft bounce: sent again at {retry_at:%Y-%m-%d %H:%M} UTC", retry_at)
            await settle(self.pool, recipient, "refused", f"gave up after {attempts} soft bounces: {why}")
            await task_for_csm(self.pool, comm, f"bounce/{recipient['token']}",
                               f"E-mail to {recipient['name']} <{recipient['address']}> keeps bouncing",
                               f"'{comm['subject']}' could not be delivered after {attempts} attempts ({why}).")
            return await self._done(row, "soft bounces exhausted: given up; CSM told")
        await settle(self.pool, recipient, "bounced", why)
        if recipient["customer"]:
            await suppress(self.pool, recipient["address_key"], "undeliverable", "hard_bounce", "dsn",
                           row["reporting_mta"] or "dsn", comm["account_id"], why)
            reporter = row["reporting_mta"] or "the receiving server"
            await task_for_csm(self.pool, comm, f"bounce/{recipient['token']}",
                               f"E-mail address bounced: {recipient['name']} <{recipient['address']}>",
                               f"'{comm['subject']}' bounced ({why}, reported by {reporter}). Nothing more is "
                               "sent to this address: fix the contact in the CRM.")
        return await self._done(row, "hard bounce: address suppressed; CSM told")

    async def _reply(self, row, comm) -> InboundOutcome:
        if row["action"] == "automatic":
            return await self._done(row, "automatic reply")
        if not comm["account_id"]:
            return await self._done(row, "reply recorded")
        account = await fetch_account(self.pool, comm["account_id"])
        staff = await fetch_staff(self.pool)
        template = standalone_template(REPLY_NOTICE, REPLY_SUBJECT, self.settings.playbooks_dir)
        data = {"from_name": row["from_name"], "from_address": row["from_address"], "subject": row["subject"],
                "text": row["body_text"], "original_subject": comm["subject"], "original_step": comm["step"],
                "stops_follow_ups": True}
        play = PlayRef(workflow_id=comm["workflow_id"], play_id=comm["play_id"], account_id=comm["account_id"])
        await self.mailer.deliver(play, f"inbound/{row['id']}/notify", template, [account.csm], [], data, account,
                                  staff)
        return await self._done(row, "reply recorded; CSM told")

    @activity.defn(name="resend_after_soft_bounce")
    async def resend_after_soft_bounce(self, inbound_id: int) -> InboundOutcome:
        """Send the bounced copy again (suppressions are checked again); another soft refusal backs off further."""
        row, comm, recipient = await self._load(inbound_id)
        if recipient["status"] != "deferred":
            return await self._done(row, f"nothing to resend ({recipient['status']})")
        result = await self.mailer.resume(comm["id"])
        mine = next(r for r in await recipients_rows(self.pool, comm["id"]) if r["id"] == recipient["id"])
        if mine["status"] == "deferred":
            return await self._done(row, f"soft bounce again: sent again at {mine['retry_at']:%Y-%m-%d %H:%M} UTC",
                                    mine["retry_at"])
        return await self._done(row, f"sent again: {mine['status']} ({result.outcome})")
