"""The web console for CS managers (issue 8): portfolio, accounts, tasks, launch, outbox, reports;
and CRM imports (issue 15, its own router in starter/console/imports.py)."""

from fastapi import FastAPI

from starter.console.pages import install as _install_pages


def install(app: FastAPI) -> None:
    """Mount the console on the HTTP service."""
    from starter.console import imports

    _install_pages(app)
    app.include_router(imports.router)


__all__ = ["install"]
