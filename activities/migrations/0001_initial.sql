-- Accounts, people and everything a play writes. Every row a play writes
-- carries an idempotency key (workflow id + play instance + step) so that a
-- retried or re-run activity finds its earlier row instead of acting twice.

CREATE TABLE accounts (
    id              text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text NOT NULL,
    status          text NOT NULL DEFAULT 'onboarding'
                    CHECK (status IN ('prospect', 'onboarding', 'active', 'at-risk', 'churned')),
    health          integer NOT NULL DEFAULT 70 CHECK (health BETWEEN 0 AND 100),
    arr             numeric(14, 2) NOT NULL DEFAULT 0 CHECK (arr >= 0),
    renewal_date    date,
    vertical        text,
    csm_name        text NOT NULL,
    csm_email       text NOT NULL,
    sponsor_name    text NOT NULL,
    sponsor_email   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    id          bigserial PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    email       text NOT NULL,
    role        text NOT NULL DEFAULT 'user',
    UNIQUE (account_id, email)
);

-- Our own people, by role, for escalation ladders (seed 001 section 9).
CREATE TABLE staff (
    role    text PRIMARY KEY,
    name    text NOT NULL,
    email   text NOT NULL
);

CREATE TABLE tasks (
    id              bigserial PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    workflow_id     text NOT NULL,
    play_id         text NOT NULL,
    step            text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    title           text NOT NULL,
    detail          text NOT NULL DEFAULT '',
    owner_role      text,
    owner_email     text,
    due_at          timestamptz NOT NULL,
    priority        text NOT NULL CHECK (priority IN ('P0', 'P1', 'P2', 'P3')),
    status          text NOT NULL DEFAULT 'not-started'
                    CHECK (status IN ('not-started', 'in-progress', 'blocked', 'completed')),
    milestone       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    completed_by    text
);
CREATE INDEX tasks_open_by_due ON tasks (due_at) WHERE status <> 'completed';
CREATE INDEX tasks_by_workflow ON tasks (workflow_id);

-- Outbox and communication log in one: the row is written (status
-- 'pending') before the SMTP conversation and marked 'sent' after it.
CREATE TABLE communications (
    id              bigserial PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    workflow_id     text NOT NULL,
    play_id         text NOT NULL,
    step            text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    template        text NOT NULL,
    message_id      text NOT NULL UNIQUE,
    mail_from       text NOT NULL,
    to_addrs        text[] NOT NULL,
    cc_addrs        text[] NOT NULL DEFAULT '{}',
    subject         text NOT NULL,
    body_html       text NOT NULL,
    body_text       text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX communications_by_account ON communications (account_id, created_at);

CREATE TABLE escalations (
    id              bigserial PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    workflow_id     text NOT NULL,
    play_id         text NOT NULL,
    step            text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    level           integer NOT NULL CHECK (level BETWEEN 1 AND 4),
    to_role         text NOT NULL,
    to_email        text NOT NULL,
    from_role       text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('P0', 'P1', 'P2', 'P3')),
    title           text NOT NULL,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Churn-risk indicator points recorded by plays (seed 001 section 13.2);
-- the churn workflow sums them.
CREATE TABLE risk_events (
    id              bigserial PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    workflow_id     text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    indicator       text NOT NULL,
    points          integer NOT NULL,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
