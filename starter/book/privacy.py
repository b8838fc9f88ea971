"""Erasing a person at the CRM's request (GDPR art. 17; HubSpot `contact.privacyDeletion`).

`erase_contact` removes the person's personal data from our tables in one transaction and
records what it erased, and when, in `privacy_erasures` (counts per table and the CRM id; never
the data itself):

- contacts: name, e-mail address, phone, title gone (the row stays, marked deleted, so a late event
  for the same CRM id cannot bring the person back unnoticed); an account whose sponsor they were
  has none (plays then address its first contact or the CSM);
- the outbox: an e-mail not sent yet to them is dropped (the play's retry sends it to the others,
  or fails that step with a recorded reason if nobody is left); a sent one keeps its date and
  subject, with their address replaced by a pseudonym and its body by a note of the erasure;
- survey answers and invitations: the address becomes the pseudonym, the comment and name go;
  scores stay (anonymous, they still count in NPS);
- task titles and details, escalation reasons: their name and address replaced;
- what the CRM's webhooks told us of them (crm_object_properties) and the bodies of their events.

- the recipients of the outbox's e-mails (a copy not sent yet is stopped) and the mail that came
  back from them (replies, bounces, complaints);

Kept on purpose: the suppression list (an unsubscribe or complaint must go on being honoured if
the address comes back, GDPR art. 21(3); it holds the address and why, nothing else).
Running plays keep working: they read the account at each step. Not erased (say so to the person
asking): Temporal's history of a play that already ran with their name in its input (an NPS
follow-up), and the SMTP server's own logs.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import asyncpg

ERASED = "(erased)"


def pseudonym(connection: str, crm_id: str) -> str:
    """A stable address that names nobody (RFC 2606 `.invalid`), unique per person."""
    return f"erased-{hashlib.sha256(f'{connection}:{crm_id}'.encode()).hexdigest()[:16]}@erased.invalid"


def _scrubber(names: set[str], emails: set[str]):
    words = sorted({n for n in names if n and len(n.strip()) >= 2} | emails, key=len, reverse=True)
    if not words:
        return lambda text: text
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words), re.IGNORECASE)
    return lambda text: pattern.sub(ERASED, text) if text else text


async def erase_contact(pool: asyncpg.Pool, connection: str, crm_id: str, event_id: str,
                        requested_at: datetime, known_emails: set[str] = frozenset(),
                        known_names: set[str] = frozenset()) -> dict[str, int]:
    """Erase the person `connection:crm_id` (plus addresses and names the CRM told us of them);
    returns the rows changed per table. Idempotent: a second run finds nothing left."""
    key = f"{connection}:{crm_id}"
    alias = pseudonym(connection, crm_id)
    done: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction():
        people = await conn.fetch("SELECT id, name, first_name, last_name, email FROM contacts WHERE crm_key = $1"
                                  " FOR UPDATE", key)
        emails = {e.lower() for e in known_emails if e} | {p["email"].lower() for p in people if p["email"]}
        names = set(known_names) | {p["name"] for p in people if p["name"] and p["name"] != ERASED}
        names |= {" ".join(x for x in (p["first_name"], p["last_name"]) if x) for p in people}
        names.discard("")
        scrub = _scrubber(names, emails)
        done["contacts"] = _n(await conn.execute(
            "UPDATE contacts SET name = $2, first_name = NULL, last_name = NULL, email = NULL, title = NULL,"
            " phone = NULL, email_opt_out = true, crm_deleted_at = coalesce(crm_deleted_at, now()),"
            " updated_at = now() WHERE crm_key = $1", key, ERASED))
        email_list = sorted(emails)
        done["account_sponsors"] = _n(await conn.execute(
            "UPDATE accounts SET sponsor_name = NULL, sponsor_email = NULL, updated_at = now()"
            " WHERE lower(sponsor_email) = ANY($1::text[])", email_list))
        # An address is stored as "Name <addr>" (or bare): compare the addr part exactly.
        addressed = ("EXISTS (SELECT 1 FROM unnest(to_addrs || cc_addrs) a"
                     " WHERE lower(coalesce(substring(a from '<([^<>]*)>\\s*$'), a)) = ANY($1::text[]))")
        done["outbox_unsent_dropped"] = _n(await conn.execute(
            f"DELETE FROM communications WHERE status IN ('pending', 'deferred') AND {addressed}", email_list))
        sent = await conn.fetch(f"SELECT id, to_addrs, cc_addrs, subject FROM communications WHERE {addressed}",
                                email_list)
        note = (f"[Erased on {requested_at.date().isoformat()}: the recipient asked for their personal data "
                "to be erased.]")
        for row in sent:
            def swap(addrs):
                return [alias if _address(a) in emails else a for a in addrs]
            await conn.execute(
                "UPDATE communications SET to_addrs = $2, cc_addrs = $3, subject = $4, body_html = $5, body_text = $5"
                " WHERE id = $1", row["id"], swap(row["to_addrs"]), swap(row["cc_addrs"]), scrub(row["subject"]), note)
        done["outbox_sent_erased"] = len(sent)
        # Per-recipient rows (activities/outbox.py): the address and name go; a copy not sent yet is stopped.
        done["outbox_recipients"] = _n(await conn.execute(
            "UPDATE communication_recipients SET name = $3, address = $2, address_key = $2,"
            " status = CASE WHEN status IN ('pending', 'deferred') THEN 'stopped' ELSE status END,"
            " reason = CASE WHEN status IN ('pending', 'deferred') THEN 'the recipient asked for their data to be"
            " erased' ELSE reason END, retry_at = NULL, updated_at = now() WHERE address_key = ANY($1::text[])",
            email_list, alias, ERASED))
        # Mail that came back from them (replies, bounces, complaints): who and what they wrote go.
        done["inbound_mail"] = _n(await conn.execute(
            "UPDATE inbound_mail SET from_address = $2, from_name = $3, envelope_from = $2, body_text = '',"
            " subject = $3, diagnostic = '' WHERE lower(from_address) = ANY($1::text[])"
            " OR recipient_id IN (SELECT id FROM communication_recipients WHERE address_key = $2)",
            email_list, alias, ERASED))
        # Survey rows: the pseudonym keeps (cycle, address) unique and the score counted.
        done["nps_invitations"] = _n(await conn.execute(
            "UPDATE nps_invitations SET contact_email = $2, contact_name = $3"
            " WHERE lower(contact_email) = ANY($1::text[])",
            email_list, alias, ERASED))
        done["nps_responses"] = _n(await conn.execute(
            "UPDATE nps_responses SET contact_email = $2, comment = '' WHERE lower(contact_email) = ANY($1::text[])",
            email_list, alias))
        done["tasks"] = await _scrub_rows(conn, "tasks", ("title", "detail"), names, emails, scrub)
        done["escalations"] = await _scrub_rows(conn, "escalations", ("title", "reason"), names, emails, scrub)
        done["crm_properties"] = _n(await conn.execute(
            "DELETE FROM crm_object_properties WHERE connection = $1 AND object_type = 'contact' AND crm_id = $2",
            connection, crm_id))
        done["crm_events"] = _n(await conn.execute(
            "UPDATE crm_events SET payload = NULL, status = CASE WHEN status IN ('pending', 'waiting') THEN 'done'"
            " ELSE status END, outcome = CASE WHEN status IN ('pending', 'waiting')"
            " THEN 'erased: the person asked for their data to be erased' ELSE outcome END,"
            " wait_connection = NULL, wait_object_type = NULL,"
            " wait_crm_id = NULL, wait_reason = NULL"
            " WHERE connection = $1 AND object_type = 'contact' AND object_id = $2 AND event_id <> $3",
            connection, crm_id, event_id))
        from starter.deliveries_data import erase_person  # chat messages, CRM writes, webhooks about them

        done.update(await erase_person(conn, names, emails, scrub))
        await conn.execute(
            "INSERT INTO privacy_erasures (connection, crm_id, event_id, requested_at, erased)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (event_id) DO NOTHING", connection, crm_id, event_id, requested_at, done)
    return done


async def _scrub_rows(conn: asyncpg.Connection, table: str, columns: tuple[str, str], names: set[str],
                      emails: set[str], scrub) -> int:
    words = sorted({n for n in names if len(n) >= 2} | emails)
    if not words:
        return 0
    like = [f"%{w.lower()}%" for w in words]
    a, b = columns
    rows = await conn.fetch(f"SELECT id, {a}, {b} FROM {table} WHERE lower({a}) LIKE ANY($1::text[])"
                            f" OR lower({b}) LIKE ANY($1::text[])", like)
    for r in rows:
        await conn.execute(f"UPDATE {table} SET {a} = $2, {b} = $3 WHERE id = $1", r["id"], scrub(r[a]), scrub(r[b]))
    return len(rows)


def _address(formatted: str) -> str:
    found = re.search(r"<([^<>]*)>\s*$", formatted)
    return (found.group(1) if found else formatted).strip().lower()


def _n(status: str) -> int:
    return int(status.split()[-1])
