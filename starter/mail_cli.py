"""`csplay suppressions`: who gets no e-mail of a kind (issue 17), from a terminal.

The same list as the console's Suppressions page: our suppressions (unsubscribes, hard bounces,
complaints, added by hand) and the CRM's opt-outs, which are changed in the CRM.
"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Column, Table

from starter.security.audit import audit
from starter.security.cli_audit import cli_actor
from starter.steering import SteeringError

app = typer.Typer(help="Suppressions: addresses that get no e-mail of a kind.", no_args_is_help=True)
CATEGORIES = ("lifecycle", "survey", "all", "undeliverable")


def _cli():
    from starter import cli  # lazily: cli.py registers this sub-app

    return cli


@app.command("list")
def list_(search: str = typer.Option("", "--search", help="part of an address, an account id or a reason"),
          limit: int = typer.Option(100, help="how many of the newest")):
    """Every suppression, newest first."""
    cli = _cli()

    async def go():
        from starter.console.mail import suppression_list

        async with cli.services(need_temporal=False) as (_, __, pool):
            view = await suppression_list(pool, search, 1)
        table = Table(Column("address", no_wrap=True), "from", "why", "source", "account", "since", "by")
        for s in view["rows"][:limit]:
            table.add_row(s["address_key"], s["category"], s["reason"].replace("_", " "), s["source"],
                          s["account_id"] or "", f"{s['created_at']:%Y-%m-%d}", s["created_by"])
        cli.out.print(table)
    cli.command(go)()


@app.command()
def add(address: str, category: str = typer.Option("all", help=", ".join(CATEGORIES)),
        by: str = typer.Option(..., "--by", help="who asks for it"), note: str = typer.Option("", help="why")):
    """Suppress an address from a kind of e-mail (all: every non-transactional one)."""
    cli = _cli()

    async def go():
        from activities.addresses import AddressProblem, parse_address
        from activities.mail_events import suppress

        try:
            key = parse_address(address).key
        except AddressProblem as exc:
            raise SteeringError(f"address: {exc}") from None
        if category not in CATEGORIES:
            raise SteeringError(f"category: {category!r} is not one of {', '.join(CATEGORIES)}")
        async with cli.services(need_temporal=False) as (_, __, pool):
            new = await suppress(pool, key, category, "manual", "cli", by, None, note)
            await audit(pool, cli_actor(), "suppression.add", f"address:{key}",
                        detail=f"category {category}, asked by {by}" + ("" if new else " (already suppressed)"))
        cli.out.print(escape(f"{key} suppressed from {category}" if new else f"{key} was already suppressed from {category}"))
    cli.command(go)()


@app.command()
def remove(address: str, category: str = typer.Option(..., help=", ".join(CATEGORIES)),
           by: str = typer.Option(..., "--by", help="who asks for it")):
    """Let an address get a kind of e-mail again (a CRM opt-out is changed in the CRM)."""
    cli = _cli()

    async def go():
        from activities.addresses import address_key

        async with cli.services(need_temporal=False) as (_, __, pool):
            row = await pool.fetchval("DELETE FROM suppressions WHERE address_key = $1 AND category = $2 RETURNING id",
                                      address_key(address), category)
            if row is not None:
                await audit(pool, cli_actor(), "suppression.remove", f"address:{address_key(address)}",
                            detail=f"category {category}, asked by {by}")
        if row is None:
            raise SteeringError(f"{address} is not suppressed from {category} here (a CRM opt-out is changed in the CRM)",
                                404)
        cli.out.print(escape(f"{address_key(address)} may get {category} e-mail again (removed by {by})"))
    cli.command(go)()
