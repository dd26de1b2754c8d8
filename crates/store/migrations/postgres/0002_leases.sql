-- Which worker ran each attempt (audit; proves no two workers held one table at once).
ALTER TABLE attempts ADD COLUMN worker TEXT;

-- Leases: a target table is cloned by at most one worker at a time. A lease is taken for a
-- bounded time and renewed while the clone runs, so a worker killed mid-clone frees the
-- table when its lease expires.
CREATE TABLE leases (
    target      TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,            -- worker id
    task_id     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL           -- unix milliseconds
);
