"""The checks every customer e-mail passes at send time, not at plan time.

- Suppression: an address on the suppression list (or opted out in the CRM) gets no e-mail of
  the kinds it is suppressed for. A `survey` or `lifecycle` suppression stops that kind, `all`
  (an unsubscribe from everything, a complaint, a CRM opt-out) every non-transactional e-mail,
  `undeliverable` (a hard bounce) every e-mail. Transactional mail ignores all but the last.
- Frequency cap: at most `cap` customer e-mails per address per rolling 7 days, across all
  plays. Transactional mail is never held (it counts all the same); a lifecycle e-mail over the
  cap waits until the oldest of the week's e-mails is 7 days old; a survey e-mail also waits
  while a lifecycle e-mail to the same address is waiting, so lifecycle goes first.

Both work on address keys (`activities.addresses.address_key`) in bulk, so a survey batch of a
thousand contacts costs a few queries, not a few thousand.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from activities.addresses import key_forms

WEEK = timedelta(days=7)
# After a waiting lifecycle e-mail is due, a survey to the same person waits this much longer.
SURVEY_AFTER_LIFECYCLE = timedelta(hours=1)
BLOCKED_BY = {
    "transactional": ("undeliverable",),
    "lifecycle": ("lifecycle", "all", "undeliverable"),
    "survey": ("survey", "all", "undeliverable"),
}
REASON_WORDS = {
    "unsubscribed": "unsubscribed", "hard_bounce": "the address bounced", "complaint": "marked our e-mail as spam",
    "manual": "suppressed by hand", "crm_opt_out": "opted out in the CRM",
}


async def suppressions_for(conn: asyncpg.Pool | asyncpg.Connection, addresses: list[str],
                           category: str) -> dict[str, str]:
    """address (as given) -> why it is suppressed for `category`, for those that are."""
    if category not in BLOCKED_BY or not addresses:
        return {}
    forms = {form: address for address in addresses for form in key_forms(address)}
    rows = await conn.fetch(
        "SELECT address_key, category, reason, source, created_at FROM suppressions"
        " WHERE address_key = ANY($1::text[]) AND category = ANY($2::text[]) ORDER BY created_at",
        list(forms), list(BLOCKED_BY[category]),
    )
    found: dict[str, str] = {}
    for r in rows:
        found.setdefault(forms[r["address_key"]], f"{REASON_WORDS[r['reason']]} ({r['category']}, "
                                                  f"{r['source']}, {r['created_at']:%Y-%m-%d})")
    if category != "transactional":
        opted = await conn.fetch(
            "SELECT DISTINCT lower(email) AS key FROM contacts WHERE email_opt_out AND lower(email) = ANY($1::text[])",
            list(forms),
        )
        for r in opted:
            found.setdefault(forms[r["key"]], REASON_WORDS["crm_opt_out"])
    return found


async def cap_holds(conn: asyncpg.Pool | asyncpg.Connection, keys: list[str], category: str, cap: int,
                    now: datetime, exclude_communication: int | None = None) -> dict[str, datetime]:
    """address key -> the earliest moment an e-mail of `category` may go to it, for those over the cap."""
    if category not in ("lifecycle", "survey") or cap <= 0 or not keys:
        return {}
    rows = await conn.fetch(
        "SELECT address_key, sent_at FROM communication_recipients"
        " WHERE address_key = ANY($1::text[]) AND customer AND sent_at > $2 AND communication_id <> $3"
        " ORDER BY address_key, sent_at",
        keys, now - WEEK, exclude_communication or 0,
    )
    sent: dict[str, list[datetime]] = {}
    for r in rows:
        sent.setdefault(r["address_key"], []).append(r["sent_at"])
    holds = {key: times[len(times) - cap] + WEEK for key, times in sent.items() if len(times) >= cap}
    if category == "survey":
        waiting = await conn.fetch(
            "SELECT r.address_key, min(r.retry_at) AS due FROM communication_recipients r"
            " JOIN communications c ON c.id = r.communication_id"
            " WHERE r.address_key = ANY($1::text[]) AND r.status = 'deferred' AND c.category = 'lifecycle'"
            " GROUP BY r.address_key",
            keys,
        )
        for r in waiting:
            after = max(r["due"] or now, now) + SURVEY_AFTER_LIFECYCLE
            holds[r["address_key"]] = max(holds.get(r["address_key"], after), after)
    return holds


def soft_bounce_delay(attempts: int) -> timedelta:
    """Back-off before the next try after `attempts` soft bounces: 15 min, 1 h, 4 h, 12 h, 24 h."""
    return [timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4), timedelta(hours=12),
            timedelta(hours=24)][min(max(attempts, 1), 5) - 1]
