"""`csplay deliveries`: the outbox of chat messages, CRM writes and outbound webhooks, what is
configured on or off, and replaying a failed delivery."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Chat messages, CRM writes and outbound webhooks: list, show, replay, check.",
                  no_args_is_help=True)


def _cli():
    from starter import cli

    return cli


@app.command("list")
def list_command(kind: str = typer.Option(None, help="chat, crm or webhook"),
                 status: str = typer.Option(None, help="pending, sending, delivered or failed"),
                 account: str = typer.Option(None, help="one account's"),
                 limit: int = typer.Option(50, min=1, max=1000)):
    """Deliveries, newest first, with their status, attempts and last error."""
    cli = _cli()

    @cli.command
    async def run():
        from starter.deliveries_data import KINDS, STATUSES, list_deliveries

        for value, allowed, what in ((kind, KINDS, "kind"), (status, STATUSES, "status")):
            if value and value not in allowed:
                cli.err.print(f"[red]error:[/red] unknown {what} {escape(value)!r}: one of {', '.join(allowed)}")
                raise typer.Exit(1)
        async with cli.services(need_temporal=False) as (_, __, pool):
            view = await list_deliveries(pool, kind, status, account, limit=limit)
        table = Table("#", "created", "kind", "where", "what", "account", "status")
        for r in view["rows"]:
            state = r["status"] + (f" ({r['attempts']} attempts)" if r["attempts"] > 1 else "")
            if r["status"] != "delivered" and r["last_error"]:
                state += f": {r['last_error'][:120]}"
            table.add_row(str(r["id"]), r["created_at"].strftime("%Y-%m-%d %H:%M"), f"{r['kind']} {r['channel']}",
                          escape(r["destination"]), escape(r["summary"]), r["account_id"] or "", escape(state))
        cli.out.print(table)
        cli.out.print(", ".join(f"{k} {v}" for k, v in sorted(view["counts"].items())) or "no deliveries yet")

    run()


@app.command("show")
def show(delivery_id: int):
    """One delivery: what is sent where, and every attempt with the vendor's answer."""
    cli = _cli()

    @cli.command
    async def run():
        from starter.deliveries_data import delivery_detail

        async with cli.services(need_temporal=False) as (_, __, pool):
            detail = await delivery_detail(pool, delivery_id)
        if detail is None:
            cli.err.print(f"[red]error:[/red] no delivery {delivery_id}")
            raise typer.Exit(1)
        d = detail["d"]
        cli.out.print(f"{d['id']} {d['kind']} {d['channel']} {escape(d['destination'])} {d['operation']}: "
                      f"{escape(d['summary'])}")
        cli.out.print(f"status {d['status']}, {d['attempts']} attempt(s), workflow {d['delivery_workflow'] or '-'}"
                      + (f", last error: {escape(d['last_error'])}" if d["last_error"] else ""))
        table = Table("#", "started", "outcome", "answer", "detail")
        for a in detail["attempts"]:
            table.add_row(str(a["attempt"]), a["started_at"].strftime("%Y-%m-%d %H:%M:%S"), a["outcome"],
                          str(a["status_code"] or ""), escape(a["detail"] or ""))
        cli.out.print(table)
        cli.out.print(escape(json.dumps(d["payload"], indent=2, ensure_ascii=False, default=str)))

    run()


@app.command("replay")
def replay(delivery_id: int, by: str = typer.Option(..., help="who asks (recorded)")):
    """Deliver a failed delivery again (a webhook keeps its webhook-id)."""
    cli = _cli()

    @cli.command
    async def run():
        from starter.relay import ReplayRefused, replay_delivery

        async with cli.services() as (settings, client, pool):
            try:
                wid = await replay_delivery(pool, client, settings, delivery_id, by)
            except ReplayRefused as exc:
                cli.err.print(f"[red]error:[/red] {escape(str(exc))}")
                raise typer.Exit(1) from None
        cli.out.print(f"delivery {delivery_id} is being delivered again ({wid})")

    run()


@app.command("check")
def check():
    """What is configured on or off, and why (and content problems that hold routing)."""
    cli = _cli()

    @cli.command
    async def run():
        from core.settings import get_settings
        from starter.deliveries_data import configuration

        switches, problems = configuration(get_settings())
        table = Table("kind", "name", "sends to", "state")
        for s in switches:
            table.add_row(s.what, escape(s.name), escape(s.detail), "on" if s.on else f"off: {escape(s.why)}")
        cli.out.print(table)
        for p in problems:
            cli.err.print(f"[red]{escape(p)}[/red]")
        if problems:
            raise typer.Exit(1)

    run()
