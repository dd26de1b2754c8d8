//! A run's announcements on the events topic (planned, completed) and the dead letter of a
//! message that could not be processed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Header, Operation, RunSummary};

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

/// Event: a sync group's outcome (`sync.succeeded`, `sync.failed`) or its lag passing the
/// group's RPO (`sync.lagging`), for the notifier to tell `recipients`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncNotice {
    #[serde(flatten)]
    pub header: Header,
    pub group: String,
    /// The group's consistent cut this notice is about (the new one on success, the kept one
    /// otherwise).
    #[serde(default)]
    pub cut_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub message: Option<String>,
    /// For `sync.lagging`: how far behind the primary the group is.
    #[serde(default)]
    pub lag_seconds: Option<u64>,
    /// Who is told: the group's owners and the configured success/failure addresses.
    #[serde(default)]
    pub recipients: Vec<String>,
}
