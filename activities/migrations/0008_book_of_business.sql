-- A real book of business: accounts and contacts imported from CRMs and kept in
-- step by their webhooks. Every record remembers the CRM ids it came from
-- (`crm_links`), so a re-import or a webhook finds it again; nothing is ever
-- deleted by an import.

ALTER TABLE accounts
    ADD COLUMN country        text CHECK (country ~ '^[A-Z]{2}$'),            -- ISO 3166-1 alpha-2
    ADD COLUMN region         text CHECK (region ~ '^[A-Z0-9]{1,3}$'),        -- ISO 3166-2 subdivision, without the country
    ADD COLUMN timezone       text NOT NULL DEFAULT 'America/New_York',        -- IANA name
    ADD COLUMN language       text NOT NULL DEFAULT 'en' CHECK (language ~ '^[a-z]{2}(-[A-Z]{2})?$'),
    ADD COLUMN arr_currency   text NOT NULL DEFAULT 'USD' CHECK (arr_currency ~ '^[A-Z]{3}$'),
    ADD COLUMN usd_rate       numeric(18, 8) NOT NULL DEFAULT 1 CHECK (usd_rate > 0),  -- USD per unit of arr_currency, at the last write
    ADD COLUMN crm_tier       text CHECK (crm_tier IN ('Enterprise', 'Mid-Market', 'Starter')),
    ADD COLUMN domain         text,
    ADD COLUMN csm_owner      text,          -- the CRM owner (id or name) the CSM was resolved from
    ADD COLUMN source         text,          -- the connection that created it: hubspot, salesforce, csv:<mapping>, demo
    ADD COLUMN merged_into    text REFERENCES accounts (id),
    ADD COLUMN crm_deleted_at timestamptz;
-- An imported company may have no sponsor yet: plays then address the first contact (see fetch_account).
ALTER TABLE accounts ALTER COLUMN sponsor_name DROP NOT NULL, ALTER COLUMN sponsor_email DROP NOT NULL;

ALTER TABLE contacts
    ADD COLUMN first_name     text,
    ADD COLUMN last_name      text,
    ADD COLUMN title          text,
    ADD COLUMN phone          text,
    ADD COLUMN email_opt_out  boolean NOT NULL DEFAULT false,   -- HubSpot hs_email_optout, Salesforce HasOptedOutOfEmail
    ADD COLUMN crm_key        text,                             -- connection:crm_id of the person, when imported
    ADD COLUMN updated_at     timestamptz NOT NULL DEFAULT now();
-- A contact without an e-mail address is kept (a person of the account), but no play can write to it.
ALTER TABLE contacts ALTER COLUMN email DROP NOT NULL;
-- One row per person and account: a contact of two companies has a row in each.
CREATE UNIQUE INDEX contacts_by_crm_key ON contacts (account_id, crm_key) WHERE crm_key IS NOT NULL;
CREATE INDEX contacts_by_email ON contacts (lower(email));

-- Which CRM record is which of ours. object_type: company, contact, deal, ticket, organization;
-- connection: the configured CRM connection (hubspot, salesforce, zendesk, csv:<mapping>).
CREATE TABLE crm_links (
    connection      text NOT NULL,
    object_type     text NOT NULL,
    crm_id          text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, object_type, crm_id)
);
CREATE INDEX crm_links_by_account ON crm_links (account_id);

-- Our CSMs, and the CRM owners (ids, names, e-mails) that stand for each of them.
CREATE TABLE csms (
    email           text PRIMARY KEY CHECK (email = lower(email)),
    name            text NOT NULL,
    owner_keys      text[] NOT NULL DEFAULT '{}',   -- lower-cased CRM owner ids, names and e-mails
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every import run: what it read and what it did (a dry run writes no row).
CREATE TABLE import_runs (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL,
    files           text[] NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    created         integer NOT NULL DEFAULT 0,
    updated         integer NOT NULL DEFAULT 0,
    unchanged       integer NOT NULL DEFAULT 0,
    refused         integer NOT NULL DEFAULT 0,
    run_by          text NOT NULL
);
