//! What a clone will do, decided before anything is written: a [`ClonePlan`]. Both ways of
//! deciding produce it — the full diff of the two snapshots ([`plan_full`], here) and the
//! log tail (`tail.rs`, when the target is this engine's clone of the source) — and
//! [`super::execute`] carries it out. A dry run is the plan alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use replicator_proto::CloneMetrics;
use serde_json::{Value, json};

use super::check::plan_copies;
use super::features::check_protocol;
use super::paths::{CopyItem, SourceFile, dv_unique_id, source_file};
use super::snapshot::{TargetState, domain_metadata, load, load_as_of, load_existing};
use super::{CloneOptions, CloneReport, json_err};
use crate::{LakeError, TableLocation};

/// What a clone will do: the source version it brings the target to, the files it copies
/// and removes, and the actions of its one commit, with the six metrics. Made by
/// [`super::plan_clone`] (reads only), carried out by [`super::execute`]. An empty plan
/// ([`ClonePlan::is_empty`]) means the target already matches the source.
#[derive(Debug)]
pub struct ClonePlan {
    pub(super) source: TableLocation,
    pub(super) target: TableLocation,
    pub(super) source_version: u64,
    /// The target version the plan was made against; `None` for a first clone.
    pub(super) target_version: Option<u64>,
    /// Made from the source's commits after the target's last clone (the log tail) instead
    /// of both snapshots: how many commits were replayed.
    pub(super) log_tail: Option<u64>,
    /// The files to copy, checked in the source, with their sizes. Files the target
    /// already holds (same path and size) are not among them.
    pub(super) copies: Vec<(CopyItem, u64)>,
    /// `protocol`, `metaData` and `domainMetadata` actions, in commit order.
    pub(super) table_actions: Vec<Value>,
    /// The target's files that left the source: their `remove` actions and sizes.
    pub(super) removes: Vec<(Value, u64)>,
    /// The source's files the target lacks: their `add` actions.
    pub(super) adds: Vec<Value>,
    pub(super) metrics: CloneMetrics,
    /// Fingerprint of the source's commit at `source_version` when already read (the log
    /// tail reads it); otherwise it is read when committing.
    pub(super) source_commit: Option<String>,
    /// With in-commit timestamps on: the target's previous commit timestamp, which the new
    /// one must exceed.
    pub(super) in_commit_after: Option<i64>,
    /// Commits a killed writer staged in a local target's `_delta_log`, swept on execution.
    pub(super) staged_commits: Vec<PathBuf>,
    /// When planning started: a report's duration counts from here.
    pub(super) started: Instant,
}

impl ClonePlan {
    /// The source version the clone brings the target to.
    pub fn source_version(&self) -> u64 {
        self.source_version
    }

    /// The target's version the plan was made against; `None` when there is no table yet.
    pub fn target_version(&self) -> Option<u64> {
        self.target_version
    }

    /// Whether the plan came from the source's newer commits alone (the log-tail fast path).
    pub fn log_tail(&self) -> bool {
        self.log_tail.is_some()
    }

    /// The six clone metrics; the copy metrics count the files the plan copies.
    pub fn metrics(&self) -> &CloneMetrics {
        &self.metrics
    }

    /// True when the target already matches the source: nothing to copy or commit.
    pub fn is_empty(&self) -> bool {
        self.table_actions.is_empty() && self.removes.is_empty() && self.adds.is_empty()
    }

    /// Files to copy: their paths relative to the target root and their sizes.
    pub fn files_to_copy(&self) -> impl Iterator<Item = (&str, u64)> {
        self.copies
            .iter()
            .map(|(c, size)| (c.dst_rel.as_str(), *size))
    }

    /// Files the commit removes from the target: their paths and sizes.
    pub fn files_to_remove(&self) -> impl Iterator<Item = (&str, u64)> {
        self.removes
            .iter()
            .map(|(r, size)| (r["path"].as_str().unwrap_or_default(), *size))
    }

    /// The actions of the commit after its `commitInfo`: protocol, metadata, domain
    /// metadata, removes, adds. Empty when the target already matches.
    pub fn actions(&self) -> Vec<Value> {
        let mut actions = self.table_actions.clone();
        actions.extend(self.removes.iter().map(|(r, _)| json!({ "remove": r })));
        actions.extend(self.adds.iter().map(|a| json!({ "add": a })));
        actions
    }

    /// What the plan alone reports (a dry run, or a target that already matches): no new
    /// target version.
    pub fn report(&self) -> CloneReport {
        CloneReport {
            source_version: self.source_version,
            target_version: self.target_version.unwrap_or(0),
            committed: false,
            metrics: self.metrics.clone(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            log_tail: self.log_tail(),
        }
    }

    /// Set the copy metrics from the planned copies.
    pub(super) fn count_copies(&mut self) {
        self.metrics.num_copied_files = self.copies.len() as u64;
        self.metrics.copied_files_size = self.copies.iter().map(|(_, size)| size).sum();
    }
}

/// The copies `adds` need, checked in the source (each once, with its logged size), less
/// those the target already holds. Two different source files for one target name are
/// refused (two absolute paths with the same file name), never one silently dropped.
pub(super) async fn copies_for<'a>(
    source: &TableLocation,
    target: &TableLocation,
    source_version: u64,
    adds: impl IntoIterator<Item = &'a SourceFile>,
    options: &CloneOptions,
) -> Result<Vec<(CopyItem, u64)>, LakeError> {
    let mut wanted: Vec<CopyItem> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for c in adds.into_iter().flat_map(|f| f.copies.iter()) {
        match index.get(&c.dst_rel) {
            Some(&i) => {
                let w = &mut wanted[i];
                if w.src_path != c.src_path || !Arc::ptr_eq(&w.src_store, &c.src_store) {
                    return Err(LakeError::Invalid(format!(
                        "{source}: files `{}` and `{}` of the Delta log would both be copied to `{}` in the target",
                        w.src_path, c.src_path, c.dst_rel
                    )));
                }
                w.min_size = w.min_size.max(c.min_size);
            }
            None => {
                index.insert(c.dst_rel.clone(), wanted.len());
                wanted.push(c.clone());
            }
        }
    }
    let parallelism = options.parallelism.max(1);
    plan_copies(source, target, source_version, wanted, parallelism).await
}

/// Plan by diffing the source's snapshot (at the version or instant asked) against the
/// target's current one: logical files are identified by `(path, deletion vector id)`; the
/// source's new files are added and the target's files that left the source removed.
pub(super) async fn plan_full(
    source: &TableLocation,
    target: &TableLocation,
    options: &CloneOptions,
    state: TargetState,
    started: Instant,
) -> Result<ClonePlan, LakeError> {
    // Both logs are read at once: on a small incremental clone, reading them is most of
    // the work.
    let src_load = async {
        match options.timestamp {
            Some(ts) => load_as_of(source, ts).await,
            None => load(source, options.version).await,
        }
    };
    let tgt_load = async {
        if state.is_table {
            load_existing(target, None).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (src_table, tgt_table) = tokio::join!(src_load, tgt_load);
    let src_table = src_table?;
    let tgt_table = tgt_table?;
    let src_snap = src_table
        .snapshot()
        .map_err(|e| LakeError::from_delta(source.url().as_str(), options.version, e))?;
    let source_version = src_snap.version();
    let protocol = serde_json::to_value(src_snap.protocol()).map_err(json_err)?;
    check_protocol(&protocol)?;
    let src_metadata = serde_json::to_value(src_snap.metadata()).map_err(json_err)?;
    let src_domains = domain_metadata(&src_table, source_version, &protocol).await?;

    let mut files = Vec::new();
    for view in src_snap.log_data().iter() {
        #[allow(deprecated)] // the only public way to get the complete add action
        let add = view.add_action();
        files.push(source_file(source, target, add, &options.external_roots)?);
    }

    // The target snapshot, if there is one.
    let (target_version, tgt_files, tgt_metadata, tgt_protocol, tgt_domains, last_ts) =
        match &tgt_table {
            Some(t) => {
                let snap = t
                    .snapshot()
                    .map_err(|e| LakeError::from_delta(target.url().as_str(), None, e))?;
                let v = snap.version();
                let mut active = HashMap::new();
                for view in snap.log_data().iter() {
                    let remove = view.remove_action(true);
                    let key = (
                        view.path().into_owned(),
                        remove.deletion_vector.as_ref().map(dv_unique_id),
                    );
                    active.insert(
                        key,
                        (
                            serde_json::to_value(&remove).map_err(json_err)?,
                            view.size().max(0) as u64,
                        ),
                    );
                }
                let tgt_protocol = serde_json::to_value(snap.protocol()).map_err(json_err)?;
                let domains = domain_metadata(t, v, &tgt_protocol).await?;
                (
                    Some(v),
                    active,
                    Some(serde_json::to_value(snap.metadata()).map_err(json_err)?),
                    Some(tgt_protocol),
                    domains,
                    snap.version_timestamp(v as _).unwrap_or(0),
                )
            }
            None => (None, HashMap::new(), None, None, BTreeMap::new(), 0),
        };

    // The diff.
    let source_keys: HashSet<&(String, Option<String>)> = files.iter().map(|f| &f.key).collect();
    let adds: Vec<&SourceFile> = files
        .iter()
        .filter(|f| !tgt_files.contains_key(&f.key))
        .collect();
    let removes: Vec<(Value, u64)> = tgt_files
        .into_iter()
        .filter(|(k, _)| !source_keys.contains(k))
        .map(|(_, removed)| removed)
        .collect();
    let metadata_same = tgt_metadata
        .as_ref()
        .is_some_and(|t| same_metadata(t, &src_metadata));
    let protocol_same = tgt_protocol.as_ref() == Some(&protocol);
    let domain_changes = domain_changes(&src_domains, &tgt_domains);

    let mut plan = ClonePlan {
        source: source.clone(),
        target: target.clone(),
        source_version,
        target_version,
        log_tail: None,
        copies: Vec::new(),
        table_actions: Vec::new(),
        removes: Vec::new(),
        adds: Vec::new(),
        metrics: CloneMetrics {
            source_table_size: files.iter().map(|f| f.size).sum(),
            source_num_of_files: files.len() as u64,
            num_removed_files: removes.len() as u64,
            removed_files_size: removes.iter().map(|(_, s)| s).sum(),
            ..Default::default()
        },
        source_commit: None,
        in_commit_after: None,
        staged_commits: state.staged_commits,
        started,
    };
    if target_version.is_some()
        && adds.is_empty()
        && removes.is_empty()
        && metadata_same
        && protocol_same
        && domain_changes.is_empty()
    {
        // The target already matches the source: an empty plan.
        return Ok(plan);
    }

    // Every file to copy is checked in the source before anything is written.
    plan.copies = copies_for(
        source,
        target,
        source_version,
        adds.iter().copied(),
        options,
    )
    .await?;
    plan.count_copies();

    let fresh_target = target_version.is_none();
    let mut metadata = src_metadata.clone();
    match &tgt_metadata {
        Some(t) => {
            metadata["id"] = t["id"].clone();
            metadata["createdTime"] = t["createdTime"].clone();
        }
        None => {
            metadata["id"] = json!(uuid::Uuid::new_v4().to_string());
            metadata["createdTime"] = json!(chrono::Utc::now().timestamp_millis());
        }
    }
    let ict = metadata["configuration"]["delta.enableInCommitTimestamps"] == json!("true");
    plan.in_commit_after = ict.then_some(last_ts);
    if !protocol_same {
        plan.table_actions.push(json!({ "protocol": protocol }));
    }
    if !metadata_same || fresh_target {
        plan.table_actions.push(json!({ "metaData": metadata }));
    }
    plan.table_actions.extend(
        domain_changes
            .into_iter()
            .map(|d| json!({ "domainMetadata": d })),
    );
    plan.removes = removes;
    plan.adds = adds.into_iter().map(|f| f.add.clone()).collect();
    Ok(plan)
}

/// Metadata equal up to the table's identity (`id`, `createdTime`).
fn same_metadata(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("id");
            o.remove("createdTime");
        }
        v
    };
    strip(a) == strip(b)
}

/// The domain metadata actions that make the target's domains equal the source's.
pub(crate) fn domain_changes(
    src: &BTreeMap<String, String>,
    tgt: &BTreeMap<String, String>,
) -> Vec<Value> {
    let mut out = Vec::new();
    for (domain, config) in src {
        if tgt.get(domain) != Some(config) {
            out.push(json!({ "domain": domain, "configuration": config, "removed": false }));
        }
    }
    for (domain, config) in tgt {
        if !src.contains_key(domain) {
            out.push(json!({ "domain": domain, "configuration": config, "removed": true }));
        }
    }
    out
}
