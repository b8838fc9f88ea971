"""`csplay token ...`, `csplay user ...`, `csplay audit`: API tokens, console users and the audit log.

    csplay token create crm-sync --scope read --scope steer [--expires-in-days 90]   # prints the token once
    csplay token list [--all]           /   csplay token revoke crm-sync
    csplay user add casey.morgan@tai.example --name "Casey Morgan" --role csm [--password-stdin]
    csplay user role casey.morgan@tai.example cs_manager   /   csplay user disable|enable EMAIL   /   csplay user list
    csplay audit [--account acme] [--actor casey] [--action login] [--limit 50]

Every change here is in the audit log under `cli:<login>`. Registered from starter/cli.py.
"""

from __future__ import annotations

import functools
import sys

import typer
from rich.markup import escape
from rich.table import Table

from starter.console.auth import ROLES

token_app = typer.Typer(help="API bearer tokens (scopes: read, steer, launch, admin).", no_args_is_help=True)
user_app = typer.Typer(help="Web console users and their roles (viewer, csm, cs_manager, admin).",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `token`, `user` and `audit` to the csplay app."""
    app.add_typer(token_app, name="token")
    app.add_typer(user_app, name="user")
    app.command("audit")(audit_list)


def command(fn):
    """starter.cli.command, looked up when the command runs (cli.py imports this module)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from starter.cli import command as cli_command

        return cli_command(fn)(*args, **kwargs)

    return run


def _cli():
    from starter import cli

    return cli


async def _record(action: str, object_: str, outcome: str = "ok", detail: str = "") -> None:
    from starter.security.cli_audit import record

    await record(action, object_, outcome, detail)


def _refuse(message: str):
    from starter.steering import SteeringError

    return SteeringError(message, 422)


# -- tokens -------------------------------------------------------------------------------
@token_app.command("create")
@command
async def token_create(
    name: str = typer.Argument(..., help="lower-case letters, digits, . _ -; the actor recorded for its changes"),
    scope: list[str] = typer.Option(..., "--scope", help="read, steer, launch or admin (repeat the option)"),
    expires_in_days: int = typer.Option(None, help="refused after this many days (default: never)"),
):
    """Create a token; it is printed once and only its hash is kept."""
    from starter.security.cli_audit import cli_actor
    from starter.security.tokens import TokenError, create_token

    cli = _cli()
    async with cli.services(need_temporal=False) as (_, __, pool):
        try:
            token, record = await create_token(pool, name, scope, cli_actor().name, expires_in_days)
        except TokenError as exc:
            await _record("token.create", f"token:{name}", "refused", str(exc))
            raise _refuse(str(exc)) from None
    await _record("token.create", f"token:{record.name}", detail=f"scopes {', '.join(record.scopes)}")
    cli.err.print(f"token [bold]{escape(record.name)}[/bold] ({', '.join(record.scopes)}) created; "
                  "copy it now, it is not shown again:")
    print(token, flush=True)


@token_app.command("revoke")
@command
async def token_revoke(name: str):
    """Revoke a token: requests with it are refused from now on."""
    from starter.security.cli_audit import cli_actor
    from starter.security.tokens import TokenError, revoke_token

    cli = _cli()
    async with cli.services(need_temporal=False) as (_, __, pool):
        try:
            await revoke_token(pool, name, cli_actor().name)
        except TokenError as exc:
            raise _refuse(str(exc)) from None
    await _record("token.revoke", f"token:{name.lower()}")
    cli.out.print(f"token {escape(name.lower())} revoked")


@token_app.command("list")
@command
async def token_list(all_: bool = typer.Option(False, "--all", help="also revoked tokens")):
    """Tokens with their scopes and last use (never the tokens themselves)."""
    from starter.security.tokens import list_tokens

    cli = _cli()
    async with cli.services(need_temporal=False) as (_, __, pool):
        tokens = await list_tokens(pool, include_revoked=all_)
    table = Table("name", "scopes", "created", "by", "expires", "last used", "status")
    fmt = lambda t: t.strftime("%Y-%m-%d %H:%M") if t else "-"  # noqa: E731
    for t in tokens:
        table.add_row(escape(t.name), ", ".join(t.scopes), fmt(t.created_at), escape(t.created_by), fmt(t.expires_at),
                      fmt(t.last_used_at), "revoked" if t.revoked_at else "live")
    cli.out.print(table)


# -- users --------------------------------------------------------------------------------
@user_app.command("add")
@command
async def user_add(
    email: str,
    name: str = typer.Option(..., help="shown in the console and on what they do"),
    role: str = typer.Option(None, help=f"one of {', '.join(ROLES)} (new users: viewer; existing: unchanged)"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
):
    """Create a console user, or set a new password (and role) for one (their sessions end)."""
    from starter.console.auth import add_user

    cli = _cli()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    async with cli.services(need_temporal=False) as (_, __, pool):
        try:
            created = await add_user(pool, email, name, password, role)
        except ValueError as exc:
            await _record("user.add", f"user:{email.lower()}", "refused", str(exc))
            raise _refuse(str(exc)) from None
    await _record("user.add" if created else "user.password", f"user:{email.lower()}",
                  detail=f"role {role}" if role else "")
    cli.out.print(f"console user {escape(email.lower())} {'created' if created else 'updated'}")


@user_app.command("role")
@command
async def user_role(email: str, role: str = typer.Argument(..., help=", ".join(ROLES))):
    """Give a console user another role (their sessions end, so it applies at once)."""
    from starter.console.auth import set_role

    cli = _cli()
    async with cli.services(need_temporal=False) as (_, __, pool):
        try:
            await set_role(pool, email, role)
        except (LookupError, ValueError) as exc:
            raise _refuse(str(exc)) from None
    await _record("user.role", f"user:{email.lower()}", detail=f"role {role}")
    cli.out.print(f"{escape(email.lower())} is now {role}")


async def _set_disabled(email: str, disabled: bool) -> None:
    from starter.console.auth import set_disabled

    cli = _cli()
    async with cli.services(need_temporal=False) as (_, __, pool):
        try:
            await set_disabled(pool, email, disabled)
        except LookupError as exc:
            raise _refuse(str(exc)) from None
    await _record("user.disable" if disabled else "user.enable", f"user:{email.lower()}")
    cli.out.print(f"{escape(email.lower())} {'disabled' if disabled else 'enabled'}")


@user_app.command("disable")
@command
async def user_disable(email: str):
    """Disable a console user: their sessions end and they cannot log in."""
    await _set_disabled(email, True)


@user_app.command("enable")
@command
async def user_enable(email: str):
    """Let a disabled console user log in again."""
    await _set_disabled(email, False)


@user_app.command("list")
@command
async def user_list():
    """Console users, their roles and last logins."""
    cli = _cli()
    async with cli.services(need_temporal=False) as (_, __, pool):
        rows = await pool.fetch("SELECT email, name, role, disabled_at, last_login_at FROM console_users ORDER BY email")
    table = Table("e-mail", "name", "role", "last login", "status")
    for r in rows:
        table.add_row(escape(r["email"]), escape(r["name"]), r["role"],
                      r["last_login_at"].strftime("%Y-%m-%d %H:%M") if r["last_login_at"] else "never",
                      "disabled" if r["disabled_at"] else "active")
    cli.out.print(table)


# -- the audit log ------------------------------------------------------------------------
@command
async def audit_list(
    account: str = typer.Option(None, help="one account's entries"),
    actor: str = typer.Option(None, help="who (starts with)"),
    action: str = typer.Option(None, help="what (starts with): launch, login, token., ..."),
    outcome: str = typer.Option(None, help="ok, refused or failed"),
    limit: int = typer.Option(50, min=1, max=1000),
):
    """The audit log, newest first."""
    from starter.security.audit import audit_rows

    cli = _cli()
    async with cli.services(need_temporal=False) as (_, __, pool):
        rows = await audit_rows(pool, account_id=account, actor=actor, action=action, outcome=outcome, limit=limit)
    table = Table("when (UTC)", "who", "from", "action", "object", "outcome", "detail")
    for r in rows:
        table.add_row(r["at"].strftime("%Y-%m-%d %H:%M:%S"), escape(r["actor"]), escape(r["source_ip"] or ""),
                      escape(r["action"]), escape(r["object"]), r["outcome"], escape(r["detail"]))
    cli.out.print(table)
