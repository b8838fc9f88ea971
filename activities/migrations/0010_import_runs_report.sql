-- An import run says which connection it wrote, whether it finished, how many warnings it gave,
-- and keeps its report (counts per kind, the first refused rows and warnings, the accounts it
-- changed and which fields): what `csplay import` and the console's Import page showed.
ALTER TABLE import_runs
    ADD COLUMN connection text,
    ADD COLUMN status     text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed')),
    ADD COLUMN warnings   integer NOT NULL DEFAULT 0,
    ADD COLUMN report     jsonb;
CREATE INDEX import_runs_by_source ON import_runs (source, started_at DESC);
