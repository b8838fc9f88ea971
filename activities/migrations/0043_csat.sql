-- Support CSAT (issue 19, ticket communications): one answer (1-5) per ticket and round (the
-- ticket's reopen count when the survey went out), from the signed one-click link of the survey
-- e-mail (activities/sla_comms.py, starter/csat.py).
CREATE TABLE csat_responses (
    id              bigserial PRIMARY KEY,
    ticket_id       text NOT NULL,
    round           integer NOT NULL CHECK (round >= 0),
    account_id      text NOT NULL REFERENCES accounts (id),
    contact_email   text NOT NULL,
    score           integer NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment         text NOT NULL DEFAULT '',
    answered_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (ticket_id, round)
);
CREATE INDEX csat_responses_by_account ON csat_responses (account_id, answered_at);
