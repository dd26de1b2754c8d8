-- Every notification a run sent or tried to send: channel (webhook, email), where, and how
-- it ended. A notification that finally fails is recorded here and never fails the run.
CREATE TABLE notifications (
    run_id      TEXT NOT NULL,
    channel     TEXT NOT NULL,            -- webhook | email
    target      TEXT NOT NULL,            -- URL (without credentials) or recipients
    delivered   BIGINT NOT NULL,          -- 1 delivered, 0 not
    attempts    BIGINT NOT NULL,
    error       TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX notifications_by_run ON notifications(run_id);
