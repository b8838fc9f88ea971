"""The web console for CS managers (issue 8): portfolio, accounts, tasks, launch, outbox, reports;
suppressions and the customers' mail (issue 17, starter/console/mail.py)."""

from fastapi import FastAPI

from starter.console import mail
from starter.console.pages import install as install_pages


def install(app: FastAPI) -> None:
    install_pages(app)
    app.include_router(mail.router)


__all__ = ["install"]
