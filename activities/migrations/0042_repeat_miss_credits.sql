-- Repeat-miss credits (issue 19; seed 001 section 8.1: "2+ misses in same month: 15% credit"):
-- a service credit is a missed clock's own (`miss`, one per ticket and clock) or the month's
-- repeat-miss credit of an account (`repeat`, one per account and month, recorded with the
-- ticket whose miss made it due). `missed_at`: when the clock passed its target (play time);
-- misses are counted per month and quarter by it (older rows: by created_at).
ALTER TABLE service_credits ADD COLUMN kind text NOT NULL DEFAULT 'miss' CHECK (kind IN ('miss', 'repeat'));
ALTER TABLE service_credits ADD COLUMN missed_at timestamptz;
CREATE INDEX service_credits_by_account ON service_credits (account_id, (coalesce(missed_at, created_at)));
