-- Parts of Temporal payloads stored once, content-addressed and immutable (issue 18, "lighter
-- plays"): the playbook snapshot a play's input carries and the working-day calendars its start
-- activity returns are the same for thousands of plays. The payload codec of activities/
-- stored_parts.py keeps them here, keyed by the SHA-256 of their canonical JSON, and puts only the
-- key in the play's history; workers put the part back before the play sees its input. Rows are
-- never updated nor deleted (a play in flight may need any of them).

CREATE TABLE stored_payload_parts (
    part_key        text PRIMARY KEY CHECK (part_key ~ '^[0-9a-f]{64}$'),
    kind            text NOT NULL,            -- playbook | calendars
    body            text NOT NULL,            -- the part's canonical JSON, exactly as hashed
    stored_at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION stored_payload_parts_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stored_payload_parts rows are immutable (part %)', OLD.part_key;
END $$;

CREATE TRIGGER stored_payload_parts_immutable BEFORE UPDATE OR DELETE ON stored_payload_parts
    FOR EACH ROW EXECUTE FUNCTION stored_payload_parts_immutable();
