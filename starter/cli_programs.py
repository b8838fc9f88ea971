"""`csplay ticket`, `csplay churn`, `csplay nps` and `csplay sla-report`: the support desk's SLA
clocks, churn risk and NPS cycles from a terminal. Registered by starter/cli.py (imported at its
end, so the helpers it defines are there when this module reads them)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.markup import escape

from core.settings import get_settings
from playbooks.loader import SCORING_FILE, load_scoring
from activities.churn import risk_summary
from activities.nps import nps_report, send_nps_report
from activities.sla import send_sla_report, sla_attainment
from playbooks.profiles import profile_of
from starter.steering import (
    SteeringError, choose_detractor_path, churn_status, flag_risk,
    launch_nps_cycle, read_metrics, open_ticket, playbook_snapshot, signal_play, sla_status,
)
from workflows.churn import ChurnWatch
from workflows.churn_messages import IndicatorFlag, MetricsReading, ScoringUpdate
from workflows.nps import NpsCycle
from workflows.sla_messages import (
    SLA, Acknowledged, OnHold, PriorityChanged, Reopened, Resolved, Resumed, sla_workflow_id,
)

from starter.cli import app, command, err, out, print_failures, print_tasks, services, when  # noqa: E402

ticket = typer.Typer(help="Support tickets under an SLA clock.", no_args_is_help=True)
app.add_typer(ticket, name="ticket")


def parse_moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date and time; use e.g. 2027-01-08T17:30:00-05:00") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{value!r} needs a UTC offset, e.g. 2027-01-08T17:30:00-05:00")
    return moment


@ticket.command("open")
@command
async def ticket_open(
    ticket_id: str,
    account: str = typer.Option(..., help="account id"),
    priority: str = typer.Option(..., help="P0, P1, P2 or P3"),
    subject: str = typer.Option(..., help="what the customer reported"),
    opened_at: str = typer.Option(None, help="when it was opened (default: now), with UTC offset"),
):
    """Start the SLA clock of a ticket."""
    async with services() as (settings, client, pool):
        handle = await open_ticket(client, pool, settings, ticket_id, account, priority.upper(), subject,
                                   parse_moment(opened_at), "cli")
        st = await sla_status(client, ticket_id)
    out.print(f"started [bold]{handle.id}[/bold]")
    print_ticket(st)


def print_ticket(st) -> None:
    out.print(f"[bold]{escape(st.ticket_id)}[/bold] {st.priority} {st.tier} {escape(st.account_id)}  "
              f"status {st.status}  escalation level {st.escalation_level}")
    table = Table("clock", "target", "elapsed (min)", "due", "met")
    for c in st.clocks:
        due = c.due_at.strftime("%Y-%m-%d %H:%M %Z") if c.due_at else ("stopped" if not c.running else "-")
        table.add_row(c.clock, c.target, str(c.elapsed_minutes), due, {True: "yes", False: "NO", None: "-"}[c.met])
    out.print(table)
    for e in st.escalations:
        out.print(f"  L{e.level} -> {e.to_role}  {escape(e.rule)}  {e.at:%Y-%m-%d %H:%M %Z}")
    for clock, percent in st.credits.items():
        out.print(f"  service credit: {percent}% of the monthly fee ({clock})")
    out.print(f"next: {escape(st.next_action)} at {when(st.next_action_at)}")
    print_failures(st.failed_steps)


@ticket.command("status")
@command
async def ticket_status(ticket_id: str):
    """A ticket's clocks, escalations and credits."""
    async with services(need_db=False) as (_, client, __):
        print_ticket(await sla_status(client, ticket_id))


async def ticket_signal(ticket_id: str, signal: str, arg) -> None:
    async with services(need_db=False) as (_, client, __):
        await signal_play(client, sla_workflow_id(ticket_id), signal, arg)
    out.print(f"{ticket_id}: {signal.replace('_', ' ')}")


@ticket.command("ack")
@command
async def ticket_ack(ticket_id: str, by: str = typer.Option(..., help="who answered the customer")):
    """First response given: stops the response clock."""
    await ticket_signal(ticket_id, "acknowledged", Acknowledged(by=by))


@ticket.command("priority")
@command
async def ticket_priority(ticket_id: str, priority: str, by: str = typer.Option(..., help="who changed it")):
    """Change the priority: both clocks re-plan from the new targets."""
    keys = profile_of(get_settings()).priority_keys
    key = next((k for k in keys if k.lower() == priority.lower()), None)
    if key is None:
        raise SteeringError(f"priority {priority!r} must be one of {', '.join(keys)}")
    await ticket_signal(ticket_id, "priority_changed", PriorityChanged(priority=key, by=by))


@ticket.command("hold")
@command
async def ticket_hold(ticket_id: str, reason: str = typer.Option("pending customer", help="why")):
    """On hold / pending customer: both clocks stop."""
    await ticket_signal(ticket_id, "on_hold", OnHold(reason=reason))


@ticket.command("resume")
@command
async def ticket_resume(ticket_id: str, by: str = typer.Option("cli", help="who")):
    """Off hold: the clocks run again."""
    await ticket_signal(ticket_id, "resumed", Resumed(by=by))


@ticket.command("resolve")
@command
async def ticket_resolve(ticket_id: str, by: str = typer.Option(..., help="who resolved it")):
    """Resolved: the resolution clock stops (a reopen within the window resumes it)."""
    await ticket_signal(ticket_id, "resolved", Resolved(by=by))


@ticket.command("reopen")
@command
async def ticket_reopen(ticket_id: str, reason: str = typer.Option("", help="why")):
    """Reopened: the resolution clock resumes where it stopped."""
    await ticket_signal(ticket_id, "reopened", Reopened(reason=reason))


churn = typer.Typer(help="Churn risk: each account's score, band and intervention.", no_args_is_help=True)
app.add_typer(churn, name="churn")


@churn.command("flag")
@command
async def churn_flag(account_id: str, indicator: str, by: str = typer.Option(..., help="who says so"),
                     gone: bool = typer.Option(False, "--gone", help="the indicator no longer holds"),
                     note: str = typer.Option("")):
    """Flag a risk indicator or positive factor (e.g. key_stakeholder_departed); the account is rescored."""
    async with services() as (settings, client, pool):
        await flag_risk(client, pool, settings, account_id,
                        IndicatorFlag(indicator=indicator, present=not gone, source=f"cli:{by}", note=note))
        out.print(f"{indicator} {'cleared' if gone else 'flagged'} for {account_id}")


@churn.command("metrics")
@command
async def churn_metrics(account_id: str, readings: list[str] = typer.Argument(..., help="metric=value, e.g. dau_pct=8 nps=20"),
                        by: str = typer.Option("cli", help="where the readings come from")):
    """Record metric readings (DAU %, NPS, CSAT, usage, health components); the account is rescored."""
    values: dict[str, float] = {}
    for item in readings:
        name, _, value = item.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise SteeringError(f"{item!r}: expected metric=number") from None
    health_keys = {c.key for c in load_scoring(profile_of(get_settings()).path(SCORING_FILE)).health.components}
    reading = MetricsReading(values={k: v for k, v in values.items() if k not in health_keys},
                             health={k: v for k, v in values.items() if k in health_keys}, source=f"cli:{by}")
    async with services() as (settings, client, pool):
        await read_metrics(client, pool, settings, account_id, reading)
    out.print(f"{len(values)} readings recorded for {account_id}")


@churn.command("status")
@command
async def churn_status_cmd(account_id: str):
    """An account's risk score, band, what drives it, and the intervention under way."""
    async with services(need_db=False) as (_, client, __):
        st = await churn_status(client, account_id)
    health = f"  health {st.health_score}/100" if st.health_score is not None else ""
    out.print(f"[bold]{escape(account_id)}[/bold]  risk {st.score}  [bold]{st.band}[/bold]  {st.phase}{health}")
    table = Table("indicator", "points")
    for i in st.indicators:
        table.add_row(escape(i["label"]), f"{i['points']:+d}")
    out.print(table)
    for c in st.band_changes[-5:]:
        out.print(f"  {c.at:%Y-%m-%d %H:%M}  {c.from_band} -> {c.to_band} (risk {c.score})")
    out.print(f"next: {escape(st.next_action)} at {when(st.next_action_at)}")
    print_tasks(st.open_tasks)


@churn.command("apply-scoring")
@command
async def churn_apply_scoring(by: str = typer.Option(..., help="who changed the model")):
    """Send the current churn_scoring.yaml to every running churn watch; each rescores at once."""
    async with services(need_db=False) as (settings, client, _):
        scoring = load_scoring(profile_of(settings).path(SCORING_FILE))
        ids = [w.id async for w in client.list_workflows("WorkflowType = 'ChurnWatch' AND ExecutionStatus = 'Running'")]
        moved = 0
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=err) as progress:
            bar = progress.add_task(f"applying scoring v{scoring.version}", total=len(ids))
            for wid in ids:
                view = await client.get_workflow_handle(wid).execute_update(
                    ChurnWatch.apply_scoring, ScoringUpdate(scoring=scoring, by=by))
                moved += view.band != view.previous_band
                progress.advance(bar)
    out.print(f"scoring v{scoring.version} applied to {len(ids)} watches; {moved} changed band")


@churn.command("summary")
@command
async def churn_summary(month: str = typer.Option(None, help="YYYY-MM (default: last month)")):
    """The monthly churn-risk summary: accounts per band, moves, rescued and lost."""
    day = parse_month(month)
    async with services(need_temporal=False) as (_, __, pool):
        report = await risk_summary(pool, day)
    table = Table("band", "accounts", "ARR")
    for band, n in report["counts"].items():
        table.add_row(band, str(n), f"${report['arr'][band]:,.0f}")
    out.print(f"Churn risk, {report['month']}")
    out.print(table)
    for m in report["moves"]:
        out.print(f"  {m['at']:%Y-%m-%d}  {escape(m['account'])}: {m['from_band']} -> {m['to_band']}")
    out.print(f"rescued: {', '.join(report['rescued']) or 'none'}; lost: {', '.join(report['lost']) or 'none'}")


def parse_month(month: str | None) -> date:
    if month is None:
        from activities.churn import NY  # the reports' months are New York months

        return (datetime.now(NY).date().replace(day=1) - timedelta(days=1)).replace(day=1)
    try:
        return date.fromisoformat(f"{month}-01")
    except ValueError:
        raise typer.BadParameter(f"{month!r} is not a month; use YYYY-MM") from None


nps = typer.Typer(help="NPS survey cycles, answers' follow-up, and the quarterly report.", no_args_is_help=True)
app.add_typer(nps, name="nps")


@nps.command("launch")
@command
async def nps_launch(
    account_ids: list[str] = typer.Option(None, "--account", help="only these accounts (repeat the option)"),
    tier: list[str] = typer.Option(None, "--tier", help="only these tiers"),
    cycle: str = typer.Option(None, help="cycle id (default: the month end just past, e.g. 2027-01)"),
    wait: bool = typer.Option(True, help="show progress until every invitation is out"),
):
    """Send a survey cycle now (the quarterly one runs by itself from a Temporal Schedule)."""
    async with services() as (settings, client, pool):
        handle = await launch_nps_cycle(client, pool, settings, cycle, account_ids or None, tier or None, "cli")
        out.print(f"started [bold]{handle.id}[/bold]")
        if not wait:
            return
        total = await pool.fetchval(
            "SELECT count(*) FROM contacts c JOIN accounts a ON a.id = c.account_id"
            " WHERE a.status IN ('onboarding', 'active', 'at-risk') AND ($1::text[] IS NULL OR a.id = ANY($1::text[]))"
            " AND a.merged_into IS NULL AND c.email IS NOT NULL",
            account_ids or None,
        )
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err) as progress:
            bar = progress.add_task("sending invitations", total=total)
            while True:
                st = await handle.query(NpsCycle.status)
                progress.update(bar, completed=st.sent)
                if st.phase != "sending":
                    break
                await asyncio.sleep(1)
    out.print(f"{st.sent} invitations sent in {st.batches} batches; reminders and closing follow by themselves "
              f"(links expire {st.expires_at:%Y-%m-%d})")


@nps.command("report")
@command
async def nps_report_cmd(cycle: str, email: bool = typer.Option(False, "--email", help="also e-mail CS leadership")):
    """NPS = % promoters - % detractors, overall and by tier, vertical and tenure, with response rates."""
    async with services(need_temporal=False) as (settings, _, pool):
        if email:
            snapshot = playbook_snapshot(settings, "nps")
            report, already = await send_nps_report(pool, settings, cycle, snapshot.template("report"),
                                                    snapshot.content.report.to)
        else:
            report, already = await nps_report(pool, cycle), None
    o = report["overall"]
    out.print(f"NPS {cycle}: [bold]{o['nps']}[/bold]  ({o['promoters']} promoters, {o['passives']} passives, "
              f"{o['detractors']} detractors; {o['responses']} of {o['invited']} answered, {o['response_rate']}%)")
    for group in report["groups"]:
        table = Table(group["by"], "NPS", "answers", "response rate")
        for r in group["rows"]:
            table.add_row(escape(r["name"]), str(r["nps"]), str(r["responses"]), f"{r['response_rate']}%")
        out.print(table)
    if email:
        out.print("report e-mail " + ("was already sent for this cycle" if already else "sent"))


@nps.command("choose-path")
@command
async def nps_choose_path(play: str, path: str, by: str = typer.Option(..., help="who decided")):
    """A detractor's recovery path: fix_and_resurvey, graceful_churn or escalated_engagement."""
    async with services(need_db=False) as (_, client, __):
        st = await choose_detractor_path(client, play, path, by)
    out.print(f"{play}: path {st.path}; next {escape(st.next_action)} at {when(st.next_action_at)}")


@app.command("sla-report")
@command
async def sla_report(
    month: str = typer.Option(None, help="YYYY-MM (default: last month)"),
    email: bool = typer.Option(False, "--email", help="also e-mail it to CS leadership"),
):
    """SLA attainment by tier and priority for the tickets opened in a month, with credits owed."""
    day = parse_month(month)
    async with services(need_temporal=False) as (settings, _, pool):
        if email:
            snapshot = playbook_snapshot(settings, SLA)
            report, already = await send_sla_report(pool, settings, day, snapshot.template("report"),
                                                    snapshot.content.report.to)
        else:
            report, already = await sla_attainment(pool, day), None
    table = Table("tier", "priority", "tickets", "response in SLA", "resolution in SLA", "open", "credits owed")
    for r in report["rows"]:
        table.add_row(r["tier"], r["priority"], str(r["tickets"]), f"{r['response_met']} ({r['response_pct']}%)",
                      f"{r['resolution_met']} ({r['resolution_pct']}%)", str(r["open"]), f"${r['credits']:,.2f}")
    t = report["totals"]
    table.add_row("all", "", str(t["tickets"]), f"{t['response_pct']}%", f"{t['resolution_pct']}%", "",
                  f"${t['credits']:,.2f}", style="bold")
    out.print(f"SLA attainment, tickets opened in {report['month']}")
    out.print(table)
    if email:
        out.print("report e-mail " + ("was already sent for this month" if already else "sent"))
