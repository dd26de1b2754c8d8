//! The catalog worker: consumes `tasks.catalog` (schemas, views, volumes, grants, tags —
//! docs/catalog.md), applies each object with the engine the task names, and publishes a
//! [`CatalogResult`] (`catalog.applied` / `catalog.failed`). It runs in the cloner process.
//!
//! An object that depends on one the target does not have yet (a view over a table still
//! being cloned) is not failed: the delivery is deferred ([`Work::not_yet`]) until
//! `catalog.wait_minutes` after the run was planned; then it fails naming what is missing.
//!
//! The last catalog task of a run is its **inventory check** ([`ObjectKind::Inventory`]):
//! it waits until every other catalog object of the run has settled (however long a volume
//! copy takes), then runs the engine's inventory diff over the run's request and records
//! the differences as its findings. A difference (missing, extra, different) makes the task,
//! and so the run, `mismatched`; objects reported by design (a materialized view) are
//! findings only.
//!
//! The Snowflake mirror ([`ObjectKind::Mirror`], docs/snowflake.md) is a catalog task too: it
//! waits until the run's tables are copied, then exposes them in Snowflake.

use std::time::Duration;

use async_trait::async_trait;
use replicator_bus::{BusRef, typed};
use replicator_common::config::CatalogSettings;
use replicator_engine::{Applied, Engines, Failure, ObjectContext, inventory_applied};
use replicator_proto::{
    CatalogOutcome, CatalogResult, CatalogTask, ErrorKind, Header, ObjectKind, names,
};
use replicator_store::{Recorded, Stage, StageEnd, Store};
use replicator_worker::Work;
use uuid::Uuid;

/// The catalog worker's work: one object by the task's engine.
pub(crate) struct Cataloger {
    pub(crate) engines: Engines,
    pub(crate) settings: CatalogSettings,
    pub(crate) parallelism: usize,
    pub(crate) store: Store,
}

impl Cataloger {
    /// The inventory check of `task`'s run: waits while other catalog objects of the run
    /// are in flight, then diffs the run's whole scope.
    async fn inventory(&self, task: &CatalogTask) -> Result<Applied, Failure> {
        let run_id = task.header.run_id;
        let store_error = |e: replicator_store::StoreError| {
            Failure::new(
                ErrorKind::Transient,
                format!("inventory {}: the state store: {e}", task.name),
                true,
            )
        };
        // The other catalog objects, and the run's tables: volume discovery on the target
        // tells a table's directory from a file tree by its `_delta_log`, so a table still
        // being copied would make its directory look like a volume.
        let pending = self
            .store
            .catalog_in_flight(run_id)
            .await
            .map_err(store_error)?
            + self
                .store
                .tables_copying(run_id)
                .await
                .map_err(store_error)?;
        if pending > 0 {
            return Err(Failure {
                waits: true,
                ..Failure::new(
                    ErrorKind::Transient,
                    format!(
                        "inventory {} waits for {pending} catalog object(s) or table(s) of the run still in flight",
                        task.name
                    ),
                    false,
                )
            });
        }
        let request = self
            .store
            .run_request(run_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                Failure::new(
                    ErrorKind::Permanent,
                    format!(
                        "inventory {}: run {run_id} is not in the state store",
                        task.name
                    ),
                    false,
                )
            })?;
        let engine = self
            .engines
            .get_for(task.engine, &request.source_root)
            .map_err(|e| Failure::new(ErrorKind::Permanent, e.to_string(), false))?;
        let diffs = engine
            .diff_objects(&request, &self.settings)
            .await
            .map_err(|e| {
                Failure::new(
                    ErrorKind::Transient,
                    format!("inventory {}: {e}", task.name),
                    true,
                )
            })?;
        Ok(inventory_applied(&diffs))
    }
}

#[async_trait]
impl Work for Cataloger {
    type Task = CatalogTask;
    type Output = Applied;
    type Error = Failure;
    type Result = CatalogResult;
    const SERVICE: &'static str = "catalog";
    const STAGE: Stage = Stage::Catalog;

    fn queue(&self) -> &'static str {
        names::CATALOG_TASKS
    }

    fn span(t: &CatalogTask) -> tracing::Span {
        tracing::info_span!("catalog", run_id = %t.header.run_id, task_id = %t.task_id, kind = %t.kind, object = %t.name, attempt = t.attempt)
    }

    fn ids(task: &CatalogTask) -> (Uuid, u32) {
        (task.task_id, task.attempt)
    }

    /// One apply of an object's target at a time, fleet-wide.
    fn lease_key(&self, task: &CatalogTask) -> Option<String> {
        let shard = task
            .shard
            .map(|s| format!("#{}/{}", s.index, s.count))
            .unwrap_or_default();
        Some(format!("{}:{}{shard}", task.kind, task.target))
    }

    async fn attempt(&self, task: &CatalogTask) -> Result<Applied, Failure> {
        if task.kind == ObjectKind::Inventory {
            return self.inventory(task).await;
        }
        if task.kind == ObjectKind::Mirror {
            // The mirror exposes the run's tables as the run leaves them: after their copies.
            let copying = self
                .store
                .tables_copying(task.header.run_id)
                .await
                .map_err(|e| {
                    Failure::new(
                        ErrorKind::Transient,
                        format!("mirror {}: the state store: {e}", task.name),
                        true,
                    )
                })?;
            if copying > 0 {
                return Err(Failure {
                    waits: true,
                    ..Failure::new(
                        ErrorKind::Transient,
                        format!(
                            "mirror {} waits for {copying} table(s) of the run still being copied",
                            task.name
                        ),
                        false,
                    )
                });
            }
        }
        let ctx = ObjectContext {
            dry_run: false,
            settings: self.settings.clone(),
            parallelism: self.parallelism,
        };
        self.engines.apply_object(task, &ctx).await
    }

    fn not_yet(&self, task: &CatalogTask, error: &Failure) -> Option<String> {
        // The inventory waits as long as the objects it waits for: each of them settles
        // (applied, or failed after its own retries and wait).
        if matches!(task.kind, ObjectKind::Inventory | ObjectKind::Mirror) {
            return error.waits.then(|| error.to_string());
        }
        let budget = chrono::Duration::minutes(self.settings.wait_minutes as i64);
        (error.waits && chrono::Utc::now() - task.header.created_at < budget)
            .then(|| error.to_string())
    }

    fn result(
        &self,
        task: &CatalogTask,
        outcome: Result<Applied, Failure>,
        retries: u32,
        took: Duration,
    ) -> CatalogResult {
        let mut msg = CatalogResult {
            header: Header::new(task.header.run_id),
            task_id: task.task_id,
            attempt: task.attempt,
            kind: task.kind,
            name: task.name.clone(),
            source: task.source.clone(),
            target: task.target.clone(),
            outcome: CatalogOutcome::Failed,
            statements: Vec::new(),
            findings: Vec::new(),
            files_copied: 0,
            bytes_copied: 0,
            files_deleted: 0,
            files_unchanged: 0,
            mismatches: 0,
            error: None,
            retries,
            duration_ms: took.as_millis() as u64,
        };
        match outcome {
            Ok(a) => {
                msg.outcome = a.outcome();
                if msg.outcome == CatalogOutcome::Mismatched {
                    tracing::warn!(differences = a.mismatches, findings = ?a.findings, "the target's catalog differs from the source's");
                }
                tracing::info!(outcome = ?msg.outcome, statements = a.statements.len(), findings = a.findings.len(), files = a.files_copied, "catalog object done");
                replicator_common::metrics::bytes_copied(a.bytes_copied);
                msg.statements = a.statements;
                msg.findings = a.findings;
                msg.files_copied = a.files_copied;
                msg.bytes_copied = a.bytes_copied;
                msg.files_deleted = a.files_deleted;
                msg.files_unchanged = a.files_unchanged;
                msg.mismatches = a.mismatches;
            }
            Err(f) => {
                tracing::error!(error = %f, retries, "catalog object failed");
                msg.statements = f.statement_ids.clone();
                msg.error = Some(f.error);
            }
        }
        msg
    }

    /// The Snowflake mirror reads the run's tables and writes Snowflake's objects; other
    /// catalog objects send no lineage events.
    fn lineage(&self, task: &CatalogTask) -> Option<replicator_lineage::TaskLineage> {
        (task.kind == ObjectKind::Mirror).then(|| {
            let l = replicator_lineage::TaskLineage::new(
                task.header.run_id,
                task.task_id,
                format!("mirror {}", task.name),
            )
            .output(task.target.clone())
            .attempt(task.attempt);
            if task.source.is_empty() {
                l
            } else {
                l.input(task.source.clone())
            }
        })
    }

    async fn lineage_end(
        &self,
        lineage: &replicator_lineage::TaskLineage,
        result: &CatalogResult,
        emitter: &replicator_lineage::Emitter,
    ) {
        match &result.error {
            Some(e) => emitter.task_failed(lineage, &e.message),
            None => emitter.task_completed(lineage, &replicator_lineage::TaskMetrics::default()),
        }
    }

    fn failure(result: &CatalogResult) -> Option<&str> {
        result.error.as_ref().map(|e| e.message.as_str())
    }

    async fn record(
        &self,
        _task: &CatalogTask,
        msg: &CatalogResult,
        end: &StageEnd,
        bus: &BusRef,
        store: &Store,
    ) -> anyhow::Result<Recorded> {
        let recorded = store.record_catalog(msg, end).await?;
        if recorded.first {
            let key = if msg.outcome == CatalogOutcome::Failed {
                names::events::CATALOG_FAILED
            } else {
                names::events::CATALOG_APPLIED
            };
            typed::publish_event(bus.as_ref(), key, msg).await?;
        }
        Ok(recorded)
    }
}
