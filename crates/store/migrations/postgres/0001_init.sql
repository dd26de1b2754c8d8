-- Runs: one per replication request.
CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    operation     TEXT NOT NULL,
    source_root   TEXT NOT NULL,
    target_root   TEXT NOT NULL,
    request       TEXT NOT NULL,          -- the ReplicationRequest, JSON
    status        TEXT NOT NULL,          -- running | succeeded | failed
    created_at    TEXT NOT NULL,
    completed_at  TEXT,
    summary       TEXT                    -- the RunSummary, JSON, once completed
);

-- Tasks: one per table per run; the clone and reconcile stages share the task.
CREATE TABLE tasks (
    task_id         TEXT PRIMARY KEY,
    run_id          TEXT NOT NULL REFERENCES runs(run_id),
    table_name      TEXT NOT NULL,
    source          TEXT NOT NULL,
    target          TEXT NOT NULL,
    status          TEXT NOT NULL,        -- queued | cloning | cloned | reconciling | succeeded | failed | mismatched
    source_version  BIGINT,
    target_version  BIGINT,
    copied_files    BIGINT NOT NULL DEFAULT 0,
    copied_bytes    BIGINT NOT NULL DEFAULT 0,
    removed_files   BIGINT NOT NULL DEFAULT 0,
    source_rows     BIGINT,
    target_rows     BIGINT,
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX tasks_by_run ON tasks(run_id);

-- Attempts: every try of every stage, retries included.
CREATE TABLE attempts (
    id           BIGSERIAL PRIMARY KEY,
    task_id      TEXT NOT NULL REFERENCES tasks(task_id),
    run_id       TEXT NOT NULL,
    stage        TEXT NOT NULL,           -- clone | reconcile
    attempt      BIGINT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    outcome      TEXT,                    -- succeeded | failed | retrying
    error        TEXT
);
CREATE INDEX attempts_by_task ON attempts(task_id);

-- Outcomes: the result message of each stage, verbatim.
CREATE TABLE outcomes (
    id          BIGSERIAL PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(task_id),
    run_id      TEXT NOT NULL,
    stage       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,            -- CloneResult / ReconcileResult JSON
    created_at  TEXT NOT NULL
);
CREATE INDEX outcomes_by_run ON outcomes(run_id);

-- The last source version cloned into each target (no-op detection, RPO).
CREATE TABLE table_versions (
    source          TEXT NOT NULL,
    target          TEXT NOT NULL,
    table_name      TEXT NOT NULL,
    source_version  BIGINT NOT NULL,
    target_version  BIGINT NOT NULL,
    run_id          TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (source, target)
);
