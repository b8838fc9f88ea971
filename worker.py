"""The worker: runs every playbook workflow and activity on one task queue.

Run as many as you like (`python worker.py`); they share the queue. It
applies pending database migrations on start, so a new version of the
product brings its schema with it.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import suppress
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.accounts import AccountActivities
from activities.calendars import CalendarActivities
from activities.churn import ChurnActivities, ChurnFeed, RiskSummaryActivities
from activities.db import apply_migrations, create_pool, database_url
from activities.delivery import DeliveryActivities
from activities.email import EmailActivities
from activities.inbound import InboundActivities
from activities.nps import NpsActivities
from activities.sla_comms import SlaCommsActivities
from activities.play_events import PlayEventActivities
from activities.escalation import EscalationActivities
from activities.interceptors import ReadableFailures
from activities.sla import SlaActivities, SlaReportActivities
from activities.stored_parts import with_stored_parts
from activities.tasks import TaskActivities
from core.logs import configure_logging, get_logger
from core.settings import Settings, get_settings
from core.telemetry import install_runtime, setup_tracing
from core.temporal import connect
from starter.relay import NoticeRelay
from starter.schedules import ensure_schedules
from workflows.onboarding import OnboardingPlan
from workflows.churn import ChurnWatch, MonthlyRiskSummary
from workflows.delivery import DeliverItem
from workflows.inbound import InboundMail
from workflows.nps import NpsCycle, NpsFollowUp
from workflows.renewal import RenewalCountdown
from workflows.sla import SlaClock
from workflows.sla_report import MonthlySlaReport

WORKFLOWS = [OnboardingPlan, RenewalCountdown, SlaClock, ChurnWatch, MonthlyRiskSummary, NpsCycle, NpsFollowUp,
             DeliverItem, InboundMail, MonthlySlaReport]


def activities_for(pool: asyncpg.Pool, settings: Settings, client: Client | None = None) -> list:
    # With a client, risk found by one play reaches the account's churn watch.
    feed = ChurnFeed(client, settings) if client is not None else None
    accounts, tasks = AccountActivities(pool, feed), TaskActivities(pool)
    email, escalation = EmailActivities(pool, settings), EscalationActivities(pool, settings, feed)
    sla, sla_report = SlaActivities(pool), SlaReportActivities(pool, settings)
    churn, summary = ChurnActivities(pool), RiskSummaryActivities(pool, settings)
    nps = NpsActivities(pool, settings, feed)
    sla_comms = SlaCommsActivities(pool, settings, feed)
    events, deliveries = PlayEventActivities(pool), DeliveryActivities(pool, settings)
    inbound = InboundActivities(pool, settings)
    return [
        accounts.load_account,
        accounts.load_play_context,
        CalendarActivities().load_calendars,
        accounts.record_renewal_outcome,
        email.send_templated_email,
        tasks.create_task,
        tasks.create_tasks,
        tasks.complete_task,
        tasks.reschedule_tasks,
        tasks.cancel_open_tasks,
        escalation.escalate,
        escalation.record_risk_points,
        sla.record_ticket,
        sla.record_service_credit,
        sla_report.send_monthly_report,
        churn.record_risk,
        summary.send_risk_summary,
        nps.send_survey_batch,
        nps.send_deferred_invitations,
        nps.close_nonresponses,
        nps.email_respondent,
        nps.feed_account_nps,
        sla_comms.send_csat_survey,
        sla_comms.feed_account_csat,
        events.record_play_event,
        events.record_play_events,
        deliveries.deliver,
        deliveries.give_up_delivery,
        inbound.apply_inbound_mail,
        inbound.resend_after_soft_bounce,
    ]


def workflow_runner(sandboxed: bool = True) -> WorkflowRunner:
    # Every module passes through (issue 18, worker memory per cached play): the sandbox no longer
    # re-imports the workflow modules (and what they import) for each run it holds. The runtime
    # checks stay (datetime.now, random, I/O... raise in a workflow); what is given up is the
    # isolation of module-level state between runs: our workflow modules hold constants only, and the
    # recorded histories replay (tests/workflows/replay_test.py). See docs/operations.md.
    # WORKFLOW_SANDBOX=false (settings.workflow_sandbox): no sandbox at all.
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


def build_worker(
    client: Client, pool: asyncpg.Pool, settings: Settings, task_queue: str | None = None, **options
) -> Worker:
    database = settings.database_url or "postgresql://embedded/" + settings.database_name
    # Shared payload parts (playbook snapshots, calendars) stored once: see activities/stored_parts.py.
    client = with_stored_parts(client, pool)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities_for(pool, settings, client),
        graceful_shutdown_timeout=timedelta(seconds=10),
        workflow_runner=workflow_runner(settings.workflow_sandbox),
        interceptors=[ReadableFailures(settings, database)],
        **options,
    )


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    install_runtime(settings.worker_metrics_address)
    setup_tracing("cs-playbooks-worker")
    log = get_logger("worker")
    pool = await create_pool(database_url(settings), settings.db_pool_max)
    applied = await apply_migrations(pool)
    if applied:
        log.info("migrations.applied", files=applied)
    client = await connect(settings)
    created = await ensure_schedules(client, settings)  # idempotent: whichever worker starts first creates them
    if created:
        log.info("schedules.created", schedules=created)
    worker = build_worker(client, pool, settings, max_cached_workflows=settings.workflow_cache_size)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker.started", task_queue=settings.task_queue, temporal=settings.temporal_address,
             metrics=settings.worker_metrics_address)
    # Play events into chat messages, CRM writes and webhooks (README "Slack, Teams, CRM write-back
    # and outbound webhooks"): every worker relays; they share the work.
    relay = asyncio.create_task(NoticeRelay(pool, settings, client).run())
    async with worker:
        await stop.wait()
        log.info("worker.stopping")
        relay.cancel()
        with suppress(asyncio.CancelledError):
            await relay
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
