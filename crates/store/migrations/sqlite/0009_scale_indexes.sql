-- Indexes for a store of a million task rows and more (issue 19 §3): every query of the hot
-- path and of the status / console listings finds its rows through an index instead of
-- reading a whole table (`src/plans.rs` tests it with EXPLAIN).

-- A run's tasks in name order (`status`, summaries); its run_id prefix serves every lookup
-- by run that tasks_by_run did.
CREATE INDEX tasks_by_run_table ON tasks(run_id, table_name);
DROP INDEX tasks_by_run;
-- A target's history across runs (the console's table page).
CREATE INDEX tasks_by_target ON tasks(target, updated_at);
-- A run's attempts in order (`status --attempts`, the audit export, the console).
CREATE INDEX attempts_by_run ON attempts(run_id, id);
-- The latest runs (the console's run list) and the open runs (the notifier's sweep).
CREATE INDEX runs_by_created ON runs(created_at);
CREATE INDEX runs_open ON runs(created_at) WHERE completed_at IS NULL;
