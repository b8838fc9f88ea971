-- A cancelled play cancels its open tasks: they leave everyone's to-do list
-- without pretending to be done.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('not-started', 'in-progress', 'blocked', 'completed', 'cancelled'));
DROP INDEX tasks_open_by_due;
CREATE INDEX tasks_open_by_due ON tasks (due_at) WHERE status NOT IN ('completed', 'cancelled');
