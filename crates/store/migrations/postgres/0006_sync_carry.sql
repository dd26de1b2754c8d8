-- Tables a sync carries from the group's previous cut instead of cloning them again: neither
-- the source nor the target moved since (docs/sync.md, "Unchanged tables are carried").
-- JSON, like cut_tables; merged into the new cut when the sync succeeds.
ALTER TABLE sync_groups ADD COLUMN attempt_carry TEXT;
