-- An e-mail that can never be sent (a recipient refused for good, a header that cannot be
-- written) is marked failed with its reason instead of being retried for ever.
ALTER TABLE communications DROP CONSTRAINT communications_status_check;
ALTER TABLE communications ADD CONSTRAINT communications_status_check CHECK (status IN ('pending', 'sent', 'failed'));
ALTER TABLE communications ADD COLUMN failure text;
