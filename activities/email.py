"""Templated e-mail, sent exactly once per play step.

The communication-log row is the outbox: it is written, with the rendered
message and a Message-ID derived from the idempotency key, before the SMTP
conversation, and marked sent after it. A retry (worker crash, SMTP outage)
finds the row and either stops (already sent) or sends the same stored
message again. The one window left, a crash after the SMTP server accepted
the message but before the row was marked, resends with the same
Message-ID, which receiving clients use to fold duplicates.
"""

from __future__ import annotations

import asyncio
import email.errors
import hashlib
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

import aiosmtplib
import asyncpg
from temporalio import activity

from activities.accounts import account_for_activity, fetch_staff
from activities.common import needs_setup, not_retryable, play_logger
from core.metrics import count
from core.models import Account, EmailResult, EmailTemplate, Person, PlayRef, SendEmailRequest, StaffMember
from core.settings import Settings
from core.text import header_safe
from playbooks.rendering import RenderError, email_context, render_email


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


class Unsendable(Exception):
    """An e-mail no retry can send; `reason` is recorded on its outbox row and in the play."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def address(person: Person) -> str:
    """`Name <e-mail>` for a header: a display name from outside loses CR, LF, control characters
    and bidi overrides (core.text.header_safe), so it can neither add a header nor fail the send."""
    return formataddr((header_safe(person.name, 200), str(person.email)))


def message_id_for(key: str, mail_from: str) -> str:
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


class SmtpConnections:
    """Open SMTP sessions, reused from one e-mail to the next: a new connection per
    message was a third of the cost of a 1,000-contact survey batch. A session the
    server dropped is replaced once; a second failure is the activity's to retry."""

    def __init__(self, settings: Settings, size: int = 8):
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        client = aiosmtplib.SMTP(hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                                 password=password, start_tls=s.smtp_starttls, timeout=s.smtp_timeout_seconds)
        await client.connect()
        return client

    async def send(self, msg: EmailMessage) -> None:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            for attempt in (1, 2):
                fresh = client is None
                if fresh:
                    client = await self._connect()
                try:
                    await client.send_message(msg)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError):
                    client.close()
                    client = None
                    if fresh or attempt == 2:
                        raise
                    continue
                except Exception:
                    client.close()  # a refused message leaves the session in an unknown state
                    raise
                self._idle.append(client)
                return


class Mailer:
    """Writes the outbox row, then talks SMTP. Shared by every activity that e-mails."""

    _connections: dict[tuple, SmtpConnections] = {}

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool, self.settings = pool, settings

    @property
    def smtp(self) -> SmtpConnections:
        # One set of sessions per SMTP server and event loop, shared by every Mailer of the worker.
        s = self.settings
        key = (s.smtp_host, s.smtp_port, s.smtp_username, id(asyncio.get_running_loop()))
        if key not in Mailer._connections:
            Mailer._connections[key] = SmtpConnections(s)
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
    ) -> EmailResult:
        """Send once per (play, step). `account` is None for a report about many accounts."""
        log = play_logger("email", play, step)
        key = play.key(step)
        row = await self.pool.fetchrow("SELECT * FROM communications WHERE idem_key = $1", key)
        if row is None:
            if not to:
                raise not_retryable(f"step {step!r} has nobody to send to", "NoRecipient")
            to_emails = {str(p.email).lower() for p in to}
            cc = [p for p in cc if str(p.email).lower() not in to_emails]
            try:
                subject, html, text = render_email(template, email_context(account, staff, step, data, to[0]))
            except RenderError as exc:
                raise not_retryable(f"template {exc}", "TemplateError") from None
            # The new row counts this first attempt; a concurrent twin finds it and goes the long way.
            row = await self.pool.fetchrow(
                """
                INSERT INTO communications (idem_key, workflow_id, play_id, step, account_id, template,
                    message_id, mail_from, to_addrs, cc_addrs, subject, body_html, body_text, attempts)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)
                ON CONFLICT (idem_key) DO NOTHING RETURNING *
                """,
                key, play.workflow_id, play.play_id, step, play.account_id or None, template.name,
                message_id_for(key, self.settings.mail_from), self.settings.mail_from,
                [address(p) for p in to],
                [address(p) for p in cc],
                subject, html, text,
            )
            counted = row is not None
            if row is None:
                row = await self.pool.fetchrow("SELECT * FROM communications WHERE idem_key = $1", key)
        else:
            counted = False
        result = EmailResult(
            communication_id=row["id"], message_id=row["message_id"], to=list(row["to_addrs"]),
            already_sent=row["status"] == "sent",
        )
        if result.already_sent:
            log.info("email.already_sent", message_id=row["message_id"])
            return result
        if row["status"] == "failed":
            raise not_retryable(f"this e-mail cannot be sent: {row['failure']}", "UnsendableEmail")
        if not counted:
            await self.pool.execute("UPDATE communications SET attempts = attempts + 1 WHERE id = $1", row["id"])
        try:
            await self._smtp_send(row)
        except Unsendable as exc:
            # Sending again cannot help: record why on the outbox row and fail the step for good.
            await self.pool.execute("UPDATE communications SET status = 'failed', failure = $2 WHERE id = $1",
                                    row["id"], exc.reason)
            log.warning("email.unsendable", message_id=row["message_id"], reason=exc.reason)
            raise not_retryable(f"this e-mail cannot be sent: {exc.reason}", "UnsendableEmail") from None
        await self._mark_sent(row, account is not None)
        count("emails_sent", template=row["template"])
        log.info("email.sent", message_id=row["message_id"], to=list(row["to_addrs"]), subject=row["subject"])
        return result

    async def _mark_sent(self, row: asyncpg.Record, about_account: bool) -> None:
        """Mark the row sent and, for an e-mail about an account, record `email.sent` in the same
        statement (activities/play_events.py): both happen, or neither."""
        if not about_account:
            await self.pool.execute("UPDATE communications SET status = 'sent', sent_at = now() WHERE id = $1",
                                    row["id"])
            return
        data = {"communication_id": row["id"], "template": row["template"], "subject": row["subject"],
                "to": list(row["to_addrs"]), "cc": list(row["cc_addrs"]), "message_id": row["message_id"]}
        await self.pool.execute(
            """
            WITH sent AS (UPDATE communications SET status = 'sent', sent_at = now() WHERE id = $1
                          RETURNING idem_key, workflow_id, play_id, step, account_id, sent_at),
                 ev AS (INSERT INTO play_events (event_key, event, account_id, workflow_id, play_id, step, playbook,
                                                 occurred_at, title, data)
                        SELECT idem_key || '/email.sent', 'email.sent', account_id, workflow_id, play_id, step,
                               split_part(workflow_id, '-', 1), sent_at, $2, $3::jsonb FROM sent
                        ON CONFLICT (event_key) DO NOTHING RETURNING 1)
            SELECT pg_notify('play_events', '') FROM ev
            """,
            row["id"], f"E-mail sent: {row['subject']}"[:500], data)

    async def _smtp_send(self, row: asyncpg.Record) -> None:
        """Raises Unsendable when the message cannot be written or the server refuses it for good
        (a 5xx reply, RFC 5321 section 4.2.1); a 4xx reply or a lost connection is retried."""
        try:
            msg = EmailMessage()
            msg["From"] = row["mail_from"]
            msg["To"] = ", ".join(row["to_addrs"])
            if row["cc_addrs"]:
                msg["Cc"] = ", ".join(row["cc_addrs"])
            msg["Subject"] = row["subject"]
            msg["Message-ID"] = row["message_id"]
            msg["Date"] = format_datetime(row["created_at"])
            msg["X-Playbook-Workflow"] = row["workflow_id"]
            msg["X-Playbook-Step"] = row["step"]
            msg.set_content(row["body_text"])
            msg.add_alternative(row["body_html"], subtype="html")
        except (ValueError, TypeError, email.errors.MessageError) as exc:
            raise Unsendable(f"the message cannot be written: {header_safe(str(exc), 300)}") from None
        try:
            await self.smtp.send(msg)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(500 <= r.code < 600 for r in exc.recipients):
                raise Unsendable("every recipient was refused: " + "; ".join(
                    f"{r.recipient}: {r.code} {header_safe(r.message, 200)}" for r in exc.recipients)) from None
            raise
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            if 500 <= exc.code < 600:
                raise Unsendable(f"the mail server refused it: {exc.code} {header_safe(exc.message, 300)}") from None
            raise


class EmailActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool = pool
        self.mailer = Mailer(pool, settings)

    @activity.defn(name="send_templated_email")
    async def send_templated_email(self, req: SendEmailRequest) -> EmailResult:
        account = await account_for_activity(self.pool, req.play.account_id)
        staff = await fetch_staff(self.pool)
        to = resolve_roles(req.to, account, staff)
        cc = resolve_roles(req.cc, account, staff)
        return await self.mailer.deliver(req.play, req.step, req.template, to, cc, req.data, account, staff)


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
