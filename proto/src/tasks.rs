//! Work items: one table to clone, or one pair to validate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EngineKind, Header, Operation};

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
    pub engine: EngineKind,
    /// Replace the target even when it is a Delta table not cloned from this source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// Roots outside the source table that absolute paths in its log may reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_roots: Vec<String>,
    /// Clone the source as of this instant (`TIMESTAMP AS OF`; the run's consistent cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// An ingestion (docs/ingest.md) instead of a clone: `source` names the source
    /// (`postgres public.orders`), `target` is the Delta table's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<crate::IngestSource>,
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
    pub engine: EngineKind,
    /// The validation of an ingestion: row counts and primary-key consistency of the
    /// target against this source (docs/ingest.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<crate::IngestSource>,
    /// The target's version before the clone this validation follows: where
    /// `reconciliation.on_mismatch: rollback` restores a target that fails validation.
    /// Absent when the clone created the table or committed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<u64>,
}
