//! The operations of the Databricks engine, as the Databricks data-replicator runs them.
//!
//! - **backup** (source workspace): each streaming table's backing table
//!   (`__databricks_internal.__dlt_materialization_schema_<pipeline>.<table>`, the pipeline ID
//!   read from the table's `pipelines.pipelineId` property) is deep-cloned into the backup
//!   catalog; then the Delta Sharing objects are set up on the source side: a recipient for
//!   the target metastore's global ID, one share of the source catalog's schemas (managed and
//!   external tables) and one of the backup catalog's schemas (streaming tables), the
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
//! One table failing (a failed statement, a timeout, a refused name) does not stop the
//! others; its report carries the error and the statement IDs. A DEEP CLONE commits
//! atomically on the warehouse, so a failed or cancelled clone leaves the previous target
//! version in place.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use replicator_common::databricks::{CatalogMapping, DatabricksConfig, SharingMode};
use replicator_common::retry::RetryPolicy;
use replicator_proto::{Check, CloneMetrics, TaskError};
use serde::Serialize;
use uuid::Uuid;

use crate::client::{ClientOptions, Journal, TableInfo, TableType, WorkspaceClient};
use crate::{Credentials, DatabricksError, Ident, TableName};

/// Rows shown by a reconciliation that finds some missing (or extra) in the target.
const ROW_SAMPLE: usize = 10;

/// Catalog of streaming tables' backing tables.
pub const INTERNAL_CATALOG: &str = "__databricks_internal";

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
    fn backs_up(self) -> bool {
        matches!(self, Self::Backup | Self::All)
    }
    fn replicates(self) -> bool {
        matches!(self, Self::Replication | Self::All)
    }
    fn reconciles(self) -> bool {
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

/// The schema that holds a pipeline's backing tables.
pub fn materialization_schema(pipeline_id: &str) -> String {
    // Databricks names it after the pipeline ID with dashes turned into underscores.
    format!(
        "__dlt_materialization_schema_{}",
        pipeline_id.replace('-', "_")
    )
}

/// Where Databricks may keep the backing table of streaming table `st`, most usual first
/// (the places the Databricks data-replicator probes).
pub fn backing_table_candidates(
    pipeline_id: &str,
    st: &TableName,
) -> Result<Vec<TableName>, DatabricksError> {
    let pid = pipeline_id.replace('-', "_");
    let internal = Ident::new(INTERNAL_CATALOG)?;
    let schema = Ident::new(&materialization_schema(pipeline_id))?;
    let t = st.table.as_str();
    let mat = Ident::new(&format!("__materialization_mat_{pid}_{t}_1"))?;
    Ok(vec![
        TableName {
            catalog: internal.clone(),
            schema: schema.clone(),
            table: st.table.clone(),
        },
        TableName {
            catalog: internal.clone(),
            schema: schema.clone(),
            table: mat.clone(),
        },
        TableName {
            catalog: st.catalog.clone(),
            schema: st.schema.clone(),
            table: mat,
        },
        TableName {
            catalog: internal,
            schema,
            table: Ident::new(&format!("__materialization_mat_{t}_1"))?,
        },
    ])
}

/// The backing table of streaming table `st` as Unity Catalog of `client` knows it.
async fn find_backing_table(
    client: &WorkspaceClient,
    pipeline_id: &str,
    st: &TableName,
) -> Result<TableName, DatabricksError> {
    let candidates = backing_table_candidates(pipeline_id, st)?;
    for c in &candidates {
        if client.get_table(&c.full_name()).await?.is_some() {
            return Ok(c.clone());
        }
    }
    Err(DatabricksError::Refused(format!(
        "no backing table of streaming table {st} (pipeline {pipeline_id}) found at {}",
        candidates
            .iter()
            .map(TableName::full_name)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// An object a create call said exists, but that cannot be read back.
fn vanished(what: &str, name: &str) -> DatabricksError {
    DatabricksError::Refused(format!(
        "{what} `{name}` already exists (a create said so) but cannot be read: it was dropped meanwhile, or this principal may not read it"
    ))
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
pub enum TableStatus {
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
    pub status: TableStatus,
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
            .all(|t| !matches!(t.status, TableStatus::Failed | TableStatus::Mismatched))
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

/// Both workspaces and the configuration.
#[derive(Debug)]
pub struct Engine {
    pub source: WorkspaceClient,
    pub target: WorkspaceClient,
    config: DatabricksConfig,
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
fn clone_metrics(r: &crate::StatementResult) -> Option<CloneMetrics> {
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

/// A column name quoted for SQL (column names may hold dots and spaces, never control
/// characters).
fn quote_column(name: &str) -> Result<String, DatabricksError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(DatabricksError::InvalidIdentifier {
            name: name.escape_debug().to_string(),
            reason: "a column name must be non-empty and free of control characters".into(),
        });
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

impl Engine {
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
            journal,
        })
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
                Err(e) => Some((TableStatus::Failed, Some(failed(&e)))),
                Ok(_) if !t.supported() => Some((TableStatus::Skipped, None)),
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
                .map(|t| self.report_step("backup", t, self.backup_table(t)))
                .buffered(parallel)
                .collect()
                .await;
            // A schema goes into a share once its backups exist.
            let ok: BTreeSet<String> = reports
                .iter()
                .filter(|r| r.status == TableStatus::Succeeded)
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
                .map(|t| self.report_step("replication", t, self.replicate_table(t)))
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
                                TableStatus::Matched
                            } else {
                                TableStatus::Mismatched
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
            status: TableStatus::Failed,
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
                r.status = TableStatus::Succeeded;
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

    /// Run one statement with the configured retries for transient failures; every
    /// statement ID (failed attempts included) is appended to `ids`.
    async fn run_sql(
        &self,
        client: &WorkspaceClient,
        sql: &str,
        ids: &mut Vec<String>,
    ) -> Result<crate::StatementResult, DatabricksError> {
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

    /// Backup of one streaming table: deep clone its backing table into the backup catalog.
    pub async fn backup_table(
        &self,
        t: &SourceTable,
    ) -> Result<Step, (Vec<String>, DatabricksError)> {
        let mut ids = Vec::new();
        let r = self.backup_inner(t, &mut ids).await;
        r.map_err(|e| (ids, e))
    }

    async fn backup_inner(
        &self,
        t: &SourceTable,
        ids: &mut Vec<String>,
    ) -> Result<Step, DatabricksError> {
        let name = t.name()?;
        if !t.is_streaming() {
            return Ok(Step::default());
        }
        // Listings may omit properties: read the table itself for its pipeline.
        let info = match t.info.pipeline() {
            Some(_) => t.info.clone(),
            None => self
                .source
                .get_table(&name.full_name())
                .await?
                .unwrap_or_else(|| t.info.clone()),
        };
        let pipeline = info.pipeline().ok_or_else(|| {
            DatabricksError::Refused(format!(
                "streaming table {name} has no `pipelines.pipelineId` property"
            ))
        })?;
        let backing = find_backing_table(&self.source, pipeline, &name).await?;
        let backup = Ident::new(&self.mapping(t).backup())?;
        self.ensure_schema(&self.source, &backup, &name.schema, ids)
            .await?;
        let dest = name.in_catalog(&backup);
        let sql = format!(
            "CREATE OR REPLACE TABLE {} DEEP CLONE {}",
            dest.quoted(),
            backing.quoted()
        );
        let r = self.run_sql(&self.source, &sql, ids).await?;
        Ok(Step {
            statement_ids: ids.clone(),
            metrics: clone_metrics(&r),
        })
    }

    /// Replication of one table into the target metastore.
    pub async fn replicate_table(
        &self,
        t: &SourceTable,
    ) -> Result<Step, (Vec<String>, DatabricksError)> {
        let mut ids = Vec::new();
        let r = self.replicate_inner(t, &mut ids).await;
        r.map_err(|e| (ids, e))
    }

    async fn replicate_inner(
        &self,
        t: &SourceTable,
        ids: &mut Vec<String>,
    ) -> Result<Step, DatabricksError> {
        let name = t.name()?;
        let m = self.mapping(t);
        let target_catalog = Ident::new(&m.target())?;
        let target = name.in_catalog(&target_catalog);
        let existing = self.target.get_table(&target.full_name()).await?;
        let source_info = self.with_columns(t).await?;
        let (from, into) = if t.is_streaming() {
            let st = existing.as_ref().ok_or_else(|| {
                DatabricksError::Refused(format!(
                    "streaming table {target} does not exist in the target: create it with its pipeline first"
                ))
            })?;
            if st.kind() != TableType::StreamingTable {
                return Err(DatabricksError::Refused(format!(
                    "{target} is a {} in the target, not a STREAMING_TABLE",
                    st.table_type
                )));
            }
            let pipeline = st.pipeline().ok_or_else(|| {
                DatabricksError::Refused(format!(
                    "target streaming table {target} has no `pipelines.pipelineId` property"
                ))
            })?;
            self.enforce_schema(&source_info, st, true)?;
            (
                name.in_catalog(&Ident::new(&m.shared_backup())?),
                find_backing_table(&self.target, pipeline, &target).await?,
            )
        } else {
            if let Some(existing) = &existing {
                if !matches!(existing.kind(), TableType::Managed | TableType::External) {
                    return Err(DatabricksError::Refused(format!(
                        "{target} is a {} in the target; refusing to replace it with a table",
                        existing.table_type
                    )));
                }
                self.enforce_schema(&source_info, existing, self.config.enforce_schema)?;
            } else {
                self.ensure_schema(&self.target, &target_catalog, &name.schema, ids)
                    .await?;
            }
            (name.in_catalog(&Ident::new(&m.shared())?), target)
        };
        let sql = format!(
            "CREATE OR REPLACE TABLE {} DEEP CLONE {}",
            into.quoted(),
            from.quoted()
        );
        let r = self.run_sql(&self.target, &sql, ids).await?;
        Ok(Step {
            statement_ids: ids.clone(),
            metrics: clone_metrics(&r),
        })
    }

    /// Refuse to replace `target` when its columns differ from the source's.
    fn enforce_schema(
        &self,
        source: &TableInfo,
        target: &TableInfo,
        enforce: bool,
    ) -> Result<(), DatabricksError> {
        let diff = column_diff(source, target);
        if enforce && !diff.is_empty() && !source.columns.is_empty() {
            return Err(DatabricksError::Refused(format!(
                "schema enforcement: {}.{}.{} differs from its source: {}",
                target.catalog_name,
                target.schema_name,
                target.name,
                diff.join("; ")
            )));
        }
        if !diff.is_empty() {
            tracing::warn!(table = %format!("{}.{}.{}", source.catalog_name, source.schema_name, source.name), differences = %diff.join("; "), "target schema will be replaced by the source's");
        }
        Ok(())
    }

    /// Reconciliation of one table: row counts, schema, missing and extra rows by key.
    pub async fn reconcile_table(
        &self,
        t: &SourceTable,
    ) -> Result<Reconciled, (Vec<String>, DatabricksError)> {
        let mut ids = Vec::new();
        let r = self.reconcile_inner(t, &mut ids).await;
        r.map_err(|e| (ids, e))
    }

    async fn reconcile_inner(
        &self,
        t: &SourceTable,
        ids: &mut Vec<String>,
    ) -> Result<Reconciled, DatabricksError> {
        let name = t.name()?;
        let m = self.mapping(t);
        let shared = if t.is_streaming() {
            m.shared_backup()
        } else {
            m.shared()
        };
        let source = name.in_catalog(&Ident::new(&shared)?);
        let target = name.in_catalog(&Ident::new(&m.target())?);
        let target_info = match self.target.get_table(&target.full_name()).await? {
            Some(info) => info,
            // A dry run did not create it; the replication would have, with the source's
            // columns.
            None if self.target.is_dry_run() => self.with_columns(t).await?,
            None => {
                return Err(DatabricksError::Refused(format!(
                    "target table {target} does not exist"
                )));
            }
        };
        let source_info = self.with_columns(t).await?;
        let mut out = Reconciled::default();
        let count = |n: &TableName| format!("SELECT COUNT(*) AS n FROM {}", n.quoted());
        let s = self.run_sql(&self.target, &count(&source), ids).await?;
        let tg = self.run_sql(&self.target, &count(&target), ids).await?;
        if !self.target.is_dry_run() {
            let (sn, tn) = (s.single_u64()?, tg.single_u64()?);
            out.source_rows = Some(sn);
            out.target_rows = Some(tn);
            out.checks.push(Check {
                name: "row_count".into(),
                passed: sn == tn,
                detail: format!("source {sn} rows, target {tn} rows"),
            });
        }
        let diff = column_diff(&source_info, &target_info);
        out.checks.push(Check {
            name: "schema".into(),
            passed: diff.is_empty(),
            detail: if diff.is_empty() {
                format!("{} columns match", source_info.columns.len())
            } else {
                diff.join("; ")
            },
        });
        let keys: Vec<String> = match self.config.reconciliation_keys.get(&t.full_name()) {
            Some(k) => k.clone(),
            None => source_info.columns.iter().map(|c| c.name.clone()).collect(),
        };
        let missing_in_target: Vec<&String> = keys
            .iter()
            .filter(|k| !target_info.columns.iter().any(|c| &c.name == *k))
            .collect();
        if keys.is_empty() || !missing_in_target.is_empty() {
            let detail = if keys.is_empty() {
                "no key columns known for the source".to_owned()
            } else {
                format!("key columns {missing_in_target:?} are missing in the target")
            };
            for name in ["missing_rows", "extra_rows"] {
                out.checks.push(Check {
                    name: name.into(),
                    passed: false,
                    detail: detail.clone(),
                });
            }
        } else {
            let cols = keys
                .iter()
                .map(|k| quote_column(k))
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            // Both directions: rows of the source the target lacks, and rows only the target
            // has (a row count alone misses them when as many rows are missing as are extra).
            for (name, from, other, what) in [
                (
                    "missing_rows",
                    &source,
                    &target,
                    "source rows missing in the target",
                ),
                (
                    "extra_rows",
                    &target,
                    &source,
                    "target rows not in the source",
                ),
            ] {
                let except = format!(
                    "SELECT {cols} FROM {} EXCEPT SELECT {cols} FROM {}",
                    from.quoted(),
                    other.quoted()
                );
                let r = self
                    .run_sql(
                        &self.target,
                        &format!("SELECT COUNT(*) AS n FROM ({except})"),
                        ids,
                    )
                    .await?;
                if self.target.is_dry_run() {
                    continue;
                }
                let n = r.single_u64()?;
                let mut detail = format!("{n} {what} (by {})", keys.join(", "));
                if n > 0 {
                    // Show a few, so the operator knows where to look.
                    let sample = format!("SELECT {cols} FROM ({except}) LIMIT {ROW_SAMPLE}");
                    let rows = self.run_sql(&self.target, &sample, ids).await?;
                    let shown: Vec<String> = rows
                        .rows
                        .iter()
                        .map(|r| {
                            let vals: Vec<&str> =
                                r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
                            format!("({})", vals.join(", "))
                        })
                        .collect();
                    detail.push_str(&format!(", for example {}", shown.join(" ")));
                }
                out.checks.push(Check {
                    name: name.into(),
                    passed: n == 0,
                    detail,
                });
            }
        }
        out.statement_ids = ids.clone();
        Ok(out)
    }

    /// Source side of Delta Sharing: recipient, shares, schemas in shares, grants. Returns
    /// what was created.
    pub async fn setup_source_sharing(
        &self,
        tables: &[&SourceTable],
    ) -> Result<Vec<String>, DatabricksError> {
        let byo = self.config.sharing.mode == SharingMode::Byo;
        let mut actions = Vec::new();
        let recipient = Ident::new(&self.config.sharing.recipient)?;
        let target_id = self.target.metastore_global_id().await?;
        let check_recipient =
            |r: &crate::client::RecipientInfo| match &r.data_recipient_global_metastore_id {
                Some(id) if id != &target_id => Err(DatabricksError::Refused(format!(
                    "recipient `{recipient}` is for metastore {id}, not the target's {target_id}"
                ))),
                _ => Ok(()),
            };
        match self.source.get_recipient(recipient.as_str()).await? {
            Some(r) => check_recipient(&r)?,
            None if byo => {
                return Err(DatabricksError::Refused(format!(
                    "sharing mode byo: recipient `{recipient}` does not exist in the source metastore"
                )));
            }
            None => match self
                .source
                .create_recipient(recipient.as_str(), &target_id)
                .await
            {
                Ok(()) => actions.push(format!("created recipient {recipient} for {target_id}")),
                // Created meanwhile (a concurrent run): use it if it is the one we need.
                Err(e) if e.is_already_exists() => {
                    tracing::info!(%recipient, "recipient created concurrently; reading it back");
                    let r = self
                        .source
                        .get_recipient(recipient.as_str())
                        .await?
                        .ok_or_else(|| vanished("recipient", recipient.as_str()))?;
                    check_recipient(&r)?;
                }
                Err(e) => return Err(e),
            },
        }
        // share name -> schemas (`catalog.schema`) it must hold
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in tables {
            let m = self.mapping(t);
            let (share, catalog) = if t.is_streaming() {
                (m.backup_share(), m.backup())
            } else {
                (m.share(), m.source.clone())
            };
            wanted
                .entry(share)
                .or_default()
                .insert(format!("{catalog}.{}", t.info.schema_name));
        }
        for (share, schemas) in wanted {
            let share = Ident::new(&share)?;
            let mut created = false;
            let existing = match self.source.get_share(share.as_str()).await? {
                Some(s) => s,
                None if byo => {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: share `{share}` does not exist in the source metastore"
                    )));
                }
                None => match self.source.create_share(share.as_str()).await {
                    Ok(()) => {
                        actions.push(format!("created share {share}"));
                        created = true;
                        crate::client::ShareInfo {
                            name: share.to_string(),
                            objects: Vec::new(),
                        }
                    }
                    // Created meanwhile (a concurrent run): carry on with it as it is.
                    Err(e) if e.is_already_exists() => {
                        tracing::info!(%share, "share created concurrently; reading it back");
                        self.source
                            .get_share(share.as_str())
                            .await?
                            .ok_or_else(|| vanished("share", share.as_str()))?
                    }
                    Err(e) => return Err(e),
                },
            };
            let lacking = |info: &crate::client::ShareInfo, wanted: &[String]| -> Vec<String> {
                wanted
                    .iter()
                    .filter(|s| {
                        !info
                            .objects
                            .iter()
                            .any(|o| o.data_object_type == "SCHEMA" && &&o.name == s)
                    })
                    .cloned()
                    .collect()
            };
            let schemas: Vec<String> = schemas.into_iter().collect();
            let missing = lacking(&existing, &schemas);
            if !missing.is_empty() {
                if byo {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: share `{share}` lacks schemas {missing:?}"
                    )));
                }
                match self
                    .source
                    .add_schemas_to_share(share.as_str(), &missing)
                    .await
                {
                    Ok(()) => {
                        actions.push(format!("added {} to share {share}", missing.join(", ")))
                    }
                    // Some were added meanwhile (a concurrent run): add what still lacks.
                    Err(e) if e.is_already_exists() => {
                        tracing::info!(%share, "schemas added to the share concurrently; reading it back");
                        let now = self
                            .source
                            .get_share(share.as_str())
                            .await?
                            .ok_or_else(|| vanished("share", share.as_str()))?;
                        let still = lacking(&now, &missing);
                        if !still.is_empty() {
                            self.source
                                .add_schemas_to_share(share.as_str(), &still)
                                .await?;
                            actions.push(format!("added {} to share {share}", still.join(", ")));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            // A share just created has no grants (and in a dry run does not exist yet).
            let granted = !created
                && self
                    .source
                    .share_permissions(share.as_str())
                    .await?
                    .into_iter()
                    .any(|(p, privs)| {
                        p == recipient.as_str() && privs.iter().any(|x| x == "SELECT")
                    });
            if !granted {
                if byo {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: recipient `{recipient}` has no SELECT on share `{share}`"
                    )));
                }
                self.source
                    .grant_share(share.as_str(), recipient.as_str())
                    .await?;
                actions.push(format!("granted SELECT on share {share} to {recipient}"));
            }
        }
        Ok(actions)
    }

    /// The provider of the source metastore as the target sees it.
    async fn provider(&self) -> Result<Ident, DatabricksError> {
        if let Some(p) = &self.config.sharing.provider {
            return Ident::new(p);
        }
        let source_id = self.source.metastore_global_id().await?;
        let providers = self.target.list_providers().await?;
        match providers
            .iter()
            .find(|p| p.data_provider_global_metastore_id.as_deref() == Some(source_id.as_str()))
        {
            Some(p) => Ident::new(&p.name),
            // A dry run has not created the recipient that would make the provider appear.
            None if self.target.is_dry_run() => Ident::new("provider-of-source"),
            None => Err(DatabricksError::Refused(format!(
                "no provider for the source metastore {source_id} is visible in the target metastore: run the backup operation (it creates the recipient) or set `sharing.provider`"
            ))),
        }
    }

    /// Target side of Delta Sharing: a catalog from each share the tables need.
    pub async fn setup_target_sharing(
        &self,
        tables: &[SourceTable],
    ) -> Result<Vec<String>, DatabricksError> {
        let byo = self.config.sharing.mode == SharingMode::Byo;
        let mut wanted: BTreeMap<String, String> = BTreeMap::new(); // catalog -> share
        for t in tables {
            let m = self.mapping(t);
            if t.is_streaming() {
                wanted.insert(m.shared_backup(), m.backup_share());
            } else {
                wanted.insert(m.shared(), m.share());
            }
        }
        let mut actions = Vec::new();
        let mut provider = None;
        for (catalog, share) in wanted {
            let (catalog, share) = (Ident::new(&catalog)?, Ident::new(&share)?);
            match self.target.get_catalog(catalog.as_str()).await? {
                Some(c) => {
                    if let Some(s) = &c.share_name
                        && s != share.as_str()
                    {
                        return Err(DatabricksError::Refused(format!(
                            "target catalog `{catalog}` is built from share `{s}`, not `{share}`"
                        )));
                    }
                }
                None if byo => {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: catalog `{catalog}` does not exist in the target metastore"
                    )));
                }
                None => {
                    let p = match &provider {
                        Some(p) => p,
                        None => provider.insert(self.provider().await?),
                    };
                    let sql = format!(
                        "CREATE CATALOG IF NOT EXISTS {} USING SHARE {}.{}",
                        catalog.quoted(),
                        p.quoted(),
                        share.quoted()
                    );
                    self.run_sql(&self.target, &sql, &mut Vec::new()).await?;
                    actions.push(format!("created catalog {catalog} using share {p}.{share}"));
                }
            }
        }
        Ok(actions)
    }

    /// Everything the tables' clones need before they can run independently (the fleet
    /// path): backup schemas for streaming tables, then source- and target-side sharing.
    /// Returns what was created.
    pub async fn prepare(&self, tables: &[SourceTable]) -> Result<Vec<String>, DatabricksError> {
        let mut actions = Vec::new();
        let mut done = BTreeSet::new();
        for t in tables.iter().filter(|t| t.is_streaming()) {
            let backup = Ident::new(&self.mapping(t).backup())?;
            let schema = Ident::new(&t.info.schema_name)?;
            if done.insert((backup.clone(), schema.clone())) {
                let mut ids = Vec::new();
                self.ensure_schema(&self.source, &backup, &schema, &mut ids)
                    .await?;
                if !ids.is_empty() {
                    actions.push(format!("created backup schema {backup}.{schema}"));
                }
            }
        }
        let refs: Vec<&SourceTable> = tables.iter().collect();
        actions.extend(self.setup_source_sharing(&refs).await?);
        actions.extend(self.setup_target_sharing(tables).await?);
        Ok(actions)
    }

    /// Check the config, connectivity and access without changing anything.
    pub async fn validate(&self) -> Vec<Probe> {
        let mut out = Vec::new();
        let mut probe = |check: String, r: Result<String, DatabricksError>| {
            out.push(match r {
                Ok(detail) => Probe {
                    check,
                    ok: true,
                    detail,
                },
                Err(e) => Probe {
                    check,
                    ok: false,
                    detail: e.to_string(),
                },
            })
        };
        for (side, c) in [("source", &self.source), ("target", &self.target)] {
            probe(
                format!("{side}: Unity Catalog metastore"),
                c.metastore_global_id()
                    .await
                    .map(|id| format!("global ID {id}")),
            );
            probe(
                format!("{side}: SQL warehouse"),
                c.execute("SELECT 1 AS ok")
                    .await
                    .map(|r| format!("statement {} succeeded", r.statement_id)),
            );
        }
        for m in &self.config.catalogs {
            probe(
                format!("source: catalog {}", m.source),
                match self.source.get_catalog(&m.source).await {
                    Ok(Some(_)) => self
                        .source
                        .list_schemas(&m.source)
                        .await
                        .map(|s| format!("{} schemas readable", s.len())),
                    Ok(None) => Err(DatabricksError::Refused("does not exist".into())),
                    Err(e) => Err(e),
                },
            );
            for (what, name) in [("catalog", m.shared()), ("catalog", m.shared_backup())] {
                let r = self.target.get_catalog(&name).await;
                let byo = self.config.sharing.mode == SharingMode::Byo;
                probe(
                    format!("target: shared {what} {name}"),
                    match r {
                        Ok(Some(_)) => Ok("exists".into()),
                        Ok(None) if byo => Err(DatabricksError::Refused(
                            "does not exist (sharing mode byo)".into(),
                        )),
                        Ok(None) => Ok("missing; replication creates it".into()),
                        Err(e) => Err(e),
                    },
                );
            }
        }
        // Read access the operations need: every table listed, the streaming tables'
        // backing tables visible, the sharing objects readable on both sides.
        let byo = self.config.sharing.mode == SharingMode::Byo;
        let exists = |r: Result<bool, DatabricksError>, creates: &str| match r {
            Ok(true) => Ok("exists".to_owned()),
            Ok(false) if byo => Err(DatabricksError::Refused(
                "does not exist (sharing mode byo)".into(),
            )),
            Ok(false) => Ok(format!("missing; {creates} creates it")),
            Err(e) => Err(e),
        };
        match self.discover().await {
            Err(e) => probe("source: list tables".into(), Err(e)),
            Ok(tables) => {
                probe(
                    "source: list tables".into(),
                    Ok(format!("{} tables readable", tables.len())),
                );
                for t in tables.iter().filter(|t| t.is_streaming()) {
                    let r = match self.with_columns(t).await {
                        Err(e) => Err(e),
                        Ok(info) => match (t.name(), info.pipeline()) {
                            (Err(e), _) => Err(e),
                            (_, None) => Err(DatabricksError::Refused(
                                "no `pipelines.pipelineId` property".into(),
                            )),
                            (Ok(n), Some(p)) => find_backing_table(&self.source, p, &n)
                                .await
                                .map(|b| format!("backing table {b} readable")),
                        },
                    };
                    probe(format!("source: streaming table {}", t.full_name()), r);
                }
            }
        }
        let recipient = &self.config.sharing.recipient;
        probe(
            format!("source: recipient {recipient}"),
            exists(
                self.source
                    .get_recipient(recipient)
                    .await
                    .map(|r| r.is_some()),
                "backup",
            ),
        );
        for m in &self.config.catalogs {
            for share in [m.share(), m.backup_share()] {
                probe(
                    format!("source: share {share}"),
                    exists(
                        self.source.get_share(&share).await.map(|s| s.is_some()),
                        "backup",
                    ),
                );
            }
        }
        probe(
            "target: Delta Sharing providers".into(),
            self.target
                .list_providers()
                .await
                .map(|p| format!("{} providers visible", p.len())),
        );
        out
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

/// Differences between two tables' columns, one line each.
pub fn column_diff(source: &TableInfo, target: &TableInfo) -> Vec<String> {
    let mut out = Vec::new();
    for c in &source.columns {
        match target.columns.iter().find(|t| t.name == c.name) {
            None => out.push(format!("column `{}` is missing in the target", c.name)),
            Some(t) => {
                if !t.type_text.eq_ignore_ascii_case(&c.type_text) {
                    out.push(format!(
                        "column `{}` is {} in the target, {} in the source",
                        c.name, t.type_text, c.type_text
                    ));
                }
                if t.nullable != c.nullable {
                    out.push(format!(
                        "column `{}` is nullable={} in the target, nullable={} in the source",
                        c.name, t.nullable, c.nullable
                    ));
                }
            }
        }
    }
    for t in &target.columns {
        if !source.columns.iter().any(|c| c.name == t.name) {
            out.push(format!("column `{}` exists only in the target", t.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_table_names() {
        let st = TableName::new("c", "s", "ev`ents").unwrap();
        let c = backing_table_candidates("1a2b-3c", &st).unwrap();
        let quoted: Vec<String> = c.iter().map(TableName::quoted).collect();
        assert_eq!(
            quoted,
            [
                "`__databricks_internal`.`__dlt_materialization_schema_1a2b_3c`.`ev``ents`",
                "`__databricks_internal`.`__dlt_materialization_schema_1a2b_3c`.`__materialization_mat_1a2b_3c_ev``ents_1`",
                "`c`.`s`.`__materialization_mat_1a2b_3c_ev``ents_1`",
                "`__databricks_internal`.`__dlt_materialization_schema_1a2b_3c`.`__materialization_mat_ev``ents_1`",
            ]
        );
    }

    #[test]
    fn operations_parse() {
        assert_eq!("backup".parse::<DbOperation>(), Ok(DbOperation::Backup));
        assert!("clone".parse::<DbOperation>().is_err());
    }

    #[test]
    fn columns_are_quoted() {
        assert_eq!(quote_column("a`b c.d").unwrap(), "`a``b c.d`");
        assert!(quote_column("").is_err());
        assert!(quote_column("a\u{0}").is_err());
    }
}
