"""Input and result of the InboundMail play (one per message that came back)."""

from __future__ import annotations

from datetime import datetime

from workflows.messages import Message


def inbound_workflow_id(inbound_id: int) -> str:
    return f"inbound-{inbound_id}"


class InboundInput(Message):
    inbound_id: int


class InboundOutcome(Message):
    """What was done; `retry_at`: a soft bounce is sent again then."""

    kind: str
    outcome: str
    retry_at: datetime | None = None
