"""The schema of an organisation profile (`playbooks/profiles/<name>/profile.yaml`).

A profile is one organisation as its handbook describes it: its customer tiers (ranges by ARR or
MRR in a currency), its ticket priorities, its support regions (time zone, opening hours per
weekday, partial days and several shifts, public holidays) and the staff roles its ladders name.
The playbooks (sla.yaml, onboarding.yaml, ...) are validated against the active profile: a tier or
priority they name must be the profile's. Code never names a tier, a priority or a time zone.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.models import PRIORITY_KEY, TIER_NAME
from playbooks.schema_base import known_zone

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]
SHIFT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
DAY_MINUTES = 24 * 60
# A week of opening hours: per weekday (Monday first), the (opens, closes) minutes after local
# midnight of each open spell, in order; closes may be 1440 (midnight at the end of the day).
Week = tuple[tuple[tuple[int, int], ...], ...]


class ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierLevel(ProfileModel):
    """One tier. An account is in the first tier (from the top of the list) whose bound its amount
    passes: `over` (strictly more than) or `at_least`; the last tier has no bound and takes the rest."""

    name: str = Field(pattern=TIER_NAME)
    over: Decimal | None = Field(None, ge=0, description="amount strictly above this (currency units)")
    at_least: Decimal | None = Field(None, ge=0, description="amount of at least this (currency units)")
    region: Slug | None = Field(None, description="the support region serving this tier (default: the first)")
    description: str = ""

    @model_validator(mode="after")
    def _one_bound(self) -> "TierLevel":
        if self.over is not None and self.at_least is not None:
            raise ValueError("over: give over or at_least, not both")
        return self

    @property
    def bound(self) -> Decimal | None:
        return self.over if self.over is not None else self.at_least

    def admits(self, amount: Decimal) -> bool:
        if self.over is not None:
            return amount > self.over
        if self.at_least is not None:
            return amount >= self.at_least
        return True


class TierScale(ProfileModel):
    """The tiers, from the highest, and what their bounds measure: the ARR, or the MRR (ARR / 12),
    in `currency`; or `crm`: a tier is what the CRM states (the subscription bought), no bounds, and
    an account the CRM states none for is in the last tier. An account's ARR in another currency
    is converted through US dollars at the rates of playbooks/crm/currencies.yaml (the rate taken
    when the account was written)."""

    basis: Literal["arr", "mrr", "crm"] = "arr"
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    levels: list[TierLevel] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> "TierScale":
        names = [t.name for t in self.levels]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"levels[{i}].name: tier {name!r} appears twice")
        last = len(self.levels) - 1
        for i, level in enumerate(self.levels):
            if self.basis == "crm":
                if level.bound is not None:
                    raise ValueError(f"levels[{i}].name: tiers the CRM states have no bounds (basis: crm)")
                continue
            key = "over" if level.over is not None else "at_least"
            if i < last and level.bound is None:
                raise ValueError(f"levels[{i}].name: every tier but the last needs a bound (over or at_least)")
            if i == last and level.bound is not None:
                raise ValueError(f"levels[{i}].{key}: the last tier takes every amount below the others: no bound")
            if 0 < i < last and level.bound is not None and level.bound > self.levels[i - 1].bound:
                raise ValueError(f"levels[{i}].{key}: bounds must fall from the first tier to the last")
        return self

    def tier_for(self, arr: Decimal) -> str:
        """The tier of an ARR in this scale's currency (yearly; divided by 12 for an MRR scale)."""
        if self.basis == "crm":
            return self.levels[-1].name
        amount = arr / 12 if self.basis == "mrr" else arr
        return next(t.name for t in self.levels if t.admits(amount))


class PriorityLevel(ProfileModel):
    """One ticket priority; the profile's list runs from the most urgent to the least."""

    key: str = Field(pattern=PRIORITY_KEY, description="as tickets and the SLA matrix name it (P0, P1, ...)")
    name: str = Field(min_length=1, description="e.g. Critical")
    description: str = ""


class HelpDeskPriorities(ProfileModel):
    """How the help desks' priority labels become this profile's priorities, for every connection
    (Zendesk `urgent`, HubSpot `URGENT`, a Salesforce Case's `Critical`...): `map` label -> priority
    key, matched ignoring case; `default` for a ticket whose label is not in it. When a profile gives
    it, it replaces the CRM mappings' `ticket_priorities` and `ticket_default_priority` (which are
    the default profile's)."""

    map: dict[str, str] = Field(min_length=1)
    default: str = Field(pattern=PRIORITY_KEY)


class SupportRegion(ProfileModel):
    """Where and when support works. `hours`: per weekday, the open spells as "HH:MM-HH:MM" local
    time; a spell that closes before it opens runs past midnight into the next day ("17:00-02:00");
    "24:00" is the end of the day; a weekday not listed is closed. Public holidays (`holidays`: an
    ISO 3166-1 country, or none; `holidays_region` an ISO 3166-2 subdivision) are closed days.
    `business_day_hours`: how many open hours make one business day in an SLA target (default:
    the longest day's)."""

    key: Slug
    name: str = ""
    timezone: str
    holidays: str = Field("none", pattern=r"^([A-Z]{2}|none)$")
    holidays_region: str | None = Field(None, pattern=r"^[A-Z0-9]{1,3}$")
    hours: dict[Weekday, list[str]] = Field(min_length=1)
    business_day_hours: float | None = Field(None, ge=1, le=24)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_zone(v)

    @field_validator("hours")
    @classmethod
    def _spells(cls, hours: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spells in hours.items():
            for i, spell in enumerate(spells):
                if not SHIFT.match(spell):
                    raise ValueError(f"{day}[{i}]: {spell!r} is not HH:MM-HH:MM (24:00 only as a closing time)")
                opens, closes = _minutes(spell)
                if opens == closes:
                    raise ValueError(f"{day}[{i}]: {spell!r} opens and closes at the same time")
        return hours

    @model_validator(mode="after")
    def _week(self) -> "SupportRegion":
        week = self.week()  # raises on overlaps
        if not any(week):
            raise ValueError("hours: support is never open")
        return self

    def week(self) -> Week:
        """The open spells per weekday, Monday first, as minutes after local midnight; a spell past
        midnight is split at it. Raises ValueError when two spells overlap."""
        days: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
        for day, spells in self.hours.items():
            d = WEEKDAYS.index(day)
            for spell in spells:
                opens, closes = _minutes(spell)
                if closes > opens:
                    days[d].append((opens, closes))
                else:
                    days[d].append((opens, DAY_MINUTES))
                    if closes:
                        days[(d + 1) % 7].append((0, closes))
        for d, spells in enumerate(days):
            spells.sort()
            for (a, b), (c, _) in zip(spells, spells[1:]):
                if c < b:
                    raise ValueError(f"hours.{WEEKDAYS[d]}: open spells overlap ({_hhmm(a)}-{_hhmm(b)} and {_hhmm(c)}-...)")
        return tuple(tuple(_merged(s)) for s in days)

    @property
    def day_hours(self) -> float:
        """Open hours in one business day of an SLA target."""
        if self.business_day_hours is not None:
            return self.business_day_hours
        return max(sum(b - a for a, b in spells) for spells in self.week()) / 60


def _minutes(spell: str) -> tuple[int, int]:
    m = SHIFT.match(spell)
    return int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _merged(spells: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spells that touch (one closes as the next opens) as one."""
    out: list[tuple[int, int]] = []
    for a, b in spells:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class ProfileContent(ProfileModel):
    """One organisation (profile.yaml). `language`: BCP 47 tag of its e-mails; `currency`: ISO 4217."""

    name: Slug
    organisation: str = Field(min_length=1)
    handbook: str = Field(min_length=1, description="the seed file this profile follows")
    language: str = Field("en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    tiers: TierScale
    priorities: list[PriorityLevel] = Field(min_length=1)
    support_regions: list[SupportRegion] = Field(min_length=1)
    staff_roles: dict[Slug, str] = Field({}, description="role -> title: the people its ladders name")
    notes: list[str] = Field([], description="where the handbook gives no number: the default picked, and why")
    ticket_priorities: HelpDeskPriorities | None = Field(None, description=(
        "help-desk priority labels -> this profile's priorities (default: the CRM mappings' own)"))

    @model_validator(mode="after")
    def _consistent(self) -> "ProfileContent":
        keys = [p.key for p in self.priorities]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise ValueError(f"priorities[{i}].key: priority {key!r} appears twice")
        regions = [r.key for r in self.support_regions]
        for i, key in enumerate(regions):
            if key in regions[:i]:
                raise ValueError(f"support_regions[{i}].key: region {key!r} appears twice")
        if self.ticket_priorities is not None:
            for label, key in self.ticket_priorities.map.items():
                if key not in keys:
                    raise ValueError(f"ticket_priorities.map.{label}: {key!r} is not a priority of this profile "
                                     f"({', '.join(keys)})")
            if self.ticket_priorities.default not in keys:
                raise ValueError(f"ticket_priorities.default: {self.ticket_priorities.default!r} is not a priority "
                                 f"of this profile ({', '.join(keys)})")
        for role in self.staff_roles:
            if role in ("csm", "sponsor", "contacts"):
                raise ValueError(f"staff_roles.{role}: {role} is an account role (from the account row), not a staff role")
        for i, level in enumerate(self.tiers.levels):
            if level.region is not None and level.region not in regions:
                raise ValueError(f"tiers.levels[{i}].region: no support region {level.region!r} "
                                 f"(regions: {', '.join(regions)})")
        return self

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers.levels)

    @property
    def priority_keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.priorities)

    def region(self, key: str | None = None) -> SupportRegion:
        """The region `key`, or the first (the profile's default) when None. Raises KeyError."""
        if key is None:
            return self.support_regions[0]
        for region in self.support_regions:
            if region.key == key:
                return region
        raise KeyError(key)

    def region_for_tier(self, tier: str) -> SupportRegion:
        """The support region that serves `tier` (its own, else the profile's first)."""
        level = next((t for t in self.tiers.levels if t.name == tier), None)
        return self.region(level.region if level else None)
