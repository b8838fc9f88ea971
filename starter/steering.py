"""Launching and steering plays: the one path the CLI, HTTP service and tests share.

Everything is checked before anything starts: an unknown account or an
invalid playbook file is refused with a clear message and starts nothing.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.accounts import AccountNotFound, fetch_account
from activities.playbook_store import store_version
from activities.stored_parts import with_stored_parts
from activities.tasks import complete_task_by_id
from core.metrics import count
from core.models import Account, Person
from core.settings import Settings
from core.text import header_safe
from playbooks.loader import load_playbook
from playbooks.profiles import profile_of
from playbooks.schema import PlaybookSnapshot
from workflows.common import play_search_attributes
from workflows.summaries import markdown_text
from workflows.onboarding import OnboardingPlan
from workflows.churn import ChurnWatch
from activities.churn import signal_watch, watch_input
from activities.nps import category_of, cycle_for
from activities.survey_links import LinkRefused, verify_link
from workflows.churn_messages import ChurnStatus, IndicatorFlag, MetricsReading, churn_workflow_id
from workflows.messages import PausePlay, ResumePlay, SkipResult, SkipStep, TaskCompleted
from workflows.nps import NpsCycle, NpsFollowUp
from workflows.nps_messages import (
    NPS, ChoosePath, CycleInput, FollowUpInput, FollowUpStatus, cycle_workflow_id, followup_workflow_id,
)
from workflows.onboarding_messages import ONBOARDING, OnboardingInput, onboarding_workflow_id
from workflows.renewal import RenewalCountdown
from workflows.sla import SlaClock
from workflows.sla_messages import SLA, TICKET_ID, SlaInput, SlaStatus, sla_workflow_id
from workflows.renewal_messages import (
    RENEWAL, ChangeRenewalDate, Churned, RenewalInput, RenewalPlan, RenewalStatus, Renewed, renewal_workflow_id,
)


class SteeringError(Exception):
    """A refusal to show the user as it is: no stack trace, just what is wrong."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


async def known_account(pool: asyncpg.Pool, account_id: str) -> Account:
    try:
        return await fetch_account(pool, account_id)
    except AccountNotFound as exc:
        raise SteeringError(str(exc), 404) from None


def playbook_snapshot(settings: Settings, playbook: str) -> PlaybookSnapshot:
    """The active profile's playbook (its own file, else the default profile's), validated in it.
    PlaybookError propagates: its message already names file, line and field."""
    profile = profile_of(settings)
    return load_playbook(profile.path(f"{playbook}.yaml"), profile=profile)


def account_tier(settings: Settings, account: Account) -> str:
    """The account's tier in the active profile: the CRM's, else the profile's tier ranges on its ARR."""
    if account.crm_tier:
        return account.crm_tier
    return profile_of(settings).tier_for(account.arr, account.arr_currency, account.usd_rate)


def play_static_metadata(account: Account, playbook: str, snapshot: PlaybookSnapshot, *, phase: str = "",
                         launched_by: str = "", extra: dict[str, str] | None = None) -> tuple[str, str]:
    """(static summary, static details) of a play, for `start_workflow`: the summary is one line
    ("onboarding for Acme Corp (acme), playbook v3"); the details (Markdown) add the CSM, tier,
    time zone, the playbook's digest and who launched it. Set once at start: what changes goes in
    the play's current details (workflows/play.Play.show)."""
    version = snapshot.content.version
    summary = f"{playbook} for {account.name} ({account.id}), playbook v{version}"
    rows = {
        "Account": f"{account.name} ({account.id}), {account.tier}, {account.timezone}",
        "CSM": f"{account.csm.name} <{account.csm.email}>",
        "Playbook": f"{playbook} v{version}, digest {snapshot.digest[:12]}",
        **({"Starts in phase": phase} if phase else {}),
        **(extra or {}),
        **({"Launched by": launched_by} if launched_by else {}),
    }
    # Names and subjects come from CRMs and customers: shown as text, never as Markdown links or markup.
    return summary[:200], "\n\n".join(f"**{k}:** {markdown_text(v)}" for k, v in rows.items())



async def start_play(
    client: Client, settings: Settings, run, arg, *, workflow_id: str, account: Account, playbook: str,
    phase: str, task_queue: str | None,
) -> WorkflowHandle:
    """One play per account and playbook: a second launch while one runs is refused. The play's
    static summary and details (Temporal UI, `describe()`) name the account, playbook and version."""
    extra = {}
    if getattr(arg, "renewal_date", None):
        extra["Renewal date"] = arg.renewal_date.isoformat()
    if getattr(arg, "ticket_id", None):
        extra["Ticket"] = f"{arg.ticket_id}, {arg.priority}: {arg.subject[:120]}"
    summary, details = play_static_metadata(account, playbook, arg.playbook, phase=phase, launched_by=arg.launched_by,
                                            extra=extra)
    try:
        return await client.start_workflow(
            run,
            arg,
            id=workflow_id,
            task_queue=task_queue or settings.task_queue,
            static_summary=summary, static_details=details,
            search_attributes=(
                play_search_attributes(account.id, playbook, str(account.csm.email), phase)
                if settings.search_attributes else None
            ),
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise SteeringError(f"{playbook} is already running for {account.id} ({workflow_id})", 409) from None


async def launch_onboarding(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    account_id: str,
    launched_by: str,
    task_queue: str | None = None,
) -> WorkflowHandle:
    account = await known_account(pool, account_id)
    snapshot = playbook_snapshot(settings, ONBOARDING)
    return await start_play(
        with_stored_parts(client, pool), settings, OnboardingPlan.run,
        OnboardingInput(
            account_id=account.id, playbook=await store_version(pool, snapshot, ONBOARDING),
            launched_by=launched_by,
            search_attributes=settings.search_attributes,
        ),
        workflow_id=onboarding_workflow_id(account.id), account=account, playbook=ONBOARDING,
        phase="planning", task_queue=task_queue,
    )


async def launch_renewal(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    account_id: str,
    launched_by: str,
    renewal_date: date | None = None,
    task_queue: str | None = None,
    max_history_events: int | None = None,
) -> WorkflowHandle:
    """Start the countdown to the given renewal date, or to the account's own."""
    account = await known_account(pool, account_id)
    if account.status == "churned":
        raise SteeringError(f"account {account.id!r} has churned: there is no renewal to count down", 409)
    renewal_date = renewal_date or account.renewal_date
    if renewal_date is None:
        raise SteeringError(f"account {account.id!r} has no renewal date: give one as YYYY-MM-DD", 422)
    snapshot = playbook_snapshot(settings, RENEWAL)
    today = datetime.now(ZoneInfo(snapshot.content.timezone)).date()
    if renewal_date < today:
        raise SteeringError(f"renewal date {renewal_date.isoformat()} is in the past (today is {today.isoformat()})", 422)
    if renewal_date > today + timedelta(days=snapshot.content.max_days_ahead):
        raise SteeringError(
            f"renewal date {renewal_date.isoformat()} is more than {snapshot.content.max_days_ahead} days ahead", 422
        )
    extra = {"max_history_events": max_history_events} if max_history_events else {}
    return await start_play(
        with_stored_parts(client, pool), settings, RenewalCountdown.run,
        RenewalInput(
            account_id=account.id, renewal_date=renewal_date, tier=account_tier(settings, account),
            playbook=await store_version(pool, snapshot, RENEWAL),
            launched_by=launched_by, search_attributes=settings.search_attributes, **extra,
        ),
        workflow_id=renewal_workflow_id(account.id), account=account, playbook=RENEWAL,
        phase="scheduled", task_queue=task_queue,
    )


async def signal_play(client: Client, workflow_id: str, signal, arg) -> None:
    """Signal a running play; a play that is not running is a clear 404."""
    try:
        await client.get_workflow_handle(workflow_id).signal(signal, arg)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SteeringError(f"no running play {workflow_id!r}", 404) from None
        raise


async def update_play(client: Client, workflow_id: str, update, arg, missing: str, result_type=None):
    """Send a play an update; its validator's refusal is a 422 with the play's own words,
    a play that does not exist a 404 saying `missing`."""
    try:
        return await client.get_workflow_handle(workflow_id).execute_update(update, arg, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        raise SteeringError(getattr(exc.cause, "message", None) or str(exc), 422) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SteeringError(missing, 404) from None
        raise


async def complete_task(client: Client, pool: asyncpg.Pool, task_id: int, completed_by: str,
                        via: str | None = None) -> asyncpg.Record:
    """Mark the task done, then tell the play that created it (it may be waiting on it). `via`: the
    CRM connection the completion came from (not written back to it)."""
    try:
        row = await complete_task_by_id(pool, task_id, completed_by, via)
    except LookupError as exc:
        raise SteeringError(str(exc), 404) from None
    count("tasks_completed", via="crm" if via else "product")
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


async def query_status(client: Client, workflow_id: str, query, missing: str):
    """A play's status query; a play that does not exist is a clear 404 saying `missing`."""
    try:
        return await client.get_workflow_handle(workflow_id).query(query)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SteeringError(missing, 404) from None
        raise


async def renewal_status(client: Client, account_id: str) -> RenewalStatus:
    return await query_status(client, renewal_workflow_id(account_id), RenewalCountdown.status,
                              f"no renewal countdown for account {account_id!r}")


async def _running_renewal(client: Client, account_id: str) -> tuple[WorkflowHandle, RenewalStatus]:
    status = await renewal_status(client, account_id)
    if status.finished:
        raise SteeringError(f"the renewal countdown for {account_id!r} has ended ({status.outcome})", 409)
    return client.get_workflow_handle(renewal_workflow_id(account_id)), status


async def change_renewal_date(client: Client, account_id: str, change: ChangeRenewalDate) -> RenewalPlan:
    """Move the renewal date; the play's validator refuses a bad date and changes nothing."""
    await _running_renewal(client, account_id)
    return await update_play(client, renewal_workflow_id(account_id), RenewalCountdown.change_renewal_date, change,
                             f"no renewal countdown for account {account_id!r}")


# A new term ends at most this far ahead: a renewal "to 2099" is a typo or an attack, not a contract.
MAX_NEW_TERM_DAYS = 5 * 366


def check_new_term(new_renewal_date: date | None, today: date | None = None) -> None:
    """SteeringError 422 when a new term's end is more than five years ahead."""
    today = today or date.today()
    if new_renewal_date is not None and new_renewal_date > today + timedelta(days=MAX_NEW_TERM_DAYS):
        raise SteeringError(f"new_renewal_date: {new_renewal_date.isoformat()} is more than 5 years ahead", 422)


async def mark_renewed(client: Client, account_id: str, renewed: Renewed) -> None:
    check_new_term(renewed.new_renewal_date)
    handle, status = await _running_renewal(client, account_id)
    if status.outcome is not None:
        raise SteeringError(f"account {account_id!r} has already {status.outcome}", 409)
    if renewed.new_renewal_date is not None and renewed.new_renewal_date <= status.renewal_date:
        raise SteeringError(
            f"the new term must end after the current renewal date {status.renewal_date.isoformat()}", 422
        )
    await handle.signal(RenewalCountdown.renewed, renewed)


async def mark_churned(client: Client, account_id: str, churned: Churned) -> None:
    handle, status = await _running_renewal(client, account_id)
    if status.outcome is not None:
        raise SteeringError(f"account {account_id!r} has already {status.outcome}", 409)
    await handle.signal(RenewalCountdown.churned, churned)


def public_holidays(kind: str, around: date, region: str | None = None) -> list[date]:
    """The holidays a ticket's business clock skips (the support region's: a country, optionally
    its region, or "none"): the year it opens and the next. The workflow gets dates, not the package."""
    from core.holiday_calendars import holiday_dates

    return holiday_dates(kind, region, around, years=2)


def valid_ticket_id(ticket_id: str | None) -> bool:
    return bool(re.match(TICKET_ID, ticket_id or ""))


async def open_ticket(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    ticket_id: str,
    account_id: str,
    priority: str,
    subject: str,
    opened_at: datetime | None = None,
    launched_by: str = "unknown",
    task_queue: str | None = None,
    max_history_events: int | None = None,
    now: datetime | None = None,
    requester: Person | None = None,
    assignee: Person | None = None,
) -> WorkflowHandle:
    """Start a ticket's SLA clock (workflow `sla-<ticket>`); one clock per ticket.
    `now` is the wall clock unless the caller runs on another (a time-skipping test server).
    `requester` gets the ticket's customer e-mails (default: the sponsor), `assignee` the "SLA
    approaching" warning (default: the support queue)."""
    if not valid_ticket_id(ticket_id):
        raise SteeringError(f"ticket id {ticket_id!r} must be 1-63 letters, digits, '.', '_' or '-'", 422)
    profile = profile_of(settings)
    if priority not in profile.priority_keys:
        raise SteeringError(f"priority {priority!r} must be one of {', '.join(profile.priority_keys)}", 422)
    # A ticket's subject comes from a customer: one line, no control or bidi characters (core.text).
    subject = header_safe(subject, 500)
    if not subject:
        raise SteeringError("subject must not be empty", 422)
    account = await known_account(pool, account_id)
    snapshot = playbook_snapshot(settings, SLA)
    now = now or datetime.now(timezone.utc)
    opened_at = opened_at or now
    if opened_at.tzinfo is None:
        raise SteeringError("opened_at needs a time zone (e.g. 2027-01-08T17:30:00-05:00)", 422)
    if opened_at > now + timedelta(minutes=5):
        raise SteeringError(f"opened_at {opened_at.isoformat()} is in the future", 422)
    extra = {"max_history_events": max_history_events} if max_history_events else {}
    tier = account_tier(settings, account)
    if tier not in snapshot.content.tiers:
        raise SteeringError(f"the SLA playbook has no targets for tier {tier!r} of account {account.id!r}", 422)
    return await start_play(
        with_stored_parts(client, pool), settings, SlaClock.run,
        SlaInput(
            ticket_id=ticket_id, account_id=account.id, tier=tier, priority=priority, subject=subject,
            opened_at=opened_at, playbook=await store_version(pool, snapshot, SLA),
            calendar=profile.support_calendar(tier, opened_at),
            launched_by=launched_by, search_attributes=settings.search_attributes, requester=requester,
            assignee=assignee, **extra,
        ),
        workflow_id=sla_workflow_id(ticket_id), account=account, playbook=SLA, phase="open", task_queue=task_queue,
    )


async def sla_status(client: Client, ticket_id: str) -> SlaStatus:
    return await query_status(client, sla_workflow_id(ticket_id), SlaClock.status,
                              f"no SLA clock for ticket {ticket_id!r}")


# -- steering any play: pause, resume, skip a step, cancel ----------------------------
async def pause_play(client: Client, workflow_id: str, by: str, reason: str = "") -> None:
    await signal_play(client, workflow_id, "pause_play", PausePlay(by=by, reason=reason))


async def resume_play(client: Client, workflow_id: str, by: str) -> None:
    await signal_play(client, workflow_id, "resume_play", ResumePlay(by=by))


async def skip_step(client: Client, workflow_id: str, step: str, by: str, reason: str = "") -> SkipResult:
    """Skip one pending step; the play's validator refuses a step it cannot skip."""
    return await update_play(client, workflow_id, "skip_step", SkipStep(step=step, by=by, reason=reason),
                             f"no running play {workflow_id!r}", result_type=SkipResult)


async def cancel_play(client: Client, workflow_id: str) -> None:
    """Cancel a play: it cancels its open tasks and ends as cancelled (visible as such in the Temporal UI)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SteeringError(f"no play {workflow_id!r}", 404) from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise SteeringError(f"play {workflow_id!r} is not running ({desc.status.name.lower()})", 409)
    await handle.cancel()


# -- the churn watch -----------------------------------------------------------------
async def flag_risk(client: Client, pool: asyncpg.Pool, settings: Settings, account_id: str, flag: IndicatorFlag,
                    task_queue: str | None = None) -> WorkflowHandle:
    await known_account(pool, account_id)
    input = watch_input(settings, account_id, flag.source)
    if input.scoring.indicator(flag.indicator) is None:
        known = ", ".join(i.key for i in input.scoring.indicators)
        raise SteeringError(f"unknown indicator {flag.indicator!r} (known: {known})", 422)
    return await signal_watch(client, settings, account_id, "flag_indicator", flag, flag.source, task_queue, input)


async def read_metrics(client: Client, pool: asyncpg.Pool, settings: Settings, account_id: str,
                       reading: MetricsReading, task_queue: str | None = None) -> WorkflowHandle:
    await known_account(pool, account_id)
    return await signal_watch(client, settings, account_id, "read_metrics", reading, reading.source, task_queue)


async def churn_status(client: Client, account_id: str) -> ChurnStatus:
    return await query_status(client, churn_workflow_id(account_id), ChurnWatch.status,
                              f"no churn watch for account {account_id!r}")


# -- NPS -----------------------------------------------------------------------------------
async def launch_nps_cycle(client: Client, pool: asyncpg.Pool, settings: Settings, cycle_id: str | None = None,
                           account_ids: list[str] | None = None, tiers: list[str] | None = None,
                           launched_by: str = "unknown", task_queue: str | None = None,
                           today: date | None = None) -> WorkflowHandle:
    """A survey cycle for every active account, or a segment (accounts, tiers); one run per cycle id."""
    known_tiers = profile_of(settings).tier_names
    for tier in tiers or []:
        if tier not in known_tiers:
            raise SteeringError(f"tier {tier!r} must be one of {', '.join(known_tiers)}", 422)
    for account_id in account_ids or []:
        await known_account(pool, account_id)
    snapshot = playbook_snapshot(settings, NPS)
    cycle_id = cycle_id or cycle_for(today or date.today()) + ("" if not (account_ids or tiers) else "-segment")
    try:
        return await with_stored_parts(client, pool).start_workflow(
            NpsCycle.run,
            CycleInput(cycle_id=cycle_id, playbook=await store_version(pool, snapshot, NPS),
                       account_ids=account_ids, tiers=tiers,
                       launched_by=launched_by),
            id=cycle_workflow_id(cycle_id), task_queue=task_queue or settings.task_queue,
            static_summary=f"NPS survey cycle {cycle_id}, playbook v{snapshot.content.version}",
            static_details="\n\n".join([
                "**Segment:** " + ("; ".join(filter(None, [
                    f"accounts {', '.join(account_ids[:10])}" + (" ..." if len(account_ids) > 10 else "")
                    if account_ids else "", f"tiers {', '.join(tiers)}" if tiers else ""])) or "every active account"),
                f"**Playbook:** nps v{snapshot.content.version}, digest {snapshot.digest[:12]}",
                f"**Launched by:** {launched_by}"]),
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise SteeringError(f"survey cycle {cycle_id!r} has already run; name another with --cycle", 409) from None


async def record_nps_answer(client: Client, pool: asyncpg.Pool, settings: Settings, token: str, score: int,
                            comment: str = "", now: datetime | None = None,
                            task_queue: str | None = None) -> WorkflowHandle:
    """Check the link, record the answer once and start its follow-up; a refusal records nothing."""
    now = now or datetime.now(timezone.utc)
    try:
        link = verify_link(settings.nps_link_secret.get_secret_value(), token, now)
    except LinkRefused as exc:
        raise SteeringError(exc.detail, exc.status) from None
    if not 0 <= score <= 10:
        raise SteeringError(f"score: {score} is not between 0 and 10", 422)
    if len(comment) > 5000:
        raise SteeringError("comment: longer than 5000 characters", 422)
    from starter.nps_links import LinkClosed, check_open

    try:
        await check_open(client, pool, link)
    except LinkClosed as exc:
        raise SteeringError(exc.detail, exc.status) from None
    account = await known_account(pool, link.account_id)
    name = await pool.fetchval(
        "SELECT contact_name FROM nps_invitations WHERE cycle_id = $1 AND contact_email = $2",
        link.cycle_id, link.contact_email,
    ) or link.contact_email
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO nps_responses (cycle_id, account_id, contact_email, score, category, comment)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cycle_id, contact_email) DO NOTHING RETURNING id",
            link.cycle_id, account.id, link.contact_email, score, category_of(score), comment,
        )
        if inserted is None:
            raise SteeringError("you have already answered this survey; thank you", 409)
        # Started inside the transaction: if Temporal refuses, the answer is not kept either.
        try:
            return await start_followup(client, settings, link, account, name, score, comment, now, task_queue)
        except WorkflowAlreadyStartedError:
            raise SteeringError("you have already answered this survey; thank you", 409) from None


async def start_followup(client, settings, link, account, name, score, comment, now, task_queue) -> WorkflowHandle:
    snapshot = playbook_snapshot(settings, NPS)
    _, details = play_static_metadata(account, NPS, snapshot, launched_by="the survey answer",
                                      extra={"Answer": f"{name}: {score}/10 ({category_of(score)}), "
                                                       f"cycle {link.cycle_id}"})
    return await client.start_workflow(
            NpsFollowUp.run,
            FollowUpInput(cycle_id=link.cycle_id, account_id=account.id,
                          respondent=Person(name=name, email=link.contact_email), score=score, comment=comment,
                          answered_at=now, playbook=snapshot,
                          search_attributes=settings.search_attributes),
            id=followup_workflow_id(link.cycle_id, link.contact_email), task_queue=task_queue or settings.task_queue,
            static_summary=f"NPS follow-up for {account.name}: {name[:60]} scored {score} ({category_of(score)})",
            static_details=details,
            search_attributes=(
                play_search_attributes(account.id, NPS, str(account.csm.email), category_of(score))
                if settings.search_attributes else None
            ),
        )


async def choose_detractor_path(client: Client, workflow_id: str, path: str, by: str) -> FollowUpStatus:
    return await update_play(client, workflow_id, NpsFollowUp.choose_path, ChoosePath(path=path, by=by),
                             f"no follow-up play {workflow_id!r}")
