-- Where CS teams already work: chat notifications (Slack, Microsoft Teams), CRM write-back
-- (HubSpot, Salesforce) and signed outbound webhooks (Standard Webhooks).
--
-- `play_events` is what plays did (a task created, an escalation, a band change, an e-mail sent,
-- a play started or finished), written by the activity that did it, in its own transaction or
-- just after, keyed by the idempotency key of the row it is about: a retried activity finds it.
-- The relay (starter/relay.py) turns each event into `deliveries` by the routing of
-- playbooks/notifications.yaml, the CRM mappings' write_back sections and the webhook
-- subscriptions, and starts one durable delivery workflow per delivery.

CREATE TABLE play_events (
    id              bigserial PRIMARY KEY,
    event_key       text NOT NULL UNIQUE,
    event           text NOT NULL,           -- play.started, task.created, play.escalated, ...
    account_id      text REFERENCES accounts (id),
    workflow_id     text,
    play_id         text,
    step            text,
    playbook        text,
    occurred_at     timestamptz NOT NULL,
    title           text NOT NULL,
    severity        text,
    data            jsonb NOT NULL DEFAULT '{}',
    routed_at       timestamptz,             -- turned into deliveries (NULL: the relay has not yet)
    deliveries      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX play_events_unrouted ON play_events (id) WHERE routed_at IS NULL;
CREATE INDEX play_events_by_account ON play_events (account_id, occurred_at);

-- One row per message, CRM write or webhook call: written before the call, marked after it.
-- status: pending (not tried yet, or retrying: next_attempt_at), sending (a call is under way, or
-- a worker died during one: its outcome is unknown), delivered, failed (refused for good, or the
-- kind's give-up time passed; replayable).
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    event_id        bigint REFERENCES play_events (id),
    kind            text NOT NULL CHECK (kind IN ('chat', 'crm', 'webhook')),
    channel         text NOT NULL CHECK (channel IN ('slack_webhook', 'slack_api', 'teams_webhook', 'hubspot',
                                                     'salesforce', 'webhook')),
    destination     text NOT NULL,           -- notifications.yaml destination, subscription, or CRM connection
    operation       text NOT NULL,           -- post, create_task, complete_task, log_email, update_account, deliver
    event           text NOT NULL,
    account_id      text REFERENCES accounts (id),
    workflow_id     text,
    step            text,
    summary         text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    remote_id       text,                    -- Slack ts, the CRM record's id
    delivery_workflow text,                  -- the durable workflow delivering it (NULL: not started yet)
    replays         integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_by_account ON deliveries (account_id, created_at);
CREATE INDEX deliveries_by_kind ON deliveries (kind, created_at DESC);
CREATE INDEX deliveries_not_started ON deliveries (id) WHERE delivery_workflow IS NULL;
-- One pending property write per account and CRM connection: a newer one waits in it (the write
-- reads the account's values when it runs, so the latest always wins).
CREATE UNIQUE INDEX deliveries_one_pending_sync ON deliveries (destination, account_id)
    WHERE operation = 'update_account' AND status = 'pending';

-- The delivery log: every attempt, its answer and what it means.
CREATE TABLE delivery_attempts (
    id              bigserial PRIMARY KEY,
    delivery_id     bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         text NOT NULL,           -- sending, delivered, found (already there), retry, failed, lost
    status_code     integer,
    detail          text,
    retry_after_seconds numeric
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);

-- Which CRM record stands for which of ours: a task (completing either completes the other) or a
-- logged e-mail. our_key: the task's or the e-mail's idempotency key.
CREATE TABLE crm_records (
    connection      text NOT NULL,
    object_type     text NOT NULL CHECK (object_type IN ('task', 'email')),
    our_key         text NOT NULL,
    crm_id          text NOT NULL,
    account_id      text REFERENCES accounts (id),
    task_id         bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, object_type, our_key)
);
CREATE UNIQUE INDEX crm_records_by_crm_id ON crm_records (connection, object_type, crm_id);

-- Each play's phase as its events tell it: the "current play phase" the CRM write-back names.
CREATE TABLE play_phases (
    workflow_id     text PRIMARY KEY,
    play_id         text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts (id),
    playbook        text NOT NULL,
    phase           text,
    running         boolean NOT NULL DEFAULT true,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX play_phases_by_account ON play_phases (account_id);

-- The churn watch's weighted health score (0-100, seeds 002/003) next to its risk score.
ALTER TABLE account_risk ADD COLUMN health_score integer CHECK (health_score BETWEEN 0 AND 100);
