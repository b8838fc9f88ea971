"""Organisation profiles: which organisation's content the product runs (README "Organisation profiles").

- A profile is the folder `playbooks/profiles/<name>/`: its `profile.yaml` (playbooks/profile_schema.py)
  and any content files of its own (`sla.yaml`, `onboarding.yaml`, ..., `templates/`).
- A content file the profile folder lacks comes from the playbooks folder itself, which is the
  default profile's content (`tai`, seed 001): every profile is the default one plus its own files.
  A template is looked up in the profile's `templates/` first, then in the default's.
- `PROFILE` (core/settings.py) names the active profile; `tai` by default.
- Playbooks are validated against their profile (a validation context `{"profile": content}`):
  a tier or priority they name must be the profile's.

Everything here reads files: it runs outside workflows (launches, activities, the CLI), never in one.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from core.working_time import SupportCalendar
from playbooks.profile_schema import ProfileContent, SupportRegion

PLAYBOOKS_DIR = Path(__file__).parent
PROFILES = "profiles"
PROFILE_FILE = "profile.yaml"
DEFAULT_PROFILE = "tai"
RECHECK_SECONDS = 1.0  # a cached profile's file is looked at again at most this often
PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Profile:
    """One organisation, resolved: `content` (its profile.yaml), `folder` (its own files) and `root`
    (the playbooks folder: the default profile's files, which fill in what `folder` lacks)."""

    name: str
    content: ProfileContent
    folder: Path
    root: Path
    digest: str
    _rates: dict = field(default_factory=dict, compare=False, repr=False)

    # -- content files ----------------------------------------------------------------
    def path(self, filename: str) -> Path:
        """Where the profile's `filename` is: its own folder's, else the default profile's."""
        own = self.folder / filename
        return own if own.is_file() else self.root / filename

    def source(self, filename: str) -> str:
        """"profile <name>" when the profile has its own `filename`, else "default profile"."""
        return f"profile {self.name}" if (self.folder / filename).is_file() else f"default profile ({DEFAULT_PROFILE})"

    def templates_dirs(self) -> list[Path]:
        """Where templates are looked up, in order: the profile's own, then the default's."""
        own = self.folder / "templates"
        return [own, self.root / "templates"] if own.is_dir() else [self.root / "templates"]

    @property
    def context(self) -> dict:
        """The validation context playbook content is checked in."""
        return {"profile": self.content}

    # -- tiers ----------------------------------------------------------------------------
    @property
    def tier_names(self) -> tuple[str, ...]:
        return self.content.tier_names

    @property
    def priority_keys(self) -> tuple[str, ...]:
        return self.content.priority_keys

    def tier_for(self, arr: Decimal, currency: str = "USD", usd_rate: Decimal | None = None) -> str:
        """The tier of a yearly amount `arr` in `currency` (units, not cents). In the scale's own
        currency it is used as it is; otherwise it goes through US dollars: `usd_rate` (US dollars
        per unit of `currency`, the account's rate of its last write) and the scale currency's rate
        in playbooks/crm/currencies.yaml. Raises ValueError when that file has no such rate."""
        scale = self.content.tiers
        arr = Decimal(arr)
        if currency == scale.currency or scale.basis == "crm":
            return scale.tier_for(arr)
        usd = arr * Decimal(usd_rate if usd_rate is not None else self._usd_per_unit(currency))
        return scale.tier_for(usd / self._usd_per_unit(scale.currency))

    def tier_for_usd(self, arr_usd: Decimal) -> str:
        """The tier of an ARR in US dollars."""
        return self.tier_for(arr_usd, "USD", Decimal(1))

    def _usd_per_unit(self, currency: str) -> Decimal:
        if currency == "USD":
            return Decimal(1)
        if not self._rates:
            from playbooks.crm_mapping import CurrenciesContent
            from playbooks.loader import _load_config

            rates = _load_config(self.path("crm/currencies.yaml"), CurrenciesContent)
            self._rates.update({k: Decimal(str(v)) for k, v in rates.usd_per_unit.items()})
        if currency not in self._rates:
            raise ValueError(f"no US dollar rate for {currency} in crm/currencies.yaml (profile {self.name})")
        return self._rates[currency]

    def region_for_tier(self, tier: str) -> SupportRegion:
        return self.content.region_for_tier(tier)

    def support_calendar(self, tier: str, opened_at: datetime) -> SupportCalendar:
        """The business hours a ticket of `tier` opened at `opened_at` counts: its support region's
        (region_calendar)."""
        return region_calendar(self.region_for_tier(tier), opened_at)


def region_calendar(region: SupportRegion, opened_at: datetime, years: int = 3) -> SupportCalendar:
    """A support region's hours and public holidays for a clock starting at `opened_at` (aware).

    The holiday years are counted from the date of `opened_at` in the region's own time zone, not
    the date as written: 2027-01-01T05:00+14:00 is 31 December 2026 in New York, whose clock needs
    2026's holidays (issue 19). From the year before that local date (a week around New Year can
    belong to either year's observed days) for `years` years. Raises ValueError for a naive time."""
    from core.holiday_calendars import holiday_dates

    if opened_at.tzinfo is None or opened_at.utcoffset() is None:
        raise ValueError(f"naive datetime {opened_at.isoformat()}: a ticket's opening needs a time zone")
    local = opened_at.astimezone(ZoneInfo(region.timezone)).date()
    first = local.replace(month=1, day=1) - timedelta(days=1)
    holidays = holiday_dates(region.holidays, region.holidays_region, first, years)
    source = region.holidays + (f"-{region.holidays_region}" if region.holidays_region else "")
    return SupportCalendar(region=region.key, tz=region.timezone, week=region.week(), holidays=tuple(holidays),
                           business_day_hours=region.day_hours, source=f"{region.key} ({source})")


def profile_names(playbooks_dir: Path | None = None) -> list[str]:
    """The profiles shipped in a playbooks folder (the folders of `profiles/` with a profile.yaml)."""
    base = Path(playbooks_dir or PLAYBOOKS_DIR) / PROFILES
    names = {p.parent.name for p in base.glob(f"*/{PROFILE_FILE}")}
    if not names:
        names = {p.parent.name for p in (PLAYBOOKS_DIR / PROFILES).glob(f"*/{PROFILE_FILE}")}
    return sorted(names)


def _profile_file(name: str, root: Path) -> Path:
    own = root / PROFILES / name / PROFILE_FILE
    if own.is_file() or root.resolve() == PLAYBOOKS_DIR.resolve():
        return own
    # A copy of the playbooks without its profiles (a test's folder): the shipped profile's facts.
    return PLAYBOOKS_DIR / PROFILES / name / PROFILE_FILE


def load_profile(name: str, playbooks_dir: Path | None = None) -> Profile:
    """Profile `name` of a playbooks folder, validated. Raises PlaybookError (file:line: field:
    message), also when there is no such profile."""
    from playbooks.loader import PlaybookError, _read_yaml, _validate

    root = Path(playbooks_dir or PLAYBOOKS_DIR)
    if not PROFILE_NAME.match(name or ""):
        raise PlaybookError([(str(root / PROFILES), None, "", f"{name!r} is not a profile name (a-z, 0-9, _)")])
    path = _profile_file(name, root)
    if not path.is_file():
        known = ", ".join(profile_names(root)) or "none"
        raise PlaybookError([(str(path), None, "", f"no profile {name!r} (profiles: {known})")])
    file, raw, node, data = _read_yaml(path)
    if not isinstance(data, dict):
        raise PlaybookError([(file, 1, "", "expected a mapping at the top")])
    content = _validate(file, node, ProfileContent, data)
    if content.name != path.parent.name:
        raise PlaybookError([(file, 1, "name", f"{content.name!r} is not the folder's name {path.parent.name!r}")])
    problems = _region_problems(file, node, content)
    if problems:
        raise PlaybookError(problems)
    return Profile(name=name, content=content, folder=root / PROFILES / name, root=root,
                   digest=hashlib.sha256(raw).hexdigest()[:16])


def _region_problems(file: str, node, content: ProfileContent) -> list:
    """Holiday calendars the `holidays` package must know, per support region."""
    from core.holiday_calendars import place_problem
    from playbooks.loader import _line, _node_at

    problems = []
    for i, region in enumerate(content.support_regions):
        if region.holidays == "none":
            continue
        problem = place_problem(region.holidays, region.holidays_region)
        if problem:
            key = "holidays_region" if problem[0] == "region" else "holidays"
            loc = ("support_regions", i, key)
            problems.append((file, _line(_node_at(node, loc)), f"support_regions[{i}].{key}", problem[1]))
    return problems


_cache: dict[tuple[str, str], tuple[float, tuple, Profile]] = {}


def _stamp(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_size)


def cached_profile(name: str, playbooks_dir: Path | None = None) -> Profile:
    """`load_profile`, kept while its file is unchanged (looked at again at most every second)."""
    root = Path(playbooks_dir or PLAYBOOKS_DIR)
    key = (name, str(root))
    now = time.monotonic()
    hit = _cache.get(key)
    if hit and now - hit[0] < RECHECK_SECONDS:
        return hit[2]
    stamp = _stamp(_profile_file(name, root))
    if hit and hit[1] == stamp and stamp:
        _cache[key] = (now, stamp, hit[2])
        return hit[2]
    profile = load_profile(name, root)
    _cache[key] = (now, stamp, profile)
    return profile


def profile_of(settings) -> Profile:
    """The profile `settings` name (PROFILE) in its playbooks folder (PLAYBOOKS_DIR)."""
    return cached_profile(settings.profile, settings.playbooks_dir)


def active_profile() -> Profile:
    """The profile of this process's settings."""
    from core.settings import get_settings

    return profile_of(get_settings())


def default_profile() -> Profile:
    """The default profile (seed 001) as shipped."""
    return cached_profile(DEFAULT_PROFILE, PLAYBOOKS_DIR)
