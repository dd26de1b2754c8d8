-- Ingestion (docs/ingest.md): the watermark the last successful load of a target reached,
-- per watermark column (a definition that changes its column starts over).
CREATE TABLE ingest_state (
    target TEXT NOT NULL,
    watermark_column TEXT NOT NULL,
    watermark TEXT NOT NULL,
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (target, watermark_column)
);
