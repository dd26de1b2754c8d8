//! Volumes on the native engine: file trees that are not Delta tables (CSV drops, model
//! files, images), synced incrementally between any two locations (local, S3, Azure).
//!
//! - [`discover_volumes`]: the trees under a root that hold no table, and the loose files
//!   of directories that do;
//! - [`sync_volume`]: make the target's files equal the source's: new and changed files are
//!   copied (each atomically, only as one whole version of its source), files gone from the
//!   source are deleted only when asked, the rest is left alone — decided from one listing
//!   of each side and the target's manifest (`manifest`), without reading any file;
//! - [`diff_volume`]: files missing, extra and of another size in the target (catalog
//!   reconciliation).
//!
//! `docs/volumes.md` describes the behaviour and its limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{StreamExt, stream};
use object_store::ObjectStoreExt;
use replicator_common::shutdown::CancellationToken;
use serde::{Deserialize, Serialize};

use crate::clone::{CloneProgress, ProgressFn, TargetLock};
use crate::{LakeError, TableLocation};

mod copy;
mod discover;
mod listing;
mod local;
mod manifest;
mod upload;

pub use discover::{DiscoveredVolume, discover_volumes};
pub use listing::shard_of;

use copy::{Copier, Outcome};
use listing::{Listing, Scope, Stamp};
use manifest::Entry;

/// How many names the result's lists keep (counts are always complete).
pub const NAMES_KEPT: usize = 100;

/// A local source file modified this recently when it was copied is not recorded as clean:
/// a second write within the filesystem's timestamp granularity could keep its stamp, so
/// the next sync copies it again (as git treats "racily clean" files).
const RACY_NANOS: i64 = 2_000_000_000;

/// The smallest part of a multipart upload S3 accepts (except the last).
const MIN_PART: u64 = 5 << 20;

/// How to sync a volume.
#[derive(Clone)]
pub struct VolumeOptions {
    /// Files copied at once.
    pub parallelism: usize,
    /// Part size of multipart uploads (files larger than this are uploaded in parts, at most
    /// four parts of one file in memory); at least 5 MiB.
    pub part_size: u64,
    /// A local file larger than a part but not than this goes into S3 as one `PUT` streamed
    /// from the file (its last chunk sent only once the file is seen unchanged) instead of a
    /// multipart upload: 200 MiB by default, as rclone's `--s3-upload-cutoff`.
    pub upload_cutoff: u64,
    /// Delete target files the source no longer has (of this shard only). Without it they
    /// are reported in [`VolumeSynced::extra`].
    pub delete_extra: bool,
    /// The source volume was removed on purpose (the planner found it gone from a source
    /// root that still holds others): with `delete_extra`, every target file goes. Without
    /// it, a source that lists nothing while the target has files is refused as a likely
    /// wrong or unmounted source location.
    pub source_gone: bool,
    /// Work out what would be copied and deleted; write nothing.
    pub dry_run: bool,
    /// `(index, count)`: handle only the files whose relative path hashes to `index`
    /// ([`shard_of`]), so a fleet can split one large tree.
    pub shard: Option<(u32, u32)>,
    /// False: only the files directly in the root (a loose-files volume), not its
    /// subdirectories.
    pub recursive: bool,
    /// `None` (the default): list the target on every sync. `Some(age)`: trust the target's
    /// manifest instead of listing the target while the last listing that checked it is
    /// younger than `age` (a file changed or deleted in the target by someone else meanwhile
    /// is found only by the next listing, or by `diff_volume`).
    pub verify_every: Option<std::time::Duration>,
    /// Called as files finish copying.
    pub progress: Option<ProgressFn>,
    /// Stop: copies in flight finish, nothing more starts, the manifest records what was
    /// copied, and the sync fails as interrupted.
    pub cancel: Option<CancellationToken>,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        Self {
            parallelism: 16,
            part_size: 8 << 20,
            upload_cutoff: 200 << 20,
            delete_extra: false,
            source_gone: false,
            dry_run: false,
            shard: None,
            recursive: true,
            verify_every: None,
            progress: None,
            cancel: None,
        }
    }
}

impl std::fmt::Debug for VolumeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeOptions")
            .field("parallelism", &self.parallelism)
            .field("part_size", &self.part_size)
            .field("upload_cutoff", &self.upload_cutoff)
            .field("delete_extra", &self.delete_extra)
            .field("dry_run", &self.dry_run)
            .field("shard", &self.shard)
            .field("recursive", &self.recursive)
            .field("verify_every", &self.verify_every)
            .finish()
    }
}

/// What a volume sync did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSynced {
    pub files_copied: u64,
    pub bytes_copied: u64,
    pub files_deleted: u64,
    pub files_unchanged: u64,
    /// Files listed in the source that were deleted before their copy began.
    pub files_vanished: u64,
    /// Target files the source does not have (deleted when `delete_extra`, else left).
    pub files_extra: u64,
    /// The first [`NAMES_KEPT`] of them.
    pub extra: Vec<String>,
    /// Files to copy and their bytes (all of them; in a dry run nothing was copied).
    pub files_planned: u64,
    pub bytes_planned: u64,
    /// The first [`NAMES_KEPT`] files to copy.
    pub planned: Vec<String>,
    pub dry_run: bool,
    pub shard: Option<(u32, u32)>,
    /// The target was not listed: its manifest, verified recently, stood for it
    /// (`VolumeOptions::verify_every`).
    #[serde(default)]
    pub target_trusted: bool,
    pub duration_ms: u64,
}

/// What differs between two volumes, by listing (names and sizes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDiff {
    pub files_source: u64,
    pub files_target: u64,
    pub files_missing: u64,
    pub files_extra: u64,
    pub files_different: u64,
    /// The first [`NAMES_KEPT`] of each.
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub different: Vec<String>,
}

impl VolumeDiff {
    pub fn is_empty(&self) -> bool {
        self.files_missing == 0 && self.files_extra == 0 && self.files_different == 0
    }
}

fn check(
    source: &TableLocation,
    target: &TableLocation,
    opts: &VolumeOptions,
) -> Result<(), LakeError> {
    if source.overlaps(target) {
        return Err(LakeError::Invalid(format!(
            "source {source} and target {target} overlap: a volume cannot be synced into or onto itself"
        )));
    }
    if let Some((index, count)) = opts.shard
        && (count == 0 || index >= count)
    {
        return Err(LakeError::Invalid(format!(
            "shard {index} of {count} does not exist (the index counts from 0 and is below the count)"
        )));
    }
    if opts.part_size < MIN_PART {
        return Err(LakeError::Invalid(format!(
            "part size {} is below the 5 MiB object stores accept",
            opts.part_size
        )));
    }
    if source.local_dir().is_some_and(|d| !d.is_dir()) {
        return Err(LakeError::InvalidLocation {
            location: source.url().to_string(),
            reason: "source volume does not exist".into(),
        });
    }
    Ok(())
}

/// Sync the files of `source` into `target` (see the module docs and `docs/volumes.md`).
/// A file that fails does not stop the others: the manifest records every file that was
/// copied, then the first failure is returned (so a retry copies only the rest).
pub async fn sync_volume(
    source: &TableLocation,
    target: &TableLocation,
    opts: &VolumeOptions,
) -> Result<VolumeSynced, LakeError> {
    let started = Instant::now();
    check(source, target, opts)?;
    let scope = Scope {
        recursive: opts.recursive,
        shard: opts.shard,
    };
    let now = chrono::Utc::now().timestamp();
    let (src, dst, known, trusted) = match opts.verify_every {
        // Every sync lists the target: the three reads at once.
        None => {
            let (src, dst, known) = futures::try_join!(
                listing::list(source, scope),
                listing::list(target, scope),
                manifest::read(target, source, opts.shard),
            )?;
            (src, dst, known, false)
        }
        // The manifest first: verified recently, it stands for the target's listing.
        Some(age) => {
            let (src, known) = futures::try_join!(
                listing::list(source, scope),
                manifest::read(target, source, opts.shard),
            )?;
            let max_age = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            match known.trusted_target(now, max_age) {
                Some(dst) => (src, dst, known, true),
                None => (src, listing::list(target, scope).await?, known, false),
            }
        }
    };
    // When the target was listed, the manifest written now was verified now.
    let verified = if trusted {
        known.own_verified
    } else {
        Some(now)
    };

    let mut result = VolumeSynced {
        dry_run: opts.dry_run,
        shard: opts.shard,
        target_trusted: trusted,
        ..Default::default()
    };
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut copies: Vec<(String, Stamp)> = Vec::new();
    for (relative, stamp) in &src {
        match dst
            .get(relative)
            .and_then(|d| known.clean(relative, stamp, d))
        {
            Some(entry) => {
                entries.insert(relative.clone(), entry.clone());
                result.files_unchanged += 1;
            }
            None => copies.push((relative.clone(), stamp.clone())),
        }
    }
    let extra: Vec<&String> = dst.keys().filter(|k| !src.contains_key(*k)).collect();
    result.files_extra = extra.len() as u64;
    result.extra = extra
        .iter()
        .take(NAMES_KEPT)
        .map(|s| s.to_string())
        .collect();
    result.files_planned = copies.len() as u64;
    result.bytes_planned = copies.iter().map(|(_, s)| s.size).sum();
    result.planned = copies
        .iter()
        .take(NAMES_KEPT)
        .map(|(r, _)| r.clone())
        .collect();
    if opts.delete_extra && !opts.source_gone && src.is_empty() && !dst.is_empty() {
        return Err(LakeError::Invalid(format!(
            "source {source} lists no files: refusing to delete all {} files of {target} (check the source location)",
            dst.len()
        )));
    }
    if opts.dry_run {
        result.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(result);
    }

    let mut lock = TargetLock::sweep(target, &[]).await;
    if !copies.is_empty() {
        lock.hold(target).await;
    }
    let failures = copy_all(source, target, opts, copies, &mut entries, &mut result).await;
    if opts.delete_extra {
        result.files_deleted = delete(target, &extra).await?;
    }
    // Rewritten when its entries changed, or to record a listing that verified it (only
    // when a later sync may trust it).
    let reverified = opts.verify_every.is_some() && !trusted;
    if !known.own_is(&entries) || reverified {
        manifest::write(target, source, opts.shard, entries, verified).await?;
    }
    drop(lock);
    result.duration_ms = started.elapsed().as_millis() as u64;
    if let Some((count, first)) = failures {
        tracing::warn!(%source, %target, failed = count, "volume sync finished with failed files");
        return Err(first);
    }
    if opts.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(LakeError::Invalid(format!(
            "volume sync of {source} into {target} interrupted: the files copied so far are recorded"
        )));
    }
    tracing::info!(
        %source, %target, copied = result.files_copied, bytes = result.bytes_copied,
        unchanged = result.files_unchanged, deleted = result.files_deleted,
        extra = result.files_extra, "volume synced"
    );
    Ok(result)
}

/// Copy `copies` in parallel, recording each copied file in `entries` and `result`. Returns
/// the number of failed files and the first failure.
async fn copy_all(
    source: &TableLocation,
    target: &TableLocation,
    opts: &VolumeOptions,
    copies: Vec<(String, Stamp)>,
    entries: &mut BTreeMap<String, Entry>,
    result: &mut VolumeSynced,
) -> Option<(u64, LakeError)> {
    let budget_mib = Copier::budget_for(opts.part_size);
    let copier = Copier {
        source: source.clone(),
        target: target.clone(),
        part_size: opts.part_size,
        upload_cutoff: opts.upload_cutoff,
        budget: Arc::new(tokio::sync::Semaphore::new(budget_mib as usize)),
        streams: Arc::new(tokio::sync::Semaphore::new(copy::STREAMS_AT_ONCE)),
        budget_mib,
        cancel: opts.cancel.clone().unwrap_or_default(),
    };
    let total = CloneProgress {
        files_total: copies.len() as u64,
        bytes_total: copies.iter().map(|(_, s)| s.size).sum(),
        ..Default::default()
    };
    if let Some(p) = &opts.progress {
        p(&total);
    }
    let (files_done, bytes_done) = (AtomicU64::new(0), AtomicU64::new(0));
    let source_is_local = source.local_dir().is_some();
    let mut outcomes = stream::iter(
        copies
            .into_iter()
            .map(|(relative, stamp)| {
                let (copier, total, files_done, bytes_done) =
                    (&copier, &total, &files_done, &bytes_done);
                async move {
                    if copier.cancel.is_cancelled() {
                        return (relative, None);
                    }
                    let size = stamp.size;
                    let outcome = copier.copy(&relative, stamp).await;
                    if let (Ok(Outcome::Copied(_)), Some(p)) = (&outcome, &opts.progress) {
                        p(&CloneProgress {
                            files_done: files_done.fetch_add(1, Ordering::Relaxed) + 1,
                            bytes_done: bytes_done.fetch_add(size, Ordering::Relaxed) + size,
                            ..total.clone()
                        });
                    }
                    (relative, Some(outcome))
                }
            })
            .collect::<Vec<_>>(),
    )
    .buffer_unordered(opts.parallelism.max(1));
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut failures: Option<(u64, LakeError)> = None;
    while let Some((relative, outcome)) = outcomes.next().await {
        match outcome {
            None => {}
            Some(Ok(Outcome::Copied(entry))) => {
                result.files_copied += 1;
                result.bytes_copied += entry.src.size;
                if !(source_is_local && now - entry.src.mtime < RACY_NANOS) {
                    entries.insert(relative, entry);
                }
            }
            Some(Ok(Outcome::Vanished)) => result.files_vanished += 1,
            Some(Err(e)) => {
                tracing::warn!(file = %relative, error = %e, "volume file not copied");
                match &mut failures {
                    Some((n, _)) => *n += 1,
                    None => failures = Some((1, e)),
                }
            }
        }
    }
    failures
}

/// Delete `extra` target files; the count deleted. A local target's directories left
/// empty are removed too (never the root).
async fn delete(target: &TableLocation, extra: &[&String]) -> Result<u64, LakeError> {
    let store = target.object_store();
    let mut deletes = stream::iter(
        extra
            .iter()
            .map(|relative| {
                let path = target.object_path(relative);
                async move {
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(LakeError::store(&path, e)),
                    }
                }
            })
            .collect::<Vec<_>>(),
    )
    .buffer_unordered(16);
    let mut deleted = 0;
    while let Some(done) = deletes.next().await {
        done?;
        deleted += 1;
    }
    if let Some(dir) = target.local_dir() {
        for relative in extra {
            let mut parent = std::path::Path::new(relative.as_str()).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                if std::fs::remove_dir(dir.join(p)).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
    }
    Ok(deleted)
}

/// Compare the listings of `source` and `target` (in `opts`' scope: recursive or not, one
/// shard or all): files missing from the target, extra in it, and of another size.
pub async fn diff_volume(
    source: &TableLocation,
    target: &TableLocation,
    opts: &VolumeOptions,
) -> Result<VolumeDiff, LakeError> {
    let scope = Scope {
        recursive: opts.recursive,
        shard: opts.shard,
    };
    if source.local_dir().is_some_and(|d| !d.is_dir()) {
        return Err(LakeError::InvalidLocation {
            location: source.url().to_string(),
            reason: "source volume does not exist".into(),
        });
    }
    let (src, dst): (Listing, Listing) =
        futures::try_join!(listing::list(source, scope), listing::list(target, scope))?;
    let mut diff = VolumeDiff {
        files_source: src.len() as u64,
        files_target: dst.len() as u64,
        ..Default::default()
    };
    let keep = |list: &mut Vec<String>, count: &mut u64, name: &str| {
        *count += 1;
        if list.len() < NAMES_KEPT {
            list.push(name.to_owned());
        }
    };
    for (relative, stamp) in &src {
        match dst.get(relative) {
            None => keep(&mut diff.missing, &mut diff.files_missing, relative),
            Some(d) if d.size != stamp.size => {
                keep(&mut diff.different, &mut diff.files_different, relative)
            }
            Some(_) => {}
        }
    }
    for relative in dst.keys().filter(|k| !src.contains_key(*k)) {
        keep(&mut diff.extra, &mut diff.files_extra, relative);
    }
    Ok(diff)
}
