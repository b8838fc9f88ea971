"""The console's Import page (issue 15): upload CRM exports, look at the dry run, confirm.

- GET  /console/imports                 the form (source or mapping, the files) and the last runs
- POST /console/imports                 upload (multipart, CSRF): checked at once (a file or mapping
                                        that cannot be read is a 413/422 page), then a dry run starts
- GET  /console/imports/{token}         the dry run's progress, then its table: what would be created,
                                        updated, unchanged and refused (file, row, column, reason)
- POST /console/imports/{token}/apply   confirm (CSRF): the same uploaded files are applied
- POST /console/imports/{token}/discard drop the upload (CSRF)
- GET  /console/imports/runs/{id}       what an applied run did (import_runs)

A router of its own, so that a role check can be put in front of all of it in one place.
"""

from __future__ import annotations

import secrets
import shutil
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile

from core.logs import get_logger
from starter.book.importer import ImportProblem, ImportReport, check_import
from starter.console import auth
from starter.console import import_jobs as jobs
from starter.console.auth import ConsoleUser
from starter.console.access import require
from starter.console.pages import Refused, current_user, done, posted_form, render, state
from starter.security.clients import client_ip
from starter.security.limits import register_body_limit

log = get_logger("console.imports")
# CS managers and admins import (issue 16 roles); an upload may be as large as the settings allow.
router = APIRouter(prefix="/console/imports", include_in_schema=False, dependencies=[Depends(require("cs_manager"))])
register_body_limit("/console/imports", lambda s: s.import_upload_max_mb * 1024 * 1024 + 1_000_000)
SHOW = 100  # refused rows, warnings and changes listed on the page (the rest are counted)


async def _recent_runs(pool, limit: int = 15):
    return await pool.fetch(
        "SELECT id, source, connection, files, started_at, finished_at, status, created, updated, unchanged, refused,"
        " warnings, run_by FROM import_runs ORDER BY id DESC LIMIT $1", limit)


async def _form_page(request: Request, user: ConsoleUser, st, status: int = 200, problems: list[str] | None = None,
                     choice: str = "hubspot"):
    response = await render(request, user, "imports.html", choices=jobs.mapping_choices(st.settings), choice=choice,
                            runs=await _recent_runs(st.pool), problems=problems or [],
                            max_mb=st.settings.import_upload_max_mb)
    response.status_code = status
    return response


@router.get("")
async def import_form(request: Request, user=Depends(current_user), st=Depends(state)):
    jobs.sweep(st.settings)
    return await _form_page(request, user, st)


@router.post("")
async def upload(request: Request, user=Depends(current_user), st=Depends(state)):
    """Save the files under a random name, check them at once, start the dry run."""
    jobs.sweep(st.settings)
    limit = st.settings.import_upload_max_mb * 1024 * 1024
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise Refused("Send the files as a form upload (Content-Length is missing).", 411)
    if int(declared) > limit + 65536:
        raise Refused(f"These files are larger than the {st.settings.import_upload_max_mb} MB an upload may hold: "
                      "import them with `csplay import` instead.", 413)
    form = await request.form(max_files=3, max_fields=8)
    try:
        if not auth.same_token(form.get("csrf_token"), user.csrf_token):
            log.warning("console.csrf_refused", user=user.email, path=request.url.path)
            raise Refused("This form has expired or did not come from the console. Go back, reload the page and "
                          "try again.", 403)
        choice = str(form.get("mapping") or "")
        if choice not in jobs.mapping_choices(st.settings):
            return await _form_page(request, user, st, 422, ["mapping: choose one of the mappings listed"])
        token = secrets.token_urlsafe(16)
        folder = jobs.upload_dir(st.settings, token)
        folder.mkdir(parents=True, mode=0o700)
        try:
            manifest = await _save(form, folder, choice, user, limit, client_ip(request))
            mapping, _, _ = jobs.load_choice(st.settings, choice, folder, manifest.get("mapping_name"))
            files = jobs.import_files(folder, manifest)
            check_import(mapping, accounts=files["accounts"], contacts=files["contacts"])
        except jobs.UploadTooLarge:
            shutil.rmtree(folder, ignore_errors=True)
            raise Refused(f"These files are larger than the {st.settings.import_upload_max_mb} MB an upload may "
                          "hold: import them with `csplay import` instead.", 413) from None
        except ImportProblem as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return await _form_page(request, user, st, 422, str(exc).splitlines(), choice)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        await form.close()
    jobs.start(st, token, manifest, apply=False)
    log.info("console.import_uploaded", user=user.email, token=token, mapping=choice,
             files=[f["name"] for f in manifest["files"].values()])
    return RedirectResponse(f"/console/imports/{token}", status_code=303)


async def _save(form, folder, choice: str, user: ConsoleUser, limit: int, ip: str | None) -> dict:
    manifest = {"user": user.email, "role": user.role, "ip": ip, "created": time.time(),
                "mapping": choice, "files": {}, "state": "uploaded"}
    left = limit
    for kind, default in (("accounts", "accounts.csv"), ("contacts", "contacts.csv")):
        upload = form.get(kind)
        if isinstance(upload, UploadFile) and (upload.filename or upload.size):
            written = await jobs.save_upload(upload, folder / f"{kind}.upload", left)
            if written:
                left -= written
                manifest["files"][kind] = {"path": f"{kind}.upload", "name": jobs.display_name(upload.filename,
                                                                                                 default)}
    if not manifest["files"]:
        raise ImportProblem("files: choose the accounts (companies) file, the contacts file, or both")
    own = form.get("mapping_file")
    if choice == "upload" and isinstance(own, UploadFile) and own.filename:
        await jobs.save_upload(own, folder / "mapping.yaml", min(jobs.MAX_MAPPING_BYTES, left))
        manifest["mapping_name"] = jobs.display_name(own.filename, "mapping.yaml")
    jobs.write_manifest(folder, manifest)
    return manifest


def _mine(st, token: str, user: ConsoleUser) -> dict:
    manifest = jobs.read_manifest(st.settings, token, user.email)
    if manifest is None:
        raise Refused("There is no such import: it was applied, discarded or has expired.", 404)
    return manifest


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: int, user=Depends(current_user), st=Depends(state)):
    row = await st.pool.fetchrow("SELECT * FROM import_runs WHERE id = $1", run_id)
    if row is None:
        raise Refused(f"There is no import run {run_id}.", 404)
    report = ImportReport.from_json(row["report"]) if row["report"] else None
    return await render(request, user, "import_run.html", run=row, report=report, show=SHOW)


@router.get("/{token}")
async def review(request: Request, token: str, user=Depends(current_user), st=Depends(state)):
    running = jobs.job(token)
    if running is not None and running.apply and not running.running and running.run_id is not None:
        return RedirectResponse(f"/console/imports/runs/{running.run_id}", status_code=303)
    manifest = _mine(st, token, user)
    if running is None and manifest["state"] in ("checking", "applying"):
        manifest["state"] = "interrupted"  # the service restarted while it ran
    return await render(request, user, "import_review.html", token=token, manifest=manifest, job=running,
                        report=jobs.report_of(manifest), show=SHOW)


@router.post("/{token}/apply")
async def apply(request: Request, token: str, form=Depends(posted_form), user=Depends(current_user),
                st=Depends(state)):
    manifest = _mine(st, token, user)
    running = jobs.job(token)
    if manifest["state"] != "ready" or (running is not None and running.running):
        raise Refused("This import is not ready to apply: wait for its dry run, or upload the files again.", 409)
    jobs.start(st, token, manifest, apply=True)
    log.info("console.import_confirmed", user=user.email, token=token)
    return RedirectResponse(f"/console/imports/{token}", status_code=303)


@router.post("/{token}/discard")
async def discard(request: Request, token: str, form=Depends(posted_form), user=Depends(current_user),
                  st=Depends(state)):
    _mine(st, token, user)
    running = jobs.job(token)
    if running is not None and running.running:
        raise Refused("This import is running; wait until it ends.", 409)
    shutil.rmtree(jobs.upload_dir(st.settings, token), ignore_errors=True)
    return await done(request, user, "/console/imports", "ok", "The upload was discarded: nothing was imported.")
