"""The CLI's changes in the audit log: every command that launches or steers a play, completes a
task or changes users and tokens is recorded with the actor `cli:<login>` (the operating-system
user; the `--by` option, a free-text name, goes into the detail), the object and the outcome.

`starter.cli.command` wraps every command with `audit_cli`; commands not listed in AUDITED
(status, lists, reports) are left as they are.
"""

from __future__ import annotations

import functools
import getpass
import sys

import typer

# command function name -> (action, the keyword argument naming the object, its prefix)
AUDITED: dict[str, tuple[str, str | None, str]] = {
    "launch": ("launch", "account_id", ""),
    "move_renewal_date": ("move_renewal_date", "account_id", "renewal-"),
    "renewed": ("renewed", "account_id", "renewal-"),
    "churned": ("churned", "account_id", "renewal-"),
    "complete_task_cmd": ("complete_task", "task_id", "task:"),
    "sign_readiness": ("sign_readiness", "account_id", "onboarding-"),
    "move_go_live": ("move_go_live", "account_id", "onboarding-"),
    "blocker": ("blocker", "account_id", "onboarding-"),
    "resolve_blocker": ("resolve_blocker", "account_id", "onboarding-"),
    "ticket_open": ("ticket.open", "ticket_id", "sla-"),
    "ticket_ack": ("ticket.ack", "ticket_id", "sla-"),
    "ticket_priority": ("ticket.priority", "ticket_id", "sla-"),
    "ticket_hold": ("ticket.hold", "ticket_id", "sla-"),
    "ticket_resume": ("ticket.resume", "ticket_id", "sla-"),
    "ticket_resolve": ("ticket.resolve", "ticket_id", "sla-"),
    "ticket_reopen": ("ticket.reopen", "ticket_id", "sla-"),
    "churn_flag": ("churn.flag", "account_id", "churn-"),
    "churn_metrics": ("churn.metrics", "account_id", "churn-"),
    "churn_apply_scoring": ("churn.apply_scoring", None, ""),
    "nps_launch": ("nps.launch", "cycle", "nps-cycle-"),
    "nps_choose_path": ("nps.choose_path", "play", ""),
    "pause": ("pause", "play", ""),
    "resume": ("resume", "play", ""),
    "skip_step_cmd": ("skip_step", "play", ""),
    "cancel": ("cancel", "play", ""),
}


def cli_actor():
    """The audit-log Actor of this terminal: cli:<operating-system login>."""
    from starter.security.audit import Actor

    try:
        login = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        login = "unknown"
    return Actor(f"cli:{login}", "cli")


def _account_of(kwargs: dict, object_: str) -> str | None:
    if kwargs.get("account_id"):
        return str(kwargs["account_id"])
    for prefix in ("onboarding-", "renewal-", "churn-"):
        if object_.startswith(prefix):
            return object_[len(prefix):]
    return None


async def record(action: str, object_: str, outcome: str, detail: str, account_id: str | None = None) -> None:
    """Write one entry through a short connection of its own; a database that cannot be reached
    is said on stderr (the command has already done its work)."""
    import asyncpg

    from activities.db import database_url
    from core.settings import get_settings
    from starter.security.audit import audit

    try:
        pool = await asyncpg.create_pool(database_url(get_settings()), min_size=1, max_size=1, timeout=5,
                                         command_timeout=5)
    except Exception as exc:
        print(f"warning: the audit log was not written ({type(exc).__name__})", file=sys.stderr)
        return
    try:
        await audit(pool, cli_actor(), action, object_, outcome, account_id=account_id, detail=detail)
    finally:
        await pool.close()


def audit_cli(fn):
    """`fn` itself, or for an audited command a wrapper recording its outcome."""
    spec = AUDITED.get(fn.__name__)
    if spec is None:
        return fn
    action, key, prefix = spec

    @functools.wraps(fn)
    async def run(*args, **kwargs):
        outcome, why = "ok", ""
        try:
            return await fn(*args, **kwargs)
        except typer.Exit as exc:
            outcome = "ok" if not exc.exit_code else "refused"
            raise
        except BaseException as exc:
            from starter.security.audit import _refusal

            outcome, why = ("refused" if _refusal(exc) else "failed"), str(exc) or type(exc).__name__
            raise
        finally:
            value = kwargs.get(key) if key else None
            object_ = f"{prefix}{value}" if value is not None else ""
            by = kwargs.get("by")
            detail = "; ".join(d for d in (f"by {by}" if by else "", why) if d)
            await record(action, object_, outcome, detail, _account_of(kwargs, object_))

    return run
