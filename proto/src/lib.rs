//! Message contracts shared by every replicator service.
//!
//! Every message carries a [`Header`] (`schema_version`, `message_id`, `run_id`,
//! `created_at`); tasks also carry `task_id` and `attempt`. Messages are JSON on the wire.
//! Unknown fields are ignored so that newer producers can talk to older consumers; a message
//! whose `schema_version` is newer than [`SCHEMA_VERSION`] is refused by [`decode`] and goes
//! to dead letters with the reason, as does anything that does not parse.
//!
//! JSON Schemas for clients in other languages are generated into `proto/schemas/` by
//! `cargo run -p replicator-proto --bin gen-schemas`; a test fails when they are stale.
//!
//! Queue and topic names live in [`names`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

pub mod names;

/// The schema version this build writes and the newest it accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// Fields every message carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Header {
    /// Version of the message contract; consumers refuse versions newer than their own.
    pub schema_version: u32,
    /// Unique ID of this message (UUIDv7, so IDs sort by creation time).
    pub message_id: Uuid,
    /// The replication run this message belongs to.
    pub run_id: Uuid,
    /// When the message was created.
    pub created_at: DateTime<Utc>,
}

impl Header {
    /// A fresh header for a message of `run_id`.
    pub fn new(run_id: Uuid) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            message_id: Uuid::now_v7(),
            run_id,
            created_at: Utc::now(),
        }
    }
}

/// Which operations a run performs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Deep clone every table.
    Replication,
    /// Validate existing targets without cloning.
    Reconciliation,
    /// Clone, then validate each clone.
    #[default]
    All,
}

impl Operation {
    /// Whether this operation clones tables.
    pub fn clones(self) -> bool {
        matches!(self, Self::Replication | Self::All)
    }
    /// Whether this operation validates tables.
    pub fn reconciles(self) -> bool {
        matches!(self, Self::Reconciliation | Self::All)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Replication => "replication",
            Self::Reconciliation => "reconciliation",
            Self::All => "all",
        })
    }
}

impl std::str::FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "replication" => Ok(Self::Replication),
            "reconciliation" => Ok(Self::Reconciliation),
            "all" => Ok(Self::All),
            other => Err(format!(
                "unknown operation `{other}`: expected replication, reconciliation or all"
            )),
        }
    }
}

/// Which table engine runs a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Native Delta deep clone over object stores (`replicator-lake`).
    #[default]
    Native,
    /// Databricks: DEEP CLONE on SQL warehouses between Unity Catalog metastores
    /// (`replicator-databricks`); locations are `databricks:<workspace URL>/<catalog.schema.table>`.
    Databricks,
}

/// Table name filters: glob patterns over dotted table names (`sales.orders`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TableFilter {
    /// Tables to include (glob patterns); `["*"]` includes everything.
    #[serde(default = "TableFilter::all")]
    pub include: Vec<String>,
    /// Tables to exclude (glob patterns), applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl TableFilter {
    fn all() -> Vec<String> {
        vec!["*".to_owned()]
    }
}

impl Default for TableFilter {
    fn default() -> Self {
        Self {
            include: Self::all(),
            exclude: Vec::new(),
        }
    }
}

/// A request to replicate (and/or validate) every matching table under a source root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicationRequest {
    #[serde(flatten)]
    pub header: Header,
    /// What to do with each table.
    #[serde(default)]
    pub operation: Operation,
    /// Root URL or path holding the source Delta tables (at any depth).
    pub source_root: String,
    /// Root URL or path under which each table's replica is written.
    pub target_root: String,
    /// Which tables to replicate.
    #[serde(default)]
    pub tables: TableFilter,
    /// Clone this source version instead of the latest (single-table requests only).
    #[serde(default)]
    pub version: Option<u64>,
    /// Who or what asked for the run (free text, for audit).
    #[serde(default)]
    pub requested_by: Option<String>,
    /// The engine that expands the source and runs the tasks.
    #[serde(default)]
    pub engine: Engine,
    /// Replace targets that are Delta tables not cloned from their source (`CREATE OR
    /// REPLACE`); without it such a target fails permanently, untouched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// Roots outside the source tables that absolute paths in a source's Delta log may
    /// reference (in the source's own store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_roots: Vec<String>,
}

/// One table in a planned run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedTable {
    pub task_id: Uuid,
    /// Dotted table name (`sales.orders`).
    pub table: String,
    /// Source version the plan saw (the clone reads the latest at run time unless pinned).
    pub source_version: Option<u64>,
}

/// Event: the planner turned a request into tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunPlanned {
    #[serde(flatten)]
    pub header: Header,
    pub operation: Operation,
    pub source_root: String,
    pub target_root: String,
    pub tables: Vec<PlannedTable>,
}

/// Work item: deep clone one table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CloneTask {
    #[serde(flatten)]
    pub header: Header,
    pub task_id: Uuid,
    /// Delivery attempt, starting at 1 (raised by `replay`).
    pub attempt: u32,
    pub table: String,
    /// Source table URL.
    pub source: String,
    /// Target table URL.
    pub target: String,
    /// Pinned source version (`VERSION AS OF`); latest when absent.
    #[serde(default)]
    pub version: Option<u64>,
    /// The run's operation: with `all`, a successful clone is followed by a reconcile task.
    #[serde(default)]
    pub operation: Operation,
    /// The engine that clones this table.
    #[serde(default)]
    pub engine: Engine,
    /// Replace the target even when it is a Delta table not cloned from this source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// Roots outside the source table that absolute paths in its log may reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_roots: Vec<String>,
}

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
}

/// Work item: validate one target against its source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileTask {
    #[serde(flatten)]
    pub header: Header,
    pub task_id: Uuid,
    pub attempt: u32,
    pub table: String,
    pub source: String,
    pub target: String,
    /// Source version to compare (the one just cloned); latest when absent.
    #[serde(default)]
    pub source_version: Option<u64>,
    /// The engine that validates this table.
    #[serde(default)]
    pub engine: Engine,
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
}

/// Final state of one table in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Succeeded,
    Failed,
    Mismatched,
}

/// One line of a run summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TableSummary {
    pub task_id: Uuid,
    pub table: String,
    pub status: TableStatus,
    #[serde(default)]
    pub source_version: Option<u64>,
    #[serde(default)]
    pub target_version: Option<u64>,
    #[serde(default)]
    pub copied_files: u64,
    #[serde(default)]
    pub copied_bytes: u64,
    #[serde(default)]
    pub removed_files: u64,
    #[serde(default)]
    pub source_rows: Option<u64>,
    #[serde(default)]
    pub target_rows: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Aggregate of a finished run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub mismatched: u64,
    pub bytes_copied: u64,
    pub files_copied: u64,
    pub duration_ms: u64,
    pub tables: Vec<TableSummary>,
}

impl RunSummary {
    /// True when every table succeeded.
    pub fn is_success(&self) -> bool {
        self.failed == 0 && self.mismatched == 0
    }
}

/// Event: every task of a run reached a terminal state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCompleted {
    #[serde(flatten)]
    pub header: Header,
    pub operation: Operation,
    pub summary: RunSummary,
}

/// A message that could not be processed, with the reason; `replay` puts `payload` back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub header: Header,
    /// Queue the message came from (and goes back to on replay).
    pub queue: String,
    /// Why it was dead-lettered (parse error, unknown schema version, final task failure).
    pub reason: String,
    /// How many times it was delivered.
    pub deliveries: u32,
    /// The original message, verbatim.
    pub payload: String,
}

/// Every message type, for schema generation.
pub trait Message: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// Name of the schema file (`clone_task` → `proto/schemas/clone_task.json`).
    const NAME: &'static str;
    fn header(&self) -> &Header;
}

macro_rules! message {
    ($($ty:ident => $name:literal),* $(,)?) => {
        $(impl Message for $ty {
            const NAME: &'static str = $name;
            fn header(&self) -> &Header { &self.header }
        })*

        /// JSON Schema of every message, by file name.
        pub fn all_schemas() -> Vec<(&'static str, serde_json::Value)> {
            vec![$(($name, serde_json::to_value(schemars::schema_for!($ty)).expect("schema serializes"))),*]
        }
    };
}

message! {
    ReplicationRequest => "replication_request",
    RunPlanned => "run_planned",
    CloneTask => "clone_task",
    CloneResult => "clone_result",
    ReconcileTask => "reconcile_task",
    ReconcileResult => "reconcile_result",
    RunCompleted => "run_completed",
    DeadLetter => "dead_letter",
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported schema_version {found} (this worker understands up to {supported})")]
    UnsupportedVersion { found: u64, supported: u32 },
}

/// Parse a message, refusing schema versions newer than this build.
pub fn decode<T: Message>(payload: &[u8]) -> Result<T, DecodeError> {
    #[derive(Deserialize)]
    struct Probe {
        schema_version: Option<u64>,
    }
    let probe: Probe = serde_json::from_slice(payload)?;
    match probe.schema_version {
        Some(v) if v > u64::from(SCHEMA_VERSION) || v == 0 => {
            return Err(DecodeError::UnsupportedVersion {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        _ => {}
    }
    Ok(serde_json::from_slice(payload)?)
}

/// Serialize a message.
pub fn encode<T: Message>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("messages always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> CloneTask {
        CloneTask {
            header: Header::new(Uuid::now_v7()),
            task_id: Uuid::now_v7(),
            attempt: 1,
            table: "sales.orders".into(),
            source: "file:///a".into(),
            target: "file:///b".into(),
            version: None,
            operation: Operation::All,
            engine: Engine::Native,
            replace: false,
            external_roots: Vec::new(),
        }
    }

    #[test]
    fn round_trips_and_ignores_unknown_fields() {
        let t = task();
        let mut v = serde_json::to_value(&t).unwrap();
        v["some_future_field"] = serde_json::json!(42);
        let back: CloneTask = decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn refuses_newer_schema_versions() {
        let mut v = serde_json::to_value(task()).unwrap();
        v["schema_version"] = serde_json::json!(99);
        let err = decode::<CloneTask>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("unsupported schema_version 99"),
            "{err}"
        );
    }

    #[test]
    fn malformed_payload_names_the_problem() {
        let err = decode::<CloneTask>(b"{\"schema_version\":1}").unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = decode::<CloneTask>(b"not json").unwrap_err();
        assert!(err.to_string().starts_with("malformed message"), "{err}");
    }

    /// Fails when `proto/schemas/` does not match the types: regenerate with
    /// `cargo run -p replicator-proto --bin gen-schemas`.
    #[test]
    fn schemas_are_fresh() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for (name, schema) in all_schemas() {
            let path = dir.join(format!("{name}.json"));
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            let expected = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            assert!(
                on_disk == expected,
                "{} is stale: run `cargo run -p replicator-proto --bin gen-schemas`",
                path.display()
            );
        }
    }
}
