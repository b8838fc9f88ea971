-- Who may do what, and the record of what was done (issue 16).
--
-- Console users get a role: admin (users, tokens, settings, and everything a CS manager does),
-- cs_manager (everything on every account), csm (sees everything; steers and launches only the
-- accounts whose csm_email is theirs), viewer (read only). Users created before roles existed
-- could do everything, so they become admins; new users start as viewers.
ALTER TABLE console_users
    ADD COLUMN role text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'cs_manager', 'csm', 'viewer')),
    ADD COLUMN disabled_at timestamptz;
ALTER TABLE console_users ALTER COLUMN role SET DEFAULT 'viewer';
-- The lock-out columns of 0007 are no longer used: throttling is per client (login_throttle).

-- API bearer tokens: only the SHA-256 of the token is kept; the token is shown once.
-- The name is the actor recorded on everything done with the token.
CREATE TABLE api_tokens (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    token_hash      text NOT NULL UNIQUE,
    scopes          text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'steer', 'launch', 'admin'] AND cardinality(scopes) > 0),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    revoked_by      text
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- The audit log: every launch, steering action, task completion, import, token and user change,
-- login and failed login. Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,            -- token name, console user e-mail, cli:<login>, crm
    actor_kind      text NOT NULL CHECK (actor_kind IN ('token', 'user', 'cli', 'system', 'anonymous')),
    source_ip       text,
    action          text NOT NULL,            -- launch, pause, complete_task, token.create, login.failed, ...
    object          text NOT NULL DEFAULT '', -- workflow id, task:<id>, token:<name>, user:<e-mail>, ...
    account_id      text,                     -- the account concerned, when there is one
    outcome         text NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
    detail          text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_by_account ON audit_log (account_id, at DESC) WHERE account_id IS NOT NULL;
CREATE INDEX audit_log_by_time ON audit_log (at DESC);
CREATE INDEX audit_log_by_actor ON audit_log (actor, at DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Login throttling: failures per key within a window. Keys: pair:<e-mail>|<ip>,
-- device:<hash> (a browser that logged in before), ip:<ip>, acct:<e-mail> (untrusted clients only).
CREATE TABLE login_throttle (
    key             text PRIMARY KEY,
    failures        integer NOT NULL DEFAULT 0,
    window_started  timestamptz NOT NULL DEFAULT now()
);

-- Browsers that logged in successfully (a random cookie, kept as its SHA-256): their failures
-- count on their own, so nobody elsewhere can throttle a person out of their usual browser.
CREATE TABLE login_devices (
    token_hash      text PRIMARY KEY,
    email           text NOT NULL REFERENCES console_users (email) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now()
);

-- Single sign-on logins under way: state, nonce and PKCE verifier, bound to the browser by a
-- cookie whose SHA-256 is the key; used once, good for 10 minutes.
CREATE TABLE sso_logins (
    cookie_hash     text PRIMARY KEY,
    state           text NOT NULL,
    nonce           text NOT NULL,
    code_verifier   text NOT NULL,
    next_path       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
