"""The web console for CS managers (issue 8): portfolio, accounts, tasks, launch, outbox, reports;
and CRM imports (issue 15, its own router in starter/console/imports.py), suppressions and the
customers' mail (issue 17, starter/console/mail.py)."""

from fastapi import FastAPI

from starter.console.pages import install as _install_pages


def install(app: FastAPI) -> None:
    """Mount the console on the HTTP service."""
    from starter.console import imports, mail

    _install_pages(app)
    app.include_router(imports.router)
    app.include_router(mail.router)


__all__ = ["install"]
