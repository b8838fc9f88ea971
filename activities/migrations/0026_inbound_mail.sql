-- Mail that comes back (issue 17): delivery status notifications (RFC 3464), feedback
-- reports (RFC 5965, ARF), customer replies and unsubscribes by mail, as the inbound SMTP
-- listener received them. Each is acted on once (`dedupe_key`), by the InboundMail play.
CREATE TABLE inbound_mail (
    id                bigserial PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('bounce', 'delay', 'complaint', 'reply', 'unsubscribe')),
    dedupe_key        text NOT NULL UNIQUE,       -- the token it came to and the message's Message-ID
    token             text NOT NULL,
    communication_id  bigint NOT NULL REFERENCES communications (id),
    recipient_id      bigint REFERENCES communication_recipients (id),
    account_id        text REFERENCES accounts (id),
    envelope_from     text NOT NULL DEFAULT '',
    from_address      text NOT NULL DEFAULT '',   -- replies: who wrote (the From header's address)
    from_name         text NOT NULL DEFAULT '',
    subject           text NOT NULL DEFAULT '',
    message_id        text NOT NULL DEFAULT '',
    status_code       text NOT NULL DEFAULT '',   -- DSN Status (5.1.1), or the SMTP code in a diagnostic
    action            text NOT NULL DEFAULT '',   -- DSN Action: failed, delayed; ARF Feedback-Type: abuse
    diagnostic        text NOT NULL DEFAULT '',   -- DSN Diagnostic-Code, cut to 1,000 characters
    reporting_mta     text NOT NULL DEFAULT '',
    body_text         text NOT NULL DEFAULT '',   -- replies: the text part, cut to 20,000 characters
    raw_size          integer NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    processed_at      timestamptz,
    outcome           text NOT NULL DEFAULT ''    -- what was done: suppressed, retry scheduled, CSM told...
);
CREATE INDEX inbound_by_account ON inbound_mail (account_id, received_at);
CREATE INDEX inbound_by_communication ON inbound_mail (communication_id, kind);
