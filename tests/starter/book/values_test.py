"""CRM values as people type them and CRMs export them: table tests of starter/book/values.py."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import pytz

from starter.book import values as v


@pytest.mark.parametrize("raw, amount, currency", [
    ("$120,000", "120000", "USD"),             # HubSpot text property, typed by hand
    ("€ 85.000", "85000", "EUR"),               # a German user's thousands dot
    ("USD 30k", "30000", "USD"),
    ("EUR 1,2m", "1200000", "EUR"),
    ("¥9,600,000", "9600000", "JPY"),
    ("PLN 210 000", "210000", "PLN"),
    ("NOK 1 250 000", "1250000", "NOK"),
    ("€48.500,00", "48500", "EUR"),
    ("CHF 64'000", "64000", "CHF"),
    ("R$ 540.000", "540000", "BRL"),
    ("£ 18.500", "18500", "GBP"),
    ("4.8E7", "48000000", "USD"),               # Data Loader doubles
    ("9500000.0", "9500000", "USD"),
    ("48000", "48000", "USD"),
    ("1,5", "1.5", "USD"),
    ("AUD 150k", "150000", "AUD"),
])
def test_money_typed_by_hand(raw, amount, currency):
    assert v.parse_money(raw) == (Decimal(amount), currency)


@pytest.mark.parametrize("raw", ["-5000", "(1,000)", "lots", "$", "12abc"])
def test_money_that_is_not_an_amount_is_refused(raw):
    with pytest.raises(v.BadValue):
        v.parse_money(raw)


def test_empty_values_are_none():
    for parse in (v.parse_money, v.parse_date, v.parse_bool, v.parse_country, v.parse_email, v.salesforce_id,
                  v.parse_language, v.check_timezone):
        assert parse("") is None and parse("   ") is None and parse(None) is None


@pytest.mark.parametrize("raw, expected", [
    ("2027-03-31", date(2027, 3, 31)),
    ("2021-03-07 15:26", date(2021, 3, 7)),
    ("2020-11-05T15:26:18.000Z", date(2020, 11, 5)),
    ("1798761600000", date(2027, 1, 1)),  # HubSpot webhooks: epoch milliseconds at midnight UTC
])
def test_dates(raw, expected):
    assert v.parse_date(raw) == expected


def test_a_date_format_from_the_mapping():
    assert v.parse_date("30/09/2027", v.DEFAULT_DATE_FORMATS + ("%d/%m/%Y",)) == date(2027, 9, 30)
    with pytest.raises(v.BadValue, match="not a date"):
        v.parse_date("next spring")


def test_formula_escapes_are_undone():
    assert v.clean("'=Equals Design Studio") == "=Equals Design Studio"
    assert v.clean("'+1 206 555 0100") == "+1 206 555 0100"
    assert v.clean("O'Neill") == "O'Neill"
    assert v.clean("Ko\u0308hler") == "Köhler"  # NFC


@pytest.mark.parametrize("raw, expected", [("United Kingdom", "GB"), ("DEU", "DE"), ("us", "US"),
                                           ("Japan", "JP"), ("Korea, Republic of", "KR")])
def test_countries(raw, expected):
    assert v.parse_country(raw) == expected


@pytest.mark.parametrize("country, raw, expected", [("US", "California", "CA"), ("US", "us-tx", "TX"),
                                                    ("DE", "Bayern", "BY"), ("AU", "Western Australia", "WA"),
                                                    ("CA", "Ontario", "ON"), ("BR", "SP", "SP")])
def test_regions_within_their_country(country, raw, expected):
    assert v.parse_region(country, raw) == expected


def test_a_region_the_country_does_not_have_is_refused():
    with pytest.raises(v.BadValue, match="not a region of GB"):
        v.parse_region("GB", "California")
    with pytest.raises(v.BadValue, match="has none"):
        v.parse_region(None, "California")


@pytest.mark.parametrize("country, region, zone", [
    ("US", None, "America/New_York"), ("US", "CA", "America/Los_Angeles"), ("US", "TX", "America/Chicago"),
    ("US", "AZ", "America/Phoenix"), ("CA", None, "America/Toronto"), ("CA", "BC", "America/Vancouver"),
    ("AU", None, "Australia/Sydney"), ("AU", "WA", "Australia/Perth"), ("BR", "SP", "America/Sao_Paulo"),
    ("GB", None, "Europe/London"), ("JP", None, "Asia/Tokyo"), ("DE", "BY", "Europe/Berlin"),
    ("RU", None, "Europe/Moscow"), ("XX", None, None), (None, None, None),
])
def test_time_zone_of_a_country_and_its_state(country, region, zone):
    assert v.default_timezone(country, region) == zone


def test_every_zone_of_the_tables_exists():
    for zone in set(v._COUNTRY_ZONE.values()) | set(v._REGION_ZONE.values()):
        assert zone in pytz.all_timezones_set, zone


@pytest.mark.parametrize("raw, expected", [("fr", "fr"), ("fr-ca", "fr-CA"), ("pt_BR", "pt-BR"),
                                           ("German", "de"), ("deu", "de"), ("English", "en")])
def test_languages(raw, expected):
    assert v.parse_language(raw) == expected


def test_a_language_name_in_another_language_needs_the_mapping():
    with pytest.raises(v.BadValue, match="not a language"):
        v.parse_language("Deutsch")


def test_salesforce_ids_15_and_18_characters():
    assert v.salesforce_id("0015g000009X4ve") == "0015g000009X4veAAC"
    assert v.salesforce_id("0015g000009X4veAAC") == "0015g000009X4veAAC"
    # The 18-character form survives a tool that changed its case.
    assert v.salesforce_id("0015G000009X4VEAAC") == "0015g000009X4veAAC"
    assert v.salesforce_id("0015g000009x4veaac") == "0015g000009X4veAAC"
    with pytest.raises(v.BadValue, match="do not match"):
        v.salesforce_id("0015g000009X4veZZZ")
    with pytest.raises(v.BadValue, match="15 or 18"):
        v.salesforce_id("0015g000009X4v")


@pytest.mark.parametrize("raw", ["sam.okafor(at)pacificcrest.example", "yui.mori@@osaka.example", "no-at-sign",
                                 "a b@example.com"])
def test_invalid_email_addresses_are_refused(raw):
    with pytest.raises(v.BadValue, match="not an e-mail address"):
        v.parse_email(raw)


def test_email_domain_is_lower_cased_and_idn_kept():
    assert v.parse_email("Anja.Koehler@Mueller-Soehne.EXAMPLE") == "Anja.Koehler@mueller-soehne.example"
    assert v.parse_email("info@bücher.example") == "info@bücher.example"


def test_slugs_for_account_ids():
    assert v.slug("Müller & Söhne Präzisionstechnik GmbH") == "muller-sohne-prazisionstechnik-gmbh"
    assert v.slug("株式会社サクラ精機") == ""
    assert v.slug("Łódź Logistics Sp. z o.o.") == "lodz-logistics-sp-z-o-o"
    assert v.slug("Østergaard & Søn") == "ostergaard-son"
