"""Uploaded imports of the console: where their files wait, and the runs that read them.

An upload lives in `DATA_DIR/imports/<token>/` (the token is random; the files inside have
fixed names, the names the person gave are only shown), with a `manifest.json` saying whose
it is, what it is and what its dry run found. The dry run and the apply run as tasks of the
HTTP service, so the page can show their progress; the uploaded files are deleted once
applied, when discarded, or `IMPORT_UPLOAD_TTL_MINUTES` after the upload.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from starter.security.audit import Actor
from core.logs import get_logger
from core.settings import Settings
from playbooks.crm_mapping import Mapping
from playbooks.loader import PlaybookError, _load_config
from starter.book.importer import (
    DIALECTS, ImportFile, ImportProblem, ImportReport, crm_dir, load_mapping, load_rates, load_team, run_import,
)

log = get_logger("console.imports")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
MAX_MAPPING_BYTES = 1_000_000
FILE_KINDS = ("accounts", "contacts")


class UploadTooLarge(Exception):
    pass


@dataclass
class Job:
    """A dry run or an apply in progress (or just finished) for one upload."""

    token: str
    apply: bool
    stage: str = "checking the files"
    done: int = 0
    total: int = 0
    task: asyncio.Task | None = None
    run_id: int | None = None
    error: str | None = None
    finished_at: float | None = None

    @property
    def running(self) -> bool:
        return self.finished_at is None


_jobs: dict[str, Job] = {}


# -- where uploads live -------------------------------------------------------------------------
def uploads_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "imports"


def upload_dir(settings: Settings, token: str) -> Path | None:
    return uploads_dir(settings) / token if TOKEN.fullmatch(token) else None


def read_manifest(settings: Settings, token: str, user: str) -> dict | None:
    """The upload's manifest when it exists and is this person's; else None (never says which)."""
    folder = upload_dir(settings, token)
    if folder is None:
        return None
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("user") == user else None


def write_manifest(folder: Path, manifest: dict) -> None:
    temp = folder / "manifest.json.tmp"
    temp.write_text(json.dumps(manifest, default=str))
    os.replace(temp, folder / "manifest.json")


def sweep(settings: Settings, now: float | None = None) -> int:
    """Delete uploads older than the TTL (unless a run is reading them) and forget old jobs."""
    now = now or time.time()
    ttl = settings.import_upload_ttl_minutes * 60
    removed = 0
    root = uploads_dir(settings)
    if root.is_dir():
        for folder in root.iterdir():
            job = _jobs.get(folder.name)
            if job is not None and job.running:
                continue
            try:
                age = now - folder.stat().st_mtime
            except OSError:
                continue
            if age > ttl:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    for token, job in list(_jobs.items()):
        if job.finished_at is not None and now - job.finished_at > ttl:
            del _jobs[token]
    return removed


def display_name(filename: str | None, default: str) -> str:
    """A file name fit to show and to name rows by: no folders, no control characters, short."""
    name = Path((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:100] or default


async def save_upload(upload, dest: Path, limit: int) -> int:
    """Copy an uploaded file to `dest` in chunks, at most `limit` bytes; the bytes written."""
    written = 0
    with dest.open("wb") as out:
        while chunk := await upload.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise UploadTooLarge()
            out.write(chunk)
    return written


# -- which mapping ------------------------------------------------------------------------------
def mapping_choices(settings: Settings) -> dict[str, str]:
    """The mappings a person can choose: the shipped CRMs, the shipped examples, their own."""
    crm = crm_dir(settings.playbooks_dir)
    choices = {"hubspot": "HubSpot exports (companies and contacts)",
               "salesforce": "Salesforce Data Loader extracts (Account and Contact)"}
    for path in sorted((crm / "examples").glob("*.yaml")):
        choices[f"example:{path.stem}"] = f"Example mapping: {path.name}"
    choices["upload"] = "My own mapping file (choose it below)"
    return choices


def load_choice(settings: Settings, choice: str, folder: Path, mapping_name: str | None) -> tuple[Mapping, str, str]:
    """(mapping, dialect, source label) for a choice of `mapping_choices`. Raises ImportProblem,
    with the person's own file name in a mapping's `file:line: field: message`."""
    crm = crm_dir(settings.playbooks_dir)
    try:
        if choice in ("hubspot", "salesforce"):
            return load_mapping(crm / f"{choice}.yaml", choice), choice, choice
        if choice.startswith("example:") and choice in mapping_choices(settings):
            path = crm / "examples" / f"{choice.removeprefix('example:')}.yaml"
            mapping = load_mapping(path, "csv")
            return mapping, "csv", f"csv:{path.stem}"
        if choice == "upload":
            path = folder / "mapping.yaml"
            if not path.is_file():
                raise ImportProblem("mapping: choose your mapping file (YAML), or one of the mappings listed")
            try:
                mapping = _load_config(path, Mapping)
            except PlaybookError as exc:
                raise ImportProblem(str(exc).replace(str(path), mapping_name or "mapping.yaml")) from None
            if mapping.source not in DIALECTS:
                raise ImportProblem(f"{mapping_name}:1: source: a {mapping.source} mapping cannot import files")
            stem = Path(mapping_name or "mapping").stem
            return mapping, mapping.source, f"csv:{stem}" if mapping.source == "csv" else mapping.source
    except PlaybookError as exc:
        raise ImportProblem(str(exc)) from None
    raise ImportProblem(f"mapping: unknown choice {choice!r}")


def import_files(folder: Path, manifest: dict) -> dict[str, ImportFile | None]:
    files = manifest["files"]
    return {kind: ImportFile(folder / files[kind]["path"], name=files[kind]["name"]) if kind in files else None
            for kind in FILE_KINDS}


# -- running ------------------------------------------------------------------------------------
def job(token: str) -> Job | None:
    return _jobs.get(token)


def start(state, token: str, manifest: dict, apply: bool) -> Job:
    """Start the dry run (apply=False) or the apply of an upload as a task of this service."""
    settings: Settings = state.settings
    folder = upload_dir(settings, token)
    current = Job(token=token, apply=apply)
    _jobs[token] = current
    manifest["state"] = "applying" if apply else "checking"
    write_manifest(folder, manifest)

    def progress(stage: str, done: int, total: int) -> None:
        current.stage = {"checking": "checking the files", "sponsors": "naming sponsors"}.get(stage, stage)
        current.done, current.total = done, total

    async def go() -> None:
        try:
            mapping, dialect, source = load_choice(settings, manifest["mapping"], folder, manifest.get("mapping_name"))
            crm = crm_dir(settings.playbooks_dir)
            report = await run_import(
                state.pool, mapping, dialect=dialect, **import_files(folder, manifest),
                team=load_team(crm / "team.yaml"), rates=load_rates(crm / "currencies.yaml"), apply=apply,
                run_by=manifest["user"], source_label=source, progress=progress,
                actor=Actor(manifest["user"], "user", manifest.get("ip"), role=manifest.get("role")))
            if apply:
                current.run_id = report.run_id
                shutil.rmtree(folder, ignore_errors=True)  # applied: the customer data goes
            else:
                manifest.update(state="ready", report=report.to_json())
                write_manifest(folder, manifest)
            log.info("console.import", user=manifest["user"], token=token, apply=apply, run_id=report.run_id,
                     summary=report.summary())
        except (ImportProblem, PlaybookError) as exc:
            current.error = str(exc)
            manifest.update(state="unusable", problems=str(exc).splitlines())
            if folder.is_dir():
                write_manifest(folder, manifest)
        except Exception:  # the page says so; the log has the trace
            log.exception("console.import_failed", token=token, apply=apply)
            current.error = "the import stopped on an error on our side (it is in the service log)"
            manifest.update(state="failed", problems=[current.error + (
                "; what was written before it stays, and running the import again completes it" if apply else "")])
            if folder.is_dir():
                write_manifest(folder, manifest)
        finally:
            current.finished_at = time.time()

    current.task = asyncio.get_running_loop().create_task(go(), name=f"import-{token}")
    return current


def report_of(manifest: dict) -> ImportReport | None:
    return ImportReport.from_json(manifest["report"]) if manifest.get("report") else None
