-- Customer e-mail done right (issue 17): every e-mail has a class, every recipient
-- its own outcome, and the addresses that must not (or no longer can) be written to
-- are one list checked at send time.

-- The class decides the rules: `transactional` (SLA ticket updates) always goes, even to
-- an unsubscribed contact; `lifecycle` and `survey` mail honour unsubscribes and the weekly
-- cap and carry List-Unsubscribe; `internal` mail goes to our own staff only.
ALTER TABLE communications
    ADD COLUMN category        text NOT NULL DEFAULT 'internal'
                               CHECK (category IN ('transactional', 'lifecycle', 'survey', 'internal')),
    ADD COLUMN reason          text NOT NULL DEFAULT '',   -- why suppressed, failed, deferred or stopped
    ADD COLUMN deferred_until  timestamptz,                -- while deferred: when it is tried again
    ADD COLUMN reply_token     text UNIQUE,                -- Reply-To: reply+<token>@<inbound domain>
    ADD COLUMN calendar        text,                       -- the iCalendar invitation (RFC 5545), if any
    ADD COLUMN updated_at      timestamptz;
ALTER TABLE communications DROP CONSTRAINT communications_status_check;
ALTER TABLE communications ADD CONSTRAINT communications_status_check
    CHECK (status IN ('pending', 'deferred', 'sent', 'suppressed', 'failed', 'stopped'));

-- One row per recipient of an e-mail (To, then Cc): who it was for and what became of it there.
-- `token` is random and opaque: the VERP return path bounce+<token>@<inbound domain> names the
-- recipient a bounce is about without revealing or guessing anything.
CREATE TABLE communication_recipients (
    id                bigserial PRIMARY KEY,
    communication_id  bigint NOT NULL REFERENCES communications (id) ON DELETE CASCADE,
    position          integer NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('to', 'cc')),
    name              text NOT NULL DEFAULT '',
    address           text NOT NULL,                      -- as the contact has it (IDN in Unicode)
    address_key       text NOT NULL,                      -- lower-cased, Unicode domain: what lists compare
    customer          boolean NOT NULL,                   -- false: our own staff (never suppressed nor capped)
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'deferred', 'sent', 'suppressed', 'refused', 'bounced', 'stopped')),
    reason            text NOT NULL DEFAULT '',
    token             text NOT NULL UNIQUE,
    attempts          integer NOT NULL DEFAULT 0,         -- SMTP attempts (soft bounces back off on it)
    retry_at          timestamptz,                        -- deferred: not before
    sent_at           timestamptz,                        -- set when the slot is taken: counts toward the cap
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (communication_id, address_key)
);
CREATE INDEX recipients_by_address ON communication_recipients (address_key, sent_at);
CREATE INDEX recipients_waiting ON communication_recipients (address_key) WHERE status = 'deferred';

-- Addresses not to write to. `category`: `survey` or `lifecycle` (unsubscribed from that kind),
-- `all` (every non-transactional e-mail: an unsubscribe from everything, a spam complaint),
-- `undeliverable` (a hard bounce: nothing at all, transactional included).
CREATE TABLE suppressions (
    id            bigserial PRIMARY KEY,
    address_key   text NOT NULL,
    category      text NOT NULL CHECK (category IN ('survey', 'lifecycle', 'all', 'undeliverable')),
    reason        text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')),
    source        text NOT NULL,           -- one-click, unsubscribe page, mailto, console, cli, dsn, arf, smtp
    account_id    text REFERENCES accounts (id),
    note          text NOT NULL DEFAULT '',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (address_key, category)
);
CREATE INDEX contacts_opted_out ON contacts (lower(email)) WHERE email_opt_out;

-- What the console lists and every send checks: our suppressions and the CRM's opt-outs
-- (HubSpot hs_email_optout, Salesforce HasOptedOutOfEmail, kept on contacts by the imports),
-- which count as an unsubscribe from every non-transactional e-mail.
CREATE VIEW effective_suppressions AS
    SELECT s.id, s.address_key, s.category, s.reason, s.source, s.account_id, s.note, s.created_by, s.created_at
      FROM suppressions s
    UNION ALL
    SELECT NULL::bigint, lower(c.email), 'all', 'crm_opt_out', coalesce(nullif(split_part(c.crm_key, ':', 1), ''), 'crm'),
           c.account_id, '', 'crm', c.updated_at
      FROM contacts c WHERE c.email_opt_out AND c.email IS NOT NULL;
