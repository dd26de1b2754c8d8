//! Ingestion on the fleet (docs/ingest.md): a source of rows — a PostgreSQL or MySQL/MariaDB
//! table or query, or CSV / JSON-lines / Parquet files — loaded into a Delta table. An
//! ingestion travels as a [`crate::CloneTask`] whose `ingest` names the source (the lease,
//! retries, recording, replay and status of clones apply unchanged), and its validation as
//! a [`crate::ReconcileTask`] with the same `ingest`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One source to ingest: its definition (as `replicator-ingest` reads it) and where it
/// lands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngestSource {
    /// The source's name in messages (`postgres public.orders`); never a connection URL.
    pub name: String,
    /// The source definition (docs/ingest.md, "Source definitions"): type, connection by
    /// reference, table or query or file pattern, primary key, watermark, target, options.
    pub definition: serde_json::Value,
    /// The root a file source's `path` is relative to (a location the lake reads); absent
    /// for SQL sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_root: Option<String>,
    /// Run the seed's validation after the load: source and target row counts, and
    /// primary-key consistency.
    #[serde(default = "yes")]
    pub validate: bool,
}

fn yes() -> bool {
    true
}

impl IngestSource {
    /// The definition's watermark column, if it names one.
    pub fn watermark_column(&self) -> Option<&str> {
        self.definition.get("watermark").and_then(|v| v.as_str())
    }
}

/// How an ingestion loaded its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IngestMode {
    /// The target was missing: every row, one commit creating the table.
    Full,
    /// Rows after the stored watermark, merged by key.
    Watermark,
    /// Every row compared by key and row hash with the target.
    KeyHash,
}

/// What an ingestion did (in a [`crate::CloneResult`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IngestMetrics {
    #[serde(default)]
    pub mode: Option<IngestMode>,
    /// Rows read from the source.
    pub source_rows: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Target rows deleted (keys gone from the source, with `hard_deletes`).
    pub deleted: u64,
    /// Target keys the source no longer has (deleted with `hard_deletes`, else kept).
    #[serde(default)]
    pub gone_from_source: u64,
    /// Unchanged rows copied from rewritten files.
    #[serde(default)]
    pub rewritten_rows: u64,
    /// Columns the source gained, added to the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_columns: Vec<String>,
    /// The watermark after this load (stored for the next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

impl IngestMetrics {
    /// One line: `full load: 1000 rows` / `merge by key and row hash: 1000 rows read, 50
    /// inserted, …` / `unchanged (1000 rows read)`.
    pub fn account(&self, committed: bool) -> String {
        let mode = match self.mode {
            Some(IngestMode::Full) => {
                return format!("full load: {} rows", self.source_rows);
            }
            Some(IngestMode::Watermark) => "merge after the watermark",
            Some(IngestMode::KeyHash) | None => "merge by key and row hash",
        };
        if !committed {
            return format!("unchanged ({} rows read)", self.source_rows);
        }
        let mut line = format!(
            "{mode}: {} rows read, {} inserted, {} updated, {} deleted",
            self.source_rows, self.inserted, self.updated, self.deleted
        );
        // Keys gone from the source and not deleted (no `hard_deletes`).
        let kept = self.gone_from_source.saturating_sub(self.deleted);
        if kept > 0 {
            line.push_str(&format!(", {kept} gone from the source (kept)"));
        }
        if !self.added_columns.is_empty() {
            line.push_str(&format!(
                ", columns added: {}",
                self.added_columns.join(", ")
            ));
        }
        line
    }
}
