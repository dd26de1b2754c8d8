//! The audit trail as tables (`replicator audit export`): every table of the store keyed by
//! `run_id`, each column typed, read the same way on both databases.

use sqlx::Row;
use uuid::Uuid;

use crate::{Store, StoreError};

/// A column of an audit table: text or a 64-bit integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditType {
    Text,
    Int,
}

/// One of the store's tables as exported for audit (`replicator audit export`).
#[derive(Clone, Copy, Debug)]
pub struct AuditTable {
    pub name: &'static str,
    pub columns: &'static [(&'static str, AuditType)],
    /// Column that orders the rows.
    pub order_by: &'static str,
}

/// A value of an audit row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditValue {
    Text(Option<String>),
    Int(Option<i64>),
}

use AuditType::{Int, Text};

/// Every table that makes the audit trail, with every column, each keyed by `run_id`.
pub const AUDIT_TABLES: &[AuditTable] = &[
    AuditTable {
        name: "runs",
        columns: &[
            ("run_id", Text),
            ("operation", Text),
            ("source_root", Text),
            ("target_root", Text),
            ("status", Text),
            ("created_at", Text),
            ("completed_at", Text),
            ("request", Text),
            ("summary", Text),
        ],
        order_by: "created_at",
    },
    AuditTable {
        name: "tasks",
        columns: &[
            ("run_id", Text),
            ("task_id", Text),
            ("table_name", Text),
            ("source", Text),
            ("target", Text),
            ("status", Text),
            ("source_version", Int),
            ("target_version", Int),
            ("copied_files", Int),
            ("copied_bytes", Int),
            ("removed_files", Int),
            ("source_rows", Int),
            ("target_rows", Int),
            ("error", Text),
            ("created_at", Text),
            ("updated_at", Text),
        ],
        order_by: "table_name",
    },
    AuditTable {
        name: "attempts",
        columns: &[
            ("run_id", Text),
            ("id", Int),
            ("task_id", Text),
            ("stage", Text),
            ("attempt", Int),
            ("worker", Text),
            ("started_at", Text),
            ("finished_at", Text),
            ("outcome", Text),
            ("error", Text),
        ],
        order_by: "id",
    },
    AuditTable {
        name: "results",
        columns: &[
            ("run_id", Text),
            ("id", Int),
            ("task_id", Text),
            ("stage", Text),
            ("outcome", Text),
            ("created_at", Text),
            ("detail", Text),
        ],
        order_by: "id",
    },
    AuditTable {
        name: "notifications",
        columns: &[
            ("run_id", Text),
            ("channel", Text),
            ("target", Text),
            ("delivered", Int),
            ("attempts", Int),
            ("error", Text),
            ("created_at", Text),
        ],
        order_by: "created_at",
    },
];

impl Store {
    /// The rows of an audit table, for one run or all of them. `results` reads the
    /// `outcomes` table (each stage's result message, verbatim JSON).
    pub async fn audit_rows(
        &self,
        table: &AuditTable,
        run_id: Option<Uuid>,
    ) -> Result<Vec<Vec<AuditValue>>, StoreError> {
        let source = match table.name {
            "results" => "outcomes",
            other => other,
        };
        // Every column is cast to one type per kind, so both databases answer alike.
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|(c, t)| match t {
                Text => format!("CAST({c} AS TEXT)"),
                Int => format!("CAST({c} AS BIGINT)"),
            })
            .collect();
        let filter = if run_id.is_some() {
            " WHERE run_id = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {} FROM {source}{filter} ORDER BY run_id, {}",
            columns.join(", "),
            table.order_by
        );
        let mut query = sqlx::query(&sql);
        if let Some(r) = run_id {
            query = query.bind(r.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, t))| {
                        Ok(match t {
                            Text => AuditValue::Text(r.try_get(i)?),
                            Int => AuditValue::Int(r.try_get(i)?),
                        })
                    })
                    .collect()
            })
            .collect()
    }
}
