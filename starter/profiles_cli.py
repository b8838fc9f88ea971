"""`csplay profiles`: the organisation profiles (README "Organisation profiles").

    csplay profiles list                 every shipped profile, the active one marked
    csplay profiles show --profile NAME  its tiers, priorities, support regions and content files
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.settings import get_settings
from playbooks.loader import PlaybookError, profile_sources
from playbooks.profiles import load_profile, profile_names

app = typer.Typer(help="Organisation profiles: tiers, priorities, support regions, content.", no_args_is_help=True)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _load(folder: Path | None, name: str | None):
    settings = get_settings()
    try:
        return load_profile(name or settings.profile, folder or settings.playbooks_dir)
    except PlaybookError as exc:
        for line in str(exc).splitlines():
            err.print(escape(line))
        raise typer.Exit(1) from None


def show_sources(folder: Path | None, name: str) -> None:
    """Print which content files profile `name` has of its own and which it takes from the default."""
    profile = _load(folder, name)
    table = Table("file", "from")
    for file, source in profile_sources(profile):
        table.add_row(escape(file), escape(source))
    out.print(table)


@app.command("list")
def list_profiles(folder: Path = typer.Option(None, help="playbooks folder (default: the configured one)")):
    """The shipped profiles; * marks the active one (PROFILE)."""
    settings = get_settings()
    for name in profile_names(folder or settings.playbooks_dir):
        profile = _load(folder, name)
        mark = "*" if name == settings.profile else " "
        out.print(f"{mark} {escape(name)}: {escape(profile.content.organisation)} "
                  f"({escape(profile.content.handbook)}, {profile.content.language})")


@app.command()
def show(profile: str = typer.Option(None, help="profile name (default: PROFILE)"),
         folder: Path = typer.Option(None, help="playbooks folder (default: the configured one)")):
    """A profile's tiers, priorities, support regions and where each content file comes from."""
    p = _load(folder, profile)
    c = p.content
    out.print(f"[bold]{escape(c.organisation)}[/bold] (profile {escape(p.name)}, {escape(c.handbook)}), "
              f"language {c.language}, currency {c.currency}")
    scale = c.tiers
    tiers = Table("tier", f"{scale.basis.upper()} in {scale.currency}", "support region")
    for t in scale.levels:
        bound = f"> {t.over:,}" if t.over is not None else f">= {t.at_least:,}" if t.at_least is not None else "the rest"
        tiers.add_row(escape(t.name), bound, escape(c.region_for_tier(t.name).key))
    out.print(tiers)
    prios = Table("priority", "name", "description")
    for pr in c.priorities:
        prios.add_row(escape(pr.key), escape(pr.name), escape(pr.description))
    out.print(prios)
    regions = Table("region", "time zone", "holidays", "hours")
    for r in c.support_regions:
        hours = "; ".join(f"{day[:3]} {', '.join(spells)}" for day, spells in r.hours.items())
        place = r.holidays + (f"-{r.holidays_region}" if r.holidays_region else "")
        regions.add_row(escape(r.key), escape(r.timezone), escape(place), escape(hours))
    out.print(regions)
    show_sources(folder, p.name)
