//! What a client asks for: a [`ReplicationRequest`] with its operation, engine and table
//! filter.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Header;

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

// Named `Engine` in the JSON Schemas, as it always was; the engines themselves are
// `replicator_engine::Engine` implementations.
/// Which table engine runs a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Engine")]
pub enum EngineKind {
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
    pub engine: EngineKind,
    /// Replace targets that are Delta tables not cloned from their source (`CREATE OR
    /// REPLACE`); without it such a target fails permanently, untouched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// Roots outside the source tables that absolute paths in a source's Delta log may
    /// reference (in the source's own store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_roots: Vec<String>,
    /// Clone every table as of this instant (`TIMESTAMP AS OF`): one consistent cut across
    /// the run's tables. Latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// The sync group this run brings to a new cut, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Also carry the catalog's other objects in scope — schemas, views, volumes, grants,
    /// tags (docs/catalog.md) — as catalog tasks of the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catalog: bool,
    /// Sources to ingest into Delta tables under `target_root` (docs/ingest.md), one task
    /// each, beside the tables found under `source_root` (which may then be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingest: Vec<crate::IngestSource>,
    /// Also mirror the tables into Snowflake (docs/snowflake.md): one `mirror` catalog task,
    /// run by workers whose config has a `snowflake` section.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_what_they_print() {
        for op in [
            Operation::Replication,
            Operation::Reconciliation,
            Operation::All,
        ] {
            assert_eq!(op.to_string().parse::<Operation>(), Ok(op));
        }
        assert!(Operation::All.clones() && Operation::All.reconciles());
        assert!(!Operation::Reconciliation.clones() && !Operation::Replication.reconciles());
        let err = "mirror".parse::<Operation>().unwrap_err();
        assert_eq!(
            err,
            "unknown operation `mirror`: expected replication, reconciliation or all"
        );
    }

    #[test]
    fn a_request_without_optional_fields_takes_the_defaults() {
        let json = serde_json::json!({
            "schema_version": 1,
            "message_id": "01936b2e-0000-7000-8000-000000000000",
            "run_id": "01936b2e-0000-7000-8000-000000000001",
            "created_at": "2026-11-21T00:00:00Z",
            "source_root": "/a",
            "target_root": "/b",
        });
        let r: ReplicationRequest = serde_json::from_value(json).unwrap();
        assert_eq!(r.operation, Operation::All);
        assert_eq!(r.engine, EngineKind::Native);
        assert_eq!(r.tables, TableFilter::default());
        assert_eq!(r.tables.include, ["*"]);
        assert!(!r.replace && r.external_roots.is_empty() && r.version.is_none());
        // Left out on the wire when unset, so older consumers see the same message.
        let back = serde_json::to_value(&r).unwrap();
        assert!(back.get("replace").is_none() && back.get("external_roots").is_none());
    }
}
