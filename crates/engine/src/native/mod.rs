//! The native engine: Delta tables on object stores (local, S3, Azure), planned by
//! discovering tables under a root, cloned by `replicator-lake`'s deep clone, checked from
//! both tables' logs and data. No Databricks compute is involved.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use replicator_lake::{CloneOptions, LakeError, StorageRoots, TableLocation, deep_clone, discover};
use replicator_proto::EngineKind;
use replicator_proto::{CloneTask, ReconcileTask, ReplicationRequest};

use crate::{
    CheckContext, Checked, CloneContext, Cloned, Engine, EngineError, Failure, PlannedItem,
};

mod catalog;
pub(crate) use catalog::volume_applied;
pub mod check;
mod depth;
mod ingest;

pub use ingest::{IngestSettings, definition as ingest_definition};

pub use check::{Findings, check_pair};

/// The native Delta engine over the configured storage roots.
#[derive(Clone, Debug, Default)]
pub struct NativeEngine {
    storage: StorageRoots,
    /// How ingestions use memory and size their files (docs/ingest.md).
    ingest: IngestSettings,
}

impl NativeEngine {
    pub fn new(storage: StorageRoots) -> Self {
        Self {
            storage,
            ingest: IngestSettings::default(),
        }
    }

    /// With the ingestion settings of the config's `ingest` section.
    pub fn with_ingest(mut self, ingest: IngestSettings) -> Self {
        self.ingest = ingest;
        self
    }

    /// The storage roots locations are resolved against.
    pub fn storage(&self) -> &StorageRoots {
        &self.storage
    }

    /// A location with its root's storage options.
    pub fn resolve(&self, location: &str) -> Result<TableLocation, LakeError> {
        self.storage.resolve(location)
    }

    fn roots(&self, request: &ReplicationRequest) -> Result<Roots, LakeError> {
        let roots = Roots {
            source: self.resolve(&request.source_root)?,
            target: self.resolve(&request.target_root)?,
            external: self.external_roots(&request.external_roots)?,
        };
        if roots.source.overlaps(&roots.target) {
            return Err(LakeError::Invalid(format!(
                "source root {} and target root {} overlap",
                roots.source, roots.target
            )));
        }
        Ok(roots)
    }

    fn external_roots(&self, roots: &[String]) -> Result<Vec<TableLocation>, LakeError> {
        roots.iter().map(|r| self.resolve(r)).collect()
    }

    /// The clone options of a task: its version, `replace` and external roots.
    fn clone_options(
        &self,
        task: &CloneTask,
        ctx: &CloneContext,
    ) -> Result<CloneOptions, LakeError> {
        Ok(CloneOptions {
            version: task.version,
            // A sync group's consistent cut: every table as of one instant.
            timestamp: task.as_of,
            parallelism: ctx.parallelism,
            progress: ctx.progress.clone(),
            // A target that is not this source's replica fails permanently unless the run
            // says `clone.replace`.
            replace: task.replace,
            external_roots: self.external_roots(&task.external_roots)?,
            ..Default::default()
        })
    }
}

struct Roots {
    source: TableLocation,
    target: TableLocation,
    external: Vec<TableLocation>,
}

#[async_trait]
impl Engine for NativeEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Native
    }

    async fn plan(
        &self,
        request: &ReplicationRequest,
        dry_run: bool,
        parallelism: usize,
    ) -> Result<Vec<PlannedItem>, EngineError> {
        let roots = self.roots(request)?;
        let tables = discover(&roots.source, &request.tables).await?;
        if request.version.is_some() && tables.len() != 1 {
            return Err(EngineError::PinnedVersion(tables.len()));
        }
        let mut items = Vec::with_capacity(tables.len());
        for t in &tables {
            items.push(PlannedItem::new(
                t.name.clone(),
                roots.source.child(&t.relative)?.url().to_string(),
                roots.target.child(&t.relative)?.url().to_string(),
            ));
        }
        if !dry_run {
            return Ok(items);
        }
        // A dry run is the clone's plan without its execution, per table, in parallel.
        let (version, as_of) = (request.version, request.as_of);
        let (replace, external) = (request.replace, &roots.external);
        let items = stream::iter(items.into_iter().map(|mut item| async move {
            let options = CloneOptions {
                version,
                timestamp: as_of,
                dry_run: true,
                parallelism: 8,
                replace,
                external_roots: external.clone(),
                ..Default::default()
            };
            let src = self.resolve(&item.source)?;
            let dst = self.resolve(&item.target)?;
            match deep_clone(&src, &dst, &options).await {
                Ok(r) => {
                    item.source_version = Some(r.source_version);
                    item.would = Some(r.metrics);
                }
                Err(e) => item.problem = Some(e.to_string()),
            }
            Ok::<_, EngineError>(item)
        }))
        .buffered(parallelism.max(1))
        .try_collect()
        .await?;
        Ok(items)
    }

    async fn clone_table(&self, task: &CloneTask, ctx: &CloneContext) -> Result<Cloned, Failure> {
        if let Some(src) = &task.ingest {
            return self
                .ingest(src, &task.target, ctx.last_watermark.clone())
                .await;
        }
        let source = self.resolve(&task.source)?;
        let target = self.resolve(&task.target)?;
        let options = self.clone_options(task, ctx)?;
        let r = deep_clone(&source, &target, &options).await?;
        Ok(Cloned {
            source_version: Some(r.source_version),
            target_version: Some(r.target_version),
            committed: r.committed,
            metrics: Some(r.metrics),
            statement_ids: Vec::new(),
            path: None,
            ingest: None,
        })
    }

    async fn check(
        &self,
        task: &ReconcileTask,
        ctx: &CheckContext<'_>,
    ) -> Result<Checked, Failure> {
        if let Some(src) = &task.ingest {
            return self.check_ingest(src, &task.target).await;
        }
        depth::check(&self.storage, task, ctx).await
    }

    async fn newest_commit_after(
        &self,
        location: &str,
        instant: DateTime<Utc>,
    ) -> Result<Option<(u64, DateTime<Utc>)>, EngineError> {
        let table = self.resolve(location)?;
        Ok(replicator_lake::unchanged::newest_commit_after(&table, instant).await?)
    }

    /// From the log's listing and its latest commit only (no snapshot is loaded).
    async fn table_version(&self, location: &str) -> Result<u64, EngineError> {
        let table = self.resolve(location)?;
        match replicator_lake::unchanged::log_point(&table, None, None).await? {
            Some(p) => Ok(p.version),
            None => Err(replicator_lake::LakeError::NotATable {
                url: table.url().to_string(),
            }
            .into()),
        }
    }

    /// From the latest snapshot's schema: top-level columns, Delta type names (a struct,
    /// array or map as its Delta type's JSON).
    async fn table_columns(&self, location: &str) -> Result<Vec<(String, String)>, EngineError> {
        let table = self.resolve(location)?;
        let info = replicator_lake::inspect::table_info(&table, None).await?;
        Ok(info
            .columns
            .into_iter()
            .map(|(name, ty, _)| {
                let ty = ty.as_str().map_or_else(|| ty.to_string(), str::to_owned);
                (name, ty)
            })
            .collect())
    }

    async fn restore(&self, location: &str, version: u64) -> Result<String, EngineError> {
        let table = self.resolve(location)?;
        let r = replicator_lake::restore::restore(&table, version).await?;
        Ok(match r.new_version {
            Some(v) if r.committed => format!(
                "{table}: restored version {version} as version {v} ({} files added, {} removed)",
                r.files_added, r.files_removed
            ),
            _ => format!("{table}: already at version {version}"),
        })
    }

    async fn plan_objects(
        &self,
        request: &ReplicationRequest,
        settings: &replicator_common::config::CatalogSettings,
    ) -> Result<Vec<crate::PlannedObject>, EngineError> {
        self.plan_volumes(request, settings).await
    }

    async fn apply_object(
        &self,
        task: &replicator_proto::CatalogTask,
        ctx: &crate::ObjectContext,
    ) -> Result<crate::Applied, Failure> {
        self.apply_volume(task, ctx).await
    }

    async fn diff_objects(
        &self,
        request: &ReplicationRequest,
        settings: &replicator_common::config::CatalogSettings,
    ) -> Result<Vec<crate::Difference>, EngineError> {
        self.diff_volumes(request, settings).await
    }

    async fn probe(&self, request: &ReplicationRequest) -> anyhow::Result<Vec<String>> {
        // Ingest sources: each reachable, its columns of types ingestion carries.
        let mut found = Vec::new();
        for src in &request.ingest {
            let target = self.probe_ingest(src).await?;
            found.push(format!("{} → {target}", src.name));
        }
        if request.source_root.trim().is_empty() && !request.ingest.is_empty() {
            self.resolve(&request.target_root).context("target.root")?;
            return Ok(found);
        }
        let source = self.resolve(&request.source_root).context("source.root")?;
        tracing::debug!(source = %source, filter = ?request.tables, "validating");
        let target = self.resolve(&request.target_root).context("target.root")?;
        anyhow::ensure!(
            !source.overlaps(&target),
            "source.root and target.root overlap"
        );
        for (i, root) in request.external_roots.iter().enumerate() {
            self.resolve(root)
                .with_context(|| format!("clone.external_roots[{i}]"))?;
        }
        let tables = discover(&source, &request.tables)
            .await
            .context("source.root")?;
        found.extend(tables.into_iter().map(|t| t.name));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use replicator_lake::sample;
    use replicator_proto::{Header, Operation, TableFilter};

    use super::*;

    fn request(root: &std::path::Path, include: &[&str]) -> ReplicationRequest {
        ReplicationRequest {
            ingest: Vec::new(),
            header: Header::new(uuid::Uuid::now_v7()),
            operation: Operation::All,
            source_root: root.join("source").display().to_string(),
            target_root: root.join("target").display().to_string(),
            tables: TableFilter {
                include: include.iter().map(|s| (*s).to_owned()).collect(),
                exclude: Vec::new(),
            },
            version: None,
            requested_by: None,
            engine: EngineKind::Native,
            replace: false,
            external_roots: Vec::new(),
            as_of: None,
            group: None,
            catalog: false,
            mirror: false,
        }
    }

    async fn estate() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = TableLocation::parse(dir.path().join("source").to_str().unwrap()).unwrap();
        sample::demo_estate(&root).await.unwrap();
        dir
    }

    #[tokio::test]
    async fn a_request_expands_into_one_item_per_selected_table_under_both_roots() {
        let dir = estate().await;
        let engine = NativeEngine::default();
        let items = engine
            .plan(&request(dir.path(), &["sales.*"]), false, 1)
            .await
            .unwrap();
        let names: Vec<&str> = items.iter().map(|i| i.table.as_str()).collect();
        assert_eq!(names, ["sales.customers", "sales.orders"]);
        for item in &items {
            let relative = item.table.replace('.', "/");
            assert!(
                item.source.ends_with(&format!("/source/{relative}/")),
                "{}",
                item.source
            );
            assert!(
                item.target.ends_with(&format!("/target/{relative}/")),
                "{}",
                item.target
            );
            assert_eq!((item.would.as_ref(), item.problem.as_ref()), (None, None));
        }
        assert_ne!(items[0].task_id, items[1].task_id);
    }

    #[tokio::test]
    async fn a_dry_run_says_what_each_clone_would_copy_and_writes_nothing() {
        let dir = estate().await;
        let items = NativeEngine::default()
            .plan(&request(dir.path(), &["sales.orders"]), true, 2)
            .await
            .unwrap();
        let would = items[0].would.as_ref().expect("dry run fills `would`");
        assert!(items[0].source_version.is_some());
        assert_eq!(would.num_copied_files, 3);
        assert!(!dir.path().join("target").exists(), "nothing written");
    }

    #[tokio::test]
    async fn a_pinned_version_needs_exactly_one_table() {
        let dir = estate().await;
        let mut r = request(dir.path(), &["*"]);
        r.version = Some(0);
        let err = NativeEngine::default()
            .plan(&r, false, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::PinnedVersion(4)), "{err}");
    }

    #[tokio::test]
    async fn overlapping_roots_are_refused() {
        let dir = estate().await;
        let mut r = request(dir.path(), &["*"]);
        r.target_root = dir.path().join("source/sales").display().to_string();
        let err = NativeEngine::default()
            .plan(&r, false, 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
    }
}
