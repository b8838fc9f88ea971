"""`csplay webhooks`: what the CRM and Zendesk webhooks left waiting or failing, and acting on
what is due now (what the HTTP service's sweeper does every WEBHOOK_SWEEP_SECONDS)."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Vendor webhooks: waiting events, retries.", no_args_is_help=True)
SOURCES = ("generic", "hubspot", "salesforce", "zendesk")


def _cli():
    from starter import cli

    return cli


@app.command("waiting")
def waiting(source: str = typer.Option(None, help="only this vendor: generic, hubspot, salesforce, zendesk"),
            limit: int = typer.Option(100, min=1, max=5000)):
    """Events waiting for an object the book does not have yet: what for, why, since when."""
    cli = _cli()

    @cli.command
    async def run():
        from starter.book.waiting import event_counts, waiting_events

        if source and source not in SOURCES:
            cli.err.print(f"[red]error:[/red] unknown source {escape(source)!r}: one of {', '.join(SOURCES)}")
            raise typer.Exit(1)
        async with cli.services(need_temporal=False) as (_, __, pool):
            rows = await waiting_events(pool, limit, source)
            counts = await event_counts(pool)
        table = Table("since", "vendor", "event", "object", "waits for", "why")
        for w in rows:
            table.add_row(w.since.strftime("%Y-%m-%d %H:%M"), w.source, escape(w.event),
                          escape(f"{w.object_type} {w.object_id}"), escape(w.waits_for), escape(w.reason))
        cli.out.print(table)
        cli.out.print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no events yet")

    run()


@app.command("sweep")
def sweep():
    """Act now on every due event (queued, postponed after a failure, or whose object arrived)."""
    cli = _cli()

    @cli.command
    async def run():
        from starter.events.context import Context
        from starter.events.pipeline import sweep_once

        async with cli.services() as (settings, client, pool):
            acted = 0
            while (n := await sweep_once(Context(client, pool, settings))) > 0:
                acted += n
        cli.out.print(f"acted on {acted} events")

    run()
