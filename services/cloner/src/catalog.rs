//! The catalog worker: consumes `tasks.catalog` (schemas, views, volumes, grants, tags —
//! docs/catalog.md), applies each object with the engine the task names, and publishes a
//! [`CatalogResult`] (`catalog.applied` / `catalog.failed`). It runs in the cloner process.
//!
//! An object that depends on one the target does not have yet (a view over a table still
//! being cloned) is not failed: the delivery is deferred ([`Work::not_yet`]) until
//! `catalog.wait_minutes` after the run was planned; then it fails naming what is missing.

use std::time::Duration;

use async_trait::async_trait;
use replicator_bus::{BusRef, typed};
use replicator_common::config::CatalogSettings;
use replicator_engine::{Applied, Engines, Failure, ObjectContext};
use replicator_proto::{CatalogOutcome, CatalogResult, CatalogTask, ErrorKind, Header, names};
use replicator_store::{Recorded, Stage, Store};
use replicator_worker::Work;
use uuid::Uuid;

/// The catalog worker's work: one object by the task's engine.
pub(crate) struct Cataloger {
    pub(crate) engines: Engines,
    pub(crate) settings: CatalogSettings,
    pub(crate) parallelism: usize,
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
        let engine = self
            .engines
            .get_for(task.engine, &task.source)
            .map_err(|e| Failure::new(ErrorKind::Permanent, e.to_string(), false))?;
        let ctx = ObjectContext {
            dry_run: false,
            settings: self.settings.clone(),
            parallelism: self.parallelism,
        };
        engine.apply_object(task, &ctx).await
    }

    fn not_yet(&self, task: &CatalogTask, error: &Failure) -> Option<String> {
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
            error: None,
            retries,
            duration_ms: took.as_millis() as u64,
        };
        match outcome {
            Ok(a) => {
                msg.outcome = a.outcome();
                tracing::info!(outcome = ?msg.outcome, statements = a.statements.len(), findings = a.findings.len(), files = a.files_copied, "catalog object done");
                replicator_common::metrics::bytes_copied(a.bytes_copied);
                msg.statements = a.statements;
                msg.findings = a.findings;
                msg.files_copied = a.files_copied;
                msg.bytes_copied = a.bytes_copied;
                msg.files_deleted = a.files_deleted;
                msg.files_unchanged = a.files_unchanged;
            }
            Err(f) => {
                tracing::error!(error = %f, retries, "catalog object failed");
                msg.statements = f.statement_ids.clone();
                msg.error = Some(f.error);
            }
        }
        msg
    }

    fn failure(result: &CatalogResult) -> Option<&str> {
        result.error.as_ref().map(|e| e.message.as_str())
    }

    async fn record(
        &self,
        _task: &CatalogTask,
        msg: &CatalogResult,
        bus: &BusRef,
        store: &Store,
    ) -> anyhow::Result<Recorded> {
        let recorded = store.record_catalog(msg).await?;
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
