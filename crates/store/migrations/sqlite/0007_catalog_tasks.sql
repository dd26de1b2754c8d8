-- Catalog objects beyond tables (docs/catalog.md) are tasks of their run like tables: `kind`
-- says which (`table`, `schema`, `view`, `volume`, `grants`, `tags`, …), `detail` holds the
-- one-line account of what the task did (statements run, findings reported).
ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'table';
ALTER TABLE tasks ADD COLUMN detail TEXT;
