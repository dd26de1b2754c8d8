//! What the operations work on and report: the operation to run, a source table, how one
//! table fared, a run's report, a probe's result.

use replicator_proto::{Check, CloneMetrics, TaskError};
use serde::Serialize;
use uuid::Uuid;

use crate::client::{TableInfo, TableType};
use crate::{DatabricksError, TableName};

/// Which operations to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbOperation {
    Backup,
    Replication,
    Reconciliation,
    #[default]
    All,
}

impl DbOperation {
    pub(super) fn backs_up(self) -> bool {
        matches!(self, Self::Backup | Self::All)
    }
    pub(super) fn replicates(self) -> bool {
        matches!(self, Self::Replication | Self::All)
    }
    pub(super) fn reconciles(self) -> bool {
        matches!(self, Self::Reconciliation | Self::All)
    }
}

impl std::str::FromStr for DbOperation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "backup" => Ok(Self::Backup),
            "replication" => Ok(Self::Replication),
            "reconciliation" => Ok(Self::Reconciliation),
            "all" => Ok(Self::All),
            other => Err(format!(
                "unknown operation `{other}`: expected backup, replication, reconciliation or all"
            )),
        }
    }
}

/// A source table found in Unity Catalog.
#[derive(Clone, Debug)]
pub struct SourceTable {
    /// Index of its catalog mapping in the config.
    pub mapping: usize,
    pub info: TableInfo,
}

impl SourceTable {
    /// `catalog.schema.table` as Unity Catalog names it (unvalidated).
    pub fn full_name(&self) -> String {
        format!(
            "{}.{}.{}",
            self.info.catalog_name, self.info.schema_name, self.info.name
        )
    }
    /// The validated name.
    pub fn name(&self) -> Result<TableName, DatabricksError> {
        TableName::new(
            &self.info.catalog_name,
            &self.info.schema_name,
            &self.info.name,
        )
    }
    /// Whether the engine replicates this table type.
    pub fn supported(&self) -> bool {
        matches!(
            self.info.kind(),
            TableType::Managed | TableType::External | TableType::StreamingTable
        )
    }
    pub fn is_streaming(&self) -> bool {
        self.info.kind() == TableType::StreamingTable
    }
}

/// How one table fared in one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableVerdict {
    Succeeded,
    Failed,
    Skipped,
    Matched,
    Mismatched,
}

/// One table in one operation.
#[derive(Clone, Debug, Serialize)]
pub struct TableReport {
    pub operation: &'static str,
    /// Source table `catalog.schema.table`.
    pub table: String,
    pub table_type: String,
    pub status: TableVerdict,
    /// Every statement run for this table, failed ones included.
    pub statement_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<CloneMetrics>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    pub duration_ms: u64,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub run_id: Uuid,
    pub operation: DbOperation,
    /// Sharing objects created (empty when everything existed).
    pub sharing: Vec<String>,
    pub tables: Vec<TableReport>,
    /// Dry run: every statement and call that would have been made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<String>,
}

impl Report {
    /// No table failed or mismatched.
    pub fn is_success(&self) -> bool {
        self.tables
            .iter()
            .all(|t| !matches!(t.status, TableVerdict::Failed | TableVerdict::Mismatched))
    }
}

/// Result of one validate-only check.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// What one clone step did.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub statement_ids: Vec<String>,
    pub metrics: Option<CloneMetrics>,
}

/// Outcome of reconciling one table.
#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    pub statement_ids: Vec<String>,
    pub checks: Vec<Check>,
    pub source_rows: Option<u64>,
    pub target_rows: Option<u64>,
}

impl Reconciled {
    pub fn matched(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse() {
        assert_eq!("backup".parse::<DbOperation>(), Ok(DbOperation::Backup));
        assert!("clone".parse::<DbOperation>().is_err());
    }

    #[test]
    fn all_runs_every_operation_and_each_other_only_itself() {
        let runs = |o: DbOperation| (o.backs_up(), o.replicates(), o.reconciles());
        assert_eq!(runs(DbOperation::All), (true, true, true));
        assert_eq!(runs(DbOperation::Backup), (true, false, false));
        assert_eq!(runs(DbOperation::Replication), (false, true, false));
        assert_eq!(runs(DbOperation::Reconciliation), (false, false, true));
    }

    fn table(table_type: &str) -> SourceTable {
        SourceTable {
            mapping: 0,
            info: TableInfo {
                name: "t".into(),
                catalog_name: "c".into(),
                schema_name: "s".into(),
                table_type: table_type.into(),
                properties: Default::default(),
                columns: Vec::new(),
                pipeline_id: None,
                storage_location: None,
                table_id: None,
                delta_uniform_iceberg: None,
            },
        }
    }

    #[test]
    fn supported_table_types() {
        for (ty, supported, streaming) in [
            ("MANAGED", true, false),
            ("EXTERNAL", true, false),
            ("STREAMING_TABLE", true, true),
            ("MATERIALIZED_VIEW", false, false),
            ("VIEW", false, false),
            ("FOREIGN", false, false),
        ] {
            let t = table(ty);
            assert_eq!(
                (t.supported(), t.is_streaming()),
                (supported, streaming),
                "{ty}"
            );
        }
        assert_eq!(table("MANAGED").full_name(), "c.s.t");
    }

    #[test]
    fn a_report_succeeds_unless_a_table_failed_or_mismatched() {
        let mut report = Report {
            run_id: Uuid::nil(),
            operation: DbOperation::All,
            sharing: Vec::new(),
            tables: Vec::new(),
            dry_run: Vec::new(),
        };
        let row = |status| TableReport {
            operation: "replication",
            table: "c.s.t".into(),
            table_type: "MANAGED".into(),
            status,
            statement_ids: Vec::new(),
            metrics: None,
            checks: Vec::new(),
            source_rows: None,
            target_rows: None,
            error: None,
            duration_ms: 0,
        };
        assert!(report.is_success());
        for ok in [
            TableVerdict::Succeeded,
            TableVerdict::Skipped,
            TableVerdict::Matched,
        ] {
            report.tables.push(row(ok));
        }
        assert!(report.is_success());
        for bad in [TableVerdict::Failed, TableVerdict::Mismatched] {
            report.tables.push(row(bad));
            assert!(!report.is_success(), "{bad:?}");
            report.tables.pop();
        }
    }

    #[test]
    fn verdicts_serialize_in_snake_case() {
        let json =
            serde_json::to_string(&[TableVerdict::Succeeded, TableVerdict::Mismatched]).unwrap();
        assert_eq!(json, r#"["succeeded","mismatched"]"#);
    }
}
