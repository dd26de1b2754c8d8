//! The Databricks engine: Unity Catalog tables replicated between two workspaces by
//! `DEEP CLONE` on their SQL warehouses, through Delta Sharing.
//!
//! A Databricks location is `databricks:<workspace URL>/<catalog.schema.table>`; the root
//! `databricks:<source workspace URL>` names the engine built from the config's
//! `databricks` section. Planning expands the source through Unity Catalog and (unless a dry
//! run) sets up Delta Sharing idempotently, so every clone task can run on its own; a clone
//! backs a streaming table up on the source, then replicates it on the target; a check runs
//! row counts, schema and missing rows as SQL on the target warehouse. Statement-level
//! retries happen inside; every result carries the statement IDs.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use replicator_common::config::CatalogSettings;
use replicator_common::databricks::{CloneMode, DatabricksConfig};

use crate::databricks_storage::StorageClone;
use replicator_databricks::ops::{Reconciled, SourceTable, Step};
use replicator_databricks::{DatabricksError, Ident, TableName};
use replicator_proto::EngineKind;
use replicator_proto::{
    CatalogTask, CloneTask, ErrorKind, ReconcileTask, ReplicationRequest, ValidationDepth,
};

use crate::{
    Applied, CheckContext, Checked, CloneContext, Cloned, Difference, Engine, EngineError, Failure,
    ObjectContext, PlannedItem, PlannedObject,
};

/// Scheme prefix of Databricks locations.
pub const SCHEME: &str = "databricks:";

/// The source and target roots of a `databricks` section.
pub fn roots(config: &DatabricksConfig) -> (String, String) {
    config.roots()
}

/// `databricks:<host>/<catalog.schema.table>` → (`databricks:<host>`, `catalog.schema.table`).
pub fn split(location: &str) -> Option<(&str, &str)> {
    let rest = location.strip_prefix(SCHEME)?;
    let (_, after_scheme) = rest.split_once("://")?;
    let slash = after_scheme.find('/')?;
    let cut = SCHEME.len() + (rest.len() - after_scheme.len()) + slash;
    Some((&location[..cut], &location[cut + 1..]))
}

/// The Databricks engine of one `databricks` section: both workspaces and the catalogs.
pub struct DatabricksEngine {
    pair: Arc<replicator_databricks::WorkspacePair>,
    source_root: String,
    target_root: String,
    /// `clone_mode: storage`: the worker's storage options (endpoint, region) per side.
    storage: crate::databricks_storage::SideOptions,
}

impl DatabricksEngine {
    pub(crate) fn pair(&self) -> &replicator_databricks::WorkspacePair {
        &self.pair
    }

    pub(crate) fn source_root(&self) -> &str {
        &self.source_root
    }

    pub(crate) fn target_root(&self) -> &str {
        &self.target_root
    }

    /// Build the engine of a `databricks` section (secrets read now, from their references).
    pub fn from_config(config: &DatabricksConfig) -> Result<Self, DatabricksError> {
        Self::with_catalog(config, None)
    }

    /// [`Self::from_config`], with the config's `catalog` section: external tables go to
    /// their mapped locations (cloned, or registered with `external_tables: register`).
    pub fn with_catalog(
        config: &DatabricksConfig,
        catalog: Option<&CatalogSettings>,
    ) -> Result<Self, DatabricksError> {
        let placement = catalog.map(|c| replicator_databricks::ops::ExternalPlacement {
            register: c.external_tables == replicator_common::config::ExternalTables::Register,
            mapping: c.mapping.clone(),
        });
        let pair = Arc::new(
            replicator_databricks::WorkspacePair::from_config(config, false)?
                .with_external_placement(placement),
        );
        let (source_root, target_root) = roots(config);
        Ok(Self {
            pair,
            source_root,
            target_root,
            storage: Default::default(),
        })
    }

    /// The storage options (endpoint, region; object_store keys) of the object stores the
    /// source and target tables live in, for `clone_mode: storage`: the config's
    /// `source.storage` and `target.storage`. Credentials among them are never used: Unity
    /// Catalog vends those.
    pub fn with_storage_options(
        mut self,
        source: std::collections::BTreeMap<String, String>,
        target: std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.storage = crate::databricks_storage::SideOptions {
            source: Arc::new(source),
            target: Arc::new(target),
        };
        self
    }

    /// The source table a task's location names, looked up in Unity Catalog.
    async fn source_table(&self, location: &str) -> Result<SourceTable, DatabricksError> {
        let (root, full_name) = split(location).unwrap_or((location, ""));
        if root != self.source_root {
            return Err(DatabricksError::Config(format!(
                "no Databricks engine for {root}: this worker's config needs the same `databricks` section"
            )));
        }
        // Refuse names that cannot be quoted before any request carries them.
        TableName::parse(full_name)?;
        self.pair.source_table(full_name).await
    }

    /// Clone one table (as of `as_of`, a sync group's cut, when given): a streaming table is
    /// backed up on the source, then replicated; other tables are replicated, and the
    /// version the clone left the target at is read (`DESCRIBE HISTORY`) for a cut to
    /// record. A streaming table's clone goes into its backing table: that table's version
    /// is read (and `restore` restores that table).
    async fn replicate(
        &self,
        source: &str,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(Step, Option<u64>), (Vec<String>, DatabricksError)> {
        let t = self
            .source_table(source)
            .await
            .map_err(|e| (Vec::new(), e))?;
        let mut ids = Vec::new();
        if t.is_streaming() {
            let b = self.pair.backup_table(&t, as_of).await?;
            ids = b.statement_ids;
        }
        match self.pair.replicate_table(&t, as_of).await {
            Ok(mut step) => {
                ids.append(&mut step.statement_ids);
                let target = self.target_name(&t).map_err(|e| (ids.clone(), e))?;
                let (version, mut more) = self
                    .pair
                    .target_version(&target)
                    .await
                    .map_err(|e| (ids.clone(), e))?;
                ids.append(&mut more);
                let version = Some(version);
                step.statement_ids = ids;
                Ok((step, version))
            }
            Err((mut more, e)) => {
                ids.append(&mut more);
                Err((ids, e))
            }
        }
    }

    /// The target table a location names; only the configured target workspace's.
    fn target_table(&self, location: &str) -> Result<TableName, DatabricksError> {
        match split(location) {
            Some((root, full_name)) if root == self.target_root => TableName::parse(full_name),
            _ => Err(DatabricksError::Config(format!(
                "{location} is not a table of this engine's target workspace ({})",
                self.target_root
            ))),
        }
    }

    /// The target table of a source table, as planning maps it.
    fn target_name(&self, t: &SourceTable) -> Result<TableName, DatabricksError> {
        let catalog = Ident::new(&self.pair.config().catalogs[t.mapping].target())?;
        Ok(t.name()?.in_catalog(&catalog))
    }

    async fn reconcile(&self, source: &str) -> Result<Reconciled, (Vec<String>, DatabricksError)> {
        let t = self
            .source_table(source)
            .await
            .map_err(|e| (Vec::new(), e))?;
        self.pair.reconcile_table(&t).await
    }
}

/// A failure after the engine's own statement retries: final for this task.
pub(crate) fn failure((statement_ids, e): (Vec<String>, DatabricksError)) -> Failure {
    let mut f = Failure::new(e.kind(), e.to_string(), false);
    f.statement_ids = statement_ids;
    f
}

#[async_trait]
impl Engine for DatabricksEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Databricks
    }

    /// Expand the source through Unity Catalog and, unless a dry run, set up Delta Sharing
    /// (backup schemas, recipient, shares, grants, shared catalogs). Views, materialized
    /// views and other unsupported types are left out (logged).
    async fn plan(
        &self,
        request: &ReplicationRequest,
        dry_run: bool,
        _parallelism: usize,
    ) -> Result<Vec<PlannedItem>, EngineError> {
        if request.source_root != self.source_root {
            return Err(DatabricksError::Config(format!(
                "no Databricks engine for {}: this worker's config needs the same `databricks` section",
                request.source_root
            ))
            .into());
        }
        let tables = self.pair.discover().await?;
        // The request's filter, over `catalog.schema.table` (a sync group names its tables).
        let matcher = replicator_lake::TableMatcher::new(&request.tables)?;
        let supported: Vec<SourceTable> = tables
            .into_iter()
            .filter(|t| matcher.matches(&t.full_name()))
            .filter(|t| {
                let ok = t.supported();
                if !ok {
                    tracing::info!(table = %t.full_name(), table_type = %t.info.table_type, "not replicated: unsupported table type");
                }
                ok
            })
            .collect();
        if !dry_run {
            let valid: Vec<SourceTable> = supported
                .iter()
                .filter(|t| t.name().is_ok())
                .cloned()
                .collect();
            self.pair.prepare(&valid).await?;
        }
        Ok(supported
            .iter()
            .map(|t| {
                let target_catalog = self.pair.config().catalogs[t.mapping].target();
                PlannedItem::new(
                    t.full_name(),
                    format!("{}/{}", self.source_root, t.full_name()),
                    format!(
                        "{}/{target_catalog}.{}.{}",
                        self.target_root, t.info.schema_name, t.info.name
                    ),
                )
            })
            .collect())
    }

    async fn clone_table(&self, task: &CloneTask, ctx: &CloneContext) -> Result<Cloned, Failure> {
        if task.ingest.is_some() {
            return Err(not_an_ingest_engine(&task.table));
        }
        let mut fallback = None;
        if self.pair.config().clone_mode == CloneMode::Storage {
            let t = self
                .source_table(&task.source)
                .await
                .map_err(|e| failure((Vec::new(), e)))?;
            match crate::databricks_storage::clone(&self.pair, &self.storage, &t, task, ctx).await?
            {
                StorageClone::Done(c) => return Ok(*c),
                StorageClone::Fallback(reason) => {
                    tracing::warn!(table = %task.table, %reason, "clone_mode storage: using the warehouse DEEP CLONE");
                    fallback = Some(reason);
                }
            }
        }
        let (step, version) = self
            .replicate(&task.source, task.as_of)
            .await
            .map_err(failure)?;
        tracing::info!(statements = ?step.statement_ids, ?version, "databricks clone succeeded");
        Ok(Cloned {
            source_version: None,
            // The version the clone left the target at: a sync group's cut records it for
            // failover.
            target_version: version,
            committed: step
                .metrics
                .as_ref()
                .is_some_and(|m| m.num_copied_files > 0 || m.num_removed_files > 0),
            metrics: step.metrics,
            statement_ids: step.statement_ids,
            ingest: None,
            path: Some(replicator_proto::ClonePath {
                mode: CloneMode::Warehouse.as_str().into(),
                fallback,
                credential_requests: 0,
            }),
        })
    }

    async fn check(
        &self,
        task: &ReconcileTask,
        _ctx: &CheckContext<'_>,
    ) -> Result<Checked, Failure> {
        if task.ingest.is_some() {
            return Err(not_an_ingest_engine(&task.table));
        }
        let r = self.reconcile(&task.source).await.map_err(failure)?;
        Ok(Checked {
            source_version: task.source_version,
            target_version: None,
            source_rows: r.source_rows,
            target_rows: r.target_rows,
            checks: r.checks,
            keys: None,
            partitions: Vec::new(),
            depth: ValidationDepth::Deep,
            statement_ids: r.statement_ids,
        })
    }

    async fn workflow_ended(
        &self,
        workflow: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        Ok(self
            .pair
            .last_successful_run(workflow, since)
            .await?
            .map(|r| r.end_time))
    }

    async fn secondary_activity(&self, workflow: &str) -> Result<Vec<String>, EngineError> {
        Ok(self
            .pair
            .active_runs_in_secondary(workflow)
            .await?
            .into_iter()
            .map(|r| format!("{workflow} run {} in the secondary workspace", r.run_id))
            .collect())
    }

    /// The version of a target table (`DESCRIBE HISTORY … LIMIT 1` on the target warehouse).
    /// The source table's latest commit (`DESCRIBE HISTORY … LIMIT 1` on the source
    /// warehouse), when it is after `instant`.
    async fn newest_commit_after(
        &self,
        location: &str,
        instant: DateTime<Utc>,
    ) -> Result<Option<(u64, DateTime<Utc>)>, EngineError> {
        let t = match split(location) {
            Some((root, full_name)) if root == self.source_root => TableName::parse(full_name)?,
            _ => {
                return Err(DatabricksError::Config(format!(
                    "{location} is not a table of this engine's source workspace ({})",
                    self.source_root
                ))
                .into());
            }
        };
        let (version, at) = self.pair.source_head(&t).await?;
        Ok((at > instant).then_some((version, at)))
    }

    /// The latest version of a table of either workspace (`DESCRIBE HISTORY` on its side's
    /// warehouse; a target streaming table's: its backing table's).
    /// From Unity Catalog (`columns[].type_text`), on the workspace the location names.
    async fn table_columns(&self, location: &str) -> Result<Vec<(String, String)>, EngineError> {
        let Some((root, full_name)) = split(location) else {
            return Ok(Vec::new());
        };
        let ws = if root == self.source_root {
            &self.pair.source
        } else {
            &self.pair.target
        };
        Ok(ws
            .get_table(full_name)
            .await?
            .map(|t| {
                t.columns
                    .into_iter()
                    .map(|c| (c.name, c.type_text))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn table_version(&self, location: &str) -> Result<u64, EngineError> {
        if let Some((root, full_name)) = split(location)
            && root == self.source_root
        {
            return Ok(self
                .pair
                .source_head(&TableName::parse(full_name)?)
                .await?
                .0);
        }
        let t = self.target_table(location)?;
        Ok(self.pair.target_version(&t).await?.0)
    }

    /// Restore a target table to `version` with a new commit (`RESTORE TABLE … TO VERSION
    /// AS OF` on the target warehouse); the statement IDs.
    async fn restore(&self, location: &str, version: u64) -> Result<String, EngineError> {
        let t = self.target_table(location)?;
        let ids = self.pair.restore_target(&t, version).await?;
        Ok(format!(
            "{location} restored to version {version} (statements {})",
            ids.join(", ")
        ))
    }

    async fn plan_objects(
        &self,
        request: &ReplicationRequest,
        settings: &CatalogSettings,
    ) -> Result<Vec<PlannedObject>, EngineError> {
        self.plan_catalog(request, settings).await
    }

    async fn apply_object(
        &self,
        task: &CatalogTask,
        ctx: &ObjectContext,
    ) -> Result<Applied, Failure> {
        self.apply_catalog(task, ctx).await
    }

    async fn diff_objects(
        &self,
        request: &ReplicationRequest,
        settings: &CatalogSettings,
    ) -> Result<Vec<Difference>, EngineError> {
        self.diff_catalog(request, settings).await
    }

    /// Connectivity and access on both workspaces; fails with every check that did not pass.
    async fn probe(&self, _request: &ReplicationRequest) -> anyhow::Result<Vec<String>> {
        let probes = self.pair.probe().await;
        let failed: Vec<String> = probes
            .iter()
            .filter(|p| !p.ok)
            .map(|p| format!("{}: {}", p.check, p.detail))
            .collect();
        anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
        Ok(probes.into_iter().map(|p| p.check).collect())
    }
}

/// Ingestion (docs/ingest.md) writes Delta tables with the native engine only.
fn not_an_ingest_engine(table: &str) -> Failure {
    Failure::new(
        ErrorKind::Permanent,
        format!("ingest {table}: ingestion runs on the native engine, not the Databricks engine"),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_locations() {
        assert_eq!(
            split("databricks:https://h.example:443/c.s.t"),
            Some(("databricks:https://h.example:443", "c.s.t"))
        );
        assert_eq!(
            split("databricks:http://127.0.0.1:9/c.s.we`ird;x"),
            Some(("databricks:http://127.0.0.1:9", "c.s.we`ird;x"))
        );
        assert_eq!(split("/local/path"), None);
    }
}
