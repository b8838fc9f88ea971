-- Playbook versions, content-addressed and immutable (issue 18, "lighter plays"): each distinct
-- snapshot of a playbook (its validated content and every template source, layouts included)
-- is stored once, keyed by the SHA-256 of its canonical JSON. A play carries that key and the
-- plan its own logic needs; the activities render its e-mails from the stored version, so a
-- running play never sees another version's content. Rows are never updated nor deleted.

CREATE TABLE playbook_versions (
    version_key     text PRIMARY KEY CHECK (version_key ~ '^[0-9a-f]{64}$'),
    playbook        text NOT NULL,
    version         integer NOT NULL,
    digest          text NOT NULL,           -- the loader's digest (shown in a play's status)
    snapshot        jsonb NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION playbook_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'playbook_versions rows are immutable (version %)', OLD.version_key;
END $$;

CREATE TRIGGER playbook_versions_immutable BEFORE UPDATE OR DELETE ON playbook_versions
    FOR EACH ROW EXECUTE FUNCTION playbook_versions_immutable();
