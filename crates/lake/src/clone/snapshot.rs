//! What a clone reads before it decides anything: the source and target snapshots (delta-rs
//! tables), the target's log (its commits, what killed writers staged there), the names of
//! Delta log files, and whether a location holds a Delta table at all. The target rules of
//! `docs/safety.md` ("a table is only replaced when asked", "the source and the target never
//! overlap" through the log) are applied here, by [`TargetState::read`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde_json::Value;

use super::CloneOptions;
use crate::{LakeError, TableLocation};

/// Load the latest version committed at or before `ts` (`TIMESTAMP AS OF`).
pub(crate) async fn load_as_of(
    loc: &TableLocation,
    ts: chrono::DateTime<chrono::Utc>,
) -> Result<DeltaTable, LakeError> {
    ensure_table(loc).await?;
    let url = loc.url().as_str();
    let mut table = builder(loc, None)?
        .build()
        .map_err(|e| LakeError::from_delta(url, None, e))?;
    table
        .load_with_datetime(ts)
        .await
        .map_err(|e| LakeError::Log {
            url: url.to_owned(),
            detail: format!("no version at or before {}: {e}", ts.to_rfc3339()),
            transient: false,
        })?;
    // delta-rs falls back to the earliest version for an instant before it; `TIMESTAMP AS
    // OF` must refuse instead.
    let snap = table
        .snapshot()
        .map_err(|e| LakeError::from_delta(url, None, e))?;
    let version = snap.version();
    if let Some(committed) = snap.version_timestamp(version)
        && committed > ts.timestamp_millis()
    {
        return Err(LakeError::Log {
            url: url.to_owned(),
            detail: format!(
                "no version at or before {}: the earliest available version ({version}) was committed at {}",
                ts.to_rfc3339(),
                chrono::DateTime::from_timestamp_millis(committed)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
            transient: false,
        });
    }
    Ok(table)
}

/// Load a table (latest or a given version) with delta-rs.
pub(crate) async fn load(
    loc: &TableLocation,
    version: Option<u64>,
) -> Result<DeltaTable, LakeError> {
    ensure_table(loc).await?;
    load_existing(loc, version).await
}

async fn ensure_table(loc: &TableLocation) -> Result<(), LakeError> {
    if has_delta_log(loc).await? {
        Ok(())
    } else {
        Err(LakeError::NotATable {
            url: loc.url().to_string(),
        })
    }
}

/// A delta-rs builder for `loc`, carrying its storage options.
fn builder(
    loc: &TableLocation,
    version: Option<u64>,
) -> Result<deltalake::DeltaTableBuilder, LakeError> {
    let mut builder = deltalake::DeltaTableBuilder::from_url(loc.url().clone())
        .map_err(|e| LakeError::from_delta(loc.url().as_str(), version, e))?;
    if loc.has_own_store() {
        builder = builder.with_storage_backend(loc.object_store().clone(), loc.url().clone());
    }
    Ok(builder.with_storage_options(
        loc.options()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

/// [`load`] for a location already known to hold a `_delta_log`.
pub(super) async fn load_existing(
    loc: &TableLocation,
    version: Option<u64>,
) -> Result<DeltaTable, LakeError> {
    let url = loc.url().as_str();
    let mut builder = builder(loc, version)?;
    if let Some(v) = version {
        builder = builder.with_version(v as _);
    }
    builder
        .load()
        .await
        .map_err(|e| LakeError::from_delta(url, version, e))
}

/// What a clone learns about its target before it starts.
pub(crate) struct TargetState {
    /// The target holds a Delta table (a commit or checkpoint in its `_delta_log`).
    pub(crate) is_table: bool,
    /// The target's latest commit: version and body.
    pub(crate) latest: Option<(u64, bytes::Bytes)>,
    /// Commits a killed writer staged in a local target's `_delta_log` (`NNN.json#N`).
    pub(super) staged_commits: Vec<PathBuf>,
}

/// Commits read back from a target that is not this source's replica, looking for the
/// last CLONE: a replica's latest commit is normally its last clone; a few commits by
/// others (VACUUM, OPTIMIZE on the replica) are looked through.
const CLONE_HISTORY: usize = 100;

impl TargetState {
    /// Read the target's log and apply the target rules: a target that holds a Delta table
    /// must be this source's replica (its last CLONE commit names this source) unless
    /// `options.replace`; and it may never be the source table itself seen through another
    /// path (its latest commit file byte for byte the source's commit of that version).
    pub(super) async fn read(
        source: &TableLocation,
        target: &TableLocation,
        options: &CloneOptions,
    ) -> Result<Self, LakeError> {
        let (versions, staged_commits) = list_log(target).await?;
        let is_table = !versions.is_empty() || has_delta_log(target).await?;
        let latest = match versions.last() {
            Some(&v) => read_commit(target, v).await?.map(|body| (v, body)),
            None => None,
        };
        let state = Self {
            is_table,
            latest,
            staged_commits,
        };
        if !is_table {
            return Ok(state);
        }
        if let Some((_, body)) = &state.latest
            && last_clone_source(body).is_some_and(|s| source.is_same_as(&s))
        {
            return Ok(state);
        }
        // Not (visibly) this source's replica. Never the source itself, even with replace.
        if let Some((v, body)) = &state.latest
            && read_commit(source, *v).await?.is_some_and(|b| b == *body)
        {
            return Err(LakeError::Invalid(format!(
                "target {target} holds the Delta log of source {source} (the same table under another path, or a copy of it); refusing to clone onto it"
            )));
        }
        if options.replace {
            return Ok(state);
        }
        // Look back through a few commits for the last clone: it must be from this source.
        let mut cloned_from = None;
        for &v in versions.iter().rev().take(CLONE_HISTORY) {
            let body = match &state.latest {
                Some((latest, body)) if *latest == v => Some(body.clone()),
                _ => read_commit(target, v).await?,
            };
            let Some(body) = body else { break };
            if let Some(info) = commit_info(&body)
                && info["operation"] == "CLONE"
            {
                cloned_from = info["operationParameters"]["source"]
                    .as_str()
                    .map(str::to_owned);
                break;
            }
        }
        if cloned_from.is_some_and(|s| source.is_same_as(&s)) {
            return Ok(state);
        }
        Err(LakeError::NotAReplica {
            target: target.url().to_string(),
            source_url: source.url().to_string(),
        })
    }
}

/// The `commitInfo` of a commit file.
pub(crate) fn commit_info(body: &[u8]) -> Option<Value> {
    body.split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .find_map(|a| a.get("commitInfo").cloned())
}

/// The `source` of a commit that is a CLONE.
fn last_clone_source(body: &[u8]) -> Option<String> {
    let info = commit_info(body)?;
    (info["operation"] == "CLONE")
        .then(|| {
            info["operationParameters"]["source"]
                .as_str()
                .map(str::to_owned)
        })
        .flatten()
}

/// The body of commit `version` of `loc`, or `None` when there is no such file.
pub(crate) async fn read_commit(
    loc: &TableLocation,
    version: u64,
) -> Result<Option<bytes::Bytes>, LakeError> {
    let path = loc.object_path(&format!("_delta_log/{version:020}.json"));
    match loc.object_store().get(&path).await {
        Ok(r) => r
            .bytes()
            .await
            .map(Some)
            .map_err(|e| LakeError::store(&path, e)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(LakeError::store(&path, e)),
    }
}

/// The versions of the commit files in `loc`'s `_delta_log` (sorted), and for a local
/// location the commits a killed writer left staged there (`NNN.json#N`).
async fn list_log(loc: &TableLocation) -> Result<(Vec<u64>, Vec<PathBuf>), LakeError> {
    let Some(dir) = loc.local_dir() else {
        return Ok((commit_versions(loc, None).await?, Vec::new()));
    };
    let log = dir.join("_delta_log");
    let entries = match std::fs::read_dir(&log) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok((Vec::new(), Vec::new()));
        }
        Err(e) => {
            return Err(LakeError::Invalid(format!(
                "cannot list {}: {e}",
                log.display()
            )));
        }
    };
    let (mut versions, mut staged) = (Vec::new(), Vec::new());
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((base, n)) = name.split_once('#') {
            if split_log_name(base).is_some()
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
            {
                staged.push(e.path());
            }
        } else if let Some((v, ".json")) = split_log_name(name)
            && let Ok(v) = v.parse::<u64>()
        {
            versions.push(v);
        }
    }
    versions.sort_unstable();
    Ok((versions, staged))
}

/// Whether `loc` has a `_delta_log` holding a commit, a checkpoint or `_last_checkpoint`.
/// Anything else there is not a table: a writer killed mid-commit leaves an empty
/// `_delta_log` or only its staged `NNN.json#1`, and such a target must be cloned into, not
/// refused as a broken table.
pub(crate) async fn has_delta_log(loc: &TableLocation) -> Result<bool, LakeError> {
    if let Some(dir) = loc.local_dir() {
        // One directory read that stops at the first log entry, instead of a recursive listing.
        let log = dir.join("_delta_log");
        return match std::fs::read_dir(&log) {
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_str().is_some_and(is_log_entry))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(LakeError::store(
                log.display(),
                object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                },
            )),
        };
    }
    let log = loc.object_path("_delta_log");
    let mut listing = loc.object_store().list(Some(&log));
    while let Some(entry) = listing.next().await {
        match entry {
            Ok(meta) if meta.location.filename().is_some_and(is_log_entry) => return Ok(true),
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(LakeError::store(&log, e)),
        }
    }
    Ok(false)
}

/// A Delta log file name: `_last_checkpoint`, or a version (20 digits) followed by a commit,
/// checkpoint, checksum or compaction suffix ending in `.json`, `.parquet` or `.crc`.
pub(super) fn is_log_entry(name: &str) -> bool {
    name == "_last_checkpoint"
        || split_log_name(name).is_some_and(|(_, rest)| {
            [".json", ".parquet", ".crc"]
                .iter()
                .any(|ext| rest.ends_with(ext))
        })
}

/// A versioned log file name split into its 20-digit version and the rest, which starts
/// with `.` (`.json`, `.checkpoint.parquet`, `.crc`, …).
pub(super) fn split_log_name(name: &str) -> Option<(&str, &str)> {
    let (version, rest) = (name.get(..20)?, name.get(20..)?);
    (version.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('.'))
        .then_some((version, rest))
}

/// Every live domain (system `delta.*` domains included) of `table` at `version`.
///
/// Domain metadata needs the `domainMetadata` writer feature: without it there is nothing to
/// read, and we skip the second log replay that reading would cost.
pub(crate) async fn domain_metadata(
    table: &DeltaTable,
    version: u64,
    protocol: &Value,
) -> Result<BTreeMap<String, String>, LakeError> {
    let has_domains = protocol["writerFeatures"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "domainMetadata"));
    if !has_domains {
        return Ok(BTreeMap::new());
    }
    let engine = table.log_store().engine(None);
    let url = table.table_url().clone();
    let url_s = url.to_string();
    tokio::task::spawn_blocking(
        move || -> Result<BTreeMap<String, String>, delta_kernel::Error> {
            let snap = delta_kernel::Snapshot::builder_for(url.as_str())
                .at_version(version)
                .build(engine.as_ref())?;
            let domains = snap.get_domain_metadatas_internal(engine.as_ref(), None)?;
            Ok(domains
                .into_iter()
                .filter(|(_, d)| !d.is_removed())
                .map(|(k, d)| (k, d.configuration().to_owned()))
                .collect())
        },
    )
    .await
    .map_err(|e| LakeError::Invalid(format!("domain metadata task failed: {e}")))?
    .map_err(|e| LakeError::Log {
        url: url_s,
        detail: format!("reading domain metadata: {e}"),
        transient: false,
    })
}

/// Versions of the commit files (`NNNNNNNNNNNNNNNNNNNN.json`) in a `_delta_log`, sorted;
/// only those after `after` when given.
pub(crate) async fn commit_versions(
    loc: &TableLocation,
    after: impl Into<Option<u64>>,
) -> Result<Vec<u64>, LakeError> {
    let after = after.into();
    let version_of = |name: &str| {
        split_log_name(name)
            .filter(|(_, rest)| *rest == ".json")
            .and_then(|(version, _)| version.parse::<u64>().ok())
    };
    let mut versions: Vec<u64> = if let Some(dir) = loc.local_dir() {
        // One directory read, no stat per entry.
        match std::fs::read_dir(dir.join("_delta_log")) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(version_of))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(LakeError::Invalid(format!(
                    "cannot list {}/_delta_log: {e}",
                    dir.display()
                )));
            }
        }
    } else {
        let prefix = loc.object_path("_delta_log");
        let listing = match after {
            Some(s) => {
                let offset = loc.object_path(&format!("_delta_log/{s:020}.json"));
                loc.object_store().list_with_offset(Some(&prefix), &offset)
            }
            None => loc.object_store().list(Some(&prefix)),
        };
        listing
            .try_filter_map(|meta| async move { Ok(meta.location.filename().and_then(version_of)) })
            .try_collect()
            .await
            .map_err(|e| LakeError::store(&prefix, e))?
    };
    if let Some(s) = after {
        versions.retain(|v| *v > s);
    }
    versions.sort_unstable();
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_log_files_make_a_table() {
        for name in [
            "_last_checkpoint",
            "00000000000000000000.json",
            "00000000000000000010.checkpoint.parquet",
            "00000000000000000010.checkpoint.0000000001.0000000002.parquet",
            "00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json",
            "00000000000000000003.00000000000000000005.compacted.json",
            "00000000000000000003.crc",
        ] {
            assert!(is_log_entry(name), "{name}");
        }
        for name in [
            "00000000000000000000.json#1",
            ".00000000000000000000.json.crc",
            "0000000000000000000.json",
            "00000000000000000000json",
            "_commits",
            "notes.txt",
            "",
        ] {
            assert!(!is_log_entry(name), "{name}");
        }
    }
}
