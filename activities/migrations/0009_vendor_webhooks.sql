-- Webhooks from the real vendors (HubSpot, Salesforce Outbound Messages, Zendesk) next to the
-- generic CRM event. Every delivery is kept in `crm_events` under a key the vendor's retries
-- repeat (claimed in its own short transaction, acted on, then its outcome recorded), with the
-- event itself, so that an event whose object we do not know yet waits (status 'waiting', and
-- what it waits for) and is acted on when the object arrives, and an event claimed by a process
-- that died is taken up again once its claim runs out.

ALTER TABLE crm_events
    ADD COLUMN source           text NOT NULL DEFAULT 'generic'
                                CHECK (source IN ('generic', 'hubspot', 'salesforce', 'zendesk')),
    ADD COLUMN connection       text,             -- the configured CRM connection (playbooks/crm/connections.yaml)
    ADD COLUMN status           text NOT NULL DEFAULT 'done'
                                CHECK (status IN ('pending', 'waiting', 'done', 'refused')),
    ADD COLUMN object_type      text,             -- company, contact, deal, ticket, account (generic)
    ADD COLUMN object_id        text,             -- the CRM's id of it
    ADD COLUMN payload          jsonb,            -- the checked event, to act on it again
    ADD COLUMN wait_connection  text,             -- what a waiting event waits for: a CRM object,
    ADD COLUMN wait_object_type text,             -- our account, or a play ('play', workflow id)
    ADD COLUMN wait_crm_id      text,
    ADD COLUMN wait_reason      text,
    ADD COLUMN waiting_since    timestamptz,
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at  timestamptz,      -- a pending event is claimed until then
    ADD COLUMN last_error       text,
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now();
CREATE INDEX crm_events_waiting ON crm_events (wait_connection, wait_object_type, wait_crm_id)
    WHERE status = 'waiting';
CREATE INDEX crm_events_pending ON crm_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX crm_events_by_object ON crm_events (connection, object_type, object_id);

-- The last value of every CRM property a webhook told us, per object: an older change arriving
-- late is recognised (occurred_at), a whole-record message (Salesforce, Zendesk) is compared
-- with what we knew (previous_value), and a company's or contact's properties are kept until
-- it can be written to the book (a company needs its name first).
CREATE TABLE crm_object_properties (
    connection      text NOT NULL,
    object_type     text NOT NULL,
    crm_id          text NOT NULL,
    property        text NOT NULL,
    value           text,
    previous_value  text,
    occurred_at     timestamptz NOT NULL,
    event_id        text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, object_type, crm_id, property)
);

-- A contact deleted in the CRM leaves every play's address list (it can come back: a restore).
ALTER TABLE contacts ADD COLUMN crm_deleted_at timestamptz;

-- Accounts merged by the CRM: which into which, when, and what moved.
CREATE TABLE account_merges (
    id              bigserial PRIMARY KEY,
    merged_id       text NOT NULL REFERENCES accounts (id),
    into_id         text NOT NULL REFERENCES accounts (id),
    connection      text NOT NULL,
    event_id        text NOT NULL,
    merged_at       timestamptz NOT NULL DEFAULT now(),
    moved           jsonb NOT NULL,
    UNIQUE (merged_id, into_id)
);

-- Privacy deletions (GDPR "right to erasure" requests from the CRM): what was erased and when.
-- Never the personal data itself: only the CRM's id of the person and counts per table.
CREATE TABLE privacy_erasures (
    id              bigserial PRIMARY KEY,
    connection      text NOT NULL,
    crm_id          text NOT NULL,
    event_id        text NOT NULL UNIQUE,
    requested_at    timestamptz NOT NULL,
    erased_at       timestamptz NOT NULL DEFAULT now(),
    erased          jsonb NOT NULL
);
