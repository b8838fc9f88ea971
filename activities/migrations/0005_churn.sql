-- Churn watch (seed 001 section 13): each account's current risk score and
-- band, and every band change, for the monthly summary and the console.

CREATE TABLE account_risk (
    account_id      text PRIMARY KEY REFERENCES accounts (id),
    score           integer NOT NULL,
    band            text NOT NULL CHECK (band IN ('GREEN', 'YELLOW', 'ORANGE', 'RED')),
    indicators      text[] NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL
);

CREATE TABLE risk_band_changes (
    id              bigserial PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    account_id      text NOT NULL REFERENCES accounts (id),
    workflow_id     text NOT NULL,
    from_band       text NOT NULL,
    to_band         text NOT NULL,
    score           integer NOT NULL,
    changed_at      timestamptz NOT NULL
);
CREATE INDEX risk_band_changes_by_time ON risk_band_changes (changed_at);
