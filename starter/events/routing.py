"""The one internal CRM event and what it does: trigger rules (playbooks/triggers.yaml) start,
update or signal plays.

Every vendor adapter ends here with a `CrmEvent` in HubSpot's vocabulary (`deal.propertyChange
dealstage=closedwon`, `ticket.creation`, `ticket.propertyChange hs_ticket_priority=P1`, ...)
naming our account. `plan` decides without side effects (and refuses a bad value naming the
field); `act` starts, updates or signals through starter/steering, idempotently: workflow ids are
deterministic, a second start finds the play running, and a signal to a play that has not
started yet is answered with `WaitFor` (the event waits, see starter/events/pipeline.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from core.text import error_message
from activities.churn import signal_watch
from core.models import Priority
from core.settings import Settings
from playbooks.loader import TRIGGERS_FILE, load_triggers
from playbooks.triggers import Trigger, TriggersContent
from starter import steering
from starter.security.audit import Actor, audit
from starter.adapters.common import WebhookRefused
from starter.steering import SteeringError
from workflows import messages
from workflows.churn_messages import IndicatorFlag, MetricsReading, churn_workflow_id
from workflows.onboarding_messages import onboarding_workflow_id
from workflows.renewal_messages import ChangeRenewalDate, Churned, Renewed, renewal_workflow_id
from workflows.sla_messages import (
    TICKET_ID, Acknowledged, OnHold, PriorityChanged, Reopened, Resolved, Resumed, sla_workflow_id,
)


class MetricChange(messages.Message):
    """One metric as the CRM sends it; becomes a reading for the churn watch."""

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    value: float
    source: str = "crm"


SIGNAL_MODELS: dict[str, type[messages.Message]] = {
    "flag_indicator": IndicatorFlag, "read_metrics": MetricChange,
    "renewed": Renewed, "churned": Churned, "acknowledged": Acknowledged, "priority_changed": PriorityChanged,
    "on_hold": OnHold, "resumed": Resumed, "resolved": Resolved, "reopened": Reopened,
}


class CrmEvent(BaseModel):
    """One internal event (HubSpot-style). `occurredAt` is milliseconds since the epoch (UTC);
    `accountId` is ours. Fields a CRM adds (portalId, attemptNumber, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    eventId: str = Field(min_length=1, max_length=300)
    subscriptionType: str = Field(min_length=1, max_length=100)
    occurredAt: int = Field(gt=0, le=253_402_300_799_999,  # up to 9999-12-31T23:59:59.999Z
                            description="milliseconds since the epoch")
    accountId: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    objectId: str | None = None
    propertyName: str | None = Field(None, max_length=100)
    propertyValue: str | None = Field(None, max_length=1000)
    ticketId: str | None = Field(None, pattern=TICKET_ID)
    priority: Priority | None = None
    subject: str | None = Field(None, max_length=500)

    @field_validator("priority")
    @classmethod
    def _profile_priority(cls, v: str | None) -> str | None:
        from playbooks.profiles import active_profile

        keys = active_profile().priority_keys
        if v is not None and v not in keys:
            raise ValueError(f"{v!r} is not a priority ({', '.join(keys)})")
        return v

    @field_validator("eventId", "objectId", mode="before")
    @classmethod
    def _id_as_text(cls, v):
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurredAt / 1000, tz=timezone.utc)

    def value_of(self, source: str) -> Any:
        if source.startswith("="):
            return source[1:]
        return self.occurred if source == "occurredAt" else getattr(self, source)


@dataclass
class Plan:
    """What one event will do, decided before anything is done."""

    event: CrmEvent
    trigger: Trigger | None
    workflow_id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    update_args: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger_name(self) -> str | None:
        return self.trigger.name if self.trigger else None


@dataclass
class WaitFor(Exception):
    """The event cannot act yet: it waits for this object (connection '*' and object 'play' for a
    play that has not started)."""

    connection: str
    object_type: str
    crm_id: str
    reason: str
    done: list[str] = field(default_factory=list)  # what the event did before it had to wait

    def __str__(self) -> str:
        return self.reason


def _mapped(event: CrmEvent, mapping: dict[str, str], what: str) -> dict[str, Any]:
    out = {}
    for target, source in mapping.items():
        value = event.value_of(source)
        if value is None:
            raise WebhookRefused(422, f"{source}: missing, and trigger {what} needs it for {target}")
        out[target] = value
    return out


def _typed(model: type[BaseModel], args: dict[str, Any], mapping: dict[str, str]) -> BaseModel:
    """A message from an event's fields, validated in the active organisation profile (its priorities)."""
    from playbooks.profiles import active_profile

    try:
        return model.model_validate(args, context=active_profile().context)
    except ValidationError as exc:
        err = exc.errors()[0]
        target = str(err["loc"][0]) if err["loc"] else "(input)"
        raise WebhookRefused(422, f"{mapping.get(target, target)}: {error_message(err)} (for {target})") from None


def _as_date(value: Any, source: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise WebhookRefused(422, f"{source}: {value!r} is not a date (YYYY-MM-DD)") from None


def plan(event: CrmEvent, triggers: TriggersContent) -> Plan:
    """The trigger the event matches and the input it maps to. Raises WebhookRefused (422)
    naming the event field a rule needs and does not get."""
    trigger = triggers.route(event.subscriptionType, event.propertyName, event.propertyValue)
    if trigger is None:
        return Plan(event, None)
    p = Plan(event, trigger)
    if trigger.start is not None:
        start = trigger.start
        p.args = _mapped(event, start.input, trigger.name)
        if start.playbook == "renewal":
            p.args["renewal_date"] = _as_date(p.args["renewal_date"], start.input["renewal_date"])
            p.workflow_id = renewal_workflow_id(event.accountId)
        elif start.playbook == "sla":
            if not steering.valid_ticket_id(str(p.args["ticket_id"])):
                raise WebhookRefused(422, f"{start.input['ticket_id']}: not a ticket id")
            from playbooks.profiles import active_profile

            keys = active_profile().priority_keys
            if p.args["priority"] not in keys:
                raise WebhookRefused(422, f"{start.input['priority']}: must be {', '.join(keys)}")
            p.workflow_id = sla_workflow_id(p.args["ticket_id"])
        elif start.playbook == "churn":
            p.workflow_id = churn_workflow_id(event.accountId)
        else:
            p.workflow_id = onboarding_workflow_id(event.accountId)
        if start.if_running is not None:
            p.update_args = _mapped(event, start.if_running.args, trigger.name)
            _typed(ChangeRenewalDate, p.update_args, start.if_running.args)
    else:
        sig = trigger.signal
        p.args = _mapped(event, sig.args, trigger.name)
        _typed(SIGNAL_MODELS[sig.name], p.args, sig.args)
        if sig.playbook == "sla":
            ticket = event.value_of(sig.ticket)
            if ticket is None:
                raise WebhookRefused(422, f"{sig.ticket}: missing, and trigger {trigger.name} needs the ticket")
            p.workflow_id = sla_workflow_id(str(ticket))
        elif sig.playbook == "renewal":
            p.workflow_id = renewal_workflow_id(event.accountId)
        elif sig.playbook == "churn":
            p.workflow_id = churn_workflow_id(event.accountId)
        else:
            p.workflow_id = onboarding_workflow_id(event.accountId)
    return p


async def _play_state(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """The status of the play's latest run; None when it never ran."""
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def act(p: Plan, client: Client, pool, settings: Settings) -> str:
    """Do what the plan says; the outcome in words (`started`, `already running`, `updated`,
    `unchanged`, `signalled`, `ignored: ...`). Raises WaitFor for a play that has not started,
    SteeringError for a refusal (its words), anything else for a transient failure. What changed a
    play is in the audit log, with the CRM event as the actor (issue 16)."""
    outcome = await _act(p, client, pool, settings)
    if outcome in ("started", "updated", "signalled"):
        await audit(pool, Actor(f"crm:{p.trigger.name}", "system"), f"webhook.{outcome}", p.workflow_id or "",
                    account_id=p.event.accountId, detail=f"{p.event.subscriptionType} event {p.event.eventId}")
    return outcome


async def _act(p: Plan, client: Client, pool, settings: Settings) -> str:
    t, e = p.trigger, p.event
    if t is None:
        return "ignored: no trigger matches"
    by = f"crm:{e.eventId}"[:200]
    if t.start is not None:
        try:
            if t.start.playbook == "onboarding":
                await steering.launch_onboarding(client, pool, settings, e.accountId, by)
            elif t.start.playbook == "renewal":
                await steering.launch_renewal(client, pool, settings, e.accountId, by, p.args["renewal_date"])
            elif t.start.playbook == "sla":
                await steering.open_ticket(client, pool, settings, p.args["ticket_id"], e.accountId,
                                           p.args["priority"], p.args["subject"], p.args.get("opened_at"), by)
            else:
                raise SteeringError("the churn watch starts on its first signal, not by a start rule", 422)
            return "started"
        except SteeringError as exc:
            if exc.status != 409 or "already running" not in str(exc):
                raise
        if t.start.if_running is None:
            return "already running"
        try:
            await client.get_workflow_handle(p.workflow_id).execute_update(
                t.start.if_running.name, ChangeRenewalDate.model_validate(p.update_args))
        except WorkflowUpdateFailedError as exc:
            message = getattr(exc.cause, "message", None) or str(exc)
            if "already" in message:
                return "unchanged"
            raise SteeringError(message, 422) from None
        return "updated"
    sig = t.signal
    arg = SIGNAL_MODELS[sig.name].model_validate(p.args)
    if sig.playbook == "churn":
        if isinstance(arg, MetricChange):
            arg = MetricsReading(values={arg.metric: arg.value}, source=arg.source)
        await signal_watch(client, settings, e.accountId, sig.name, arg, by)
        return "signalled"
    state = await _play_state(client, p.workflow_id)
    if state is None:
        raise WaitFor("*", "play", p.workflow_id, f"{p.workflow_id} has not started yet")
    if state != WorkflowExecutionStatus.RUNNING:
        return f"ignored: {p.workflow_id} has ended ({state.name.lower()})"
    try:
        await steering.signal_play(client, p.workflow_id, sig.name, arg)
    except SteeringError:  # it ended between the two calls
        return f"ignored: {p.workflow_id} has ended"
    return "signalled"


_triggers_cache: dict[Path, tuple[float, TriggersContent]] = {}


def current_triggers(settings: Settings) -> TriggersContent:
    """triggers.yaml as it is now: edits apply to the next event without a restart."""
    from playbooks.profiles import profile_of

    path = profile_of(settings).path(TRIGGERS_FILE)  # the profile's own, else the default's
    mtime = path.stat().st_mtime
    cached = _triggers_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, load_triggers(path))
        _triggers_cache[path] = cached
    return cached[1]
