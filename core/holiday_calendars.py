"""Public holidays and weekends from the `holidays` package, for a play's horizon.

Only code outside workflows uses this (the `load_calendars` activity, launches, the preview,
the playbook loader); workflows get the dates it computes (core/working_time.py).

- A place is a time zone, an ISO 3166-1 country and optionally its ISO 3166-2 subdivision
  (region). Observed days are holidays too: 4 July 2026 is a Saturday, so Friday 3 July is off.
- Without a country, the country of the time zone is used (America/New_York: US); a zone
  shared by several countries, or none (UTC), has no public holidays, only the weekend.
- A country the package does not know has the Saturday-Sunday weekend and no holidays; a
  region it does not know falls back to the country's national holidays. The calendar's
  `source` says which, so a status can show it.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays as holidays_pkg

from core.models import CalendarPlace
from core.working_time import WorkCalendar


@lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    import pytz

    owners: dict[str, set[str]] = {}
    for country, zones in pytz.country_timezones.items():
        for zone in zones:
            owners.setdefault(zone, set()).add(country.upper())
    return {zone: next(iter(c)) for zone, c in owners.items() if len(c) == 1}


def country_of_zone(tz: str) -> str | None:
    return _zone_countries().get(tz)


def place_problem(country: str | None, region: str | None) -> tuple[str, str] | None:
    """("country" or "region", why) when `holidays` cannot give this place's calendar, else None."""
    if country is None:
        return ("region", "a region needs its country") if region else None
    supported = holidays_pkg.list_supported_countries()
    if country not in supported:
        return "country", f"the holidays package has no calendar for country {country!r}"
    if region is not None and region not in supported[country]:
        known = ", ".join(supported[country][:12])
        return "region", f"country {country!r} has no region {region!r} in the holidays package (e.g. {known})"
    return None


@lru_cache(maxsize=512)
def _calendar(tz: str, country: str | None, region: str | None, first_year: int, years: int) -> WorkCalendar:
    country = country or country_of_zone(tz)
    if country is None:
        return WorkCalendar(tz=tz, source="no country: weekends only")
    if country not in holidays_pkg.list_supported_countries():
        return WorkCalendar(tz=tz, source=f"{country} (no holiday data): weekends only")
    span = list(range(first_year, first_year + years))
    source = f"{country}-{region}" if region else country
    try:
        found = holidays_pkg.country_holidays(country, subdiv=region, years=span)
    except NotImplementedError:
        found, source = holidays_pkg.country_holidays(country, years=span), f"{country} (region {region} unknown)"
    weekend = tuple(sorted(getattr(found, "weekend", {5, 6})))
    return WorkCalendar(tz=tz, weekend=weekend, holidays=tuple(found.keys()), source=source)


def work_calendar(place: CalendarPlace, start: date, years: int = 3) -> WorkCalendar:
    """The place's working days from the year of `start` for `years` years."""
    return _calendar(place.tz, place.country, place.region, start.year, years)


def holiday_dates(country: str, region: str | None, start: date, years: int = 2) -> list[date]:
    """The public holidays (observed days included) of a country or region, sorted: for the SLA's
    support region, whose business clock takes a list of dates."""
    if country == "none":
        return []
    return sorted(_calendar("UTC", country, region, start.year, years).holidays)
