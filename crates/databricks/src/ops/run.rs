//! A whole run: discovery, then backup, replication and reconciliation over every usable
//! table, each table's result in the [`Report`].

use std::collections::BTreeSet;
use std::time::Instant;

use futures::{StreamExt, stream};
use replicator_common::databricks::SharingMode;
use replicator_proto::TaskError;
use uuid::Uuid;

use crate::DatabricksError;

use super::{
    DbOperation, Report, SourceTable, Step, TableReport, TableVerdict, WorkspacePair, failed,
};

impl WorkspacePair {
    /// Run the operations over every discovered table.
    pub async fn run(&self, operation: DbOperation) -> Result<Report, DatabricksError> {
        let run_id = Uuid::now_v7();
        let tables = self.discover().await?;
        tracing::info!(%run_id, tables = tables.len(), ?operation, "databricks run");
        let mut report = Report {
            run_id,
            operation,
            sharing: Vec::new(),
            tables: Vec::new(),
            dry_run: Vec::new(),
        };
        // Names that cannot be quoted safely and unsupported types never reach SQL.
        let mut usable = Vec::new();
        for t in tables {
            let refusal = match t.name() {
                Err(e) => Some((TableVerdict::Failed, Some(failed(&e)))),
                Ok(_) if !t.supported() => Some((TableVerdict::Skipped, None)),
                Ok(_) => None,
            };
            match refusal {
                Some((status, error)) => report.tables.push(TableReport {
                    operation: "discovery",
                    table: t.full_name(),
                    table_type: t.info.table_type.clone(),
                    status,
                    statement_ids: Vec::new(),
                    metrics: None,
                    checks: Vec::new(),
                    source_rows: None,
                    target_rows: None,
                    error: error.or_else(|| {
                        Some(TaskError {
                            kind: replicator_proto::ErrorKind::Permanent,
                            message: format!(
                                "{} tables are not replicated (supported: MANAGED, EXTERNAL, STREAMING_TABLE)",
                                t.info.table_type
                            ),
                        })
                    }),
                    duration_ms: 0,
                }),
                None => usable.push(t),
            }
        }
        let parallel = self.config.client.concurrency;
        if operation.backs_up() {
            // Bring-your-own sharing is checked before anything is written.
            if self.config.sharing.mode == SharingMode::Byo {
                let all: Vec<&SourceTable> = usable.iter().collect();
                self.setup_source_sharing(&all).await?;
            }
            let streaming: Vec<&SourceTable> = usable.iter().filter(|t| t.is_streaming()).collect();
            let reports: Vec<TableReport> = stream::iter(streaming)
                .map(|t| self.report_step("backup", t, self.backup_table(t, None)))
                .buffered(parallel)
                .collect()
                .await;
            // A schema goes into a share once its backups exist.
            let ok: BTreeSet<String> = reports
                .iter()
                .filter(|r| r.status == TableVerdict::Succeeded)
                .map(|r| r.table.clone())
                .collect();
            report.tables.extend(reports);
            let shareable: Vec<&SourceTable> = usable
                .iter()
                .filter(|t| !t.is_streaming() || ok.contains(&t.full_name()))
                .collect();
            report
                .sharing
                .extend(self.setup_source_sharing(&shareable).await?);
        }
        if operation.replicates() {
            report
                .sharing
                .extend(self.setup_target_sharing(&usable).await?);
            let reports: Vec<TableReport> = stream::iter(&usable)
                .map(|t| self.report_step("replication", t, self.replicate_table(t, None)))
                .buffered(parallel)
                .collect()
                .await;
            report.tables.extend(reports);
        }
        if operation.reconciles() {
            let reports: Vec<TableReport> = stream::iter(&usable)
                .map(|t| async move {
                    let started = Instant::now();
                    let r = self.reconcile_table(t).await;
                    let mut tr = self.empty_report("reconciliation", t);
                    tr.duration_ms = started.elapsed().as_millis() as u64;
                    match r {
                        Ok(rec) => {
                            tr.status = if rec.matched() {
                                TableVerdict::Matched
                            } else {
                                TableVerdict::Mismatched
                            };
                            tr.statement_ids = rec.statement_ids;
                            tr.checks = rec.checks;
                            tr.source_rows = rec.source_rows;
                            tr.target_rows = rec.target_rows;
                        }
                        Err((ids, e)) => {
                            tr.statement_ids = ids;
                            tr.error = Some(failed(&e));
                        }
                    }
                    tr
                })
                .buffered(parallel)
                .collect()
                .await;
            report.tables.extend(reports);
        }
        if let Some(j) = &self.journal {
            report.dry_run = j.entries();
        }
        Ok(report)
    }

    fn empty_report(&self, operation: &'static str, t: &SourceTable) -> TableReport {
        TableReport {
            operation,
            table: t.full_name(),
            table_type: t.info.table_type.clone(),
            status: TableVerdict::Failed,
            statement_ids: Vec::new(),
            metrics: None,
            checks: Vec::new(),
            source_rows: None,
            target_rows: None,
            error: None,
            duration_ms: 0,
        }
    }

    async fn report_step(
        &self,
        operation: &'static str,
        t: &SourceTable,
        step: impl Future<Output = Result<Step, (Vec<String>, DatabricksError)>>,
    ) -> TableReport {
        let started = Instant::now();
        let mut r = self.empty_report(operation, t);
        match step.await {
            Ok(s) => {
                tracing::info!(table = %r.table, operation, statements = ?s.statement_ids, "table done");
                r.status = TableVerdict::Succeeded;
                r.statement_ids = s.statement_ids;
                r.metrics = s.metrics;
            }
            Err((ids, e)) => {
                tracing::error!(table = %r.table, operation, error = %e, "table failed");
                r.statement_ids = ids;
                r.error = Some(failed(&e));
            }
        }
        r.duration_ms = started.elapsed().as_millis() as u64;
        r
    }
}
