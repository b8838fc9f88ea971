"""`csplay import`: bring a book of business in from CRM exports (issue 15).

    csplay import hubspot --companies companies.csv --contacts contacts.csv [--apply]
    csplay import salesforce --accounts extract_Account.csv --contacts extract_Contact.csv [--apply]
    csplay import csv --mapping my-template.yaml --accounts accounts.xlsx [--contacts people.xlsx] [--apply]

A dry run by default: a table of what would be created, updated, unchanged and refused, then
the refused rows and the warnings as `file:row: column: reason`. `--apply` writes. Exit 1
when the mapping or a file is unusable (one line each, no traceback); refused rows are
reported, not fatal (exit 0).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.logs import configure_logging
from core.settings import get_settings
from starter.security.audit import Actor
from starter.book.importer import (
    Dialect, ImportFile, ImportProblem, ImportReport, crm_dir, load_mapping, load_rates, load_team, run_import,
)

app = typer.Typer(help="Import accounts and contacts from CRM exports (a dry run unless --apply).",
                  no_args_is_help=True, add_completion=False)

APPLY = typer.Option(False, "--apply", help="write the accounts and contacts (default: a dry run that writes nothing)")
TEAM = typer.Option(None, "--team", help="our CSMs and their CRM owners (default: playbooks/crm/team.yaml)")
RATES = typer.Option(None, "--currencies", help="USD per currency unit (default: playbooks/crm/currencies.yaml)")
SHOW = typer.Option(50, "--show", min=0, help="how many refused rows, warnings and changes to list")
BY = typer.Option(None, "--by", help="who runs the import, for import_runs (default: your login)")
ENCODING = typer.Option(None, "--encoding", help="a CSV's text encoding when it is not UTF-8 or UTF-16, e.g. cp1252")
JSON_OUT = typer.Option(False, "--json", help="print the report as JSON instead of tables")


def _run(dialect: Dialect, mapping: Path | None, accounts: Path | None, contacts: Path | None, **options) -> None:
    from starter.cli import command  # starter.cli registers this module: import it when a command runs

    command(_import)(dialect, mapping, accounts, contacts, **options)


async def _import(dialect: Dialect, mapping_path: Path | None, accounts: Path | None, contacts: Path | None, *,
                  apply: bool, team: Path | None, currencies: Path | None, sheet: str | None,
                  contacts_sheet: str | None, encoding: str | None, show: int, by: str | None,
                  as_json: bool) -> None:
    from starter.cli import err, out, services

    settings = get_settings()
    # The report is the output: the log's lines (JSON by default) only for what went wrong, on stderr.
    configure_logging("WARNING", settings.log_format)
    crm = crm_dir(settings.playbooks_dir)
    mapping = load_mapping(mapping_path or crm / f"{dialect}.yaml", dialect)
    team_content = load_team(team or crm / "team.yaml")
    rates = load_rates(currencies or crm / "currencies.yaml")
    source = f"csv:{Path(mapping_path).stem}" if dialect == "csv" and mapping_path else None
    files = {
        "accounts": ImportFile(accounts, sheet=sheet) if accounts else None,
        "contacts": ImportFile(contacts, sheet=contacts_sheet) if contacts else None,
    }
    async with services(need_temporal=False) as (_, __, pool):
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True, disable=as_json) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    label = {"checking": "checking the files", "sponsors": "naming sponsors"}.get(stage, stage)
                    tasks[stage] = bar.add_task(label, total=total or None)
                bar.update(tasks[stage], completed=done, total=total or None)

            try:
                report = await run_import(pool, mapping, dialect=dialect, **files, team=team_content, rates=rates,
                                          apply=apply, run_by=by or _login(), source_label=source,
                                          actor=Actor(f"cli:{_login()}", "cli"),
                                          progress=progress, encoding=encoding)
            except ImportProblem as exc:
                for line in str(exc).splitlines():
                    err.print(f"[red]error:[/red] {escape(line)}")
                raise typer.Exit(1) from None
    if as_json:
        out.print_json(json.dumps(report.to_json(), default=str))
    else:
        print_report(out, report, show)


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container: still say it was the CLI
        return "cli"


def print_report(out, report: ImportReport, show: int) -> None:
    """The summary table, then refused rows, warnings and changed fields, `show` of each."""
    verb = "created" if report.apply else "to create"
    table = Table(title=f"{report.dialect} import into {report.connection}" + ("" if report.apply else " (dry run)"))
    for column in ("", verb, "updated" if report.apply else "to update", "unchanged", "refused"):
        table.add_column(column, justify="right" if column else "left")
    for kind, c in report.counts.items():
        table.add_row(kind, f"{c.created:,}", f"{c.updated:,}", f"{c.unchanged:,}", f"{c.refused:,}")
    out.print(table)
    if report.sponsors:
        out.print(f"sponsors named from the contacts' titles and roles: {report.sponsors:,}")
    _section(out, "refused", [f"{p.where}: {p.column}: {p.reason}" for p in report.refused.items],
             report.refused.total, show)
    _section(out, "warnings", [f"{p.where}: {p.column}: {p.reason}" for p in report.warnings.items],
             report.warnings.total, show)
    if report.warnings.total > show and report.warning_kinds:
        out.print("[bold]warnings by kind[/bold]")
        for (column, reason), n in report.warning_kinds.most_common(10):
            out.print(f"  {n:>8,}  {escape(column)}: {escape(reason)}")
    _section(out, "updated" if report.apply else "would update",
             [f"{c.where}: {c.account_id}: {', '.join(c.fields)}" for c in report.changes.items],
             report.changes.total, show)
    rate = report.rows / report.seconds if report.seconds else 0
    out.print(f"{report.rows:,} rows read in {report.seconds:.1f} s ({rate:,.0f} rows/s)")
    if report.apply:
        out.print(f"[green]applied[/green]: {escape(report.summary())} (import run {report.run_id})")
    else:
        out.print("[yellow]dry run[/yellow]: nothing was written; run again with --apply to write")


def _section(out, title: str, lines: list[str], total: int, show: int) -> None:
    if not total:
        return
    out.print(f"[bold]{title}[/bold] ({total:,})")
    for line in lines[:show]:
        out.print(f"  {escape(line)}", soft_wrap=True)
    if total > min(show, len(lines)):
        out.print(f"  ... and {total - min(show, len(lines)):,} more")


@app.command("hubspot")
def hubspot(
    companies: Path = typer.Option(None, "--companies", help="the companies export (CSV or XLSX)"),
    contacts: Path = typer.Option(None, "--contacts", help="the contacts export (CSV or XLSX)"),
    apply: bool = APPLY,
    mapping: Path = typer.Option(None, "--mapping",
                                 help="another HubSpot mapping (default: playbooks/crm/hubspot.yaml)"),
    team: Path = TEAM, currencies: Path = RATES, show: int = SHOW, by: str = BY, encoding: str = ENCODING,
    as_json: bool = JSON_OUT,
):
    """HubSpot's "export all companies / contacts" files, headers in the exporting user's language."""
    _run("hubspot", mapping, companies, contacts, apply=apply, team=team, currencies=currencies, sheet=None,
         contacts_sheet=None, encoding=encoding, show=show, by=by, as_json=as_json)


@app.command("salesforce")
def salesforce(
    accounts: Path = typer.Option(None, "--accounts", help="the Account extract (Data Loader CSV)"),
    contacts: Path = typer.Option(None, "--contacts", help="the Contact extract (Data Loader CSV)"),
    apply: bool = APPLY,
    mapping: Path = typer.Option(None, "--mapping",
                                 help="another Salesforce mapping (default: playbooks/crm/salesforce.yaml)"),
    team: Path = TEAM, currencies: Path = RATES, show: int = SHOW, by: str = BY, encoding: str = ENCODING,
    as_json: bool = JSON_OUT,
):
    """Salesforce Data Loader extracts of Account and Contact (upper-case API names, CRLF)."""
    _run("salesforce", mapping, accounts, contacts, apply=apply, team=team, currencies=currencies, sheet=None,
         contacts_sheet=None, encoding=encoding, show=show, by=by, as_json=as_json)


@app.command("csv")
def csv_import(
    mapping: Path = typer.Option(..., "--mapping",
                                 help="your mapping (source: csv), e.g. from playbooks/crm/examples/"),
    accounts: Path = typer.Option(None, "--accounts", help="the accounts file (CSV or XLSX)"),
    contacts: Path = typer.Option(None, "--contacts", help="the contacts file (CSV or XLSX)"),
    apply: bool = APPLY,
    sheet: str = typer.Option(None, "--sheet",
                              help="the accounts' XLSX sheet (default: the mapping's, else the first)"),
    contacts_sheet: str = typer.Option(None, "--contacts-sheet", help="the contacts' XLSX sheet"),
    team: Path = TEAM, currencies: Path = RATES, show: int = SHOW, by: str = BY, encoding: str = ENCODING,
    as_json: bool = JSON_OUT,
):
    """Any other export or spreadsheet (a ChurnZero or Gainsight template), read through your mapping."""
    _run("csv", mapping, accounts, contacts, apply=apply, team=team, currencies=currencies, sheet=sheet,
         contacts_sheet=contacts_sheet, encoding=encoding, show=show, by=by, as_json=as_json)
