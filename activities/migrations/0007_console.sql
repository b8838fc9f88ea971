-- Web console: CS users (argon2id password hashes, never the password) and
-- their login sessions. A session row holds the hash of the cookie's token,
-- so a leaked database does not hand out live sessions, and the CSRF token
-- every form of that session must carry.

CREATE TABLE console_users (
    email           text PRIMARY KEY CHECK (email = lower(email) AND email LIKE '%_@_%'),
    name            text NOT NULL,
    password_hash   text NOT NULL,
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_login_at   timestamptz
);

CREATE TABLE console_sessions (
    token_hash      text PRIMARY KEY,
    email           text NOT NULL REFERENCES console_users (email) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    -- the outcome of the last action, shown once on the next page
    flash           jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
