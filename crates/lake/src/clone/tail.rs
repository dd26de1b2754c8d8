//! The incremental fast path: replay only the source commits the target has not seen.
//!
//! A target whose latest commit is a `CLONE` written by this engine from the same source
//! holds exactly the source's snapshot at that commit's `sourceVersion` (S). Bringing it to
//! a later source version V then needs only the source's commits S+1..=V: their adds and
//! removes, netted out, are the clone's adds and removes. That skips building either
//! snapshot (listing and replaying both logs and their checkpoints), which is most of the
//! cost of a small incremental clone.
//!
//! The path declines (and the full snapshot diff runs instead) whenever it cannot be sure:
//! the target was last written by something else, commit S or a commit after it is gone,
//! the range changes metadata, protocol or domain metadata (schema changes, upgrades, row
//! tracking, clustering), an action is unknown, a file is re-added without a data change
//! (it may already be live) or after its removal, or a remove lacks its size or partition
//! values.

use std::collections::HashMap;
use std::time::Instant;

use deltalake::kernel::{Add, Remove};
use futures::TryStreamExt;
use replicator_proto::CloneMetrics;
use serde_json::{Value, json};

use super::{
    CloneCommit, CloneOptions, CloneReport, Copied, ENGINE_INFO, SOURCE_COMMIT_PARAM, SourceFile,
    TargetLock, TargetState, cancelled, commit_info, copy_files, fingerprint, interrupted,
    read_commit, source_file, split_log_name,
};
use crate::{LakeError, TableLocation};

/// A file key: (path in the target, deletion vector id).
type Key = (String, Option<String>);

/// What the target's latest commit says about the clone that wrote it.
struct LastClone {
    target_version: u64,
    source_version: u64,
    source_table_size: u64,
    source_num_of_files: u64,
    in_commit_timestamp: Option<i64>,
    /// Fingerprint of the source commit file at `source_version` when it was cloned.
    source_commit: String,
}

/// Try the fast path. `Ok(None)` means "not applicable: run the full diff".
pub(super) async fn clone_tail(
    source: &TableLocation,
    target: &TableLocation,
    options: &CloneOptions,
    started: Instant,
    state: &TargetState,
    lock: &mut TargetLock,
) -> Result<Option<CloneReport>, LakeError> {
    if options.timestamp.is_some() {
        return Ok(None);
    }
    let Some(last) = last_clone(source, state) else {
        return Ok(None);
    };
    let s = last.source_version;
    let from_s = commit_versions(source, s.checked_sub(1)).await?;
    // Commit S itself (so this is still the table that was cloned, not an empty or
    // recreated one) and every commit after it must be there, with no gap.
    if from_s.first() != Some(&s) || from_s.iter().zip(s..).any(|(v, want)| *v != want) {
        return Ok(None);
    }
    let latest = from_s.last().copied().unwrap_or(s);
    let v = options.version.unwrap_or(latest);
    if v < s || v > latest {
        return Ok(None);
    }
    let mut metrics = CloneMetrics {
        source_table_size: last.source_table_size,
        source_num_of_files: last.source_num_of_files,
        ..Default::default()
    };
    // A report at source version V without a new target version.
    let uncommitted = |metrics: CloneMetrics| CloneReport {
        source_version: v,
        target_version: last.target_version,
        committed: false,
        metrics,
        duration_ms: started.elapsed().as_millis() as u64,
        log_tail: true,
    };

    // Read S..=V at once, then net the actions of S+1..=V out in order. Commit S is read for
    // its fingerprint: it proves the source is still the table that was cloned.
    // A commit cleaned up since the listing reads as `None`: the full diff copes.
    let bodies =
        futures::future::try_join_all((s..=v).map(|version| read_commit(source, version))).await?;
    let Some(bodies) = bodies.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    if fingerprint(&bodies[0]) != last.source_commit {
        return Ok(None);
    }
    let source_commit = fingerprint(&bodies[bodies.len() - 1]);
    let bodies = &bodies[1..];
    let Some((added, removed)) = net_actions(source, target, bodies, &options.external_roots)?
    else {
        return Ok(None);
    };
    if v == s || (added.is_empty() && removed.is_empty()) {
        // Only commits that change no file (commitInfo-only, `txn`, change data).
        return Ok(Some(uncommitted(metrics)));
    }

    let added_size: u64 = added.values().map(|f| f.size).sum();
    let removed_size: u64 = removed.values().map(|(_, size)| size).sum();
    metrics.source_table_size =
        (metrics.source_table_size + added_size).saturating_sub(removed_size);
    metrics.source_num_of_files =
        (metrics.source_num_of_files + added.len() as u64).saturating_sub(removed.len() as u64);
    metrics.num_removed_files = removed.len() as u64;
    metrics.removed_files_size = removed_size;

    // The target existed before: files copied by a failed attempt are left for the retry.
    match copy_files(
        source,
        target,
        v,
        added.values(),
        options,
        &mut metrics,
        lock,
    )
    .await
    {
        Ok(Copied::DryRun) => {
            return Ok(Some(uncommitted(metrics)));
        }
        Ok(Copied::Done(_)) | Err(_) if cancelled(options) => {
            return Err(interrupted(source, target, false));
        }
        Ok(Copied::Done(_)) => {}
        Err((e, _)) => return Err(e),
    }

    let mut actions: Vec<Value> = removed
        .into_values()
        .map(|(r, _)| json!({ "remove": r }))
        .collect();
    actions.extend(added.into_values().map(|f| json!({ "add": f.add })));
    let commit = CloneCommit {
        source,
        source_version: v,
        source_commit: Some(source_commit),
        metrics: &metrics,
        read_version: Some(last.target_version),
        in_commit_after: last.in_commit_timestamp,
    };
    let next_version = commit.write(target, actions).await?;
    tracing::info!(
        %source, %target, source_version = v, target_version = next_version,
        copied_files = metrics.num_copied_files, copied_bytes = metrics.copied_files_size,
        removed_files = metrics.num_removed_files, replayed_commits = v - s,
        "clone committed (log tail)"
    );
    Ok(Some(CloneReport {
        source_version: v,
        target_version: next_version,
        committed: true,
        metrics,
        duration_ms: started.elapsed().as_millis() as u64,
        log_tail: true,
    }))
}

/// The target's latest commit, when it is a clone of `source` written by this engine.
fn last_clone(source: &TableLocation, state: &TargetState) -> Option<LastClone> {
    let (target_version, body) = state.latest.as_ref()?;
    let info = commit_info(body)?;
    let params = &info["operationParameters"];
    let metric = |name: &str| {
        info["operationMetrics"][name]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let ours = info["operation"] == "CLONE"
        && info["engineInfo"] == ENGINE_INFO
        && params["source"]
            .as_str()
            .is_some_and(|s| source.is_same_as(s))
        && params["isShallow"] == "false";
    let source_version = params["sourceVersion"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok());
    let source_commit = params[SOURCE_COMMIT_PARAM].as_str()?.to_owned();
    match (
        ours,
        source_version,
        metric("sourceTableSize"),
        metric("sourceNumOfFiles"),
    ) {
        (true, Some(source_version), Some(size), Some(files)) => Some(LastClone {
            target_version: *target_version,
            source_version,
            source_table_size: size,
            source_num_of_files: files,
            in_commit_timestamp: info["inCommitTimestamp"].as_i64(),
            source_commit,
        }),
        _ => None,
    }
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
                loc.store().list_with_offset(Some(&prefix), &offset)
            }
            None => loc.store().list(Some(&prefix)),
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

/// Net the file actions of consecutive commits: the files added and still present at the
/// end (keyed as in the target), and the files present before that were removed (with
/// their target `remove` action and size). `None` when the fast path must decline.
#[allow(clippy::type_complexity)]
fn net_actions(
    source: &TableLocation,
    target: &TableLocation,
    commits: &[bytes::Bytes],
    roots: &[TableLocation],
) -> Result<Option<(HashMap<Key, SourceFile>, HashMap<Key, (Value, u64)>)>, LakeError> {
    let mut added: HashMap<Key, SourceFile> = HashMap::new();
    let mut removed: HashMap<Key, (Value, u64)> = HashMap::new();
    let now = chrono::Utc::now().timestamp_millis();
    for body in commits {
        for line in body.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(Value::Object(action)) = serde_json::from_slice::<Value>(line) else {
                return Ok(None);
            };
            let Some((kind, body)) = action.into_iter().next() else {
                return Ok(None);
            };
            match kind.as_str() {
                "add" => {
                    // (`Add` decodes the path as it deserializes, like the snapshot's view.)
                    let Ok(add) = serde_json::from_value::<Add>(body) else {
                        return Ok(None);
                    };
                    // A file re-added without a data change (statistics recomputed, or a
                    // rewrite) may already be live in the target: only a snapshot can say.
                    if !add.data_change {
                        return Ok(None);
                    }
                    let file = source_file(source, target, add, roots)?;
                    if removed.contains_key(&file.key) {
                        return Ok(None);
                    }
                    added.insert(file.key.clone(), file);
                }
                "remove" => {
                    let Ok(remove) = serde_json::from_value::<Remove>(body) else {
                        return Ok(None);
                    };
                    // Size and partition values go into the target's remove; without them
                    // only the target's snapshot has them.
                    let (Some(size), Some(partition_values)) =
                        (remove.size.filter(|s| *s >= 0), remove.partition_values)
                    else {
                        return Ok(None);
                    };
                    // Key it as the target knows it: the same transformation as an add.
                    let as_add = Add {
                        path: remove.path,
                        size,
                        deletion_vector: remove.deletion_vector,
                        partition_values,
                        ..Default::default()
                    };
                    let Ok(file) = source_file(source, target, as_add, roots) else {
                        return Ok(None);
                    };
                    if added.remove(&file.key).is_some() {
                        continue;
                    }
                    let r = json!({
                        "path": file.add["path"],
                        "deletionVector": file.add["deletionVector"],
                        "dataChange": true,
                        "deletionTimestamp": now,
                        "extendedFileMetadata": true,
                        "size": size,
                        "partitionValues": file.add["partitionValues"],
                    });
                    removed.insert(file.key, (r, size as u64));
                }
                // Change data files are not part of a snapshot; the rest change no file.
                "commitInfo" | "txn" | "cdc" => {}
                // metaData, protocol, domainMetadata, and anything unknown: full diff.
                _ => return Ok(None),
            }
        }
    }
    Ok(Some((added, removed)))
}
