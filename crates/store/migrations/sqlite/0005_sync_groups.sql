-- Sync groups (docs/sync.md): where each group stands, and every firing.
--
-- A group's cut moves only when every table of a sync succeeded: `cut_*` is the last
-- consistent cut, `attempt_*` the sync in progress or last tried.
CREATE TABLE sync_groups (
    name            TEXT PRIMARY KEY,
    status          TEXT NOT NULL,            -- never | in-progress | success | failed
    message         TEXT,
    cut_at          BIGINT,                   -- the last consistent cut's instant, unix milliseconds
    cut_run_id      TEXT,
    cut_tables      TEXT,                     -- JSON: the tables of the cut with their versions
    attempt_at      BIGINT,                   -- the instant of the sync in progress / last tried
    attempt_run_id  TEXT,
    attempt_trigger TEXT,
    failures        BIGINT NOT NULL DEFAULT 0, -- failed syncs since the last cut
    rpo_alerted_at  BIGINT,                   -- the lag alert sent for the current cut
    created_at      BIGINT NOT NULL,          -- first seen: schedule ticks count from here
    updated_at      BIGINT NOT NULL
);

-- One row per firing: (group, instant, attempt) is unique, so two planners that both see a
-- schedule tick fire it once.
CREATE TABLE sync_fires (
    group_name  TEXT NOT NULL,
    tick        BIGINT NOT NULL,             -- the cut instant, unix milliseconds
    attempt     BIGINT NOT NULL,             -- 1, then retries of a failed cut
    fired_by    TEXT NOT NULL,               -- schedule | workflow | commit | manual | message | retry
    run_id      TEXT NOT NULL,
    fired_at    BIGINT NOT NULL,
    PRIMARY KEY (group_name, tick, attempt)
);

-- Failovers and failbacks, for audit.
CREATE TABLE sync_failovers (
    group_name  TEXT NOT NULL,
    direction   TEXT NOT NULL,               -- failover | failback
    cut_at      BIGINT,
    executed_at BIGINT NOT NULL,
    detail      TEXT NOT NULL
);
