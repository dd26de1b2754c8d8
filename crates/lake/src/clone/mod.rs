//! Native Delta deep clone.
//!
//! `deep_clone(source, target, options)` makes the target's latest snapshot equal to the
//! source's snapshot at `options.version` (default: latest), as Databricks
//! `CREATE OR REPLACE TABLE target DEEP CLONE source [VERSION AS OF n]` does. Like delta-rs's
//! operations it is a plan and its execution:
//!
//! 1. [`plan_clone`] reads and decides, writing nothing (`snapshot`, `plan`, `tail`):
//!    it reads the target's log and applies the target rules, refuses what cannot be
//!    honoured (unknown table features, paths that escape the table root), then diffs the
//!    source snapshot against the target's — logical files are identified by `(path,
//!    deletion vector id)`; the source's new files become `add` actions and the target's
//!    files that left the source become `remove` actions — or, when the target is this
//!    engine's clone of the source, replays only the source's newer commits (the log tail).
//!    Either way it checks that every file to copy exists in the source with the size its
//!    log records, and yields a [`ClonePlan`];
//! 2. [`execute`] carries the plan out (`copy`, `commit`): copies data and
//!    deletion-vector files in parallel (a file already in the target with the same size is
//!    not copied again) and verifies each copy's size, then commits one new target version —
//!    `commitInfo` (operation `CLONE`, `source`, `sourceVersion`, the six metrics), protocol,
//!    metadata, domain metadata, removes and adds — with put-if-absent of the next
//!    `_delta_log` entry, so the commit is atomic and a concurrent writer is detected as a
//!    conflict.
//!
//! A dry run is the plan alone. Nothing is committed when anything fails; a failed first
//! clone also deletes the files it copied, so no partial target is left behind. An
//! unchanged source gives an empty plan: nothing is copied or committed.

use std::sync::Arc;
use std::time::Instant;

use replicator_common::shutdown::CancellationToken;
use replicator_proto::CloneMetrics;

use crate::{LakeError, TableLocation};

mod check;
mod commit;
mod copy;
pub(crate) mod features;
mod paths;
mod plan;
mod snapshot;
mod tail;
#[cfg(test)]
mod tests;

use commit::{CloneCommit, commit_fingerprint};
use copy::{cancelled, cleanup, copy_all, interrupted};
use snapshot::TargetState;

pub(crate) use commit::{fingerprint, new_commit_info, put_commit};
pub use copy::STAGING_DIR;
pub(crate) use copy::{TargetLock, copy_file, staged_file};
pub(crate) use paths::dv_unique_id;
pub use plan::ClonePlan;
pub(crate) use plan::domain_changes;
pub(crate) use snapshot::{commit_info, domain_metadata, read_commit};
pub(crate) use snapshot::{commit_versions, has_delta_log, load};

/// Called as files finish copying.
pub type ProgressFn = Arc<dyn Fn(&CloneProgress) + Send + Sync>;

/// How to clone.
#[derive(Clone)]
pub struct CloneOptions {
    /// Source version to clone (`VERSION AS OF`); latest when `None`.
    pub version: Option<u64>,
    /// Clone the latest source version committed at or before this instant
    /// (`TIMESTAMP AS OF`). Exclusive with `version`.
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
    /// Files copied at once.
    pub parallelism: usize,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
    /// Work out what the clone would copy and remove, then stop: nothing is written.
    pub dry_run: bool,
    /// Replace a target that is a Delta table not cloned from this source (`CREATE OR
    /// REPLACE`); without it such a target is refused.
    pub replace: bool,
    /// Roots outside the source table whose files an absolute path in the source's log may
    /// reference (in the source's own store). See `docs/safety.md`.
    pub external_roots: Vec<TableLocation>,
    /// Stop the clone: copies in flight finish, nothing more starts, nothing is committed,
    /// and a first clone removes what it copied.
    pub cancel: Option<CancellationToken>,
}

impl Default for CloneOptions {
    fn default() -> Self {
        Self {
            version: None,
            timestamp: None,
            parallelism: 16,
            progress: None,
            dry_run: false,
            replace: false,
            external_roots: Vec::new(),
            cancel: None,
        }
    }
}

impl std::fmt::Debug for CloneOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloneOptions")
            .field("version", &self.version)
            .field("parallelism", &self.parallelism)
            .field("dry_run", &self.dry_run)
            .field("replace", &self.replace)
            .field("external_roots", &self.external_roots)
            .finish()
    }
}

/// Copy progress of a running clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloneProgress {
    pub files_total: u64,
    pub files_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
}

/// What a clone did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneReport {
    pub source_version: u64,
    /// The target's version after the clone.
    pub target_version: u64,
    /// False when the target already matched the source (nothing copied, no commit).
    pub committed: bool,
    pub metrics: CloneMetrics,
    pub duration_ms: u64,
    /// True when only the source's commits after the target's last clone were read (the
    /// log-tail fast path), false when both snapshots were diffed.
    pub log_tail: bool,
}

/// Deep clone `source` into `target`: [`plan_clone`], then [`execute`] unless
/// `options.dry_run`. See the module docs for the semantics.
pub async fn deep_clone(
    source: &TableLocation,
    target: &TableLocation,
    options: &CloneOptions,
) -> Result<CloneReport, LakeError> {
    let plan = plan_clone(source, target, options).await?;
    if options.dry_run {
        return Ok(plan.report());
    }
    execute(plan, options).await
}

/// Decide what cloning `source` into `target` takes, writing nothing: the target rules and
/// the path rules are applied, and every file to copy is checked in the source. The plan
/// comes from the log tail when the target was last cloned from this source by this engine,
/// and from the diff of both snapshots otherwise.
pub async fn plan_clone(
    source: &TableLocation,
    target: &TableLocation,
    options: &CloneOptions,
) -> Result<ClonePlan, LakeError> {
    let started = Instant::now();
    if options.version.is_some() && options.timestamp.is_some() {
        return Err(LakeError::Invalid(
            "give a version or a timestamp, not both".into(),
        ));
    }
    // Compared by what the paths really are (symbolic links resolved, URL spellings
    // normalized), not as text.
    if source.overlaps(target) {
        return Err(LakeError::Invalid(format!(
            "source {source} and target {target} overlap: a table cannot be cloned into or onto itself"
        )));
    }
    // Whose table the target is: refused unless it is this source's replica or `replace`.
    let state = TargetState::read(source, target, options).await?;
    // A target last cloned from this source needs only the source's newer commits.
    if let Some(plan) = tail::plan_tail(source, target, options, &state, started).await? {
        return Ok(plan);
    }
    plan::plan_full(source, target, options, state, started).await
}

/// Carry out a plan: copy its files, then write its one commit. `options` gives the
/// parallelism, the progress callback and the cancellation (its `dry_run`, `version` and
/// roots were the planner's business). A target written by someone else since the plan
/// was made is a [`LakeError::CommitConflict`]: the commit goes to the version after the
/// one planned against, put-if-absent.
pub async fn execute(plan: ClonePlan, options: &CloneOptions) -> Result<CloneReport, LakeError> {
    let (source, target) = (&plan.source, &plan.target);
    // Staging files of clones that are gone are swept; ours are protected while we run.
    let mut lock = TargetLock::sweep(target, &plan.staged_commits).await;
    if plan.is_empty() {
        if plan.log_tail.is_none() {
            tracing::debug!(
                %source, %target, source_version = plan.source_version,
                target_version = plan.target_version, "target already matches source"
            );
        }
        return Ok(plan.report());
    }

    // Copy what the target lacks. The target existed before unless this is a first clone:
    // then the files copied by a failed attempt are left for the retry to adopt.
    let fresh_target = plan.target_version.is_none();
    if !plan.copies.is_empty() {
        lock.hold(target).await;
    }
    let parallelism = options.parallelism.max(1);
    let copied = match copy_all(target, &plan.copies, parallelism, options).await {
        Ok(copied) if !cancelled(options) => copied,
        Ok(done) => {
            if fresh_target {
                cleanup(target, &done).await;
            }
            return Err(interrupted(source, target, fresh_target));
        }
        Err((e, done)) => {
            if fresh_target {
                cleanup(target, &done).await;
            }
            // A copy stopped by the interruption reports the interruption, not its own error.
            return Err(if cancelled(options) {
                interrupted(source, target, fresh_target)
            } else {
                e
            });
        }
    };
    let mut metrics = plan.metrics.clone();
    metrics.num_copied_files = copied.len() as u64;
    metrics.copied_files_size = plan
        .copies
        .iter()
        .filter(|(c, _)| copied.contains(&c.dst_rel))
        .map(|(_, size)| size)
        .sum();

    // The commit.
    let source_commit = match &plan.source_commit {
        Some(f) => Some(f.clone()),
        None => commit_fingerprint(source, plan.source_version).await,
    };
    let commit = CloneCommit {
        source,
        source_version: plan.source_version,
        source_commit,
        metrics: &metrics,
        read_version: plan.target_version,
        in_commit_after: plan.in_commit_after,
    };
    let next_version = match commit.write(target, plan.actions()).await {
        Ok(v) => v,
        Err(e) => {
            if fresh_target && !matches!(e, LakeError::CommitConflict { .. }) {
                cleanup(target, &copied).await;
            }
            return Err(e);
        }
    };
    let source_version = plan.source_version;
    match plan.log_tail {
        None => tracing::info!(
            %source, %target, source_version, target_version = next_version,
            copied_files = metrics.num_copied_files, copied_bytes = metrics.copied_files_size,
            removed_files = metrics.num_removed_files, "clone committed"
        ),
        Some(replayed_commits) => tracing::info!(
            %source, %target, source_version, target_version = next_version,
            copied_files = metrics.num_copied_files, copied_bytes = metrics.copied_files_size,
            removed_files = metrics.num_removed_files, replayed_commits,
            "clone committed (log tail)"
        ),
    }
    Ok(CloneReport {
        source_version,
        target_version: next_version,
        committed: true,
        metrics,
        duration_ms: plan.started.elapsed().as_millis() as u64,
        log_tail: plan.log_tail(),
    })
}

/// Check that every file the `adds` (actions of `loc`'s own snapshot at `version`) reference
/// is in `loc` as the log records it — data files with their logged size, deletion-vector
/// files large enough for their deletion vectors — with the clone's checks and path rules
/// (a path outside the table root is refused: no external root is allowed). Reads only.
/// A commit that re-adds files of the table's own history (`RESTORE`) calls it before
/// committing: a vacuumed file is a [`LakeError::MissingFile`].
pub(crate) async fn check_present(
    loc: &TableLocation,
    version: u64,
    adds: Vec<deltalake::kernel::Add>,
) -> Result<(), LakeError> {
    let files = adds
        .into_iter()
        .map(|add| paths::source_file(loc, loc, add, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    plan::copies_for(loc, loc, version, files.iter(), &CloneOptions::default()).await?;
    Ok(())
}

pub(crate) fn json_err(e: serde_json::Error) -> LakeError {
    LakeError::Invalid(format!("cannot serialize a log action: {e}"))
}
