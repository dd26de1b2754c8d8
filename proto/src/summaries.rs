//! A finished run, table by table and in aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// The table's name, or a catalog object's (see `kind`).
    pub table: String,
    /// A catalog object's kind (docs/catalog.md); absent for a table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::ObjectKind>,
    /// A catalog object's account of what its task did (statements, findings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
