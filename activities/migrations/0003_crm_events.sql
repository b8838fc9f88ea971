-- CRM webhook events: each event id is acted on once (a duplicate or a
-- replayed delivery finds its row), and each (object, property) remembers
-- the newest change applied, so an older event arriving late is ignored.

CREATE TABLE crm_events (
    event_id        text PRIMARY KEY,
    subscription    text NOT NULL,
    account_id      text REFERENCES accounts (id),
    occurred_at     timestamptz NOT NULL,
    trigger_name    text,
    outcome         text NOT NULL,
    workflow_id     text,
    received_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE crm_property_state (
    object_key      text PRIMARY KEY,  -- e.g. renewal:acme:renewal_date, sla:T-1001:priority
    occurred_at     timestamptz NOT NULL,
    value           text,
    event_id        text NOT NULL
);
