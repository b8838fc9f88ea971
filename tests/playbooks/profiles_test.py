"""Organisation profiles (`playbooks/profiles.py`, `playbooks/profile_schema.py`): the shipped default
profile is seed 001, tiers come from ranges by ARR or MRR in a currency, support regions give hours
per weekday (partial days, shifts, spells past midnight), a profile's own files win over the
default's, and every problem is `file:line: field: message`. Tier bounds are hand-computed from the
handbooks: seed 001 section 8.1 (Enterprise > $100K, Mid-Market $25K-$100K, Starter below) and seed
004 (Business > 500 EUR a month, Enterprise > 2K EUR a month).
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from playbooks.loader import PLAYBOOKS_DIR, PlaybookError, load_named, load_playbook, profile_sources, validate_all
from playbooks.profile_schema import SupportRegion, TierScale
from playbooks.profiles import DEFAULT_PROFILE, default_profile, load_profile, profile_names
from tests.playbooks.loader_test import line_of


def test_the_default_profile_is_seed_001_and_validates():
    profile = default_profile()
    assert DEFAULT_PROFILE == "tai" and "tai" in profile_names()
    assert profile.content.handbook.startswith("001_")
    assert profile.tier_names == ("Enterprise", "Mid-Market", "Starter")
    assert profile.priority_keys == ("P0", "P1", "P2", "P3")
    region = profile.region_for_tier("Starter")
    assert (region.timezone, region.holidays, region.day_hours) == ("America/New_York", "US", 9)
    # Mon-Fri 09:00-18:00, closed at the weekend.
    assert region.week() == ((((540, 1080),),) * 5) + ((), ())
    assert validate_all() == []


def test_the_default_profile_changes_no_playbook():
    """The shipped playbooks are the default profile's files: loading them in it gives the same snapshots."""
    profile = default_profile()
    for name in ("onboarding", "renewal", "sla", "churn", "nps"):
        assert load_named(name, profile=profile) == load_playbook(PLAYBOOKS_DIR / f"{name}.yaml")
        assert profile.source(f"{name}.yaml") == "default profile (tai)"


@pytest.mark.parametrize(("arr", "currency", "usd_rate", "tier"), [
    ("0", "USD", "1", "Starter"),
    ("24999.99", "USD", "1", "Starter"),
    ("25000", "USD", "1", "Mid-Market"),       # "$25K-$100K": both ends are Mid-Market
    ("100000", "USD", "1", "Mid-Market"),
    ("100000.01", "USD", "1", "Enterprise"),   # "> $100K"
    ("100000", "EUR", "1.08", "Enterprise"),   # 108,000 USD at the account's rate
    ("23000", "EUR", "1.08", "Starter"),       # 24,840 USD
])
def test_seed_001_tiers_by_arr_in_us_dollars(arr, currency, usd_rate, tier):
    assert default_profile().tier_for(Decimal(arr), currency, Decimal(usd_rate)) == tier


MRR_EUR = TierScale.model_validate({"basis": "mrr", "currency": "EUR", "levels": [
    {"name": "Enterprise", "over": 2000}, {"name": "Business", "over": 500}, {"name": "Standard", "over": 0},
    {"name": "Free"}]})


@pytest.mark.parametrize(("arr_eur", "tier"), [
    ("24012", "Enterprise"),   # 2,001 EUR a month
    ("24000", "Business"),     # exactly 2,000 a month is not "> 2K"
    ("6012", "Business"),      # 501
    ("6000", "Standard"),      # 500
    ("12", "Standard"),        # 1 EUR a month is paid
    ("0", "Free"),
])
def test_seed_004_tiers_by_mrr_in_euros(arr_eur, tier):
    assert MRR_EUR.tier_for(Decimal(arr_eur)) == tier


def test_a_tier_scale_in_euros_converts_a_dollar_account_through_the_rates(tmp_path):
    folder = copy_playbooks(tmp_path)
    profile = write_profile(folder, "paris")
    # 25,920 USD / 1.08 USD per EUR (crm/currencies.yaml) = 24,000 EUR a year = 2,000 a month.
    assert profile.tier_for(Decimal("25920"), "USD", Decimal(1)) == "Business"
    assert profile.tier_for(Decimal("24000"), "EUR", Decimal("1.08")) == "Business"
    assert profile.tier_for(Decimal("24012"), "EUR", Decimal("1.08")) == "Enterprise"


@pytest.mark.parametrize(("hours", "week"), [
    ({"saturday": ["10:00-14:00"]}, ((), (), (), (), (), ((600, 840),), ())),
    # Seed 000: three Moscow shifts cover the day; touching spells are one.
    ({"monday": ["08:00-17:00", "17:00-02:00", "02:00-08:00"]},
     (((120, 1440),), ((0, 120),), (), (), (), (), ())),
    ({"sunday": ["22:00-06:00"]}, (((0, 360),), (), (), (), (), (), ((1320, 1440),))),  # past midnight into Monday
    ({"friday": ["09:00-24:00"]}, ((), (), (), (), ((540, 1440),), (), ())),
])
def test_opening_hours_per_weekday(hours, week):
    region = SupportRegion(key="r", timezone="Europe/Moscow", hours=hours)
    assert region.week() == week


def test_spells_that_touch_across_midnight_stay_two_days():
    region = SupportRegion(key="r", timezone="UTC", hours={d: ["00:00-24:00"] for d in (
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")})
    assert region.week() == (((0, 1440),),) * 7 and region.day_hours == 24


# -- a profile of its own: files, templates, validation -----------------------------------------
PARIS = """\
name: paris
organisation: Paris test organisation
handbook: 004_4d0d90c2017f9c2c.txt
language: fr
currency: EUR
tiers:
  basis: mrr
  currency: EUR
  levels:
    - name: Enterprise
      over: 2000
    - name: Business
      over: 500
    - name: Standard
priorities:
  - {key: P0, name: Critique}
  - {key: P1, name: Urgent}
  - {key: P2, name: Normal}
  - {key: P3, name: Faible}
support_regions:
  - key: paris
    timezone: Europe/Paris
    holidays: FR
    hours:
      monday: ["09:00-18:00"]
      tuesday: ["09:00-18:00"]
      wednesday: ["09:00-18:00"]
      thursday: ["09:00-18:00"]
      friday: ["09:00-18:00"]
      saturday: ["10:00-14:00"]
    business_day_hours: 9
# The roles the default profile's ladders and rules name (its sla.yaml is copied in).
staff_roles: {support_team: Support, cs_manager: CS Manager, vp_customer_success: VP CS, vp_engineering: VP Eng,
              vp_product: VP Product, ceo: CEO, coo: COO}
"""


def copy_playbooks(tmp_path: Path) -> Path:
    dest = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS_DIR, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dest


def write_profile(folder: Path, name: str, text: str = PARIS, sla: bool = True):
    """Profile `name` in a copy of the playbooks; with `sla`, its own sla.yaml: the default's matrix with
    the tiers renamed (Enterprise stays, Mid-Market is Business, Starter is Standard)."""
    own = folder / "profiles" / name
    own.mkdir(parents=True, exist_ok=True)
    (own / "profile.yaml").write_text(text.replace("name: paris", f"name: {name}"), encoding="utf-8")
    if sla:
        matrix = (PLAYBOOKS_DIR / "sla.yaml").read_text(encoding="utf-8")
        matrix = matrix.replace("\n  Mid-Market:\n", "\n  Business:\n").replace("\n  Starter:\n", "\n  Standard:\n")
        (own / "sla.yaml").write_text(matrix, encoding="utf-8")
    return load_profile(name, folder)


def test_a_profile_s_own_file_wins_and_the_rest_comes_from_the_default(tmp_path):
    folder = copy_playbooks(tmp_path)
    profile = write_profile(folder, "paris")
    sources = dict(profile_sources(profile))
    assert sources["sla.yaml"] == "profile paris"
    assert sources["onboarding.yaml"] == "default profile (tai)"
    snapshot = load_named("sla", profile=profile)
    assert set(snapshot.content.tiers) == {"Enterprise", "Business", "Standard"}
    # Its templates: its own first (a French P0 update), then the default's.
    own = folder / "profiles" / "paris" / "templates" / "sla"
    own.mkdir(parents=True)
    (own / "p0_update.html.j2").write_text(
        '{% extends "common/_layout.html.j2" %}{% block body %}<p>Mise à jour du ticket '
        '{{ data.ticket.id }}</p>{% endblock %}', encoding="utf-8")
    snapshot = load_named("sla", profile=load_profile("paris", folder))
    assert "Mise à jour du ticket" in snapshot.template("p0_update").body
    assert "common/_layout.html.j2" in snapshot.template("p0_update").partials
    assert snapshot.template("breach_notice").body == (
        PLAYBOOKS_DIR / "templates" / "sla" / "breach_notice.html.j2").read_text(encoding="utf-8")


def test_a_playbook_that_misses_a_tier_of_its_profile_names_file_line_and_field(tmp_path):
    folder = copy_playbooks(tmp_path)
    write_profile(folder, "paris", sla=False)
    # The default sla.yaml (Mid-Market, Starter) in a profile whose tiers are Business and Standard.
    problems = validate_all(folder, "paris")
    path = folder / "sla.yaml"
    text = path.read_text(encoding="utf-8")
    assert f"{path}:{line_of(text, '  Mid-Market:')}: tiers.Mid-Market: 'Mid-Market' is not a tier of profile paris " \
           f"(Enterprise, Business, Standard)" in problems, problems
    # The renewal playbook's per-tier owners name tiers this profile does not have, too.
    assert any(p.startswith(f"{folder / 'renewal.yaml'}:") and "is not a tier of profile paris" in p
               for p in problems), problems
    # With its own matrix, only what the profile still takes from the default is wrong.
    write_profile(folder, "paris")
    problems = validate_all(folder, "paris")
    assert not any("sla.yaml" in p for p in problems), problems


def test_a_missing_tier_in_the_matrix_is_reported_at_tiers(tmp_path):
    folder = copy_playbooks(tmp_path)
    profile = write_profile(folder, "paris")
    path = folder / "profiles" / "paris" / "sla.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("\n  Standard:\n")
    end = text.index("\n# A rule raises")
    path.write_text(text[:start] + "\n" + text[end:], encoding="utf-8")
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, profile=profile)
    assert f"{path}:{line_of(path.read_text(), 'tiers:')}: tiers: no SLA for Standard" in str(info.value)


@pytest.mark.parametrize(("old", "new", "says"), [
    ("name: paris\n", "name: lyon\n", "1: name: 'lyon' is not the folder's name 'paris'"),
    ("    - name: Standard\n", "    - name: Standard\n      over: 0\n",
     "tiers.levels[2].over: the last tier takes every amount below the others: no bound"),
    ("    - name: Business\n      over: 500\n", "    - name: Business\n",
     "tiers.levels[1].name: every tier but the last needs a bound"),
    ("      saturday: [\"10:00-14:00\"]\n", "      saturday: [\"14:00-14:00\"]\n",
     "support_regions[0].hours.saturday[0]: '14:00-14:00' opens and closes at the same time"),
    ("    timezone: Europe/Paris\n", "    timezone: Europe/Lutetia\n",
     "support_regions[0].timezone: unknown time zone 'Europe/Lutetia'"),
    ("    timezone: Europe/Paris\n", "    timezone: Europe\n",  # a folder of the zone database, not a zone
     "support_regions[0].timezone: unknown time zone 'Europe'"),
    ("    timezone: Europe/Paris\n", "    timezone: " + "A" * 300 + "\n",  # too long a file name
     "support_regions[0].timezone: unknown time zone '" + "A" * 80 + "'"),
    ("  - {key: P3, name: Faible}\n", "  - {key: P2, name: Faible}\n", "priorities[3].key: priority 'P2' appears twice"),
])
def test_a_broken_profile_names_file_line_and_field(tmp_path, old, new, says):
    folder = copy_playbooks(tmp_path)
    assert old in PARIS
    text = PARIS.replace(old, new)
    own = folder / "profiles" / "paris"
    own.mkdir(parents=True)
    path = own / "profile.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlaybookError) as info:
        load_profile("paris", folder)
    message = str(info.value)
    assert message.startswith(f"{path}:") and says in message, message
    if not says.startswith("1:"):
        marker = new.strip().splitlines()[-1].strip()
        assert f"{path}:{line_of(text, marker)}: " in message, message
    assert validate_all(folder, "paris") == message.splitlines()


def test_an_unknown_profile_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(PlaybookError) as info:
        load_profile("nowhere")
    assert "no profile 'nowhere' (profiles: " in str(info.value) and "tai" in str(info.value)


# -- the shipped profiles, one per handbook ------------------------------------------------------
def test_every_handbook_has_a_profile():
    names = profile_names()
    assert set(names) == {"tai", "vmcloud", "slavkokernel", "ma_suite", "vkcloud"}
    assert sorted(load_profile(n).content.handbook[:3] for n in names) == ["000", "001", "002", "003", "004"]


def test_vmcloud_tiers_by_mrr_in_euros_and_its_saturday_window():
    vmcloud = load_profile("vmcloud")
    assert vmcloud.content.language == "fr" and vmcloud.priority_keys == ("P1", "P2", "P3", "P4")
    assert vmcloud.tier_for(Decimal("24012"), "EUR", Decimal("1.08")) == "Enterprise"  # 2,001 EUR a month
    assert vmcloud.tier_for(Decimal("6000"), "EUR", Decimal("1.08")) == "Standard"     # 500 a month
    assert vmcloud.tier_for(Decimal("0"), "EUR", Decimal("1.08")) == "Free"
    assert vmcloud.region_for_tier("Free").week()[5] == ((600, 840),)


def test_tiers_the_crm_states_have_no_bounds():
    slavko = load_profile("slavkokernel")
    assert slavko.tier_names == ("White Glove", "Enterprise", "Premium", "Standard")
    assert slavko.tier_for(Decimal("5000000"), "USD", Decimal(1)) == "Standard"  # no stated tier: the last
    assert slavko.region_for_tier("White Glove").day_hours == 8
    assert slavko.region_for_tier("Premium").key == "extended"
    assert slavko.region_for_tier("Standard").key == "business_hours"
    with pytest.raises(ValueError, match="tiers the CRM states have no bounds"):
        TierScale.model_validate({"basis": "crm", "levels": [{"name": "A", "over": 1}, {"name": "B"}]})


def test_vk_cloud_three_shifts_and_the_tier_less_ma_suite():
    moscow = load_profile("vkcloud").region_for_tier("Standard")
    assert moscow.week() == (((0, 1440),),) * 7 and moscow.day_hours == 9
    ma = load_profile("ma_suite")
    assert ma.tier_names == ("Fortune 500",) and ma.tier_for_usd(Decimal(0)) == "Fortune 500"
    assert ma.priority_keys == ("Critical", "High", "Medium", "Low")


def test_csplay_validate_profile_says_which_files_are_its_own():
    from typer.testing import CliRunner

    from starter.cli import app

    ok = CliRunner().invoke(app, ["validate", "--profile", "tai"])
    assert ok.exit_code == 0 and "profile tai valid" in ok.output, ok.output
    assert "sla.yaml" in ok.output and "default profile (tai)" in ok.output
    # vmcloud has its own sla.yaml and renewal.yaml, and maps help-desk priority labels to its P1-P4
    # itself (profile.yaml ticket_priorities), so the shared crm/ mappings' seed-001 P0-P3 do not apply.
    own = CliRunner().invoke(app, ["validate", "--profile", "vmcloud"])
    flat = " ".join(own.output.split())
    assert "sla.yaml │ profile vmcloud" in flat and "renewal.yaml │ profile vmcloud" in flat, own.output
    assert "nps.yaml │ default profile" in flat, own.output
    assert own.exit_code == 0 and "profile vmcloud valid" in flat, own.output
    for name in ("slavkokernel", "ma_suite", "vkcloud"):
        each = CliRunner().invoke(app, ["validate", "--profile", name])
        assert each.exit_code == 0, each.output


def test_a_profile_maps_help_desk_priority_labels_to_its_own_priorities():
    """vmcloud's profile.yaml maps Zendesk/HubSpot/Salesforce labels to P1-P4 (004 section 2.1: P1 is
    the most urgent); tai keeps the mappings' seed-001 P0-P3."""
    from core.settings import Settings
    from playbooks.crm_mapping import Mapping, WebhooksMapping
    from playbooks.loader import PLAYBOOKS_DIR, _load_config
    from starter.events.tickets import ticket_priority_map

    zendesk = _load_config(PLAYBOOKS_DIR / "crm" / "zendesk.yaml", Mapping).webhooks
    for profile, urgent, low, default in (("vmcloud", "P1", "P4", "P3"), ("ma_suite", "Critical", "Low", "Medium"),
                                          ("tai", "P0", "P3", "P2")):
        labels, fallback = ticket_priority_map(Settings(_env_file=None, profile=profile), zendesk)
        assert WebhooksMapping.lookup(labels, "URGENT") == urgent and WebhooksMapping.lookup(labels, "low") == low
        assert fallback == default and WebhooksMapping.lookup(labels, "whenever") is None
