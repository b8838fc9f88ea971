-- NPS survey cycles (seed 001 section 14): who was invited, reminded or
-- closed as non-response, and the answers. One invitation and at most one
-- answer per contact and cycle.

CREATE TABLE nps_invitations (
    cycle_id        text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    contact_email   text NOT NULL,
    contact_name    text NOT NULL,
    expires_at      timestamptz NOT NULL,
    sent_at         timestamptz NOT NULL DEFAULT now(),
    reminded_at     timestamptz,
    closed_at       timestamptz,
    PRIMARY KEY (cycle_id, contact_email)
);
CREATE INDEX nps_invitations_by_account ON nps_invitations (cycle_id, account_id);

CREATE TABLE nps_responses (
    id              bigserial PRIMARY KEY,
    cycle_id        text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    contact_email   text NOT NULL,
    score           integer NOT NULL CHECK (score BETWEEN 0 AND 10),
    category        text NOT NULL CHECK (category IN ('promoter', 'passive', 'detractor')),
    comment         text NOT NULL DEFAULT '',
    answered_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cycle_id, contact_email)
);
