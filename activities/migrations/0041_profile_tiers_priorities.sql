-- Organisation profiles (issue 19): tiers and ticket priorities are the active profile's
-- (playbooks/profiles/<name>/profile.yaml), no longer seed 001's fixed lists. The database checks
-- their form only; the application checks them against the profile before writing. Task
-- priorities (tasks.priority) stay the product's own P0-P3 scale.

ALTER TABLE sla_tickets DROP CONSTRAINT IF EXISTS sla_tickets_tier_check;
ALTER TABLE sla_tickets DROP CONSTRAINT IF EXISTS sla_tickets_priority_check;
ALTER TABLE sla_tickets ADD CONSTRAINT sla_tickets_tier_check CHECK (tier ~ '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$');
ALTER TABLE sla_tickets ADD CONSTRAINT sla_tickets_priority_check CHECK (priority ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$');

ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_crm_tier_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_crm_tier_check CHECK (crm_tier ~ '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$');

-- An escalation's severity is its ticket's priority (or the task scale for other plays).
ALTER TABLE escalations DROP CONSTRAINT IF EXISTS escalations_severity_check;
ALTER TABLE escalations ADD CONSTRAINT escalations_severity_check CHECK (severity ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$');
