"""What the Temporal Web UI shows for a play: readable names for steps and recipients.

Pure functions (no Temporal calls), used by workflows/play.py for activity and timer summaries
and the play's current details. Summaries are user metadata: they never change a command.
"""

from __future__ import annotations

import re

from core.models import Account, Person


def recipients(to: list, cc: list, people: list[Person] | None = None, account: Account | None = None) -> str:
    """Who an e-mail goes to: "3 contacts (sponsor, contacts), cc csm". Roles are counted from the
    account as loaded (`contacts` is every contact of it; csm, sponsor and a staff role count one);
    `people` are named recipients (an NPS respondent)."""
    roles = [str(r) for r in to]
    contacts = len(account.contacts) if account is not None else 0
    count = len(people or []) + sum(contacts if r == "contacts" else 1 for r in roles)
    names = [p.name for p in people or []][:2] + roles
    head = f"{count} contact{'s' if count != 1 else ''} ({', '.join(names)})" if names else "nobody"
    return head + (f", cc {', '.join(str(c) for c in cc)}" if cc else "")


def describe_step(step: str) -> str:
    """A step id as a person reads it: "email/kickoff-summary" -> "the kickoff-summary e-mail"."""
    parts = [p for p in step.split("/") if p]
    if not parts or " " in step:
        return step
    kind, rest = parts[0], " ".join(parts[1:])
    named = {"email": "e-mail", "phase": "phase", "escalation": "escalation", "churn-risk": "churn-risk mark",
             "blocker": "blocker alert", "step": "step", "breach": "breach", "followup": "follow-up",
             "comms": "ticket e-mail"}
    if kind in named and rest:
        return f"the {rest} {named[kind]}"
    return "the " + " ".join(parts)


def markdown_text(text: str) -> str:
    """`text` on one line with Markdown's markup characters escaped: names, subjects and reasons
    come from CRMs, customers and people, and the Temporal UI renders details as Markdown."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", " ".join(str(text).split()))
