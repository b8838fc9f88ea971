"""Salesforce Data Loader extracts and a user's own mapping (a CS-ops template, English CSV and
French XLSX) through the importer, against real PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import openpyxl

from starter.book.importer import ImportFile, load_mapping
from starter.book.values import salesforce_id
from tests.starter.book.importer_test import CRM, REAL, SALESFORCE, TEMPLATE, account, counts, run


# -- Salesforce ------------------------------------------------------------------------------------
async def test_salesforce_data_loader_extracts(pool):
    report = await run(pool, "salesforce", SALESFORCE / "extract_Account.csv", SALESFORCE / "extract_Contact.csv")
    assert counts(report) == {"accounts": (5, 0, 0, 0), "contacts": (4, 0, 0, 1)}
    (refused,) = report.refused.items
    assert (refused.where, refused.column) == ("extract_Contact.csv:5", "EMAIL")
    assert "yui.mori@@osaka-seimitsu.example" in refused.reason
    cascade = await account(pool, "0015g00000Qa1bCAAR", "salesforce")
    assert (cascade["arr"], cascade["region"], cascade["timezone"], cascade["csm_email"]) == (
        Decimal(120000), "WA", "America/Los_Angeles", "avery.lindqvist@tai.example")  # ARR__C 1.2E5
    maple = await account(pool, "0015g00000Td4eFAAR", "salesforce")
    assert (maple["region"], maple["timezone"], maple["csm_email"], maple["language"]) == (
        "ON", "America/Toronto", "casey.morgan@tai.example", "en")
    equals = await account(pool, "0015g00000Ue5fGAAR", "salesforce")
    assert (equals["name"], equals["status"]) == ("=Equals Design Studio", "prospect")  # '= escape undone
    # The contact names its account by the 15-character id: the same account.
    leonie = await pool.fetchrow("SELECT * FROM contacts WHERE email = 'l.brandt@nordlicht.example'")
    assert leonie["account_id"] == "nordlicht-energie-gmbh"
    dana = await pool.fetchrow("SELECT * FROM contacts WHERE email = 'dana.whitfield@cascade-outfitters.example'")
    assert dana["phone"] == "+1 206 555 0101"  # '+ escape undone
    emile = await pool.fetchrow("SELECT * FROM contacts WHERE email = 'emile.tremblay@mapleleaf.example'")
    assert emile["crm_key"] == f"salesforce:{salesforce_id('0035g00000Hx5Ee')}" and emile["email_opt_out"]
    kenji = await pool.fetchrow("SELECT * FROM contacts WHERE name = '健二 田中'")
    assert kenji["email"] is None
    assert cascade["sponsor_email"] == "dana.whitfield@cascade-outfitters.example"


async def test_salesforce_15_character_ids_find_the_18_character_ones(pool, tmp_path):
    await run(pool, "salesforce", SALESFORCE / "extract_Account.csv")
    text = (SALESFORCE / "extract_Account.csv").read_bytes().decode()
    for crm_id in ("0015g00000Qa1bCAAR", "0015g00000Rb2cDAAR", "0015g00000Sc3dEAAR"):
        text = text.replace(f'"{crm_id}"', f'"{crm_id[:15]}"')
    short = tmp_path / "extract_Account.csv"
    short.write_bytes(text.encode())
    again = await run(pool, "salesforce", short)
    assert counts(again)["accounts"] == (0, 0, 5, 0)


async def test_the_shared_salesforce_extracts_as_they_are(pool):
    loader = REAL / "salesforce" / "dataloader"
    report = await run(pool, "salesforce", loader / "extract_Account.csv", loader / "extract_Contact.csv")
    assert counts(report) == {"accounts": (4, 0, 0, 0), "contacts": (5, 0, 0, 0)}
    bluefin = await account(pool, "0015g00000DoBNZAA3", "salesforce")
    assert bluefin["csm_owner"] == "0055g00000XIntgAAD" and bluefin["csm_email"] == "casey.morgan@tai.example"


# -- a user's mapping: a CS-ops template, English CSV and French XLSX ------------------------------
async def test_cs_template_mapping_english_csv(pool):
    mapping = load_mapping(CRM / "examples" / "cs_template.yaml", "csv")
    report = await run(pool, "csv", TEMPLATE / "accounts.csv", TEMPLATE / "contacts.csv", mapping=mapping,
                       source_label="csv:cs_template")
    assert counts(report) == {"accounts": (4, 0, 0, 0), "contacts": (6, 0, 0, 0)}
    redwood = await account(pool, "GS-1001", "cs-template")
    assert (redwood["arr"], redwood["crm_tier"], redwood["health"], redwood["status"], redwood["region"],
            redwood["timezone"], redwood["language"], redwood["csm_email"], redwood["source"]) == (
        Decimal(210000), "Enterprise", 83, "active", "OR", "America/Los_Angeles", "en", "casey.morgan@tai.example",
        "csv:cs_template")
    assert redwood["sponsor_email"] == "maria.lopez@redwood-dental.example"  # by role, before any title
    alpen = await account(pool, "GS-1002", "cs-template")
    assert (alpen["arr"], alpen["arr_currency"], alpen["renewal_date"], alpen["crm_tier"], alpen["timezone"],
            alpen["language"]) == (Decimal(64000), "CHF", date(2027, 9, 30), "Mid-Market", "Europe/Zurich", "de")
    tiny = await account(pool, "GS-1003", "cs-template")
    assert (tiny["arr_currency"], tiny["crm_tier"], tiny["status"], tiny["region"], tiny["timezone"]) == (
        "USD", "Starter", "at-risk", "TX", "America/Chicago")
    koala = await account(pool, "GS-1004", "cs-template")
    assert (koala["arr"], koala["arr_currency"], koala["crm_tier"], koala["region"], koala["timezone"]) == (
        Decimal(150000), "AUD", None, "WA", "Australia/Perth")
    riley = await pool.fetch("SELECT account_id, email_opt_out FROM contacts WHERE name = 'Riley Shared'")
    assert sorted((r["account_id"], r["email_opt_out"]) for r in riley) == [
        ("koala-cloud-pty-ltd", True), ("tiny-widgets-llc", True)]


async def test_cs_template_mapping_french_xlsx_with_two_sheets(pool, tmp_path):
    path = tmp_path / "portefeuille.xlsx"
    wb = openpyxl.Workbook()
    comptes = wb.active
    comptes.title = "Comptes"
    comptes.append(["ID du compte", "Nom du compte", "Responsable CS", "ARR annuel", "Devise", "Date de renouvellement",
                    "Niveau", "Score de santé", "Étape", "Secteur", "Pays", "Région", "Langue"])
    comptes.append(["FR-2001", "Laiterie Saint-Malo", "Jonas Becker", 85000, "EUR", date(2027, 6, 30), "Stratégique",
                    74, "Actif", "Agroalimentaire", "France", "", "Français"])
    comptes.append(["FR-2002", "Brauhaus Bayern GmbH", "avery.lindqvist@tai.example", "€ 42.000", "", "31/12/2027",
                    "Croissance", 61, "À risque", "Boissons", "Allemagne", "Bayern", "Allemand"])
    contacts = wb.create_sheet("Contacts")
    contacts.append(["ID du contact", "ID du compte", "Prénom", "Nom", "Courriel", "Fonction", "Rôle", "Désabonné"])
    contacts.append(["FC-1", "FR-2001", "Anaïs", "Le Goff", "anais.legoff@laiterie.example", "Directrice", "Sponsor exécutif",
                     "non"])
    contacts.append(["FC-2", "FR-2002", "Lukas", "Huber", "not an address", "IT", "Utilisateur", "non"])
    wb.save(path)
    mapping = load_mapping(CRM / "examples" / "cs_template.yaml", "csv")
    report = await run(pool, "csv", ImportFile(path, sheet="Comptes"), ImportFile(path, sheet="Contacts"),
                       mapping=mapping)
    assert counts(report) == {"accounts": (2, 0, 0, 0), "contacts": (1, 0, 0, 1)}
    assert report.refused.items[0].where == "portefeuille.xlsx[Contacts]:3"
    assert report.refused.items[0].column == "Courriel"
    laiterie = await account(pool, "FR-2001", "cs-template")
    assert (laiterie["arr"], laiterie["crm_tier"], laiterie["language"], laiterie["renewal_date"],
            laiterie["sponsor_email"]) == (Decimal(85000), "Enterprise", "fr", date(2027, 6, 30),
                                           "anais.legoff@laiterie.example")
    brauhaus = await account(pool, "FR-2002", "cs-template")
    assert (brauhaus["arr"], brauhaus["arr_currency"], brauhaus["status"], brauhaus["region"], brauhaus["language"],
            brauhaus["renewal_date"], brauhaus["csm_email"]) == (
        Decimal(42000), "EUR", "at-risk", "BY", "de", date(2027, 12, 31), "avery.lindqvist@tai.example")
