//! Ingestion on the native engine (docs/ingest.md): a clone task whose `ingest` names a
//! source of rows is loaded into its Delta target by `replicator-ingest` (full load, merge
//! by key, nothing changed → no commit), and the reconcile task that follows it checks the
//! target against the source as the seed's pipeline does: row counts and primary-key
//! consistency.

use replicator_ingest::{
    IngestError, IngestOptions, IngestReport, LoadMode, Source, SourceContext, SourceDefinition,
};
use replicator_proto::{
    Check, CloneMetrics, ErrorKind, IngestMetrics, IngestMode, IngestSource, KeyDiff,
    ValidationDepth,
};

use super::NativeEngine;
use crate::{Checked, Cloned, Failure};

/// How ingestions of this process use memory and size their files (the config's `ingest`
/// section).
#[derive(Clone, Debug)]
pub struct IngestSettings {
    pub memory_budget: u64,
    pub batch_rows: usize,
    pub target_file_size: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        let o = IngestOptions::default();
        Self {
            memory_budget: o.memory_budget,
            batch_rows: o.batch_rows,
            target_file_size: o.target_file_size,
        }
    }
}

impl IngestSettings {
    pub fn from_config(c: &replicator_common::config::IngestConfig) -> Self {
        Self {
            memory_budget: c.memory_budget(),
            batch_rows: c.batch_rows,
            target_file_size: c.target_file_size(),
        }
    }
}

/// The definition an ingest task carries, checked again (a request from any client).
pub fn definition(src: &IngestSource) -> Result<SourceDefinition, Failure> {
    let def: SourceDefinition = serde_json::from_value(src.definition.clone()).map_err(|e| {
        Failure::new(
            ErrorKind::Permanent,
            format!("ingest {}: the source definition: {e}", src.name),
            false,
        )
    })?;
    def.validate().map_err(|e| {
        Failure::new(
            ErrorKind::Permanent,
            format!("ingest {}: {e}", src.name),
            false,
        )
    })?;
    Ok(def)
}

fn failure(src: &IngestSource, e: IngestError) -> Failure {
    let transient = e.is_transient();
    Failure::new(
        if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        },
        format!("ingest {}: {e}", src.name),
        transient,
    )
}

impl NativeEngine {
    /// The task's definition, checked, and its source opened (a connection made, or the
    /// files root resolved with this engine's storage options).
    async fn open_source(
        &self,
        src: &IngestSource,
    ) -> Result<(SourceDefinition, Box<dyn Source>), Failure> {
        let def = definition(src)?;
        let files_root = match &src.files_root {
            Some(root) if !root.trim().is_empty() => {
                Some(self.resolve(root).map_err(|e| failure(src, e.into()))?)
            }
            _ => None,
        };
        let ctx = SourceContext {
            connection: None,
            files_root,
        };
        let source = replicator_ingest::open(&def, &ctx)
            .await
            .map_err(|e| failure(src, e))?;
        Ok((def, source))
    }

    /// Open `src` and read its schema (a connection, a query's columns, the files' first
    /// records): what `--validate-only` and dry runs check. Returns the definition's target.
    pub async fn probe_ingest(&self, src: &IngestSource) -> anyhow::Result<String> {
        let (engine, src) = (self.clone(), src.clone());
        off_thread(move || async move { engine.probe_ingest_here(&src).await })
            .await
            .map_err(|f| anyhow::anyhow!(f.error.message))
    }

    async fn probe_ingest_here(&self, src: &IngestSource) -> Result<String, Failure> {
        let (def, source) = self.open_source(src).await?;
        source.schema().await.map_err(|e| failure(src, e))?;
        Ok(def.target.trim_matches('/').to_owned())
    }

    /// Load `src` into the Delta table at `target`, after `last_watermark` when the
    /// definition has a watermark column and an earlier load stored one.
    pub async fn ingest(
        &self,
        src: &IngestSource,
        target: &str,
        last_watermark: Option<String>,
    ) -> Result<Cloned, Failure> {
        let (engine, src, target) = (self.clone(), src.clone(), target.to_owned());
        off_thread(move || async move { engine.ingest_here(&src, &target, last_watermark).await })
            .await
    }

    async fn ingest_here(
        &self,
        src: &IngestSource,
        target: &str,
        last_watermark: Option<String>,
    ) -> Result<Cloned, Failure> {
        let target = self.resolve(target).map_err(|e| failure(src, e.into()))?;
        let (def, source) = self.open_source(src).await?;
        let options = IngestOptions {
            memory_budget: self.ingest.memory_budget,
            batch_rows: self.ingest.batch_rows,
            target_file_size: self.ingest.target_file_size,
            last_watermark,
        };
        let spec = replicator_ingest::LoadSpec::from_definition(&def);
        let report = replicator_ingest::ingest(source.as_ref(), &spec, &target, &options)
            .await
            .map_err(|e| failure(src, e))?;
        Ok(cloned(&report))
    }

    /// The seed's validation of an ingested target: row counts and primary-key consistency
    /// (no duplicate key in the target, every target key in the source, every source key in
    /// the target). Keys gone from a source without `hard_deletes` are kept by design: they
    /// are counted, not held against the target.
    pub async fn check_ingest(&self, src: &IngestSource, target: &str) -> Result<Checked, Failure> {
        let (engine, src, target) = (self.clone(), src.clone(), target.to_owned());
        off_thread(move || async move { engine.check_ingest_here(&src, &target).await }).await
    }

    async fn check_ingest_here(
        &self,
        src: &IngestSource,
        target: &str,
    ) -> Result<Checked, Failure> {
        let location = self.resolve(target).map_err(|e| failure(src, e.into()))?;
        let (def, source) = self.open_source(src).await?;
        let keys = replicator_ingest::check_keys(
            source.as_ref(),
            &location,
            &def.primary_key,
            self.ingest.memory_budget,
        )
        .await
        .map_err(|e| failure(src, e))?;
        let version = replicator_lake::unchanged::log_point(&location, None, None)
            .await
            .ok()
            .flatten()
            .map(|p| p.version);
        let kept = if def.hard_deletes {
            0
        } else {
            keys.missing_from_source
        };
        let kept_note = if kept > 0 {
            format!(" ({kept} key(s) deleted in the source kept: hard_deletes is off)")
        } else {
            String::new()
        };
        let counts_match = keys.target_rows.saturating_sub(kept) == keys.source_rows
            && keys.duplicate_target_keys == 0;
        let row_count = Check {
            name: "row_count".into(),
            passed: counts_match,
            detail: format!(
                "source {} rows, target {} rows{kept_note}",
                keys.source_rows, keys.target_rows
            ),
        };
        let keys_ok = keys.duplicate_target_keys == 0
            && keys.missing_from_target == 0
            && keys.missing_from_source == kept;
        let key_check = Check {
            name: "keys".into(),
            passed: keys_ok,
            detail: if keys_ok {
                format!(
                    "primary key ({}) consistent{kept_note}",
                    def.primary_key.join(", ")
                )
            } else {
                let mut d = format!(
                    "primary key ({}): {} duplicate(s) in the target, {} target key(s) not in the source, {} source key(s) not in the target",
                    def.primary_key.join(", "),
                    keys.duplicate_target_keys,
                    keys.missing_from_source,
                    keys.missing_from_target
                );
                if !keys.sample.is_empty() {
                    d.push_str(&format!(" (e.g. {})", keys.sample.join("; ")));
                }
                d
            },
        };
        let sample = |prefix: &str| -> Vec<String> {
            keys.sample
                .iter()
                .filter_map(|s| s.strip_prefix(prefix).map(str::to_owned))
                .collect()
        };
        Ok(Checked {
            source_version: None,
            target_version: version,
            source_rows: Some(keys.source_rows),
            target_rows: Some(keys.target_rows),
            checks: vec![row_count, key_check],
            keys: Some(KeyDiff {
                primary_key: def.primary_key.clone(),
                missing: keys.missing_from_target,
                extra: keys.missing_from_source,
                changed: 0,
                duplicate_source: 0,
                duplicate_target: keys.duplicate_target_keys,
                missing_sample: sample("missing from target: "),
                extra_sample: sample("not in source: "),
                changed_sample: Vec::new(),
            }),
            partitions: Vec::new(),
            depth: ValidationDepth::Deep,
            statement_ids: Vec::new(),
        })
    }
}

/// Run an ingestion on a blocking thread of the runtime, its future made there by `make`.
/// Its futures (sqlx streams over `&dyn Source`, borrowed through several layers) are not
/// provably `Send` for every lifetime, which the engine trait's boxed futures need; driven
/// by `block_on` on a thread of its own they need not be, and the load's CPU work (hashing,
/// Parquet encoding) stays off the runtime's workers.
async fn off_thread<T, F, Fut>(make: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(make()))
        .await
        .unwrap_or_else(|e| {
            Err(Failure::new(
                ErrorKind::Transient,
                format!("the ingestion stopped unexpectedly: {e}"),
                true,
            ))
        })
}

/// A load's report as the clone result carries it.
fn cloned(r: &IngestReport) -> Cloned {
    Cloned {
        source_version: None,
        target_version: Some(r.version),
        committed: r.committed,
        metrics: Some(CloneMetrics {
            source_table_size: 0,
            source_num_of_files: 0,
            num_removed_files: r.files_removed,
            num_copied_files: r.files_added,
            removed_files_size: 0,
            copied_files_size: r.bytes_added,
        }),
        statement_ids: Vec::new(),
        path: None,
        ingest: Some(IngestMetrics {
            mode: r.mode.map(|m| match m {
                LoadMode::Full => IngestMode::Full,
                LoadMode::Watermark => IngestMode::Watermark,
                LoadMode::KeyHash => IngestMode::KeyHash,
            }),
            source_rows: r.source_rows,
            inserted: r.inserted,
            updated: r.updated,
            deleted: r.deleted,
            gone_from_source: r.gone_from_source,
            rewritten_rows: r.rewritten_rows,
            added_columns: r.added_columns.clone(),
            watermark: r.watermark.clone(),
        }),
    }
}
