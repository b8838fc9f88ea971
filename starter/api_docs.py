"""The API's documentation, behind a login: /docs (Swagger UI) and /openapi.json.

Both need a console login or a live API token (starter/security/api_auth.docs_access). Swagger
UI's files are served from this service (the `fastapi-offline` package ships them), never from a
CDN, and the page allows scripts from this origin only (no inline script).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from starter.security.api_auth import docs_access

SWAGGER_FILES = Path(fastapi_offline.__file__).parent / "static"
INIT_JS = Path(__file__).parent / "api_docs_static" / "init.js"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" href="/docs/static/favicon.png">
</head><body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"""

router = APIRouter(include_in_schema=False)


@router.get("/docs", dependencies=[Depends(docs_access)])
async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=request.app.title), headers={
        "Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Frame-Options": "DENY"})


@router.get("/docs/init.js")
async def docs_init() -> FileResponse:
    return FileResponse(INIT_JS, media_type="text/javascript")


@router.get("/openapi.json", dependencies=[Depends(docs_access)])
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi(), headers={"Cache-Control": "no-store"})


def install(app: FastAPI) -> None:
    """Mount the docs on the app (created with docs_url, redoc_url and openapi_url None)."""
    app.include_router(router)
    app.mount("/docs/static", StaticFiles(directory=SWAGGER_FILES), name="docs-static")
