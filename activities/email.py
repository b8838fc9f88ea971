"""Templated e-mail, sent exactly once per play step and recipient.

The communication-log row is the outbox (activities/outbox.py): written, with the rendered
message and a Message-ID derived from the idempotency key, before any SMTP conversation, with
one row per recipient. At send time each customer recipient is checked against the
suppression list and the weekly cap (activities/mail_policy.py); what is left goes to the
relay, one copy per recipient with its own return path (activities/mail_message.py). Each
recipient's outcome is written as it happens, so a retry (worker crash, SMTP outage) goes on
with the recipients not yet settled. The one window left, a crash after the relay accepted a
copy but before its row was marked, resends that copy with the same Message-ID, which
receiving clients use to fold duplicates.

A recipient the relay refuses for good (or whose address cannot be written, an IDN that is
not valid IDNA 2008, a non-ASCII mailbox without SMTPUTF8) is recorded with the reason and the
others still get their copy; only when nobody could be reached does the step fail, and then
non-retryably, saying why.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.accounts import account_for_activity, fetch_staff
from activities.addresses import AddressProblem, parse_address
from activities.common import activity_now, needs_setup, not_retryable, play_logger
from activities.mail_events import suppress, task_for_csm
from activities.mail_message import Listed, build_copy
from activities.mail_policy import cap_holds, soft_bounce_delay, suppressions_for
from activities.outbox import (
    EMAIL_SENT_EVENTS,
    FINAL, SETTLED, add_recipients, create_outbox_row, message_id_for, message_outcome, our_people, recipients_of,
    recipients_rows, result_of, settle,
)
from activities.smtp import SmtpConnections, refusal_of
from core.metrics import count
from core.models import (
    CUSTOMER_CATEGORIES, Account, EmailResult, EmailTemplate, Meeting, Person, PlayRef, SendEmailRequest, StaffMember,
)
from core.settings import Settings

__all__ = ["EmailActivities", "Mailer", "SmtpConnections", "message_id_for", "resolve_roles", "send_report"]


def resolve_roles(roles: list[str], account: Account, staff: dict[str, StaffMember]) -> list[Person]:
    people: list[Person] = []
    for role in roles:
        if role == "csm":
            people.append(account.csm)
        elif role == "sponsor":
            people.append(account.sponsor)
        elif role == "contacts":
            people.extend(Person(name=c.name, email=c.email) for c in account.contacts)
        elif role in staff:
            people.append(staff[role])
        else:
            raise needs_setup(
                f"no staff member has the role {role!r}; add one to the staff table", "StaffRoleMissing"
            )
    unique: dict[str, Person] = {}
    for p in people:
        unique.setdefault(str(p.email).lower(), p)
    return list(unique.values())


class Mailer:
    """Writes the outbox rows, checks each recipient, then talks SMTP. Shared by every activity that e-mails."""

    _connections: dict[tuple, SmtpConnections] = {}

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool, self.settings = pool, settings

    @property
    def smtp(self) -> SmtpConnections:
        # One set of sessions per SMTP server and event loop, shared by every Mailer of the worker.
        s = self.settings
        key = (s.smtp_host, s.smtp_port, s.smtp_username, id(asyncio.get_running_loop()))
        if key not in Mailer._connections:
            Mailer._connections[key] = SmtpConnections(s, s.smtp_sessions)
        return Mailer._connections[key]

    async def deliver(
        self,
        play: PlayRef,
        step: str,
        template: EmailTemplate,
        to: list[Person],
        cc: list[Person],
        data: dict,
        account: Account | None,
        staff: dict[str, StaffMember],
        *,
        send_by: datetime | None = None,
        stop_if_replied: list[str] | None = None,
        meeting: Meeting | None = None,
        checks: bool = True,
    ) -> EmailResult:
        """Send once per (play, step) and recipient. `account` is None for a report about many accounts.
        Returns the outcome (sent, suppressed, deferred until, stopped); raises a non-retryable error
        when nobody could be reached. `checks=False`: the caller checked suppressions and the cap in bulk."""
        log = play_logger("email", play, step)
        recipients = recipients_of(to, cc, our_people(account, staff))
        row, recips = await create_outbox_row(self.pool, self.settings.mail_from, play, step, template, recipients,
                                              data, account, staff, meeting, self.settings.inbound_mail_domain)
        if row is None:  # written before: a retry, or a twin
            row = await self.pool.fetchrow("SELECT * FROM communications WHERE idem_key = $1", play.key(step))
            recips = [dict(r) for r in await recipients_rows(self.pool, row["id"])]
            if not recips and row["status"] not in FINAL:  # written before recipients had rows
                recips = await add_recipients(self.pool, row["id"], recipients)
            if row["status"] in FINAL:
                log.info("email.already_sent", message_id=row["message_id"], status=row["status"])
                return result_of(row, recips, already=True)
            await self.pool.execute("UPDATE communications SET attempts = attempts + 1 WHERE id = $1", row["id"])
        now = activity_now()
        if stop_if_replied and await self._replied(play, stop_if_replied):
            for r in recips:
                if r["status"] not in SETTLED:
                    await settle(self.pool, r, "stopped", "the customer replied to an earlier e-mail")
        elif (send_by is not None and now > send_by and row["category"] in ("lifecycle", "survey")
              and any(r["status"] not in SETTLED for r in recips)):
            log.info("email.window_closed", send_by=send_by.isoformat())
            result = result_of(row, recips, already=False)
            return result.model_copy(update={"outcome": "deferred", "deferred_until": None,
                                             "reason": "the send window closed before it could go"})
        else:
            await self._send_due(row, recips, now, log, checks)
        return await self._finish(row, recips, log, now)

    async def resume(self, communication_id: int) -> EmailResult:
        """Go on with a stored e-mail's recipients that are due (a soft bounce's retry): suppressions are
        checked again; nobody reachable is an outcome here, not an error."""
        row = await self.pool.fetchrow("SELECT * FROM communications WHERE id = $1", communication_id)
        recips = [dict(r) for r in await recipients_rows(self.pool, communication_id)]
        play = PlayRef(workflow_id=row["workflow_id"], play_id=row["play_id"], account_id=row["account_id"] or "")
        log = play_logger("email", play, row["step"])
        now = activity_now()
        await self._send_due(row, recips, now, log, checks=True)
        try:
            return await self._finish(row, recips, log, now)
        except ApplicationError:
            return result_of(row, recips, already=False)

    async def _replied(self, play: PlayRef, steps: list[str]) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT 1 FROM inbound_mail i JOIN communications c ON c.id = i.communication_id"
            " WHERE i.kind = 'reply' AND i.outcome <> 'automatic reply' AND c.workflow_id = $1 AND c.play_id = $2"
            " AND c.step = ANY($3::text[]) LIMIT 1",
            play.workflow_id, play.play_id, steps,
        ))

    async def _send_due(self, row: asyncpg.Record, recips: list[dict], now: datetime, log, checks: bool) -> None:
        category = row["category"]
        due = [r for r in recips if r["status"] == "pending" or (r["status"] == "deferred" and
                                                                 (r["retry_at"] is None or r["retry_at"] <= now))]
        customers = [r for r in due if r["customer"]]
        if checks and customers and category in CUSTOMER_CATEGORIES:
            blocked = await suppressions_for(self.pool, [r["address"] for r in customers], category)
            for r in customers:
                if r["address"] in blocked:
                    await settle(self.pool, r, "suppressed", blocked[r["address"]])
            due = [r for r in due if r["status"] != "suppressed"]
            due = await self._apply_cap(row, due, now)
        listed = self._listed(recips)
        needs_utf8 = [e for e in listed if e.address.needs_smtputf8]
        smtputf8 = bool(needs_utf8) and await self.smtp.offers_smtputf8()
        if needs_utf8 and not smtputf8:
            # Nobody can be sent a header naming them; they are refused before any copy goes.
            for r in due:
                entry = next((e for e in needs_utf8 if e.address.key == r["address_key"]), None)
                if entry is not None:
                    try:
                        entry.address.envelope(False)
                    except AddressProblem as exc:
                        await settle(self.pool, r, "refused", str(exc))
            listed = [e for e in listed if not e.address.needs_smtputf8]
            due = [r for r in due if r["status"] != "refused"]
        for r in due:
            await self._send_one(row, r, listed, smtputf8, log, now)

    async def _apply_cap(self, row: asyncpg.Record, due: list[dict], now: datetime) -> list[dict]:
        """Claim each customer's place under the weekly cap, or defer them until there is one. Claims for
        one address are serialised (an advisory lock per address), so two plays cannot both take the last place."""
        keys = sorted({r["address_key"] for r in due if r["customer"]})
        if not keys:
            return due
        cap = self.settings.email_weekly_cap
        async with self.pool.acquire() as conn, conn.transaction():
            for k in keys:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7246017))", k)
            holds = await cap_holds(conn, keys, row["category"], cap, now, exclude_communication=row["id"])
            going = []
            for r in due:
                if r["customer"] and r["address_key"] in holds:
                    await settle(conn, r, "deferred", f"weekly cap of {cap} e-mails reached",
                                 retry_at=holds[r["address_key"]])
                    continue
                if r["customer"]:
                    await conn.execute("UPDATE communication_recipients SET sent_at = coalesce(sent_at, $2)"
                                       " WHERE id = $1", r["id"], now)  # the place under the cap is taken
                going.append(r)
        return going

    def _listed(self, recips: list[dict]) -> list[Listed]:
        """Who the To and Cc headers name: everyone the message is (still) going to."""
        out = []
        for r in recips:
            if r["status"] in ("pending", "deferred", "sent", "bounced"):
                try:
                    out.append(Listed(r["kind"], parse_address(r["address"], r["name"])))
                except AddressProblem:
                    pass
        return out

    async def _send_one(self, row, r: dict, listed: list[Listed], smtputf8: bool, log, now: datetime,
                        record=None) -> None:
        """One copy to the relay and its outcome. `record(recipient, status, reason, **when)` writes the
        outcome (default: `outbox.settle`, one statement; a survey batch's group commit passes its own);
        a refusal is recorded as `_refused` says. A failure without an answer about this recipient is
        raised: the activity (or the batch) is retried."""
        if record is None:
            async def record(recipient, status, reason="", **when):
                await settle(self.pool, recipient, status, reason, **when)
        try:
            copy = build_copy(row, r, listed, self.settings, smtputf8)
        except (AddressProblem, StopIteration) as exc:
            await record(r, "refused", str(exc) or "the address cannot be written")
            return
        try:
            await self.smtp.sendmail(copy.sender, copy.recipient, copy.data, copy.smtputf8)
        except Exception as exc:
            refusal = refusal_of(exc)
            if refusal is None:
                raise  # no answer about this recipient: the activity is retried
            await self._refused(row, r, refusal, log, now)
            return
        await record(r, "sent", sent_at=now, attempted=True)

    async def _refused(self, row, r: dict, refusal, log, now: datetime) -> None:
        attempts = r["attempts"] + 1
        if not refusal.permanent and attempts < self.settings.email_soft_bounce_attempts:
            retry = now + soft_bounce_delay(attempts)
            await settle(self.pool, r, "deferred", f"soft bounce {refusal}; trying again", retry_at=retry,
                         attempted=True)
            log.warning("email.soft_bounce", recipient=r["address"], reply=str(refusal), retry_at=retry.isoformat())
            return
        why = str(refusal) if refusal.permanent else f"gave up after {attempts} soft bounces: {refusal}"
        await settle(self.pool, r, "refused", why, attempted=True)
        log.warning("email.refused", recipient=r["address"], reply=str(refusal))
        if refusal.mailbox_gone and r["customer"]:
            await suppress(self.pool, r["address_key"], "undeliverable", "hard_bounce", "smtp", "relay",
                           row["account_id"], why)
            await task_for_csm(self.pool, row, f"bounce/{r['token']}",
                               f"E-mail address bounced: {r['name']} <{r['address']}>",
                               f"The mail relay refused {r['address']} ({why}) for '{row['subject']}'. "
                               "Nothing more is sent to it: fix the contact's address in the CRM.")

    async def _finish(self, row: asyncpg.Record, recips: list[dict], log, now: datetime) -> EmailResult:
        status, reason, until = message_outcome(recips)
        # An e-mail about an account that went out is also news for chat, CRM write-back and webhook
        # subscribers (activities/play_events.py): `email.sent` is recorded in the same statement, so
        # both happen or neither, and a retry records it once (its event key).
        row = await self.pool.fetchrow(
            """
            WITH done AS (
                UPDATE communications SET status = $2, reason = $3, deferred_until = $4, updated_at = now(),
                    sent_at = CASE WHEN $2 = 'sent' THEN coalesce(sent_at, $5) ELSE sent_at END
                WHERE id = $1 RETURNING *),
            """ + EMAIL_SENT_EVENTS + """,
            notified AS (SELECT pg_notify('play_events', '') FROM ev)
            SELECT done.*, (SELECT count(*) FROM notified) AS _events FROM done
            """,
            row["id"], status, reason[:2000], until, now,
        )
        if status == "sent":
            count("emails_sent", template=row["template"])
        elif status in ("suppressed", "failed"):
            count(f"emails_{status}", template=row["template"])
        result = result_of(row, recips, already=False)
        event = {"sent": "email.sent", "deferred": "email.deferred"}.get(status, f"email.{status}")
        log.info(event, message_id=row["message_id"], to=list(row["to_addrs"]), subject=row["subject"],
                 reason=reason, deferred_until=until.isoformat() if until else None)
        if status == "failed":
            raise not_retryable(f"nobody could be reached: {reason}", "Undeliverable")
        return result


class EmailActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool = pool
        self.mailer = Mailer(pool, settings)

    @activity.defn(name="send_templated_email")
    async def send_templated_email(self, req: SendEmailRequest) -> EmailResult:
        account = await account_for_activity(self.pool, req.play.account_id)
        staff = await fetch_staff(self.pool)
        to = [*req.people, *resolve_roles(req.to, account, staff)]
        cc = resolve_roles(req.cc, account, staff)
        return await self.mailer.deliver(req.play, req.step, req.template, to, cc, req.data, account, staff,
                                         send_by=req.send_by, stop_if_replied=req.stop_if_replied,
                                         meeting=req.meeting)


async def send_report(pool: asyncpg.Pool, settings: Settings, report_id: str, period: str, template: EmailTemplate,
                      to: list[str], data: dict) -> bool:
    """E-mail a report about many accounts to staff roles, once per report and period; True if sent before."""
    staff = await fetch_staff(pool)
    people = resolve_roles(to, None, staff)
    if not people:
        raise not_retryable("the report has nobody to go to: add the roles to the staff table", "NoRecipient")
    play = PlayRef(workflow_id=f"report-{report_id}", play_id=period, account_id="")
    result = await Mailer(pool, settings).deliver(play, "report", template, people, [], data, None, staff)
    return result.already_sent
