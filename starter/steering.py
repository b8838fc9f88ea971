"""Launching and steering plays: the one path the CLI, HTTP service and tests share.

Everything is checked before anything starts: an unknown account or an
invalid playbook file is refused with a clear message and starts nothing.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.accounts import AccountNotFound, fetch_account
from activities.tasks import complete_task_by_id
from core.settings import Settings
from playbooks.loader import load_playbook
from workflows.common import play_search_attributes
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import ONBOARDING, OnboardingInput, TaskCompleted, onboarding_workflow_id


class SteeringError(Exception):
    """A refusal to show the user as it is: no stack trace, just what is wrong."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


async def launch_onboarding(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    account_id: str,
    launched_by: str,
    task_queue: str | None = None,
) -> WorkflowHandle:
    try:
        account = await fetch_account(pool, account_id)
    except AccountNotFound as exc:
        raise SteeringError(str(exc), 404) from None
    # PlaybookError propagates: its message already names file, line and field.
    snapshot = load_playbook(Path(settings.playbooks_dir) / f"{ONBOARDING}.yaml")
    workflow_id = onboarding_workflow_id(account.id)
    try:
        return await client.start_workflow(
            OnboardingPlan.run,
            OnboardingInput(
                account_id=account.id, playbook=snapshot, launched_by=launched_by,
                search_attributes=settings.search_attributes,
            ),
            id=workflow_id,
            task_queue=task_queue or settings.task_queue,
            search_attributes=(
                play_search_attributes(account.id, ONBOARDING, str(account.csm.email), "planning")
                if settings.search_attributes else None
            ),
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise SteeringError(f"onboarding is already running for {account.id} ({workflow_id})", 409) from None


async def complete_task(client: Client, pool: asyncpg.Pool, task_id: int, completed_by: str) -> asyncpg.Record:
    """Mark the task done, then tell the play that created it (it may be waiting on it)."""
    try:
        row = await complete_task_by_id(pool, task_id, completed_by)
    except LookupError as exc:
        raise SteeringError(str(exc), 404) from None
    handle = client.get_workflow_handle(row["workflow_id"])
    try:
        await handle.signal(
            "task_completed", TaskCompleted(task_id=row["id"], step=row["step"], completed_by=completed_by)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # The play has ended; the task row is still worth closing.
    return row
