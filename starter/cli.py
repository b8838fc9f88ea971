"""`csplay`: launch and steer playbooks from a terminal.

Every command talks to the same Temporal and PostgreSQL as the worker (see
core/settings.py); refusals print one line and exit 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from datetime import date, datetime, timezone
from enum import Enum
from contextlib import asynccontextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.markup import escape

from activities.accounts import fetch_account
from activities.db import DatabaseUnavailable, create_pool, database_url
from core.settings import get_settings
from core.temporal import connect
from playbooks.loader import PlaybookError, validate_all
from starter import mail_cli
from starter.mail_sink import read_maildir
from starter.security.cli_audit import audit_cli
from core.models import tier_of
from starter.steering import (
    SteeringError, cancel_play, change_renewal_date, complete_task, launch_onboarding, launch_renewal, mark_churned,
    mark_renewed, pause_play, renewal_status, resume_play, signal_play, skip_step,
    sla_status,
)
from workflows.onboarding import OnboardingPlan
from workflows.onboarding_messages import (
    BlockerReport, BlockerResolved, MoveGoLive, ReadinessSignoff, onboarding_workflow_id,
)
from workflows.renewal_messages import ChangeRenewalDate, Churned, Renewed

app = typer.Typer(help="Customer lifecycle playbooks on Temporal.", no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # one problem per line, even piped (file:line: field: message)


def leave(code: int) -> None:
    """Exit without the interpreter's shutdown once the output is out: the Temporal
    runtime's threads can crash a short-lived process at exit (sdk-python issue 300),
    turning a command that worked into a segfault."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def command(fn):
    """Run an async command; turn known refusals into one clear line and exit 1."""

    run = audit_cli(fn)  # changes are recorded in the audit log (starter/security/cli_audit.py)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            asyncio.run(run(*args, **kwargs))
        except typer.Exit as exc:
            leave(exc.exit_code)
        except (SteeringError, PlaybookError, DatabaseUnavailable) as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            leave(1)
        except RuntimeError as exc:
            if "connect" not in str(exc).lower():
                raise
            err.print(f"[red]error:[/red] cannot reach Temporal at {get_settings().temporal_address}: "
                      "start the product with ./run.sh or set TEMPORAL_ADDRESS")
            leave(1)
        except Exception as exc:  # a Temporal refusal (update validator, unknown workflow)
            from temporalio.client import WorkflowUpdateFailedError
            from temporalio.service import RPCError

            if isinstance(exc, WorkflowUpdateFailedError):
                err.print(f"[red]refused:[/red] {escape(str(exc.cause.message if exc.cause else exc))}")
            elif isinstance(exc, RPCError):
                err.print(f"[red]error:[/red] {escape(exc.message)}")
            else:
                raise
            leave(1)
        leave(0)

    return wrapper


@asynccontextmanager
async def services(need_db: bool = True, need_temporal: bool = True):
    settings = get_settings()
    pool = await create_pool(database_url(settings), 2) if need_db else None
    client = await connect(settings) if need_temporal else None
    try:
        yield settings, client, pool
    finally:
        if pool is not None:
            await pool.close()


async def signal_onboarding(account_id: str, signal, arg) -> None:
    async with services(need_db=False) as (_, client, __):
        await signal_play(client, onboarding_workflow_id(account_id), signal, arg)


class Playbook(str, Enum):
    onboarding = "onboarding"
    renewal = "renewal"
    sla = "sla"


def when(at: datetime | None) -> str:
    """An instant for the terminal, labelled: "2026-12-01 14:00 UTC" ("-" for none)."""
    if at is None:
        return "-"
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


@app.command()
@command
async def launch(
    account_id: str = typer.Argument(None, help="one account; or choose a segment with --tier/--status/--csm"),
    playbook: Playbook = typer.Option(Playbook.onboarding, "--playbook", "-p", help="which play to launch"),
    renewal_date: str = typer.Option(None, help="renewal: count down to this date (default: the account's)"),
    tier: str = typer.Option(None, help="segment: a tier of the active profile (csplay profiles show)"),
    status_: str = typer.Option(None, "--status", help="segment: account status (onboarding, active, ...)"),
    csm: str = typer.Option(None, help="segment: the CSM's e-mail"),
    by: str = typer.Option("cli", help="who launches it, for the log"),
):
    """Launch a play for an account, or for every account of a segment (with progress)."""
    day = parse_date(renewal_date)
    if account_id is None and not (tier or status_ or csm):
        raise SteeringError("name an account, or a segment with --tier, --status or --csm")
    async with services() as (settings, client, pool):
        if account_id is not None:
            handle = await launch_one(client, pool, settings, playbook, account_id, day, by)
            out.print(f"started [bold]{handle.id}[/bold]")
            out.print(f"watch it: {settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{handle.id}")
            return
        if tier is not None:
            from playbooks.profiles import profile_of

            tiers = profile_of(settings).content.tier_names
            if tier not in tiers:
                raise SteeringError(f"--tier: {tier!r} is not a tier of this profile ({', '.join(tiers)})")
        accounts = await segment(pool, tier, status_, csm)
        if not accounts:
            raise SteeringError("no account matches that segment")
        outcomes: dict[str, list[str]] = {"started": [], "refused": []}
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err) as progress:
            bar = progress.add_task(f"launching {playbook.value}", total=len(accounts))
            for account in accounts:
                try:
                    await launch_one(client, pool, settings, playbook, account, day, by)
                    outcomes["started"].append(account)
                except (SteeringError, PlaybookError) as exc:
                    outcomes["refused"].append(f"{account}: {exc}")
                progress.advance(bar)
    out.print(f"{len(outcomes['started'])} started, {len(outcomes['refused'])} refused")
    for line in outcomes["refused"]:
        out.print(f"  [yellow]refused[/yellow] {escape(line)}")


async def launch_one(client, pool, settings, playbook: "Playbook", account_id: str, day: date | None, by: str):
    if playbook is Playbook.renewal:
        return await launch_renewal(client, pool, settings, account_id, by, day)
    if playbook is Playbook.onboarding:
        return await launch_onboarding(client, pool, settings, account_id, by)
    raise SteeringError("an SLA clock starts per ticket: use `csplay ticket open`")


async def segment(pool, tier: str | None, status: str | None, csm: str | None) -> list[str]:
    rows = await pool.fetch(
        "SELECT id, arr, usd_rate, crm_tier FROM accounts WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR csm_email = $2)"
        " ORDER BY id", status, csm,
    )
    return [r["id"] for r in rows if tier is None or tier_of(r).lower() == tier.lower()]


@app.command()
@command
async def status(
    account_id: str,
    playbook: Playbook = typer.Option(Playbook.onboarding, "--playbook", "-p", help="which play"),
):
    """Where an account's play is: phase, next action, open tasks, schedule."""
    async with services(need_db=False) as (settings, client, _):
        if playbook is Playbook.renewal:
            st = await renewal_status(client, account_id)
            print_renewal(st)
            return
        st = await client.get_workflow_handle(onboarding_workflow_id(account_id)).query(OnboardingPlan.status)
    out.print(f"[bold]{escape(account_id)}[/bold]  phase {st.phase_name}  day {st.day}  go-live day {st.go_live_day}"
              f"  slip {st.slip_days} days")
    out.print(f"next: {escape(st.next_action)} at {when(st.next_action_at)}")
    print_tasks(st.open_tasks)
    print_failures(st.failed_steps)


def print_tasks(open_tasks) -> None:
    table = Table("task id", "title", "due", "priority", "milestone")
    for t in open_tasks:
        table.add_row(str(t.task_id), escape(t.title), t.due_at.strftime("%Y-%m-%d %H:%M %Z"), t.priority, t.milestone or "")
    out.print(table)


def print_failures(failed_steps: dict[str, str]) -> None:
    for step, problem in failed_steps.items():
        out.print(f"[red]failed[/red] {escape(step)}: {escape(problem)}")


def print_schedule(schedule) -> None:
    table = Table("date", "step", "status", "note")
    for e in schedule:
        table.add_row(e.date.isoformat(), escape(e.title), e.status, escape(e.note))
    out.print(table)


def print_renewal(st) -> None:
    outcome = f"  [bold]{st.outcome}[/bold]" if st.outcome else ""
    out.print(f"[bold]{escape(st.account_id)}[/bold] ({st.tier})  renews {st.renewal_date}  "
              f"{st.days_to_renewal} days to go  phase {st.phase}{outcome}")
    out.print(f"next: {escape(st.next_action)} at {when(st.next_action_at)}")
    print_schedule(st.schedule)
    print_tasks(st.open_tasks)
    print_failures(st.failed_steps)


@app.command("move-renewal-date")
@command
async def move_renewal_date(account_id: str, renewal_date: str, reason: str = typer.Option("", help="why, for the log")):
    """Move an account's renewal date; every remaining step is re-planned and shown."""
    change = ChangeRenewalDate(renewal_date=parse_date(renewal_date), reason=reason)
    async with services(need_db=False) as (_, client, __):
        plan = await change_renewal_date(client, account_id, change)
    out.print(f"renewal date moved from {plan.previous_date} to {plan.renewal_date} ({plan.days_to_renewal} days to go)")
    print_schedule(plan.schedule)


@app.command()
@command
async def renewed(
    account_id: str,
    by: str = typer.Option(..., help="who signed"),
    new_renewal_date: str = typer.Option(None, help="end of the new term (default: one year on)"),
):
    """Record a signed renewal: the countdown runs its post-renewal steps and ends."""
    async with services(need_db=False) as (_, client, __):
        await mark_renewed(client, account_id, Renewed(signed_by=by, new_renewal_date=parse_date(new_renewal_date)))
    out.print(f"{account_id} renewed")


@app.command()
@command
async def churned(account_id: str, by: str = typer.Option(..., help="who records it"),
                  reason: str = typer.Option("", help="why the customer left")):
    """Record a churn: the countdown ends at once with a close-out task."""
    async with services(need_db=False) as (_, client, __):
        await mark_churned(client, account_id, Churned(recorded_by=by, reason=reason))
    out.print(f"{account_id} churned; close-out task created")


@app.command()
@command
async def tasks(
    account_id: str = typer.Option(None, "--account", help="only this account"),
    owner: str = typer.Option(None, help="only this owner's e-mail"),
    overdue: bool = typer.Option(False, "--overdue", help="only tasks past their due time"),
    all_: bool = typer.Option(False, "--all", help="include completed and cancelled tasks"),
):
    """Open tasks by owner, soonest due first; overdue ones marked."""
    async with services(need_temporal=False) as (_, __, pool):
        rows = await pool.fetch(
            "SELECT id, account_id, title, owner_email, due_at, priority, status, due_at < now() AS late FROM tasks"
            " WHERE ($1::text IS NULL OR account_id = $1) AND ($2::text IS NULL OR owner_email = $2)"
            " AND ($3 OR status NOT IN ('completed', 'cancelled')) AND (NOT $4 OR due_at < now())"
            " ORDER BY owner_email NULLS LAST, due_at, id",
            account_id, owner, all_, overdue,
        )
    table = Table("owner", "id", "account", "title", "due", "priority", "status")
    for r in rows:
        late = r["late"] and r["status"] not in ("completed", "cancelled")
        due = when(r["due_at"]) + (" [red]overdue[/red]" if late else "")
        table.add_row(r["owner_email"] or "", str(r["id"]), r["account_id"], escape(r["title"]), due, r["priority"],
                      r["status"])
    out.print(table)
    out.print(f"{len(rows)} tasks, {sum(1 for r in rows if r['late'] and r['status'] not in ('completed', 'cancelled'))} overdue")


@app.command("complete-task")
@command
async def complete_task_cmd(task_id: int, by: str = typer.Option("cli", help="who completed it")):
    """Mark a task completed and tell the play waiting on it."""
    async with services() as (_, client, pool):
        row = await complete_task(client, pool, task_id, by)
    out.print(f"completed task {row['id']}: {escape(row['title'])}")


@app.command("sign-readiness")
@command
async def sign_readiness(account_id: str, by: str = typer.Option(..., help="who signed the checklist")):
    """Sign the day-22 go-live readiness checklist."""
    await signal_onboarding(account_id, OnboardingPlan.sign_readiness_checklist, ReadinessSignoff(signed_by=by))
    out.print("readiness checklist signed")


@app.command("move-go-live")
@command
async def move_go_live(account_id: str, day: int, reason: str = typer.Option("", help="why, for the log")):
    """Move go-live to day N of the plan and print the new schedule."""
    async with services(need_db=False) as (_, client, __):
        result = await client.get_workflow_handle(onboarding_workflow_id(account_id)).execute_update(
            OnboardingPlan.move_go_live, MoveGoLive(day=day, reason=reason)
        )
    out.print(f"go-live moved by {result.shifted_by_days:+d} days to day {result.go_live_day} ({result.go_live_at:%Y-%m-%d})")
    table = Table("day", "when", "step", "status")
    for e in result.schedule:
        table.add_row(str(e.day or ""), when(e.at), escape(e.title), e.status)
    out.print(table)


@app.command()
@command
async def blocker(account_id: str, key: str, title: str):
    """Report a blocker (the CS manager is alerted if it stays open 3 days)."""
    await signal_onboarding(account_id, OnboardingPlan.report_blocker, BlockerReport(key=key, title=title))
    out.print(f"blocker {key} reported")


@app.command("resolve-blocker")
@command
async def resolve_blocker(account_id: str, key: str):
    """Resolve a blocker."""
    await signal_onboarding(account_id, OnboardingPlan.resolve_blocker, BlockerResolved(key=key))
    out.print(f"blocker {key} resolved")


@app.command("list")
@command
async def list_plays(
    playbook: str = typer.Option(None, "--playbook", "-p", help="onboarding, renewal or sla"),
    account_id: str = typer.Option(None, "--account"),
    phase: str = typer.Option(None),
    csm: str = typer.Option(None, help="the CSM's e-mail"),
    risk_band: str = typer.Option(None, help="GREEN, YELLOW, ORANGE or RED"),
    closed: bool = typer.Option(False, "--closed", help="also plays that have ended"),
    limit: int = typer.Option(100),
):
    """Plays by their search attributes (Temporal visibility), newest first."""
    # Deliveries run as workflows of their own (`csplay deliveries list` shows them).
    clauses = ["WorkflowType != 'DeliverItem'"] + ([] if closed else ["ExecutionStatus = 'Running'"])
    for name, value in (("Playbook", playbook), ("AccountId", account_id), ("Phase", phase), ("CsmEmail", csm),
                        ("RiskBand", risk_band)):
        if value:
            clauses.append(f"{name} = {json.dumps(value)}")
    query = " AND ".join(clauses)
    async with services(need_db=False) as (_, client, __):
        # Ids are what people copy into the next command: never cut or wrap them.
        table = Table(Column("play", no_wrap=True, min_width=12), "playbook", "account", "phase", "next action",
                      "status", "started")
        count = 0
        async for w in client.list_workflows(query or None, limit=limit):
            attrs = {p.key.name: p.value for p in w.typed_search_attributes}
            nxt = attrs.get("NextActionAt")
            table.add_row(w.id, attrs.get("Playbook", ""), attrs.get("AccountId", ""), attrs.get("Phase", ""),
                          when(nxt) if nxt else "", w.status.name.lower() if w.status else "",
                          when(w.start_time))
            count += 1
    out.print(table)
    out.print(f"{count} plays" + (f" matching {query}" if query else ""))


@app.command()
@command
async def show(play: str = typer.Argument(..., help="the play's workflow id, e.g. renewal-acme or sla-T-1001")):
    """One play's timeline: what is done, what is current, what comes next, with dates."""
    async with services(need_db=False) as (_, client, __):
        if play.startswith("sla-"):
            from starter.cli_programs import print_ticket

            print_ticket(await sla_status(client, play.removeprefix("sla-")))
        elif play.startswith("renewal-"):
            print_renewal(await renewal_status(client, play.removeprefix("renewal-")))
        elif play.startswith("onboarding-"):
            st = await client.get_workflow_handle(play).query(OnboardingPlan.status)
            out.print(f"[bold]{escape(st.account_id)}[/bold]  phase {st.phase_name}  day {st.day}  "
                      f"go-live day {st.go_live_day}  slip {st.slip_days} days")
            table = Table("day", "when", "step", "status")
            for e in st.schedule:
                table.add_row(str(e.day or ""), when(e.at), escape(e.title), e.status)
            out.print(table)
            print_tasks(st.open_tasks)
            print_failures(st.failed_steps)
        else:
            raise SteeringError(f"{play!r} is not a play id (onboarding-..., renewal-... or sla-...)")


@app.command()
@command
async def pause(play: str, by: str = typer.Option(..., help="who pauses it"), reason: str = typer.Option("")):
    """Pause a play: it acts on nothing until resumed (signals and task completions still land)."""
    async with services(need_db=False) as (_, client, __):
        await pause_play(client, play, by, reason)
    out.print(f"{play} paused")


@app.command()
@command
async def resume(play: str, by: str = typer.Option(..., help="who resumes it")):
    """Resume a paused play; what fell due meanwhile follows the playbook's catch-up rules."""
    async with services(need_db=False) as (_, client, __):
        await resume_play(client, play, by)
    out.print(f"{play} resumed")


@app.command("skip-step")
@command
async def skip_step_cmd(play: str, step: str, by: str = typer.Option(..., help="who skips it"),
                        reason: str = typer.Option("")):
    """Skip one pending step of a play (the play refuses steps it cannot skip and lists those it can)."""
    async with services(need_db=False) as (_, client, __):
        result = await skip_step(client, play, step, by, reason)
    out.print(f"skipped {escape(result.skipped)}; next: {escape(result.next_step)} at {when(result.next_at)}")


@app.command()
@command
async def cancel(play: str):
    """Cancel a play: its open tasks are cancelled and it ends as cancelled."""
    async with services(need_db=False) as (_, client, __):
        await cancel_play(client, play)
    out.print(f"{play} cancelled")


@app.command()
def preview(
    playbook: Playbook = typer.Argument(..., help="onboarding, renewal or sla"),
    account_id: str = typer.Option(None, "--account", help="preview for this account (default: a sample one)"),
    priority: str = typer.Option("P1", help="sla: the ticket's priority"),
    profile: str = typer.Option(None, help="organisation profile (default: PROFILE)"),
    renewal_days_out: int = typer.Option(180, help="renewal: days from launch to the renewal date"),
    start: str = typer.Option(None, "--start", help="launch at 10:00 on this date (YYYY-MM-DD): a DST week, a "
                                                    "holiday season; default: next Monday"),
):
    """The whole timeline of a play (e-mails, tasks, escalations) in about a second, sending nothing.
    Times are the account's local time: weekends, its public holidays and send windows show."""
    from playbooks.samples import SAMPLE_ACCOUNT
    from starter.preview import format_timeline, preview as run_preview

    logging.getLogger("temporalio").setLevel(logging.ERROR)  # a play's own warnings are part of the timeline

    async def go():
        account = None
        if account_id:
            async with services(need_temporal=False) as (_, __, pool):
                try:
                    account = await fetch_account(pool, account_id)
                except LookupError as exc:
                    raise SteeringError(str(exc), 404) from None
        started = time.perf_counter()
        try:
            first_day = date.fromisoformat(start) if start else None
        except ValueError:
            raise ValueError(f"--start {start!r} is not a date like 2027-03-22") from None
        entries = await run_preview(playbook.value, account, renewal_days_out=renewal_days_out,
                                    ticket_priority=priority.upper(), start=first_day, profile=profile)
        return entries, time.perf_counter() - started, (account or SAMPLE_ACCOUNT).timezone

    try:
        entries, seconds, tz = asyncio.run(go())
    except (SteeringError, PlaybookError, DatabaseUnavailable, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    out.print(f"times in {tz}, the account's local time")
    for line in format_timeline(entries, tz):
        out.print(escape(line), highlight=False)
    kinds = Counter(e.kind for e in entries)
    out.print(f"{len(entries)} entries ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
              f"previewed in {seconds:.2f} s; nothing was sent or written")
    leave(0)


@app.command()
def mail(limit: int = typer.Option(20, help="how many of the newest"), show: int = typer.Option(None, help="print message N in full")):
    """E-mails the local SMTP sink received (./run.sh keeps them under .data/mail)."""
    mails = read_maildir(get_settings().data_dir / "mail")
    if show is not None:
        if not 1 <= show <= len(mails):
            err.print(f"[red]error:[/red] there are {len(mails)} messages")
            raise typer.Exit(1)
        m = mails[show - 1]
        out.print(f"From: {escape(m.mail_from)}\nTo: {escape(', '.join(m.rcpt_to))}\nSubject: {escape(m.subject)}\n")
        out.print(escape(m.text))
        return
    table = Table("#", "date", "to", "subject", "step")
    for n, m in list(enumerate(mails, start=1))[-limit:]:
        table.add_row(str(n), m.date, escape(", ".join(m.rcpt_to)), escape(m.subject), escape(m.step))
    out.print(table)


from starter import webhooks_cli  # noqa: E402  (its commands reach back for command/services lazily)
app.add_typer(webhooks_cli.app, name="webhooks")
from starter import deliveries_cli  # noqa: E402
app.add_typer(deliveries_cli.app, name="deliveries")
app.add_typer(mail_cli.app, name="suppressions")


@app.command()
def validate(folder: Path = typer.Option(None, help="playbooks folder (default: the configured one)"),
             profile: str = typer.Option(None, help="organisation profile (default: PROFILE)")):
    """Check an organisation profile and every playbook YAML and template it uses; errors as
    file:line: field: message. With --profile, also which files are the profile's own."""
    from playbooks.profiles import load_profile
    from starter.profiles_cli import show_sources

    root = folder or get_settings().playbooks_dir
    problems = validate_all(root, profile)
    if profile:
        try:
            load_profile(profile, root)
        except PlaybookError:
            pass  # its problems are among the others
        else:
            show_sources(root, profile)  # which files are its own, which the default's
    for p in problems:
        err.print(escape(p))
    if problems:
        raise typer.Exit(1)
    out.print(f"profile {profile} valid" if profile else "all playbooks valid")


from starter import import_cli  # noqa: E402  (its commands import this module's helpers when they run)
from starter import profiles_cli  # noqa: E402

app.add_typer(profiles_cli.app, name="profiles")

app.add_typer(import_cli.app, name="import")

from starter import cli_programs  # noqa: E402, F401  (tickets, churn, NPS, SLA report: registers its commands)
from starter import cli_access  # noqa: E402  (its commands use command() and services() above)

cli_access.register(app)

if __name__ == "__main__":
    app()
