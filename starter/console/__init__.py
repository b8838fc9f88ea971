"""The web console for CS managers (issue 8): portfolio, accounts, tasks, launch, outbox, reports."""

from starter.console.pages import install

__all__ = ["install"]
