//! The operations of the Databricks engine, as the Databricks data-replicator runs them.
//!
//! - **backup** (source workspace): each streaming table's backing table
//!   (`__databricks_internal.__dlt_materialization_schema_<pipeline>.<table>`, the pipeline ID
//!   read from the table's `pipelines.pipelineId` property) is deep-cloned into the backup
//!   catalog; then the Delta Sharing objects are set up on the source side: a recipient for
//!   the target metastore's global ID, one share of the source catalog's tables (managed and
//!   external, each with its history) and one of the backup catalog's schemas (streaming tables), the
//!   recipient granted `SELECT` on both;
//! - **replication** (target workspace): the provider of the source metastore is found, a
//!   catalog is created from each share (`CREATE CATALOG … USING SHARE`), and each table is
//!   deep-cloned from the shared catalog: `CREATE OR REPLACE TABLE t DEEP CLONE shared.s.t`
//!   for managed and external tables; for a streaming table, into the backing table of the
//!   target's existing streaming table. DEEP CLONE is incremental: only new files are copied;
//! - **reconciliation** (target workspace): row counts, schemas (Unity Catalog columns),
//!   rows of the source missing in the target and rows only the target has (`EXCEPT` both
//!   ways over the key columns).
//!
//! Sharing setup is idempotent: objects are read first and only what is missing is created,
//! so a second run makes no create or alter call. With `sharing.mode: byo` nothing is
//! created; missing objects are errors naming them.
//!
//! - **volumes** ([`volumes`]): a volume created in the target (external at the mapped
//!   location, or managed) and its files copied incrementally through the Files API; the
//!   external locations they need, found or created by reference to a storage credential;
//!   a file-list diff for reconciliation.
//!
//! - **workflow triggers** (`workflows`): the newest successful run of a sync group's
//!   workflow in the source workspace, and runs of it active in the target.
//!
//! One table failing (a failed statement, a timeout, a refused name) does not stop the
//! others; its report carries the error and the statement IDs. A DEEP CLONE commits
//! atomically on the warehouse, so a failed or cancelled clone leaves the previous target
//! version in place.

mod backup;
pub mod catalog;
mod history;
mod probe;
mod reconciliation;
mod replication;
mod run;
mod sharing;
pub mod storage;
mod types;
pub mod volumes;
mod workflows;

use std::time::Duration;

use replicator_common::databricks::{CatalogMapping, DatabricksConfig};
use replicator_common::retry::RetryPolicy;
use replicator_proto::{CloneMetrics, TaskError};

use crate::client::{ClientOptions, Journal, StatementResult, TableInfo, WorkspaceClient};
use crate::{Credentials, DatabricksError, Ident};

pub use backup::{INTERNAL_CATALOG, backing_table_candidates, materialization_schema};
pub use history::{describe_history_sql, restore_sql};
pub use replication::column_diff;
pub use types::{
    DbOperation, Probe, Reconciled, Report, SourceTable, Step, TableReport, TableVerdict,
};
pub use workflows::{ActiveRun, WorkflowRun, newest_success};

/// Where external tables go in the target (the `catalog` section's `external_tables` and
/// its location mapping; docs/catalog.md, "External tables").
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalPlacement {
    /// Register the table over its mapped location (storage already geo-replicated) instead
    /// of deep-cloning it there.
    pub register: bool,
    pub mapping: replicator_common::mapping::Mapping,
}

/// Both workspaces and the configuration.
#[derive(Debug)]
pub struct WorkspacePair {
    pub source: WorkspaceClient,
    pub target: WorkspaceClient,
    config: DatabricksConfig,
    /// Without it, an external table is deep-cloned as a managed table of the target.
    external: Option<ExternalPlacement>,
    journal: Option<Journal>,
}

fn credentials(
    ws: &replicator_common::databricks::Workspace,
) -> Result<Credentials, DatabricksError> {
    let resolve = |s: &replicator_common::config::SecretRef| {
        s.resolve()
            .map_err(|e| DatabricksError::Config(format!("{}: {e}", ws.host)))
    };
    match (&ws.auth.token, &ws.auth.client_id, &ws.auth.client_secret) {
        (Some(t), None, None) => Ok(Credentials::Token(resolve(t)?)),
        (None, Some(id), Some(secret)) => Ok(Credentials::OAuth {
            client_id: id.clone(),
            client_secret: resolve(secret)?,
        }),
        _ => Err(DatabricksError::Config(format!(
            "{}: give either `token` or both `client_id` and `client_secret`",
            ws.host
        ))),
    }
}

/// Client options from the config's tuning.
pub fn client_options(config: &DatabricksConfig) -> ClientOptions {
    let t = &config.client;
    ClientOptions {
        poll_interval: Duration::from_millis(t.poll_interval_ms),
        statement_timeout: Duration::from_millis(t.statement_timeout_ms),
        wait_timeout: Duration::from_secs(t.wait_timeout_s),
        retry: t.retry.clone(),
        max_retry_after: Duration::from_millis(t.max_retry_after_ms),
        request_timeout: Duration::from_millis(t.request_timeout_ms),
        page_size: t.page_size,
    }
}

fn failed(e: &DatabricksError) -> TaskError {
    TaskError {
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// Read the six clone metrics from a DEEP CLONE result.
fn clone_metrics(r: &StatementResult) -> Option<CloneMetrics> {
    let get = |c: &str| r.get(0, c).and_then(|v| v.parse::<u64>().ok());
    Some(CloneMetrics {
        source_table_size: get("source_table_size")?,
        source_num_of_files: get("source_num_of_files")?,
        num_removed_files: get("num_removed_files").unwrap_or(0),
        num_copied_files: get("num_copied_files")?,
        removed_files_size: get("removed_files_size").unwrap_or(0),
        copied_files_size: get("copied_files_size").unwrap_or(0),
    })
}

/// An object a create call said exists, but that cannot be read back.
fn vanished(what: &str, name: &str) -> DatabricksError {
    DatabricksError::Refused(format!(
        "{what} `{name}` already exists (a create said so) but cannot be read: it was dropped meanwhile, or this principal may not read it"
    ))
}

impl WorkspacePair {
    /// Clients for both workspaces, secrets read from their references. With `dry_run`,
    /// reads are sent and everything else is recorded (see [`Report::dry_run`]).
    pub fn from_config(config: &DatabricksConfig, dry_run: bool) -> Result<Self, DatabricksError> {
        let options = client_options(config);
        let mut source = WorkspaceClient::new(
            &config.source.host,
            &config.source.warehouse_id,
            credentials(&config.source)?,
            options.clone(),
        )?;
        let mut target = WorkspaceClient::new(
            &config.target.host,
            &config.target.warehouse_id,
            credentials(&config.target)?,
            options,
        )?;
        let journal = dry_run.then(Journal::default);
        if let Some(j) = &journal {
            source = source.with_dry_run(j.clone());
            target = target.with_dry_run(j.clone());
        }
        Ok(Self {
            source,
            target,
            config: config.clone(),
            external: None,
            journal,
        })
    }

    /// Place external tables at their mapped locations in the target.
    pub fn with_external_placement(mut self, placement: Option<ExternalPlacement>) -> Self {
        self.external = placement;
        self
    }

    pub fn config(&self) -> &DatabricksConfig {
        &self.config
    }

    fn retry(&self) -> &RetryPolicy {
        &self.config.client.retry
    }

    /// Every table of the configured catalogs and schemas, through Unity Catalog.
    pub async fn discover(&self) -> Result<Vec<SourceTable>, DatabricksError> {
        let mut out = Vec::new();
        for (i, m) in self.config.catalogs.iter().enumerate() {
            let schemas = self.source.list_schemas(&m.source).await?;
            for s in schemas {
                if s.name == "information_schema"
                    || (!m.schemas.is_empty() && !m.schemas.contains(&s.name))
                {
                    continue;
                }
                for info in self.source.list_tables(&m.source, &s.name).await? {
                    out.push(SourceTable { mapping: i, info });
                }
            }
        }
        out.sort_by_key(SourceTable::full_name);
        Ok(out)
    }

    /// The source table `full_name` (for one task of the fleet).
    pub async fn source_table(&self, full_name: &str) -> Result<SourceTable, DatabricksError> {
        let info = self.source.get_table(full_name).await?.ok_or_else(|| {
            DatabricksError::Refused(format!("source table {full_name} does not exist"))
        })?;
        let mapping = self
            .config
            .catalogs
            .iter()
            .position(|m| m.source == info.catalog_name)
            .ok_or_else(|| {
                DatabricksError::Refused(format!(
                    "source table {full_name} is in no configured catalog"
                ))
            })?;
        Ok(SourceTable { mapping, info })
    }

    fn mapping(&self, t: &SourceTable) -> &CatalogMapping {
        &self.config.catalogs[t.mapping]
    }

    /// Run one statement with the configured retries for transient failures; every
    /// statement ID (failed attempts included) is appended to `ids`.
    async fn run_sql(
        &self,
        client: &WorkspaceClient,
        sql: &str,
        ids: &mut Vec<String>,
    ) -> Result<StatementResult, DatabricksError> {
        let seen = std::sync::Mutex::new(Vec::new());
        let (r, _) = self
            .retry()
            .retry(
                || async {
                    let r = client.execute(sql).await;
                    if let Err(e) = &r
                        && let Some(id) = e.statement_id()
                    {
                        seen.lock().expect("ids lock").push(id.to_owned());
                    }
                    r
                },
                |e: &DatabricksError, d| tracing::warn!(error = %e, delay_ms = d.as_millis() as u64, "statement failed, retrying"),
            )
            .await;
        ids.extend(seen.into_inner().expect("ids lock"));
        if let Ok(ok) = &r {
            ids.push(ok.statement_id.clone());
        }
        r
    }

    /// Create a catalog (and schema) when Unity Catalog does not have it.
    async fn ensure_schema(
        &self,
        client: &WorkspaceClient,
        catalog: &Ident,
        schema: &Ident,
        ids: &mut Vec<String>,
    ) -> Result<(), DatabricksError> {
        if client.get_catalog(catalog.as_str()).await?.is_none() {
            let sql = format!("CREATE CATALOG IF NOT EXISTS {}", catalog.quoted());
            self.run_sql(client, &sql, ids).await?;
        }
        if client
            .get_schema(catalog.as_str(), schema.as_str())
            .await?
            .is_none()
        {
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {}.{}",
                catalog.quoted(),
                schema.quoted()
            );
            self.run_sql(client, &sql, ids).await?;
        }
        Ok(())
    }

    /// The table's Unity Catalog description with its columns and properties (a listing
    /// may leave them out).
    async fn with_columns(&self, t: &SourceTable) -> Result<TableInfo, DatabricksError> {
        if !t.info.columns.is_empty() {
            return Ok(t.info.clone());
        }
        Ok(self
            .source
            .get_table(&t.full_name())
            .await?
            .unwrap_or_else(|| t.info.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(columns: &[&str], row: &[Option<&str>]) -> StatementResult {
        StatementResult {
            statement_id: "s".into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: vec![row.iter().map(|v| v.map(str::to_owned)).collect()],
        }
    }

    #[test]
    fn clone_metrics_are_read_by_column_name() {
        let r = result(
            &[
                "copied_files_size",
                "num_copied_files",
                "source_num_of_files",
                "source_table_size",
                "removed_files_size",
                "num_removed_files",
            ],
            &[
                Some("60"),
                Some("3"),
                Some("4"),
                Some("80"),
                Some("7"),
                Some("1"),
            ],
        );
        assert_eq!(
            clone_metrics(&r),
            Some(CloneMetrics {
                source_table_size: 80,
                source_num_of_files: 4,
                num_removed_files: 1,
                num_copied_files: 3,
                removed_files_size: 7,
                copied_files_size: 60,
            })
        );
    }

    #[test]
    fn clone_metrics_default_what_a_warehouse_may_leave_out() {
        let r = result(
            &[
                "source_table_size",
                "source_num_of_files",
                "num_copied_files",
            ],
            &[Some("80"), Some("4"), Some("0")],
        );
        let m = clone_metrics(&r).unwrap();
        assert_eq!(
            (
                m.num_removed_files,
                m.removed_files_size,
                m.copied_files_size
            ),
            (0, 0, 0)
        );
        // Without the counts that must be there (a dry run's empty result, a NULL, text),
        // there are no metrics.
        assert_eq!(clone_metrics(&StatementResult::default()), None);
        let null = result(
            &[
                "source_table_size",
                "source_num_of_files",
                "num_copied_files",
            ],
            &[Some("80"), None, Some("0")],
        );
        assert_eq!(clone_metrics(&null), None);
        let text = result(
            &[
                "source_table_size",
                "source_num_of_files",
                "num_copied_files",
            ],
            &[Some("80"), Some("four"), Some("0")],
        );
        assert_eq!(clone_metrics(&text), None);
    }

    #[test]
    fn a_task_error_carries_the_classification_and_the_message() {
        let transient = failed(&DatabricksError::Transport {
            method: "GET".into(),
            path: "/p".into(),
            detail: "reset".into(),
        });
        assert_eq!(transient.kind, replicator_proto::ErrorKind::Transient);
        assert_eq!(transient.message, "GET /p: reset");
        let permanent = failed(&DatabricksError::Refused("no".into()));
        assert_eq!(permanent.kind, replicator_proto::ErrorKind::Permanent);
        assert_eq!(permanent.message, "no");
    }
}
