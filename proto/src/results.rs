//! What a task produced: a clone's metrics or error, a validation's checks and
//! differences.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Header;

/// The six deep-clone metrics, named as Databricks reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CloneMetrics {
    pub source_table_size: u64,
    pub source_num_of_files: u64,
    pub num_removed_files: u64,
    pub num_copied_files: u64,
    pub removed_files_size: u64,
    pub copied_files_size: u64,
}

/// Outcome of a task stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// Whether an error is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Retrying may succeed (network, throttling, commit conflict).
    Transient,
    /// Retrying will not help until something changes (missing file, unsupported feature).
    Permanent,
}

/// A classified error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Event: a clone task finished (after its retries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CloneResult {
    #[serde(flatten)]
    pub header: Header,
    pub task_id: Uuid,
    pub attempt: u32,
    pub table: String,
    pub source: String,
    pub target: String,
    pub outcome: Outcome,
    /// Source version that was cloned.
    #[serde(default)]
    pub source_version: Option<u64>,
    /// Target version after the clone (unchanged when nothing needed copying).
    #[serde(default)]
    pub target_version: Option<u64>,
    /// Whether a new target version was committed.
    #[serde(default)]
    pub committed: bool,
    #[serde(default)]
    pub metrics: Option<CloneMetrics>,
    #[serde(default)]
    pub error: Option<TaskError>,
    /// In-process retries used.
    pub retries: u32,
    pub duration_ms: u64,
    /// Databricks engine: the SQL statements run for this clone, failed ones included.
    #[serde(default)]
    pub statement_ids: Vec<String>,
    /// An ingestion's account: mode, rows inserted, updated and deleted, watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<crate::IngestMetrics>,
    /// Databricks engine: how the files moved (`storage` or `warehouse`) and, for a
    /// `clone_mode: storage` clone that used the warehouse, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_path: Option<ClonePath>,
}

/// How a Databricks clone moved the table's files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClonePath {
    /// `storage`: copied by the native engine with credentials Unity Catalog vended, no
    /// warehouse time for the copy; `warehouse`: a `DEEP CLONE` on the target's warehouse.
    pub mode: String,
    /// Why a `clone_mode: storage` clone fell back to the warehouse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Storage credentials asked for during the copy (both sides; the first two included).
    #[serde(default)]
    pub credential_requests: u32,
}

/// One validation check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    /// `row_count`, `schema`, `keys` or `partition_checksums`.
    pub name: String,
    pub passed: bool,
    /// Human-readable detail (the counts, or the schema differences).
    pub detail: String,
}

/// Key-level differences between a source and its replica (by primary key; "changed"
/// means the same key with a different hash over the other columns).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyDiff {
    pub primary_key: Vec<String>,
    /// Keys in the source and not in the target.
    pub missing: u64,
    /// Keys in the target and not in the source.
    pub extra: u64,
    /// Keys in both whose other columns differ.
    pub changed: u64,
    /// Rows whose key repeats an earlier row's, per side (not compared).
    #[serde(default)]
    pub duplicate_source: u64,
    #[serde(default)]
    pub duplicate_target: u64,
    /// The smallest keys of each category, rendered `col=value, …`.
    #[serde(default)]
    pub missing_sample: Vec<String>,
    #[serde(default)]
    pub extra_sample: Vec<String>,
    #[serde(default)]
    pub changed_sample: Vec<String>,
}

impl KeyDiff {
    /// No missing, extra or changed key, and no duplicates.
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.extra == 0
            && self.changed == 0
            && self.duplicate_source == 0
            && self.duplicate_target == 0
    }
}

/// A table partition (or the whole table, `(table)`) whose rows differ between the sides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PartitionDiff {
    /// `col=value, …`.
    pub partition: String,
    pub source_rows: u64,
    pub target_rows: u64,
    /// Order-independent checksum of the partition's rows (hex); absent when the side
    /// has no such partition.
    pub source_checksum: Option<String>,
    pub target_checksum: Option<String>,
}

/// Outcome of a validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// Every check passed.
    Matched,
    /// At least one check found a difference.
    Mismatched,
    /// The checks could not run (for example the target is missing).
    Failed,
}

/// How thoroughly a validation read the pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationDepth {
    /// The configured checks ran on both tables (row counts, schema, keys, checksums).
    #[default]
    Deep,
    /// Neither table's log changed since a deep validation that matched, within
    /// `reconciliation.deep_every`: proven from the latest versions and commit fingerprints,
    /// with the row counts of that deep validation.
    Cheap,
}

/// Event: a table was validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileResult {
    #[serde(flatten)]
    pub header: Header,
    pub task_id: Uuid,
    pub attempt: u32,
    pub table: String,
    pub outcome: Validation,
    #[serde(default)]
    pub source_version: Option<u64>,
    #[serde(default)]
    pub target_version: Option<u64>,
    #[serde(default)]
    pub source_rows: Option<u64>,
    #[serde(default)]
    pub target_rows: Option<u64>,
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Whether the checks ran (`deep`) or the pair was proven unchanged since a deep
    /// validation (`cheap`).
    #[serde(default)]
    pub depth: ValidationDepth,
    /// Key-level differences, when the table has a primary key configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeyDiff>,
    /// Partitions whose row count or checksum differ (at most 100), when per-partition
    /// checksums are on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionDiff>,
    #[serde(default)]
    pub error: Option<TaskError>,
    pub duration_ms: u64,
    /// Databricks engine: the SQL statements run for this validation, failed ones included.
    #[serde(default)]
    pub statement_ids: Vec<String>,
    /// The version the target was restored to after failing validation
    /// (`reconciliation.on_mismatch: rollback`), with a new commit; see the `rollback` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
}
