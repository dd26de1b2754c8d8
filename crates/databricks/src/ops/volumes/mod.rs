//! Volumes and external locations between two workspaces.
//!
//! - [`sync_volume`]: the target volume is created when missing (`CREATE EXTERNAL VOLUME …
//!   LOCATION` at the source's storage location rewritten by a [`StorageMap`], or `CREATE
//!   VOLUME` for a managed one), then its files are copied through the Files API:
//!   incrementally, in parallel, each file streamed from the source's download into the
//!   target's upload (memory per file is a few chunks, whatever its size).
//! - [`ensure_external_location`]: the target has an external location covering the mapped
//!   URL — found, or created naming the target's storage credential by reference; reported
//!   when it cannot be created (the credential is missing: secrets are never copied).
//! - [`diff_volume`]: files missing, extra or of another size, for catalog reconciliation.
//!
//! **What "changed" means.** The Files API has no checksums or ETags in its listings: only
//! `file_size` and `last_modified`. The target's `last_modified` is when we uploaded, so the
//! two sides cannot be compared directly. After each run that changed something, a manifest
//! is written to the target volume at [`MANIFEST`] (`.replicator/volume-sync.json`, excluded
//! from every listing, sync and diff): for each file, the source's size and mtime and the
//! target's size and mtime as copied. A file is unchanged when both sides still match its
//! record; without a record (first run, a run that died before writing it) when the sizes
//! match and the target is not older than the source. Anything else is copied again — so a
//! file edited on the target is put back.
//!
//! **Atomicity.** The Files API has no rename, so there is no temporary name to upload to.
//! One `PUT` (up to 5 GiB) carries the whole file with its `Content-Length`; the API
//! documents that the resulting file is exactly the bytes sent, and volumes sit on object
//! storage, which makes one object write visible only when complete. A transfer that breaks
//! sends fewer bytes than announced, which fails the request rather than landing a short
//! file. The download sends `If-Unmodified-Since` with the listed mtime: a source file
//! changing after it was listed answers 412, is reported and left for the next run.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::StreamExt;
use replicator_common::retry::RetryPolicy;
use serde::{Deserialize, Serialize};

use crate::DatabricksError;
use crate::client::{FileStat, VolumeName, VolumeTree, WorkspaceClient};

/// Our manifest in the target volume, relative to its root.
pub const MANIFEST: &str = ".replicator/volume-sync.json";
/// The manifest of one shard of a volume copied by several tasks.
pub fn shard_manifest(shard: Option<Shard>) -> String {
    match shard {
        None => MANIFEST.to_owned(),
        Some(s) => format!(".replicator/volume-sync.{}-of-{}.json", s.index, s.count),
    }
}

/// One part of a large volume's files, for one of several tasks: the files whose path's
/// FNV-1a 64-bit hash is `index` modulo `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the file at `rel` belongs to this part.
    pub fn holds(&self, rel: &str) -> bool {
        let hash = rel.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.count == 0 || hash % u64::from(self.count) == u64::from(self.index)
    }
}

/// The directory of [`MANIFEST`], left out of listings.
pub const MANIFEST_DIR: &str = ".replicator";

/// The directories of a volume that hold the replicator's own bookkeeping, never synced or
/// compared: this module's manifest, and the native engine's manifest and staging when the
/// files were copied straight between the storages (`catalog.volumes.direct`).
pub const OURS: [&str; 3] = [MANIFEST_DIR, "_replicator_volume", "_replicator_staging"];

/// Where the target keeps what the source keeps: storage URLs and storage credentials.
pub trait StorageMap: Send + Sync {
    /// The target URL for a source storage URL; `None` when no rule covers it.
    fn location(&self, source_url: &str) -> Option<String>;
    /// The target storage credential name for a source one; `None` when unmapped.
    fn credential(&self, source_credential: &str) -> Option<String>;
}

/// Storage-prefix rewrites (`s3://a/` → `s3://b/`; the longest prefix wins, at a path
/// boundary) and credential renames (a credential absent from the map keeps its name).
#[derive(Clone, Debug, Default)]
pub struct PrefixMap {
    pub prefixes: Vec<(String, String)>,
    pub credentials: BTreeMap<String, String>,
}

impl StorageMap for PrefixMap {
    fn location(&self, source_url: &str) -> Option<String> {
        self.prefixes
            .iter()
            .filter(|(from, _)| covers(from, source_url))
            .max_by_key(|(from, _)| from.trim_end_matches('/').len())
            .map(|(from, to)| {
                let rest = &source_url[from.trim_end_matches('/').len()..];
                format!("{}{rest}", to.trim_end_matches('/'))
            })
    }
    fn credential(&self, source_credential: &str) -> Option<String> {
        Some(
            self.credentials
                .get(source_credential)
                .cloned()
                .unwrap_or_else(|| source_credential.to_owned()),
        )
    }
}

/// Whether the URL `inner` is `outer` or below it, at a path boundary.
pub fn covers(outer: &str, inner: &str) -> bool {
    let (o, i) = (outer.trim_end_matches('/'), inner.trim_end_matches('/'));
    i == o || i.strip_prefix(o).is_some_and(|r| r.starts_with('/'))
}

/// A SQL string literal as Databricks SQL reads it: single quotes, backslash escapes.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[derive(Clone, Debug)]
pub struct VolumeSyncOptions {
    /// Delete target files (and then empty directories) the source does not have.
    pub delete_extra: bool,
    /// Read both sides and report; create, copy and delete nothing.
    pub dry_run: bool,
    /// Files copied at once.
    pub parallelism: usize,
    /// Retries of one file's transfer and of the DDL.
    pub retry: RetryPolicy,
    /// Only this part of the files (a large volume split over several tasks): each part
    /// keeps its own manifest, copies and deletes only its files, and leaves extra
    /// directories alone (another part may still be emptying them).
    pub shard: Option<Shard>,
}

/// What [`sync_volume`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct VolumeOutcome {
    pub source: String,
    pub target: String,
    /// DDL run (or, dry, that would run).
    pub statements: Vec<String>,
    /// What was noticed and not fixed: refused paths, files changed while copying, failed
    /// copies, a target volume of another type or location, extra files kept.
    pub findings: Vec<String>,
    pub files_copied: u64,
    pub bytes_copied: u64,
    pub files_deleted: u64,
    pub files_unchanged: u64,
    pub files_failed: u64,
    pub dirs_created: u64,
    pub changed: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    source_size: u64,
    source_modified: i64,
    target_size: u64,
    target_modified: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Manifest {
    source: String,
    files: BTreeMap<String, Record>,
}

/// What to do with a volume's files.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    copy: Vec<(String, FileStat)>,
    unchanged: Vec<String>,
    mkdirs: Vec<String>,
    extra_files: Vec<String>,
    extra_dirs: Vec<String>,
}

fn plan(
    source: &VolumeTree,
    target: &VolumeTree,
    manifest: &Manifest,
    shard: Option<Shard>,
) -> Plan {
    let mine = |rel: &str| shard.is_none_or(|s| s.holds(rel));
    let mut p = Plan::default();
    for (rel, s) in source.files.iter().filter(|(r, _)| mine(r)) {
        let same = match (target.files.get(rel), manifest.files.get(rel)) {
            (None, _) => false,
            (Some(t), Some(r)) => {
                (
                    r.source_size,
                    r.source_modified,
                    r.target_size,
                    r.target_modified,
                ) == (s.size, s.last_modified, t.size, t.last_modified)
            }
            (Some(t), None) => t.size == s.size && t.last_modified >= s.last_modified,
        };
        if same {
            p.unchanged.push(rel.clone());
        } else {
            p.copy.push((rel.clone(), *s));
        }
    }
    p.mkdirs = source.dirs.difference(&target.dirs).cloned().collect();
    p.extra_files = target
        .files
        .keys()
        .filter(|k| !source.files.contains_key(*k) && mine(k))
        .cloned()
        .collect();
    if shard.is_some() {
        return p;
    }
    let mut extra_dirs: Vec<String> = target.dirs.difference(&source.dirs).cloned().collect();
    // Deepest first, so each is empty when its turn comes.
    extra_dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    p.extra_dirs = extra_dirs;
    p
}

async fn run_ddl(
    target: &WorkspaceClient,
    sql: &str,
    retry: &RetryPolicy,
) -> Result<(), DatabricksError> {
    let (r, _) = retry
        .retry(
            || target.execute(sql),
            |e: &DatabricksError, d| tracing::warn!(error = %e, delay_ms = d.as_millis() as u64, "volume DDL failed, retrying"),
        )
        .await;
    r.map(drop)
}

/// Create the target volume if it is missing (an external one at its mapped location), and
/// copy nothing: for files moved straight between the storages. The DDL run (or, dry, that
/// would run) and what was reported.
pub async fn ensure_target_volume(
    source: &WorkspaceClient,
    target: &WorkspaceClient,
    source_full_name: &str,
    target_full_name: &str,
    map: &dyn StorageMap,
    dry_run: bool,
    retry: &RetryPolicy,
) -> Result<VolumeOutcome, DatabricksError> {
    let src = VolumeName::parse(source_full_name)?;
    let tgt = VolumeName::parse(target_full_name)?;
    let mut out = VolumeOutcome {
        source: src.full_name(),
        target: tgt.full_name(),
        ..Default::default()
    };
    let dry = dry_run || target.is_dry_run();
    ensure_volume(source, target, &src, &tgt, map, dry, retry, &mut out).await?;
    Ok(out)
}

/// Create the target volume if it is missing; report one of another type or location.
#[allow(clippy::too_many_arguments)]
async fn ensure_volume(
    source: &WorkspaceClient,
    target: &WorkspaceClient,
    src: &VolumeName,
    tgt: &VolumeName,
    map: &dyn StorageMap,
    dry: bool,
    retry: &RetryPolicy,
    out: &mut VolumeOutcome,
) -> Result<bool, DatabricksError> {
    let info = source
        .get_volume(&src.full_name())
        .await?
        .ok_or_else(|| DatabricksError::Refused(format!("source volume {src} does not exist")))?;
    let location = match (info.is_external(), &info.storage_location) {
        (false, _) => None,
        (true, Some(loc)) => Some(map.location(loc).ok_or_else(|| {
            DatabricksError::Refused(format!(
                "volume {src}: its storage location {loc} is covered by no storage mapping"
            ))
        })?),
        (true, None) => {
            return Err(DatabricksError::Refused(format!(
                "external volume {src} reports no storage location"
            )));
        }
    };
    if let Some(existing) = target.get_volume(&tgt.full_name()).await? {
        if existing.is_external() != info.is_external() {
            out.findings.push(format!(
                "target volume {tgt} is {} but source {src} is {}",
                existing.volume_type, info.volume_type
            ));
        }
        if let (Some(want), Some(have)) = (&location, &existing.storage_location)
            && want.trim_end_matches('/') != have.trim_end_matches('/')
        {
            out.findings.push(format!(
                "target volume {tgt} is at {have}, not at the mapped {want}"
            ));
        }
        return Ok(true);
    }
    if target
        .get_schema(tgt.catalog.as_str(), tgt.schema.as_str())
        .await?
        .is_none()
    {
        return Err(DatabricksError::Refused(format!(
            "volume {tgt}: target schema {}.{} does not exist",
            tgt.catalog, tgt.schema
        )));
    }
    let comment = info
        .comment
        .as_deref()
        .map(|c| format!(" COMMENT {}", sql_string(c)))
        .unwrap_or_default();
    let sql = match &location {
        Some(loc) => format!(
            "CREATE EXTERNAL VOLUME IF NOT EXISTS {} LOCATION {}{comment}",
            tgt.quoted(),
            sql_string(loc)
        ),
        None => format!("CREATE VOLUME IF NOT EXISTS {}{comment}", tgt.quoted()),
    };
    out.statements.push(sql.clone());
    if dry {
        return Ok(false);
    }
    run_ddl(target, &sql, retry).await?;
    Ok(true)
}

async fn read_manifest(
    target: &WorkspaceClient,
    tgt: &VolumeName,
    src: &VolumeName,
    path: &str,
    findings: &mut Vec<String>,
) -> Result<Manifest, DatabricksError> {
    let dl = match target.download(tgt, path, None).await {
        Ok(dl) => dl,
        Err(e) if e.is_not_found() || matches!(e, DatabricksError::NoEndpoint { .. }) => {
            return Ok(Manifest::default());
        }
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    let mut body = dl.body;
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
    }
    match serde_json::from_slice::<Manifest>(&buf) {
        Ok(m) if m.source == src.full_name() => Ok(m),
        Ok(m) => {
            findings.push(format!(
                "{tgt}/{path} records source {}, not {src}: ignored",
                m.source
            ));
            Ok(Manifest::default())
        }
        Err(e) => {
            findings.push(format!("{tgt}/{path} unreadable ({e}): ignored"));
            Ok(Manifest::default())
        }
    }
}

/// Copy one file, retrying the whole transfer on transient failures. `Ok(false)`: the
/// source changed after it was listed (412); left for the next run.
async fn copy_file(
    source: &WorkspaceClient,
    target: &WorkspaceClient,
    src: &VolumeName,
    tgt: &VolumeName,
    rel: &str,
    stat: FileStat,
    retry: &RetryPolicy,
) -> Result<bool, DatabricksError> {
    let attempt = || async {
        let dl = source.download(src, rel, Some(stat.last_modified)).await?;
        if let Some(len) = dl.content_length
            && len != stat.size
        {
            return Err(DatabricksError::Http {
                method: "GET".into(),
                path: format!("{}/{rel}", src.root()),
                status: 412,
                code: "PRECONDITION_FAILED".into(),
                message: format!("listed with {} bytes, now {len}", stat.size),
                retry_after: None,
            });
        }
        target.upload(tgt, rel, stat.size, dl.body).await
    };
    let (r, _) = retry
        .retry(attempt, |e: &DatabricksError, d| {
            tracing::warn!(error = %e, delay_ms = d.as_millis() as u64, "file copy failed, retrying");
        })
        .await;
    match r {
        Ok(()) => Ok(true),
        Err(DatabricksError::Http { status: 412, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What removing a volume gone from the source did.
#[derive(Debug, Default)]
pub struct Removed {
    /// The calls made (or, in a dry run, that would be).
    pub statements: Vec<String>,
    pub files_deleted: u64,
}

/// A target volume whose source is gone (`volumes.delete_extra`): each of its files deleted
/// through the Files API, then the volume itself (`DELETE …/volumes/{name}`) — so an
/// external volume's files go too, as they do on the native engine. Nothing happens to a
/// volume that is already gone; a listing that strays outside the volume stops it.
pub async fn remove_volume(
    target: &WorkspaceClient,
    name: &str,
    dry_run: bool,
) -> Result<Removed, DatabricksError> {
    let v = VolumeName::parse(name)?;
    if target.get_volume(&v.full_name()).await?.is_none() {
        return Ok(Removed::default());
    }
    let tree = target.list_tree(&v, &[]).await?;
    if let Some(r) = tree.refused.first() {
        return Err(DatabricksError::Refused(format!(
            "volume {name}: not removed, its listing named a path outside it ({r})"
        )));
    }
    // The user's files; replicator's own bookkeeping (`OURS`) goes too but is not counted.
    let ours = |rel: &str| {
        OURS.iter()
            .any(|d| rel == *d || rel.starts_with(&format!("{d}/")))
    };
    let files = tree.files.keys().filter(|rel| !ours(rel)).count() as u64;
    if !dry_run {
        for rel in tree.files.keys() {
            target.delete_file(&v, rel).await?;
        }
        target.delete_volume(&v).await?;
    }
    Ok(Removed {
        statements: vec![format!(
            "DELETE volume {} ({files} file(s) deleted first)",
            v.full_name()
        )],
        files_deleted: files,
    })
}

/// Create the target volume if needed and bring its files up to the source's.
pub async fn sync_volume(
    source: &WorkspaceClient,
    target: &WorkspaceClient,
    source_full_name: &str,
    target_full_name: &str,
    map: &dyn StorageMap,
    opts: &VolumeSyncOptions,
) -> Result<VolumeOutcome, DatabricksError> {
    let src = VolumeName::parse(source_full_name)?;
    let tgt = VolumeName::parse(target_full_name)?;
    let dry = opts.dry_run || target.is_dry_run();
    let mut out = VolumeOutcome {
        source: src.full_name(),
        target: tgt.full_name(),
        ..Default::default()
    };
    let manifest_path = shard_manifest(opts.shard);
    let exists = ensure_volume(source, target, &src, &tgt, map, dry, &opts.retry, &mut out).await?;
    let source_tree = source.list_tree(&src, &OURS).await?;
    out.findings.extend(
        source_tree
            .refused
            .iter()
            .map(|r| format!("source listing: {r}")),
    );
    let (target_tree, manifest) = if exists {
        let t = target.list_tree(&tgt, &OURS).await?;
        out.findings
            .extend(t.refused.iter().map(|r| format!("target listing: {r}")));
        let m = read_manifest(target, &tgt, &src, &manifest_path, &mut out.findings).await?;
        (t, m)
    } else {
        (VolumeTree::default(), Manifest::default())
    };
    let p = plan(&source_tree, &target_tree, &manifest, opts.shard);
    out.files_unchanged = p.unchanged.len() as u64;
    if !p.extra_files.is_empty() && !opts.delete_extra {
        out.findings.push(format!(
            "{} file(s) only in target {tgt} kept (delete_extra is off), e.g. {}",
            p.extra_files.len(),
            p.extra_files[0]
        ));
    }
    if dry {
        out.files_copied = p.copy.len() as u64;
        out.bytes_copied = p.copy.iter().map(|(_, s)| s.size).sum();
        out.dirs_created = p.mkdirs.len() as u64;
        if opts.delete_extra {
            out.files_deleted = p.extra_files.len() as u64;
        }
        out.changed = !out.statements.is_empty()
            || out.files_copied + out.files_deleted + out.dirs_created > 0;
        return Ok(out);
    }
    for d in &p.mkdirs {
        target.create_directory(&tgt, d).await?;
        out.dirs_created += 1;
    }
    let results: Vec<(String, FileStat, Result<bool, DatabricksError>)> =
        futures::stream::iter(p.copy.iter().cloned())
            .map(|(rel, stat)| {
                let (src, tgt) = (&src, &tgt);
                async move {
                    let r = copy_file(source, target, src, tgt, &rel, stat, &opts.retry).await;
                    (rel, stat, r)
                }
            })
            .buffer_unordered(opts.parallelism.max(1))
            .collect()
            .await;
    let mut in_sync: BTreeSet<String> = p.unchanged.iter().cloned().collect();
    for (rel, stat, r) in results {
        match r {
            Ok(true) => {
                out.files_copied += 1;
                out.bytes_copied += stat.size;
                in_sync.insert(rel);
            }
            Ok(false) => out.findings.push(format!(
                "{src}/{rel} changed while being copied; copied next run"
            )),
            Err(e) => {
                out.files_failed += 1;
                out.findings
                    .push(format!("copy of {src}/{rel} failed: {e}"));
            }
        }
    }
    if opts.delete_extra {
        for rel in &p.extra_files {
            target.delete_file(&tgt, rel).await?;
            out.files_deleted += 1;
        }
        for d in &p.extra_dirs {
            target.delete_directory(&tgt, d).await?;
        }
    }
    out.changed = !out.statements.is_empty()
        || out.files_copied + out.files_deleted + out.dirs_created > 0
        || (!p.extra_dirs.is_empty() && opts.delete_extra);
    let update = ManifestUpdate {
        source_tree: &source_tree,
        target_before: &target_tree,
        in_sync: &in_sync,
        old: &manifest,
        relist: out.files_copied > 0,
        path: &manifest_path,
    };
    update.write(target, &src, &tgt).await.map(|()| out)
}

/// What the manifest is rewritten from after a run.
struct ManifestUpdate<'a> {
    source_tree: &'a VolumeTree,
    /// The target as listed before the copies.
    target_before: &'a VolumeTree,
    /// Files now in sync: unchanged, or copied this run.
    in_sync: &'a BTreeSet<String>,
    old: &'a Manifest,
    /// Files were uploaded: list the target again for their new stats.
    relist: bool,
    /// Where the manifest lives in the target volume.
    path: &'a str,
}

impl ManifestUpdate<'_> {
    /// Record each file in sync with both sides' stats; written only when that differs from
    /// the manifest read, so a run that changed nothing writes nothing.
    async fn write(
        &self,
        target: &WorkspaceClient,
        src: &VolumeName,
        tgt: &VolumeName,
    ) -> Result<(), DatabricksError> {
        let relisted;
        let target_files = if self.relist {
            relisted = target.list_tree(tgt, &OURS).await?;
            &relisted.files
        } else {
            &self.target_before.files
        };
        let (source_tree, in_sync, old) = (self.source_tree, self.in_sync, self.old);
        let mut files = BTreeMap::new();
        for rel in in_sync {
            if let (Some(s), Some(t)) = (source_tree.files.get(rel), target_files.get(rel)) {
                files.insert(
                    rel.clone(),
                    Record {
                        source_size: s.size,
                        source_modified: s.last_modified,
                        target_size: t.size,
                        target_modified: t.last_modified,
                    },
                );
            }
        }
        let manifest = Manifest {
            source: src.full_name(),
            files,
        };
        if &manifest == old {
            return Ok(());
        }
        let json = serde_json::to_vec(&manifest).map_err(|e| DatabricksError::Protocol {
            path: self.path.into(),
            detail: e.to_string(),
        })?;
        let len = json.len() as u64;
        let body = futures::stream::once(async move { Ok(Bytes::from(json)) }).boxed();
        target.upload(tgt, self.path, len, body).await
    }
}

mod diff;
pub use diff::{VolumeDiff, diff_volume};
mod location;
pub use location::{LocationOutcome, LocationStatus, ensure_external_location};

#[cfg(test)]
mod tests;
