"""The outbox: one communications row per e-mail and one recipients row per person it is for.

The rows are written, with the rendered message and a Message-ID derived from the idempotency
key, before any SMTP conversation; each recipient's row then records what became of it (sent,
suppressed, refused, deferred, stopped, later bounced). A retry finds the rows and only goes on
with the recipients not yet settled, so nobody gets an e-mail twice and nobody is forgotten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parseaddr

import asyncpg

from activities.addresses import AddressProblem, address_key, format_for_display, parse_address
from activities.common import not_retryable
from activities.mail_links import new_token
from activities.playbook_store import full_template
from activities.meetings import invitation, meeting_uid
from core.models import Account, EmailResult, EmailTemplate, Meeting, Person, PlayRef, RecipientOutcome, StaffMember
from playbooks.rendering import RenderError, email_context, render_email

FINAL = ("sent", "suppressed", "failed", "stopped")
SETTLED = ("sent", "suppressed", "refused", "bounced", "stopped")


@dataclass(frozen=True)
class Recipient:
    kind: str  # to, cc
    person: Person
    customer: bool


def message_id_for(key: str, mail_from: str) -> str:
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def our_people(account: Account | None, staff: dict[str, StaffMember]) -> set[str]:
    """Address keys of our own staff: never customers, whatever role put them on an e-mail."""
    keys = {address_key(str(m.email)) for m in staff.values()}
    if account is not None:
        keys.add(address_key(str(account.csm.email)))
    return keys


def recipients_of(to: list[Person], cc: list[Person], ours: set[str]) -> list[Recipient]:
    """To then Cc, each person once (To wins), customers told apart from our staff."""
    seen: set[str] = set()
    out = []
    for kind, people in (("to", to), ("cc", cc)):
        for p in people:
            key = address_key(str(p.email))
            if key not in seen:
                seen.add(key)
                out.append(Recipient(kind, p, key not in ours))
    return out


def legacy_category(play: PlayRef) -> str:
    """The class of an e-mail from a play launched before classes were in the content."""
    if play.workflow_id.startswith("sla-"):
        return "transactional"
    if play.workflow_id.startswith(("nps-cycle-", "nps-")):
        return "survey"
    return "lifecycle"


async def create_outbox_row(pool: asyncpg.Pool, mail_from: str, play: PlayRef, step: str, template: EmailTemplate,
                            recipients: list[Recipient], data: dict, account: Account | None,
                            staff: dict[str, StaffMember], meeting: Meeting | None,
                            inbound_domain: str) -> tuple[asyncpg.Record | None, list[dict]]:
    """Render and store the e-mail and its recipients: (row, recipients) when written now, (None, [])
    when a row for the step was there already (a retry, or a concurrent twin)."""
    key = play.key(step)
    to = [r.person for r in recipients if r.kind == "to"]
    if not to:
        raise not_retryable(f"step {step!r} has nobody to send to", "NoRecipient")
    customers = [r for r in recipients if r.customer]
    category = "internal" if not customers else (template.category or legacy_category(play))
    if category == "internal" and customers:
        category = legacy_category(play)
    template = await full_template(pool, template)  # a light play's template: its sources from the stored version
    try:
        subject, html, text = render_email(template, email_context(account, staff, step, data, to[0]))
    except RenderError as exc:
        raise not_retryable(f"template {exc}", "TemplateError") from None
    calendar = None
    if meeting is not None and customers:
        organizer = account.csm if account is not None else None
        sender_name, sender_addr = parseaddr(mail_from)
        calendar = invitation(
            meeting.model_copy(update={"title": meeting.title or subject}),
            meeting_uid(key, inbound_domain),
            (organizer.name, str(organizer.email)) if organizer else (sender_name, sender_addr),
            [(r.person.name, _ascii_or_raw(str(r.person.email))) for r in customers],
            text[:2000], datetime.now(timezone.utc),
        )
    # Two statements, not a transaction: a crash between them leaves a row without recipients,
    # which the retry fills in (add_recipients is idempotent).
    row = await pool.fetchrow(
        """
        INSERT INTO communications (idem_key, workflow_id, play_id, step, account_id, template, message_id,
            mail_from, to_addrs, cc_addrs, subject, body_html, body_text, attempts, category, reply_token,
            calendar)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15, $16)
        ON CONFLICT (idem_key) DO NOTHING RETURNING *
        """,
        key, play.workflow_id, play.play_id, step, play.account_id or None, template.name,
        message_id_for(key, mail_from), mail_from,
        [format_for_display(r.person.name, str(r.person.email)) for r in recipients if r.kind == "to"],
        [format_for_display(r.person.name, str(r.person.email)) for r in recipients if r.kind == "cc"],
        subject, html, text, category, new_token() if category != "internal" else None, calendar,
    )
    if row is None:
        return None, []
    return row, await add_recipients(pool, row["id"], recipients)


async def add_recipients(conn: asyncpg.Connection | asyncpg.Pool, communication_id: int,
                         recipients: list[Recipient]) -> list[dict]:
    """The recipients' rows of a message (one statement); an address that cannot be used is refused at
    once, with why. Also fills them in for a message written before recipients had rows of their own.
    Returns every recipient row of the message, in order."""
    cols: list[list] = [[] for _ in range(9)]
    for position, r in enumerate(recipients):
        status, reason = "pending", ""
        try:
            parse_address(str(r.person.email), r.person.name)
        except AddressProblem as exc:
            status, reason = "refused", str(exc)
        for col, value in zip(cols, (position, r.kind, r.person.name, str(r.person.email),
                                     address_key(str(r.person.email)), r.customer, status, reason, new_token())):
            col.append(value)
    rows = await conn.fetch(
        "INSERT INTO communication_recipients (communication_id, position, kind, name, address, address_key,"
        " customer, status, reason, token)"
        " SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[],"
        " $8::text[], $9::text[], $10::text[])"
        " ON CONFLICT (communication_id, address_key) DO NOTHING RETURNING *",
        communication_id, *cols,
    )
    if len(rows) < len(recipients):  # a twin wrote some: read them all
        return [dict(r) for r in await recipients_rows(conn, communication_id)]
    return sorted((dict(r) for r in rows), key=lambda r: r["position"])


def _ascii_or_raw(address: str) -> str:
    try:
        parsed = parse_address(address)
        return parsed.envelope(parsed.needs_smtputf8)
    except AddressProblem:
        return address


async def recipients_rows(conn: asyncpg.Pool | asyncpg.Connection, communication_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM communication_recipients WHERE communication_id = $1 ORDER BY position",
                            communication_id)


async def settle(conn: asyncpg.Pool | asyncpg.Connection, recipient: dict, status: str, reason: str = "", *,
                 retry_at: datetime | None = None, sent_at: datetime | None = None, attempted: bool = False) -> None:
    """Record a recipient's outcome, in the table and in `recipient` (the caller's copy of its row).
    `sent_at`: when it went (its place under the weekly cap, if not taken before)."""
    row = await conn.fetchrow(
        "UPDATE communication_recipients SET status = $2, reason = $3, retry_at = $4,"
        " sent_at = CASE WHEN $5::timestamptz IS NOT NULL THEN coalesce(sent_at, $5)"
        " WHEN $2 IN ('suppressed', 'refused', 'stopped') THEN NULL ELSE sent_at END,"
        " attempts = attempts + $6::int, updated_at = now() WHERE id = $1"
        " RETURNING status, reason, retry_at, sent_at, attempts",
        recipient["id"], status, reason, retry_at, sent_at, 1 if attempted else 0,
    )
    recipient.update(dict(row))


def message_outcome(recips: list) -> tuple[str, str, datetime | None]:
    """(message status, reason, deferred until) from its recipients' rows."""
    waiting = [r for r in recips if r["status"] in ("pending", "deferred")]
    if waiting:
        due = [r["retry_at"] for r in waiting if r["retry_at"] is not None]
        reasons = "; ".join(dict.fromkeys(r["reason"] for r in waiting if r["reason"]))
        return "deferred", reasons, min(due) if due else None
    if any(r["status"] in ("sent", "bounced") for r in recips):
        status = "sent"
    elif any(r["status"] == "suppressed" for r in recips) and not any(r["status"] == "refused" for r in recips):
        status = "suppressed"
    elif recips and all(r["status"] == "stopped" for r in recips):
        status = "stopped"
    else:
        status = "failed"
    unreached = [f"{r['address']}: {r['status']} ({r['reason']})" if r["reason"] else f"{r['address']}: {r['status']}"
                 for r in recips if r["status"] in ("suppressed", "refused", "stopped")]
    return status, "; ".join(unreached), None


def result_of(row: asyncpg.Record, recips: list, already: bool) -> EmailResult:
    status, reason, until = message_outcome(recips) if recips else (row["status"], row["reason"], None)
    outcome = {"pending": "deferred"}.get(status, status)
    return EmailResult(
        communication_id=row["id"], message_id=row["message_id"], to=list(row["to_addrs"]), already_sent=already,
        outcome=outcome, reason=reason, deferred_until=until,
        recipients=[RecipientOutcome(name=r["name"], address=r["address"], kind=r["kind"], customer=r["customer"],
                                     status=r["status"], reason=r["reason"]) for r in recips],
    )


# The `ev` CTE that writes the `email.sent` play event of each outbox row of a `done` CTE (the rows
# just finished, RETURNING communications.*) that went out and belongs to an account; one key per
# message, so a repeated finish writes nothing twice. Used by Mailer._finish and a survey batch's finish.
EMAIL_SENT_EVENTS = """ev AS (
    INSERT INTO play_events (event_key, event, account_id, workflow_id, play_id, step, playbook, occurred_at, title, data)
    SELECT idem_key || '/email.sent', 'email.sent', account_id, workflow_id, play_id, step,
           split_part(workflow_id, '-', 1), sent_at, left('E-mail sent: ' || subject, 500),
           jsonb_build_object('communication_id', id, 'template', template, 'subject', subject,
                              'to', to_jsonb(to_addrs), 'cc', to_jsonb(cc_addrs), 'message_id', message_id)
    FROM done WHERE done.status = 'sent' AND done.account_id IS NOT NULL
    ON CONFLICT (event_key) DO NOTHING RETURNING 1)"""
