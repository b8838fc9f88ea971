"""Routing rules for CRM events (`playbooks/triggers.yaml`): which event starts
which playbook, or signals or updates a play already running.

A rule maps fields of the event to the play's input; a mapping value is the
name of an event field (`propertyValue`, `ticketId`, ...) or, after `=`, a
literal (`=crm`). Adding a playbook to the CRM is adding a rule here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from playbooks.schema import Content, Slug

# What each playbook can be started with, and the signals it takes with their fields.
START_FIELDS: dict[str, set[str]] = {
    "churn": set(),
    "onboarding": set(),
    "renewal": {"renewal_date"},
    "sla": {"ticket_id", "priority", "subject", "opened_at"},
}
REQUIRED_START_FIELDS: dict[str, set[str]] = {"sla": {"ticket_id", "priority", "subject"}}
SIGNALS: dict[str, dict[str, set[str]]] = {
    # The churn watch starts itself on its first signal (one per account).
    "churn": {"flag_indicator": {"indicator", "present", "source", "note"}, "read_metrics": {"metric", "value", "source"}},
    "onboarding": {},
    "renewal": {"renewed": {"signed_by", "new_renewal_date"}, "churned": {"recorded_by", "reason"}},
    "sla": {
        "acknowledged": {"by"}, "priority_changed": {"priority", "by"}, "on_hold": {"reason"},
        "resumed": {"by"}, "resolved": {"by", "note"}, "reopened": {"reason"},
    },
}
UPDATES: dict[str, dict[str, set[str]]] = {"renewal": {"change_renewal_date": {"renewal_date", "reason"}}}
# The event fields a mapping may name (see starter/events/routing.CrmEvent).
EVENT_FIELDS = {"eventId", "subscriptionType", "objectId", "accountId", "propertyName", "propertyValue",
                "occurredAt", "ticketId", "priority", "subject"}

PlaybookName = Literal["onboarding", "renewal", "sla", "churn"]


def _check_mapping(what: str, mapping: dict[str, str], allowed: set[str]) -> None:
    for target, source in mapping.items():
        if target not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"{what}.{target}: not a field it takes (it takes: {known})")
        if not source.startswith("=") and source not in EVENT_FIELDS:
            raise ValueError(f"{what}.{target}: {source!r} is not an event field (or a literal written '=value')")


class EventMatch(Content):
    subscription: str = Field(min_length=1, description="the CRM's subscriptionType, e.g. deal.propertyChange")
    property: str | list[str] | None = Field(None, description="propertyName it must change (or one of these)")
    values: list[str] | None = Field(None, min_length=1, description="propertyValue must be one of these")

    def matches(self, subscription: str, prop: str | None, value: str | None) -> bool:
        if subscription != self.subscription:
            return False
        wanted = [self.property] if isinstance(self.property, str) else self.property
        if wanted is not None and prop not in wanted:
            return False
        return self.values is None or (value or "").lower() in {v.lower() for v in self.values}


class Call(Content):
    name: str
    args: dict[str, str] = {}


class Start(Content):
    playbook: PlaybookName
    input: dict[str, str] = {}
    # When the play already runs: leave it (the start is a duplicate) or send it this update.
    if_running: Call | None = None


class SignalPlay(Content):
    playbook: PlaybookName
    name: str
    args: dict[str, str] = {}
    ticket: str | None = Field(None, description="event field with the ticket id (SLA clocks are per ticket)")


class Trigger(Content):
    name: Slug
    when: EventMatch
    start: Start | None = None
    signal: SignalPlay | None = None

    @model_validator(mode="after")
    def _one_action(self) -> "Trigger":
        if (self.start is None) == (self.signal is None):
            raise ValueError("start: a trigger either starts a play or signals one (give start or signal)")
        if self.start is not None:
            playbook = self.start.playbook
            _check_mapping("start.input", self.start.input, START_FIELDS[playbook])
            missing = REQUIRED_START_FIELDS.get(playbook, set()) - set(self.start.input)
            if missing:
                raise ValueError(f"start.input: {playbook} needs {', '.join(sorted(missing))}")
            if self.start.if_running is not None:
                updates = UPDATES.get(playbook, {})
                if self.start.if_running.name not in updates:
                    raise ValueError(f"start.if_running.name: {playbook} has no update "
                                     f"{self.start.if_running.name!r} (it has: {', '.join(updates) or 'none'})")
                _check_mapping("start.if_running.args", self.start.if_running.args, updates[self.start.if_running.name])
        else:
            signals = SIGNALS[self.signal.playbook]
            if self.signal.name not in signals:
                raise ValueError(f"signal.name: {self.signal.playbook} has no signal {self.signal.name!r} "
                                 f"(it has: {', '.join(signals) or 'none'})")
            _check_mapping("signal.args", self.signal.args, signals[self.signal.name])
            if self.signal.playbook == "sla" and self.signal.ticket is None:
                raise ValueError("signal.ticket: an SLA clock is found by its ticket: name the event field")
        return self


class TriggersContent(Content):
    triggers: list[Trigger] = Field(min_length=1)

    def route(self, subscription: str, prop: str | None, value: str | None) -> Trigger | None:
        """The first rule that matches the event, in file order."""
        return next((t for t in self.triggers if t.when.matches(subscription, prop, value)), None)

    @model_validator(mode="after")
    def _unique_names(self) -> "TriggersContent":
        seen: set[str] = set()
        for i, t in enumerate(self.triggers):
            if t.name in seen:
                raise ValueError(f"triggers[{i}].name: trigger {t.name!r} appears twice")
            seen.add(t.name)
        return self
