"""Many one-recipient e-mails of one template at once: an NPS survey batch (issue 17's and 18's goals).

`Mailer.deliver` sends one e-mail in about six statements and a log line. A survey batch sends a
thousand e-mails of one template, one contact each, so here the same outbox is written in bulk:

- one attempt of a batch at a time: the batch holds a PostgreSQL advisory lock named after it on
  its own connection (which also carries its statements), so a second attempt started while the
  first still runs (a missed heartbeat) waits for it instead of sending beside it;
- the communications rows of the batch in one statement and their recipients rows in another,
  before any SMTP conversation (ON CONFLICT DO NOTHING: a row written before, by an earlier attempt
  of the batch, is left alone and that e-mail goes through `Mailer.deliver`, which goes on with it
  exactly as a retry does, or answers "already sent");
- each copy's outcome as soon as the relay answered, written together with the outcomes of the
  copies in flight beside it (`OutcomeWriter`, a group commit): a copy is marked before its e-mail
  counts as done, so a crash still resends only copies the relay took and whose row was not marked
  yet, with the same Message-ID, as before;
- every message's final status and its `email.sent` event in one statement at the end (a crash
  before it leaves settled recipients, which a retry finishes without sending anything);
- one log line per batch (the caller's), the rendering context's staff part built once, heartbeats
  at most once a second;
- in chunks of CHUNK e-mails (rendered, written, sent, finished), so that memory does not grow with
  the batch size.

A suppressed contact is written as such in the same two statements (with the reason the batch's
bulk check gave). Whatever is not the plain case (a row that existed, an address that cannot be
written, one that needs SMTPUTF8, a recipient who is one of our staff) goes through the one-by-one
path, so its rules live in one place.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.addresses import AddressProblem, address_key, format_for_display, parse_address
from activities.common import activity_now, not_retryable, play_logger
from activities.mail_links import new_token
from activities.outbox import EMAIL_SENT_EVENTS, legacy_category, message_id_for, message_outcome, our_people
from activities.playbook_store import full_template
from core.metrics import count
from core.models import CUSTOMER_CATEGORIES, Account, EmailTemplate, Person, PlayRef, StaffMember
from playbooks.rendering import RenderError, render_email

CLAIM_SEED = 5108517  # the advisory-lock namespace of batch claims
CLAIM_POLL_SECONDS = 0.5
# An earlier attempt of a batch is cancelled within about a heartbeat timeout (60 s) of its last heartbeat;
# a lock held longer than this belongs to a session nobody is behind any more.
CLAIM_WAIT_SECONDS = 180.0
HEARTBEAT_EVERY = 1.0  # seconds: the SDK sends one per 80% of the heartbeat timeout (60 s) anyway
YIELD_EVERY = 50  # e-mails rendered between two turns of the event loop (other activities, heartbeats)
CHUNK = 250  # e-mails rendered, written and sent together: 4 statements, a few MB of messages


@dataclass
class OneEmail:
    """One e-mail of a batch: to `person` about `account`, keyed by (`play`, `step`). `blocked`: why the
    batch's bulk check found the address suppressed (recorded, not sent), None to send it."""

    play: PlayRef
    step: str
    person: Person
    account: Account
    data: dict
    blocked: str | None = None


class OutcomeWriter:
    """Recipients' outcomes, written as `outbox.settle` writes them but several in one statement: while
    one write is in flight, the outcomes that come in meanwhile wait and go in the next (group commit).
    Each `settle` returns once its own outcome is in the table. `conn`: the batch's own connection (one
    statement at a time on it, which is what a group commit does anyway). (`id = ANY(...)` besides the
    join: the planner takes unnest() for 100 rows and would hash-join a sequential scan of the table.)"""

    _SQL = """
        UPDATE communication_recipients r SET status = t.status, reason = t.reason, retry_at = t.retry_at,
            sent_at = CASE WHEN t.sent_at IS NOT NULL THEN coalesce(r.sent_at, t.sent_at)
                           WHEN t.status IN ('suppressed', 'refused', 'stopped') THEN NULL ELSE r.sent_at END,
            attempts = r.attempts + t.tried, updated_at = now()
        FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[])
            AS t(id, status, reason, retry_at, sent_at, tried)
        WHERE r.id = ANY($1::bigint[]) AND r.id = t.id
        RETURNING r.id, r.status, r.reason, r.retry_at, r.sent_at, r.attempts
    """

    def __init__(self, conn: asyncpg.Connection | asyncpg.Pool):
        self.conn = conn
        self.statements = 0
        self._queue: list[tuple] = []
        self._writer: asyncio.Task | None = None

    async def settle(self, recipient: dict, status: str, reason: str = "", *, retry_at: datetime | None = None,
                     sent_at: datetime | None = None, attempted: bool = False) -> None:
        done = asyncio.get_running_loop().create_future()
        self._queue.append((recipient, status, reason, retry_at, sent_at, 1 if attempted else 0, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                rows = await self.conn.fetch(
                    self._SQL, [item[0]["id"] for item in batch], [item[1] for item in batch],
                    [item[2] for item in batch], [item[3] for item in batch], [item[4] for item in batch],
                    [item[5] for item in batch])
                self.statements += 1
            except BaseException as exc:  # noqa: BLE001 - each waiting e-mail gets the error (the batch is retried)
                for item in batch:
                    if not item[-1].done():
                        item[-1].set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            written = {r["id"]: r for r in rows}
            for item in batch:
                recipient, done = item[0], item[-1]
                row = written.get(recipient["id"])
                if row is not None:
                    recipient.update(dict(row))
                if not done.done():
                    done.set_result(None)

    async def drain(self) -> None:
        """Wait until every outcome handed in is written (or failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])


class BatchContext:
    """The rendering context of `playbooks.rendering.email_context`, with the parts every e-mail of a
    batch shares (staff, each account) dumped once instead of once per e-mail."""

    def __init__(self, staff: dict[str, StaffMember]):
        self.staff = {role: member.model_dump(mode="python") for role, member in staff.items()}
        self._accounts: dict[str, dict] = {}

    def __call__(self, account: Account, step: str, data: dict, recipient: Person) -> dict:
        acct = self._accounts.get(account.id)
        if acct is None:
            acct = self._accounts[account.id] = account.model_dump(mode="python")
            acct["tier"] = account.tier
        return {"account": acct, "csm": acct["csm"], "sponsor": acct["sponsor"], "contacts": acct["contacts"],
                "staff": self.staff, "recipient": recipient.model_dump(mode="python"), "step": step, "data": data}


class _Heartbeat:
    """The batch's heartbeats: at most one a second (each one costs a task and an encoding in the SDK)."""

    def __init__(self):
        self.done, self._last = 0, 0.0

    def tick(self, done: int = 1) -> None:
        self.done += done
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_EVERY and activity.in_activity():
            self._last = now
            activity.heartbeat(self.done)


async def deliver_batch(mailer, template: EmailTemplate, emails: list[OneEmail], staff: dict[str, StaffMember],
                        claim: str) -> list[str]:
    """Send each of `emails` once per (play, step): "sent" (or deferred by a soft bounce), "already" (sent
    or settled before: a retried batch), "suppressed" (recorded with why, now or before), in order.
    `claim` names the batch: a second attempt of it (a retry while the first still runs) waits for the
    first to end, then finds its e-mails settled. Raises what `Mailer.deliver` raises (the first error; the e-mails not yet
    started are left for the retry); an e-mail nobody could be reached by fails the batch
    non-retryably, after the others were sent and recorded."""
    if not emails:
        return []
    pool = mailer.pool
    template = await full_template(pool, template)
    async with pool.acquire() as conn:
        held = await _claim(conn, claim, emails[0].play)
        try:
            return await _deliver(mailer, conn, template, emails, staff)
        finally:
            if held:
                with suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, $2))", claim, CLAIM_SEED)


async def _claim(conn: asyncpg.Connection, claim: str, play: PlayRef) -> bool:
    """Hold the batch's lock (session-level, on the batch's connection: a worker that dies drops it), waiting
    for an earlier attempt that holds it. A holder still there after CLAIM_WAIT_SECONDS is taken for a
    session whose worker host vanished (PostgreSQL notices only at its TCP keepalive): go on without it."""
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, $2))", claim, CLAIM_SEED):
        if time.monotonic() > deadline:
            play_logger("email", play).warning("email.batch_claim_stale", claim=claim, waited=CLAIM_WAIT_SECONDS)
            return False
        if activity.in_activity():
            activity.heartbeat()
        await asyncio.sleep(CLAIM_POLL_SECONDS)
    return True


async def _deliver(mailer, conn: asyncpg.Connection, template: EmailTemplate, emails: list[OneEmail],
                   staff: dict[str, StaffMember]) -> list[str]:
    """The batch in chunks of CHUNK e-mails (rendered, written, sent, finished), so that a batch of
    5,000 holds no more rendered messages in memory than a chunk's."""
    settings = mailer.settings
    beat = _Heartbeat()
    context, staff_keys = BatchContext(staff), our_people(None, staff)
    writer = OutcomeWriter(conn)
    outcomes: dict[int, str] = {}
    gate = asyncio.Semaphore(settings.email_batch_concurrency)
    log = play_logger("email", emails[0].play)
    now = activity_now()
    failures: list[ApplicationError] = []
    errors: list[BaseException] = []
    keys: set[str] = set()
    twice: list[int] = []  # a key met before in this batch (an address two accounts share): afterwards
    mine: dict[int, tuple[dict, dict]] = {}

    async def send(i: int) -> None:
        async with gate:
            if errors:
                return  # the batch fails: what is not started waits for the retry
            try:
                if i in mine:
                    row, r = mine[i]
                    if r["status"] == "pending":
                        await mailer._send_one(row, r, mailer._listed([r]), False, log, now, record=writer.settle)
                    outcomes[i] = "suppressed" if emails[i].blocked else "sent"
                else:  # written before (a retry), or not the plain case: as one e-mail
                    e = emails[i]
                    result = await mailer.deliver(e.play, e.step, template, [e.person], [], e.data, e.account,
                                                  staff, checks=e.blocked is not None)
                    outcomes[i] = "suppressed" if e.blocked else "already" if result.already_sent else "sent"
            except ApplicationError as exc:
                if not exc.non_retryable:
                    errors.append(exc)
                failures.append(exc)
            except Exception as exc:  # noqa: BLE001 - kept, raised once every started e-mail is recorded
                errors.append(exc)
        beat.tick()

    for start in range(0, len(emails), CHUNK):
        chunk = [i for i in range(start, min(start + CHUNK, len(emails)))]
        rows, recips, plain = [], [], []
        for i in chunk:
            e = emails[i]
            key = e.play.key(e.step)
            if key in keys:
                twice.append(i)
                continue
            keys.add(key)
            if i % YIELD_EVERY == 0:
                beat.tick(0)
                await asyncio.sleep(0)  # a turn for the worker's other work (workflows, heartbeats)
            written = _render_one(settings, template, e, key, context, staff_keys)
            if written is not None:
                rows.append(written[0])
                recips.append(written[1])
                plain.append(i)
        mine = {i: w for i, w in zip(plain, await _write_outbox(conn, rows, recips)) if w is not None}
        await asyncio.gather(*(send(i) for i in chunk if i not in twice))
        await writer.drain()
        await _finish_many(conn, [w for i, w in mine.items() if i in outcomes], now)
        failures += [not_retryable(f"nobody could be reached: {row['reason']}", "Undeliverable")
                     for row, _ in mine.values() if row["status"] == "failed"]
        if errors:
            raise errors[0]
    mine = {}
    for i in twice:  # the first e-mail with its key is settled by now: this one finds it so
        await send(i)
    if errors:
        raise errors[0]
    if failures:
        raise failures[0]
    return [outcomes[i] for i in range(len(emails))]


def _render_one(settings, template: EmailTemplate, e: OneEmail, key: str, context: BatchContext,
                staff_keys: set[str]) -> tuple[dict, dict] | None:
    """The e-mail's communications and recipients rows, rendered, when it is the plain case (a customer's
    address that plain SMTP can carry); None for the one-by-one path."""
    email = str(e.person.email)
    category = template.category or legacy_category(e.play)
    if address_key(email) in staff_keys | {address_key(str(e.account.csm.email))} \
            or category not in CUSTOMER_CATEGORIES:
        return None  # one of our staff: an internal e-mail, as the one-by-one path decides
    try:
        listed = parse_address(email, e.person.name)
    except AddressProblem:
        return None  # refused with why by the one-by-one path
    if listed.needs_smtputf8:
        return None
    try:
        subject, html, text = render_email(template, context(e.account, e.step, e.data, e.person))
    except RenderError as exc:
        raise not_retryable(f"template {exc}", "TemplateError") from None
    row = {
        "idem_key": key, "workflow_id": e.play.workflow_id, "play_id": e.play.play_id, "step": e.step,
        "account_id": e.play.account_id or None, "template": template.name,
        "message_id": message_id_for(key, settings.mail_from), "mail_from": settings.mail_from,
        "to_addrs": [format_for_display(e.person.name, email)], "cc_addrs": [], "subject": subject,
        "body_html": html, "body_text": text, "status": "pending", "attempts": 1, "category": category,
        "reason": "", "reply_token": new_token(), "calendar": None, "deferred_until": None, "sent_at": None,
    }
    recipient = {
        "position": 0, "kind": "to", "name": e.person.name, "address": email, "address_key": listed.key,
        "customer": True, "status": "suppressed" if e.blocked else "pending", "reason": e.blocked or "",
        "token": new_token(), "attempts": 0, "retry_at": None, "sent_at": None,
    }
    return row, recipient


async def _write_outbox(conn: asyncpg.Connection, rows: list[dict],
                        recips: list[dict]) -> list[tuple[dict, dict] | None]:
    """The communications rows and their recipients rows, two statements in all. Returns, per row,
    (row, recipient) as written now, or None where a row with its key was there before."""
    if not rows:
        return []
    written = await conn.fetch(
        """
        INSERT INTO communications (idem_key, workflow_id, play_id, step, account_id, template, message_id,
            mail_from, to_addrs, subject, body_html, body_text, attempts, category, reply_token)
        SELECT k, w, p, s, a, t, m, $7::text, ARRAY[d], sub, h, x, 1, c, rt
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::text[],
                    $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
            AS u(k, w, p, s, a, t, m, d, sub, h, x, c, rt)
        ON CONFLICT (idem_key) DO NOTHING RETURNING id, idem_key, created_at
        """,
        [r["idem_key"] for r in rows], [r["workflow_id"] for r in rows], [r["play_id"] for r in rows],
        [r["step"] for r in rows], [r["account_id"] for r in rows], [r["template"] for r in rows],
        rows[0]["mail_from"] if rows else "", [r["message_id"] for r in rows], [r["to_addrs"][0] for r in rows],
        [r["subject"] for r in rows], [r["body_html"] for r in rows], [r["body_text"] for r in rows],
        [r["category"] for r in rows], [r["reply_token"] for r in rows],
    )
    by_key = {w["idem_key"]: w for w in written}
    out: list[tuple[dict, dict] | None] = []
    new_rows, new_recips = [], []
    for row, r in zip(rows, recips):
        w = by_key.get(row["idem_key"])
        if w is None:
            out.append(None)
            continue
        row.update(id=w["id"], created_at=w["created_at"])
        r["communication_id"] = w["id"]
        new_rows.append(row)
        new_recips.append(r)
        out.append((row, r))
    if new_recips:
        ids = await conn.fetch(
            "INSERT INTO communication_recipients (communication_id, position, kind, name, address, address_key,"
            " customer, status, reason, token)"
            " SELECT c, 0, 'to', n, a, k, true, s, why, t FROM unnest($1::bigint[], $2::text[], $3::text[],"
            " $4::text[], $5::text[], $6::text[], $7::text[]) AS u(c, n, a, k, s, why, t)"
            " RETURNING id, communication_id, updated_at",
            [r["communication_id"] for r in new_recips], [r["name"] for r in new_recips],
            [r["address"] for r in new_recips], [r["address_key"] for r in new_recips],
            [r["status"] for r in new_recips], [r["reason"] for r in new_recips], [r["token"] for r in new_recips],
        )
        by_comm = {x["communication_id"]: x for x in ids}
        for r in new_recips:
            x = by_comm[r["communication_id"]]
            r.update(id=x["id"], updated_at=x["updated_at"])
    return out


async def _finish_many(conn: asyncpg.Connection, done: list[tuple[dict, dict]], now: datetime) -> None:
    """Each message's status from its recipient (as `Mailer._finish` does for one) and, for those sent,
    their `email.sent` play events: one statement."""
    if not done:
        return
    ids, statuses, reasons, untils = [], [], [], []
    for row, r in done:
        status, reason, until = message_outcome([r])
        row.update(status=status, reason=reason[:2000], deferred_until=until)
        ids.append(row["id"])
        statuses.append(status)
        reasons.append(reason[:2000])
        untils.append(until)
    await conn.execute(
        """
        WITH done AS (
            UPDATE communications c SET status = u.status, reason = u.reason, deferred_until = u.until,
                updated_at = now(),
                sent_at = CASE WHEN u.status = 'sent' THEN coalesce(c.sent_at, $5) ELSE c.sent_at END
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS u(id, status, reason, until)
            WHERE c.id = ANY($1::bigint[]) AND c.id = u.id RETURNING c.*),
        """ + EMAIL_SENT_EVENTS + """
        SELECT pg_notify('play_events', '') FROM (SELECT 1 FROM ev LIMIT 1) AS any_event
        """,
        ids, statuses, reasons, untils, now,
    )
    sent = statuses.count("sent")
    if sent:
        count("emails_sent", sent, template=done[0][0]["template"])
    for status in ("suppressed", "failed"):
        if statuses.count(status):
            count(f"emails_{status}", statuses.count(status), template=done[0][0]["template"])
