"""The product's business counters, exported with the Temporal SDK's metrics (core/telemetry.py).

Each counter is a Prometheus counter named `cs_<name>` with the labels given here; a process
without a metrics endpoint counts into nothing. Counted where the thing happens: an e-mail
when the relay accepted it, a task when its row is created, and so on, once per real action
(an activity retried after the row exists does not count twice).

docs/operations.md lists the ones worth alerting on.
"""

from __future__ import annotations

from temporalio.common import MetricCounter
from temporalio.runtime import Runtime

COUNTERS: dict[str, str] = {
    "emails_sent": "customer and staff e-mails accepted by the SMTP relay (label: template)",
    "emails_suppressed": "e-mails not sent because every recipient is suppressed (label: template)",
    "emails_bounced": "bounces and complaints received (label: kind: hard, soft, complaint)",
    "emails_failed": "e-mails nobody could be reached with (label: template)",
    "tasks_created": "tasks created by plays (label: playbook)",
    "tasks_completed": "tasks completed (label: via: product (console, CLI, API) or crm)",
    "escalations": "escalations sent (label: level)",
    "webhook_events": "vendor webhook events (labels: vendor, outcome)",
    "webhook_refused": "webhook requests refused (labels: vendor, status)",
    "imports": "import rows (labels: source, action)",
    "login_failures": "failed console logins (label: reason)",
    "plays_started": "plays started (label: playbook)",
    "deliveries": "chat messages, CRM writes and outbound webhooks delivered (labels: kind, channel)",
    "deliveries_failed": "deliveries refused for good or given up (labels: kind, channel)",
}

_made: dict[tuple[int, str], MetricCounter] = {}


def count(name: str, value: int = 1, **labels: str | int) -> None:
    """Add `value` to counter `cs_<name>` with these labels. Unknown names raise KeyError."""
    if name not in COUNTERS:
        raise KeyError(f"no counter {name!r}; add it to core/metrics.COUNTERS")
    meter = Runtime.default().metric_meter
    key = (id(meter), name)
    counter = _made.get(key)
    if counter is None:
        counter = _made[key] = meter.create_counter(f"cs_{name}", COUNTERS[name])
    counter.add(value, {k: str(v) for k, v in labels.items()})
