"""An import run: a mapping and its export files, streamed through the Book in batches.

`run_import` reads the accounts file first, then the contacts file, then names sponsors;
each in batches of `batch_size` records (2,000) so that memory stays flat whatever the
length of the files. Before anything is written every file is read once to the end, so a
file that breaks at line 90,000 (not text, a quote never closed) is refused with nothing
written. A dry run (`apply=False`) plans and reports; `apply=True` writes, and records the
run in `import_runs` with its report.

The report (`ImportReport`) counts what was (or would be) created, updated, unchanged and
refused, per kind; it keeps the first `keep` refused rows, warnings and changed accounts
(`file:row`, column, reason; the fields that changed) and says how many more there were.

Dialects (issue 15): `hubspot` (companies and contacts exports), `salesforce` (Account and
Contact Data Loader extracts) and `csv` (anything else, read through the user's mapping with
`source: csv`). After each applied batch the webhooks' hook for events waiting on the
objects just written is called when that module exists
(`starter.book.waiting.resolve_waiting(pool, connection, object_type, crm_ids)`).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import asyncpg

from core.metrics import count
from starter.security.audit import Actor, audit

from core.logs import get_logger
from playbooks.crm_mapping import CurrenciesContent, FileLayout, Mapping, TeamContent
from playbooks.loader import PlaybookError, _load_config
from starter.book.readers import FileProblem, Limits, Table, open_table
from starter.book.records import Problem, account_record, contact_record
from starter.book.report import KEEP, Firsts, ImportReport, Tally
from starter.book import writes
from starter.book.store import Book, Outcome, sync_team

log = get_logger("import")

Dialect = Literal["hubspot", "salesforce", "csv"]
DIALECTS: tuple[str, ...] = ("hubspot", "salesforce", "csv")
BATCH_SIZE = 2000
# (stage, records done, records in all): stages are "checking", "accounts", "contacts", "sponsors".
Progress = Callable[[str, int, int], None]


class ImportProblem(ValueError):
    """An import that cannot run: an unusable mapping or file. One line per problem, each
    `file:line: field: message` or `file:line: message`."""


# -- content ------------------------------------------------------------------------------------
def crm_dir(playbooks_dir: Path) -> Path:
    """Where the CRM content lives: mappings, team.yaml, currencies.yaml, examples/."""
    return Path(playbooks_dir) / "crm"


def load_mapping(path: Path, dialect: Dialect) -> Mapping:
    """A mapping file, validated, that must be of `dialect` (its `source`). Raises PlaybookError
    (`file:line: field: message`)."""
    mapping: Mapping = _load_config(Path(path), Mapping)
    if mapping.source != dialect:
        raise PlaybookError([(str(path), 1, "source", f"this mapping reads {mapping.source} files, not {dialect} "
                                                      f"ones: use `csplay import {mapping.source}`"
                              if mapping.source in DIALECTS else f"a {mapping.source} mapping cannot import files")])
    return mapping


def load_team(path: Path) -> TeamContent:
    """team.yaml (our CSMs and their CRM owner keys), validated. Raises PlaybookError."""
    return _load_config(Path(path), TeamContent)


def load_rates(path: Path) -> CurrenciesContent:
    """currencies.yaml (US dollars per unit of each currency), validated. Raises PlaybookError."""
    return _load_config(Path(path), CurrenciesContent)


# -- the run ------------------------------------------------------------------------------------
@dataclass
class ImportFile:
    """One file of an import: where it is, how its rows are named (`name:row`, the file's name
    by default), and which XLSX sheet (else the mapping's, else the first)."""

    path: Path
    name: str | None = None
    sheet: str | None = None


WAITING_MODULE = "starter.book.waiting"


def _waiting_hook():
    """The webhooks' `resolve_waiting`, when that module is there (another branch adds it).
    A module that is there but fails to import is an error, not a missing hook."""
    module = sys.modules.get(WAITING_MODULE)
    if module is None:
        if importlib.util.find_spec(WAITING_MODULE) is None:
            return None
        module = importlib.import_module(WAITING_MODULE)
    return getattr(module, "resolve_waiting", None)


def _open(file: ImportFile, layout: FileLayout, limits: Limits, encoding: str | None) -> Table:
    return open_table(file.path, name=file.name, sheet=file.sheet or layout.sheet, header_row=layout.header_row,
                      encoding=encoding, limits=limits)


def _check_columns(table: Table, section, kind: str, tally: Tally) -> list[str]:
    """Problems that make the file unusable (no id column; contacts without their companies'),
    and a warning for each mapped field the file has no column for."""
    problems = []
    where = f"{table.name}:{table.header_line}"
    if table.has_column(section.id) is None:
        problems.append(f"{where}: no column for the record id (one of: {', '.join(section.id.columns)}): is this "
                        f"the {kind} file of this CRM?")
    if kind == "contacts" and table.has_column(section.companies) is None:
        problems.append(f"{where}: no column for the contacts' companies (one of: "
                        f"{', '.join(section.companies.columns)})")
    for name, rule in section.fields.items():
        if rule.columns and table.has_column(rule) is None:
            tally.warning(Problem(where, name, f"no column for {name} ({' / '.join(rule.columns)}): left as it is"
                                  , fatal=False))
    for label in table.repeated_headers:
        tally.warning(Problem(where, label, "this column label appears twice: the first one is read", fatal=False))
    return problems


def _open_tables(mapping: Mapping, accounts: ImportFile | None, contacts: ImportFile | None, limits: Limits,
                 encoding: str | None, tally: Tally) -> list[tuple[str, Table, FileLayout]]:
    """Each file given, open, its header checked against the mapping. Raises ImportProblem."""
    if accounts is None and contacts is None:
        raise ImportProblem("give the accounts (companies) file, the contacts file, or both")
    wanted = [("accounts", accounts, mapping.accounts), ("contacts", contacts, mapping.contacts)]
    missing = [kind for kind, file, section in wanted if file is not None and section is None]
    if missing:
        raise ImportProblem(f"the mapping {mapping.connection!r} has no {missing[0]} section: it cannot read that file")
    tables: list[tuple[str, Table, FileLayout]] = []
    try:
        problems: list[str] = []
        for kind, file, section in wanted:
            if file is None:
                continue
            table = _open(file, section, limits, encoding)
            tables.append((kind, table, section))
            tally.report.files.append(table.name)
            problems += _check_columns(table, section, kind, tally)
        if problems:
            raise ImportProblem("\n".join(problems))
    except (FileProblem, ImportProblem) as exc:
        for _, table, _ in tables:
            table.close()
        raise ImportProblem(str(exc)) from None
    return tables


def check_import(mapping: Mapping, *, accounts: ImportFile | None = None, contacts: ImportFile | None = None,
                 limits: Limits = Limits(), encoding: str | None = None) -> list[Problem]:
    """The quick look an upload gets before its dry run: the mapping can read the files given,
    each opens and has the columns it must have. Raises ImportProblem; returns the warnings
    about its columns (a mapped field without a column)."""
    report = ImportReport(dialect=mapping.source, source="", connection=mapping.connection, apply=False, files=[])
    tally = Tally(report)
    for _, table, _ in _open_tables(mapping, accounts, contacts, limits, encoding, tally):
        table.close()
    return report.warnings.items


async def run_import(pool: asyncpg.Pool, mapping: Mapping, *, dialect: Dialect, accounts: ImportFile | None = None,
                     contacts: ImportFile | None = None, team: TeamContent, rates: CurrenciesContent, apply: bool,
                     run_by: str, source_label: str | None = None, progress: Progress | None = None,
                     batch_size: int = BATCH_SIZE, keep: int = KEEP, limits: Limits = Limits(),
                     encoding: str | None = None, actor: Actor | None = None) -> ImportReport:
    """Import (or with apply=False, plan) the accounts file, then the contacts file, then the
    sponsors. Raises ImportProblem when the mapping lacks a section for a file given or a file
    is unusable, before anything is written. Refused rows are reported, not raised. With apply,
    the run is recorded in the audit log as `actor` (default: `run_by`, a system actor)."""
    started = time.monotonic()
    report = ImportReport(dialect=dialect, source=source_label or mapping.connection, connection=mapping.connection,
                          apply=apply, files=[], refused=Firsts(keep), warnings=Firsts(keep), changes=Firsts(keep))
    tally = Tally(report)
    # Reading whole files is CPU work: on a thread, so that a service running imports keeps answering.
    tables = await asyncio.to_thread(_open_tables, mapping, accounts, contacts, limits, encoding, tally)
    try:
        totals = {}
        for kind, table, _ in tables:
            if progress:
                progress("checking", 0, 0)
            try:
                totals[kind] = await asyncio.to_thread(table.count)
            except FileProblem as exc:
                raise ImportProblem(str(exc)) from None
        await _write_all(pool, report, tables, totals, mapping, team, rates, tally, run_by, progress, batch_size,
                         started)
    finally:
        for _, table, _ in tables:
            table.close()
    report.seconds = round(time.monotonic() - started, 3)
    if report.run_id is not None:
        await pool.execute(
            "UPDATE import_runs SET status = 'finished', finished_at = now(), created = $2, updated = $3,"
            " unchanged = $4, refused = $5, warnings = $6, report = $7 WHERE id = $1",
            report.run_id, report.total("created"), report.total("updated"), report.total("unchanged"),
            report.total("refused"), report.warnings.total, report.to_json())
        # Imports are in the audit log (issue 16): who ran which, and what it did.
        await audit(pool, actor or run_by, "import", f"import_run:{report.run_id}", detail=(
            f"{report.source}: created {report.total('created')}, updated {report.total('updated')}, "
            f"unchanged {report.total('unchanged')}, refused {report.total('refused')}"))
    for kind, c in report.counts.items():
        for action in ("created", "updated", "unchanged", "refused"):
            if getattr(c, action):
                count("imports", getattr(c, action), source=report.source, action=action)
    log.info("import.done", dialect=dialect, connection=report.connection, apply=apply, rows=report.rows,
             seconds=report.seconds, run_id=report.run_id, created=report.total("created"),
             updated=report.total("updated"), unchanged=report.total("unchanged"), refused=report.total("refused"),
             warnings=report.warnings.total)
    return report


async def _write_all(pool: asyncpg.Pool, report: ImportReport, tables: list, totals: dict, mapping: Mapping,
                     team: TeamContent, rates: CurrenciesContent, tally: Tally, run_by: str, progress: Progress | None,
                     batch_size: int, started: float) -> None:
    """Accounts, contacts, sponsors, and with apply the import_runs row (failed if this fails)."""
    book = Book(pool, mapping, team, rates, apply=report.apply, source_label=report.source)
    if report.apply:
        await sync_team(pool, team)
        report.run_id = await pool.fetchval(
            "INSERT INTO import_runs (source, connection, files, run_by) VALUES ($1, $2, $3, $4) RETURNING id",
            report.source, report.connection, report.files, run_by)
    hook = _waiting_hook() if report.apply else None
    try:
        for kind, table, _ in tables:
            try:
                await _stream(book, kind, table, mapping, tally, hook, totals[kind], progress, batch_size)
            except FileProblem as exc:  # changed on disk since it was checked
                raise ImportProblem(str(exc)) from None
        await _refresh_statistics(book, final=True)
        done = 0
        async for chosen in book.sponsor_batches(batch_size):
            report.sponsors += len(chosen)
            done += len(chosen)
            if progress:
                progress("sponsors", done, 0)  # named so far; how many will be is not known
    except BaseException as exc:
        if report.run_id is not None:
            report.seconds = round(time.monotonic() - started, 3)
            await asyncio.shield(pool.execute(
                "UPDATE import_runs SET status = 'failed', finished_at = now(), report = $2 WHERE id = $1",
                report.run_id, report.to_json()))
        if isinstance(exc, asyncpg.UniqueViolationError):
            raise ImportProblem(f"import run {report.run_id}: another import or a CRM webhook wrote some of these "
                                "records meanwhile; what was written stays: run the import again to complete it"
                                ) from None
        raise


async def _stream(book: Book, kind: str, table: Table, mapping: Mapping, tally: Tally, hook, total: int,
                  progress: Progress | None, batch_size: int) -> None:
    """Read `table` in batches into the Book. The next batch is read and parsed on a thread while
    the Book writes the current one, so PostgreSQL's work and ours overlap; two batches at most
    are in memory."""
    make = account_record if kind == "accounts" else contact_record
    write = book.accounts if kind == "accounts" else book.contacts
    object_type = "company" if kind == "accounts" else "contact"
    rows = table.rows()

    def read_batch() -> tuple[list, list[Problem], int, bool]:
        records, refused, read = [], [], 0
        for row in rows:
            read += 1
            if row.problem is not None:
                refused.append(row.problem)
            else:
                records.append(make(mapping, row.lookup, row.where))
                if len(records) >= batch_size:
                    return records, refused, read, False
        return records, refused, read, True

    done = 0
    next_batch = asyncio.create_task(asyncio.to_thread(read_batch))
    while True:
        records, refused, read, last = await next_batch
        if not last:
            next_batch = asyncio.create_task(asyncio.to_thread(read_batch))
        tally.report.rows += read
        for problem in refused:
            tally.refused(kind, problem)
        if records:
            try:
                outcomes = await write(records)
                await _refresh_statistics(book)
            except BaseException:
                if not last:
                    next_batch.cancel()
                    await asyncio.gather(next_batch, return_exceptions=True)
                raise
            tally.outcomes(kind, outcomes)
            if hook is not None:
                await _resolve_waiting(hook, book, object_type, outcomes, tally)
        done += read
        if progress:
            progress(kind, done, total)
        if last:
            return


STATISTICS_AFTER = 20_000  # rows written before the first ANALYZE, then at every doubling


async def _refresh_statistics(book: Book, final: bool = False) -> None:
    """ANALYZE the tables an import grows, after 20,000 rows written, 40,000, 80,000... and at
    its end: a table that grew from nothing has no statistics until autovacuum comes by, and
    the per-batch lookups would scan it whole (each batch slower than the last)."""
    done = getattr(book, "_analyzed_at", 0)
    due = book.written >= max(STATISTICS_AFTER, 2 * done) or (final and book.written > 2_000 and book.written > done)
    if book.apply and due:
        try:
            await writes.analyze(book.pool, ("accounts", "crm_links", "contacts"))
        except asyncpg.PostgresError as exc:  # not the tables' owner: autovacuum will do it
            log.warning("import.analyze_skipped", error=str(exc))
        book._analyzed_at = book.written


async def _resolve_waiting(hook, book: Book, object_type: str, outcomes: list[Outcome], tally: Tally) -> None:
    crm_ids = sorted({o.crm_id for o in outcomes if o.action in ("created", "updated") and o.crm_id})
    if not crm_ids:
        return
    try:
        result = hook(book.pool, book.connection, object_type, crm_ids)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # the import stands; what waited is retried by its own sender
        log.warning("import.resolve_waiting_failed", object_type=object_type, error=str(exc))
        tally.warning(Problem(f"{object_type}s", "", f"events waiting on these {object_type}s were not resumed: "
                              f"{exc}", fatal=False))
