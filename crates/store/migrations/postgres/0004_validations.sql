-- The last deep validation of each replica that matched: where both logs stood (version and
-- commit fingerprint) and the row counts it found. While neither log has moved and the
-- validation is recent enough (`reconciliation.deep_every`), a run checks just that instead
-- of validating again. A deep validation that does not match removes the row.
CREATE TABLE validations (
    source          TEXT NOT NULL,
    target          TEXT NOT NULL,
    checks          TEXT NOT NULL,            -- the checks that ran; other checks validate deeply
    source_version  BIGINT NOT NULL,
    source_commit   TEXT NOT NULL,            -- fingerprint of the source's commit file at source_version
    target_version  BIGINT NOT NULL,
    target_commit   TEXT NOT NULL,
    source_rows     BIGINT,
    target_rows     BIGINT,
    validated_at    BIGINT NOT NULL,          -- unix milliseconds
    run_id          TEXT NOT NULL,
    PRIMARY KEY (source, target)
);

-- "Has this run a task left to finish?" is asked after every event: an index on the status
-- answers it without reading the run's every task.
CREATE INDEX tasks_by_run_status ON tasks(run_id, status);
