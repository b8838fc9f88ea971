"""CRM values as people and CRMs really write them, turned into typed values.

Pure functions, table-tested (tests/starter/book/values_test.py). Each raises
`BadValue` with a sentence a CS-ops person understands; the importer adds the
file, row and column, the webhook the event and property.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import pycountry
import pytz
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email


class BadValue(ValueError):
    """A value that cannot be read as its type; the message says why."""


# Spreadsheet programs and Data Loader protect cells that would start a formula
# with a leading apostrophe ('=A1): the apostrophe is not part of the value.
_FORMULA_ESCAPE = re.compile(r"^'(?=[=+\-@])")


def clean(raw: object) -> str | None:
    """A cell or property as text: trimmed, NFC-normalised, formula escapes undone; None when empty."""
    if raw is None:
        return None
    text = raw if type(raw) is str else str(raw)
    if not text.isascii():  # (an import cleans millions of cells: ASCII needs no normalising)
        text = unicodedata.normalize("NFC", text).replace("\u00a0", " ")
    text = text.strip()
    if text[:1] == "'" and _FORMULA_ESCAPE.match(text):
        text = text[1:]
    return text or None


# -- money ----------------------------------------------------------------------------
CURRENCY_SYMBOLS = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "￥": "JPY", "₹": "INR",
                    "zł": "PLN", "R$": "BRL", "A$": "AUD", "C$": "CAD", "CHF": "CHF", "kr": "SEK", "₽": "RUB",
                    "₩": "KRW", "₺": "TRY"}
_MULTIPLIERS = {"k": Decimal(1_000), "m": Decimal(1_000_000), "mm": Decimal(1_000_000), "mn": Decimal(1_000_000),
                "b": Decimal(1_000_000_000), "bn": Decimal(1_000_000_000)}
_CODE = re.compile(r"\b([A-Z]{3})\b")
_SCIENTIFIC = re.compile(r"^[+]?\d+(\.\d+)?[eE][+-]?\d+$")


_SYMBOLS_LONGEST_FIRST = sorted(CURRENCY_SYMBOLS, key=len, reverse=True)  # "US$" before "$"


def _currency_in(text: str) -> tuple[str | None, str]:
    """(ISO code or None, the text without it)."""
    for symbol in _SYMBOLS_LONGEST_FIRST:
        if symbol in text:
            return CURRENCY_SYMBOLS[symbol], text.replace(symbol, " ")
    found = _CODE.search(text)
    if found and pycountry.currencies.get(alpha_3=found.group(1)):
        return found.group(1), text[:found.start()] + " " + text[found.end():]
    return None, text


def _number(text: str) -> Decimal:
    """A number typed by hand: 120,000 / 85.000 / 1.234,56 / 210 000 / 1'000'000 / 48000.0 / 4.8E7."""
    text = re.sub(r"[\s'\u2009\u202f]", "", text)
    if _SCIENTIFIC.match(text):
        return Decimal(text)
    if not re.fullmatch(r"\d[\d.,]*", text):
        raise BadValue(f"{text!r} is not an amount")
    commas, dots = text.count(","), text.count(".")
    if commas and dots:
        decimal_mark = "," if text.rfind(",") > text.rfind(".") else "."
    elif commas or dots:
        mark = "," if commas else "."
        whole, _, tail = text.rpartition(mark)
        # One mark followed by exactly three digits groups thousands (120,000; 85.000); else it is decimal.
        decimal_mark = None if (commas + dots > 1 or len(tail) == 3) else mark
    else:
        decimal_mark = None
    thousands = {",", "."} - ({decimal_mark} if decimal_mark else set())
    for mark in thousands:
        text = text.replace(mark, "")
    if decimal_mark == ",":
        text = text.replace(",", ".")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise BadValue(f"{text!r} is not an amount") from None


def parse_money(raw: object, default_currency: str = "USD") -> tuple[Decimal, str] | None:
    """An amount and its ISO 4217 currency from text such as `$120,000`, `€ 85.000`, `USD 30k`,
    `PLN 210 000`, `¥9,600,000` or `4.8E7` (currency units, not cents); None when empty.
    Negative amounts are refused: ARR and deal amounts are never negative."""
    text = clean(raw)
    if text is None:
        return None
    currency, rest = _currency_in(text)
    rest = rest.strip()
    if rest.startswith("-") or rest.startswith("("):
        raise BadValue(f"{text!r} is negative")
    multiplier = Decimal(1)
    found = re.search(r"([a-zA-Z]{1,2})\.?$", rest)
    if found and found.group(1).lower() in _MULTIPLIERS:
        multiplier = _MULTIPLIERS[found.group(1).lower()]
        rest = rest[:found.start()]
    rest = rest.strip().rstrip(".")
    if not rest:
        raise BadValue(f"{text!r} has no amount")
    return _number(rest) * multiplier, currency or default_currency


# -- dates ------------------------------------------------------------------------------
DEFAULT_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ",
                        "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z")


def parse_date(raw: object, formats: tuple[str, ...] = DEFAULT_DATE_FORMATS) -> date | None:
    """A calendar date from ISO text, a timestamp, or epoch milliseconds (HubSpot sends dates
    as epoch ms at midnight UTC, as strings); None when empty."""
    text = clean(raw)
    if text is None:
        return None
    if re.fullmatch(r"\d{11,14}", text):
        return datetime.fromtimestamp(int(text) / 1000, tz=timezone.utc).date()
    if len(text) == 10 and formats[:1] == ("%Y-%m-%d",):
        try:
            return date.fromisoformat(text)  # the common case, without strptime
        except ValueError:
            pass
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise BadValue(f"{text!r} is not a date (expected YYYY-MM-DD)")


def parse_bool(raw: object) -> bool | None:
    text = clean(raw)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in {"true", "yes", "y", "1", "x", "oui", "ja", "sí", "si", "vrai", "wahr"}:
        return True
    if lowered in {"false", "no", "n", "0", "non", "nein", "faux", "falsch"}:
        return False
    raise BadValue(f"{text!r} is not yes or no")


def parse_int(raw: object, low: int | None = None, high: int | None = None) -> int | None:
    text = clean(raw)
    if text is None:
        return None
    try:
        number = Decimal(text.replace(",", "").replace(" ", "").rstrip("%"))
    except InvalidOperation:
        raise BadValue(f"{text!r} is not a whole number") from None
    if number != number.to_integral():
        raise BadValue(f"{text!r} is not a whole number")
    value = int(number)
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadValue(f"{value} is outside {low}-{high}")
    return value


# -- places, people, ids ------------------------------------------------------------------
def parse_country(raw: object) -> str | None:
    """ISO 3166-1 alpha-2 from a code or an English country name ('United Kingdom', 'DEU')."""
    text = clean(raw)
    if text is None:
        return None
    return _country(text)


@lru_cache(maxsize=4096)
def _country(text: str) -> str:
    # Cached: pycountry's lookup scans every country, and a book repeats a few dozen names.
    try:
        return pycountry.countries.lookup(text).alpha_2
    except LookupError:
        pass
    for country in pycountry.countries:
        if text.lower() in {getattr(country, "common_name", "").lower(), getattr(country, "official_name", "").lower()}:
            return country.alpha_2
    raise BadValue(f"{text!r} is not a country name or ISO code (add it to the mapping's values)")


def parse_region(country: str | None, raw: object) -> str | None:
    """The ISO 3166-2 subdivision code of a region within `country`, without the country prefix
    ('California', 'CA' or 'US-CA' -> 'CA'; 'Bayern' -> 'BY'); None when empty. Raises BadValue
    for a region the country does not have, or when the country is unknown."""
    text = clean(raw)
    if text is None:
        return None
    if not country:
        raise BadValue(f"{text!r}: a region is read within its country, and the account has none")
    return _region(country.upper(), text)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()


@lru_cache(maxsize=8192)
def _region(country: str, text: str) -> str:
    code = text.upper().removeprefix(f"{country}-")
    if re.fullmatch(r"[A-Z0-9]{1,3}", code) and pycountry.subdivisions.get(code=f"{country}-{code}"):
        return code
    wanted = _fold(text)
    for sub in pycountry.subdivisions.get(country_code=country) or ():
        if _fold(sub.name) == wanted:
            return sub.code.split("-", 1)[1]
    raise BadValue(f"{text!r} is not a region of {country} (an ISO 3166-2 code or name, e.g. CA or California)")


# A country's most-used zone where pytz's first zone is not it (Lord Howe Island for Australia),
# and the zone of each state or province of the countries that span several.
_COUNTRY_ZONE = {"CA": "America/Toronto", "AU": "Australia/Sydney", "BR": "America/Sao_Paulo",
                 "RU": "Europe/Moscow", "UA": "Europe/Kyiv", "AR": "America/Argentina/Buenos_Aires",
                 "KZ": "Asia/Almaty", "ID": "Asia/Jakarta", "MX": "America/Mexico_City", "CL": "America/Santiago",
                 "ES": "Europe/Madrid", "PT": "Europe/Lisbon", "NZ": "Pacific/Auckland", "EC": "America/Guayaquil",
                 "CD": "Africa/Kinshasa", "MN": "Asia/Ulaanbaatar", "MY": "Asia/Kuala_Lumpur", "DE": "Europe/Berlin"}
_ZONES_BY_REGION = {
    "US": {"America/New_York": "CT DE DC FL GA KY ME MD MA NH NJ NY NC OH PA RI SC VT VA WV",
           "America/Detroit": "MI", "America/Indiana/Indianapolis": "IN",
           "America/Chicago": "AL AR IL IA KS LA MN MS MO NE ND OK SD TN TX WI",
           "America/Denver": "CO ID MT NM UT WY", "America/Phoenix": "AZ",
           "America/Los_Angeles": "CA NV OR WA", "America/Anchorage": "AK", "Pacific/Honolulu": "HI",
           "America/Puerto_Rico": "PR"},
    "CA": {"America/Vancouver": "BC", "America/Edmonton": "AB", "America/Regina": "SK", "America/Winnipeg": "MB",
           "America/Toronto": "ON QC", "America/Halifax": "NB NS PE", "America/St_Johns": "NL",
           "America/Whitehorse": "YT", "America/Yellowknife": "NT", "America/Iqaluit": "NU"},
    "AU": {"Australia/Sydney": "NSW ACT", "Australia/Melbourne": "VIC", "Australia/Brisbane": "QLD",
           "Australia/Adelaide": "SA", "Australia/Perth": "WA", "Australia/Hobart": "TAS", "Australia/Darwin": "NT"},
}
_REGION_ZONE = {(country, region): zone for country, zones in _ZONES_BY_REGION.items()
                for zone, regions in zones.items() for region in regions.split()}


@lru_cache(maxsize=4096)
def default_timezone(country: str | None, region: str | None = None) -> str | None:
    """The IANA zone of a country (of its state or province for the US, Canada and Australia),
    the one most of its people live in; None when unknown."""
    if not country:
        return None
    country = country.upper()
    if region and (country, region.upper()) in _REGION_ZONE:
        return _REGION_ZONE[(country, region.upper())]
    if country in _COUNTRY_ZONE:
        return _COUNTRY_ZONE[country]
    zones = pytz.country_timezones.get(country)
    return zones[0] if zones else None


# Countries whose first official language (CLDR) is not the one their business is done in.
_BUSINESS_LANGUAGE = {"IN": "en", "KE": "en"}


@lru_cache(maxsize=512)
def official_language(country: str | None) -> str | None:
    """The first official language (ISO 639-1) of a country, from CLDR via babel (English for
    India and Kenya, where business is done in it)."""
    if not country:
        return None
    if country in _BUSINESS_LANGUAGE:
        return _BUSINESS_LANGUAGE[country]
    from babel.languages import get_official_languages

    for lang in get_official_languages(country, de_facto=True):
        if len(lang) == 2:
            return lang
    return None


def parse_language(raw: object) -> str | None:
    """A BCP 47 language tag as accounts keep it: ISO 639-1 with an optional region
    ('fr', 'fr-CA', 'pt_BR' -> 'pt-BR'), from a tag, an ISO 639 code or an English language name
    ('German' -> 'de'); None when empty. Names in other languages go through the mapping's values."""
    text = clean(raw)
    if text is None:
        return None
    return _language(text)


@lru_cache(maxsize=1024)
def _language(text: str) -> str:
    tag = re.fullmatch(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}))?", text)
    found = None
    if tag:
        try:
            found = pycountry.languages.lookup(tag.group(1))
        except LookupError:
            found = None
        if found is not None and getattr(found, "alpha_2", None):
            return found.alpha_2 + (f"-{tag.group(2).upper()}" if tag.group(2) else "")
    try:
        found = pycountry.languages.lookup(text)
    except LookupError:
        found = None
    if found is not None and getattr(found, "alpha_2", None):
        return found.alpha_2
    raise BadValue(f"{text!r} is not a language (an ISO 639-1 code such as fr or fr-CA, or a language name)")


def check_timezone(raw: object) -> str | None:
    text = clean(raw)
    if text is None:
        return None
    if text not in pytz.all_timezones_set:
        raise BadValue(f"{text!r} is not an IANA time zone (e.g. Europe/Paris)")
    return text


def parse_email(raw: object) -> str | None:
    """A syntactically valid address, domain lower-cased (IDN domains allowed: kept in Unicode);
    None when empty. No DNS lookup. Checked by email-validator; a plain ASCII address takes a
    shortcut (its local part by RFC 5322's dot-atom, its domain checked once per domain), as
    an import checks hundreds of thousands of addresses at a few domains each."""
    text = clean(raw)
    if text is None:
        return None
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and len(text) <= 254 and _DOT_ATOM.fullmatch(local):
        checked, error = _domain_or_error(domain)
        if error is not None:
            raise BadValue(f"{text!r} is not an e-mail address: {error}")
        return f"{local}@{checked}"
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadValue(f"{text!r} is not an e-mail address: {exc}") from None
    return f"{checked.local_part}@{checked.domain.lower()}"


_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_LDH_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z])?")


def _domain_or_error(domain: str) -> tuple[str, str | None]:
    """(the domain lower-cased, None) or ("", why not). A plain host name (letters, digits and
    hyphens, a letter TLD, no Punycode, not special-use) is what email-validator would accept
    unchanged; anything else goes through it."""
    lowered = domain.lower()
    # Every special-use name is one label, and an LDH domain here has a dot: its TLD is what to check.
    if len(lowered) <= 253 and "xn--" not in lowered and _LDH_DOMAIN.fullmatch(lowered) and \
            lowered[lowered.rfind(".") + 1:] not in _SPECIAL_USE:
        return lowered, None
    return _checked_domain(domain)


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> tuple[str, str | None]:
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain.lower(), None
    except EmailNotValidError as exc:
        return "", str(exc)


_SF_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def salesforce_id(raw: object) -> str | None:
    """The 18-character form of a Salesforce id. A 15-character id is case-sensitive; the three
    extra characters of the 18-character form encode the case of each block of five, so an
    18-character id is read in any case (a tool that upper- or lower-cased it is undone) and
    checked: a suffix that contradicts the id (a letter where a digit is) is refused."""
    text = clean(raw)
    if text is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?", text):
        raise BadValue(f"{text!r} is not a Salesforce id (15 or 18 letters and digits)")
    if len(text) == 15:
        return text + _sf_suffix(text)
    suffix = text[15:].upper()
    restored = []
    for block, ch in enumerate(suffix):
        bits = _SF_ALPHABET.find(ch)
        for i, c in enumerate(text[block * 5:block * 5 + 5]):
            upper = bool(bits >> i & 1)
            if upper and not c.isalpha():
                raise BadValue(f"{text!r} is not a Salesforce id: its last three characters do not match the first "
                               "fifteen (mistyped or damaged)")
            restored.append(c.upper() if upper else c.lower())
    return "".join(restored) + suffix


def _sf_suffix(id15: str) -> str:
    suffix = ""
    for block in range(3):
        bits = sum(1 << i for i, ch in enumerate(id15[block * 5:block * 5 + 5]) if "A" <= ch <= "Z")
        suffix += _SF_ALPHABET[bits]
    return suffix


def split_multi(raw: object, separator: str = ";") -> list[str]:
    """A multi-value cell ('a;b; c') as its values, empty ones dropped."""
    text = clean(raw)
    return [part.strip() for part in text.split(separator) if part.strip()] if text else []


# Latin letters that do not decompose into an ASCII letter and a mark (NFKD leaves them whole).
_LATIN_LETTERS = str.maketrans({"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "ß": "ss", "Æ": "AE", "æ": "ae", "Œ": "OE",
                                "œ": "oe", "Đ": "D", "đ": "d", "Þ": "Th", "þ": "th", "ı": "i", "Ð": "D", "ð": "d",
                                "Ħ": "H", "ħ": "h"})


def slug(text: str, limit: int = 40) -> str:
    """An account id from a company name: ASCII letters and digits joined by '-'; '' when the
    name has none (a name in another script): the caller then uses the CRM id."""
    folded = unicodedata.normalize("NFKD", text.translate(_LATIN_LETTERS)).encode("ascii", "ignore").decode()
    parts = re.findall(r"[a-z0-9]+", folded.lower())
    return "-".join(parts)[:limit].strip("-")
