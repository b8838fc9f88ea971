-- Support SLA clocks (seed 001 sections 8 and 9): one row per ticket, kept
-- current by its `sla-<ticket>` play, and the service credits it issues.

CREATE TABLE sla_tickets (
    ticket_id           text PRIMARY KEY,
    workflow_id         text NOT NULL,
    account_id          text NOT NULL REFERENCES accounts (id),
    tier                text NOT NULL CHECK (tier IN ('Enterprise', 'Mid-Market', 'Starter')),
    priority            text NOT NULL CHECK (priority IN ('P0', 'P1', 'P2', 'P3')),
    subject             text NOT NULL,
    status              text NOT NULL CHECK (status IN ('open', 'acknowledged', 'on_hold', 'resolved', 'closed')),
    opened_at           timestamptz NOT NULL,
    acknowledged_at     timestamptz,
    resolved_at         timestamptz,
    response_due_at     timestamptz,
    resolution_due_at   timestamptz,
    response_met        boolean,
    resolution_met      boolean,
    escalation_level    integer NOT NULL DEFAULT 0 CHECK (escalation_level BETWEEN 0 AND 4),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sla_tickets_by_month ON sla_tickets (opened_at);
CREATE INDEX sla_tickets_by_account ON sla_tickets (account_id);

CREATE TABLE service_credits (
    id              bigserial PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    workflow_id     text NOT NULL,
    play_id         text NOT NULL,
    ticket_id       text NOT NULL REFERENCES sla_tickets (ticket_id),
    account_id      text NOT NULL REFERENCES accounts (id),
    clock           text NOT NULL CHECK (clock IN ('response', 'resolution')),
    percent         numeric(5, 2) NOT NULL CHECK (percent >= 0),
    monthly_fee     numeric(14, 2) NOT NULL,
    amount          numeric(14, 2) NOT NULL,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Reports (SLA attainment, NPS, risk summary) are e-mails about many
-- accounts: their communication-log rows name no account.
ALTER TABLE communications ALTER COLUMN account_id DROP NOT NULL;
