-- NPS survey batches check each contact at send time (issue 17): a contact outside the send
-- window of their account's local time, or over the weekly cap, is invited later, never dropped.
ALTER TABLE nps_invitations
    ADD COLUMN deferred_until  timestamptz,   -- the survey (or, once sent, the reminder) waits until then
    ADD COLUMN deferred_kind   text CHECK (deferred_kind IN ('survey', 'reminder'));
CREATE INDEX nps_invitations_deferred ON nps_invitations (cycle_id, deferred_until) WHERE deferred_until IS NOT NULL;
