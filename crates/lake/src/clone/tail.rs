//! The incremental fast path: replay only the source commits the target has not seen. It
//! yields the same [`ClonePlan`] as the full diff of both snapshots (`plan.rs`).
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
use replicator_proto::CloneMetrics;
use serde_json::{Value, json};

use super::CloneOptions;
use super::commit::{ENGINE_INFO, SOURCE_COMMIT_PARAM, fingerprint};
use super::paths::{SourceFile, source_file};
use super::plan::{ClonePlan, copies_for};
use super::snapshot::{TargetState, commit_info, commit_versions, read_commit};
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

/// Plan from the log tail. `Ok(None)` means "not applicable: run the full diff".
pub(super) async fn plan_tail(
    source: &TableLocation,
    target: &TableLocation,
    options: &CloneOptions,
    state: &TargetState,
    started: Instant,
) -> Result<Option<ClonePlan>, LakeError> {
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
    // At source version V, against the target's last clone.
    let mut plan = ClonePlan {
        source: source.clone(),
        target: target.clone(),
        source_version: v,
        target_version: Some(last.target_version),
        log_tail: Some(v - s),
        copies: Vec::new(),
        table_actions: Vec::new(),
        removes: Vec::new(),
        adds: Vec::new(),
        metrics: CloneMetrics {
            source_table_size: last.source_table_size,
            source_num_of_files: last.source_num_of_files,
            ..Default::default()
        },
        source_commit: Some(source_commit),
        in_commit_after: last.in_commit_timestamp,
        staged_commits: state.staged_commits.clone(),
        started,
    };
    if v == s || (added.is_empty() && removed.is_empty()) {
        // Only commits that change no file (commitInfo-only, `txn`, change data).
        return Ok(Some(plan));
    }

    let added_size: u64 = added.values().map(|f| f.size).sum();
    let removed_size: u64 = removed.values().map(|(_, size)| size).sum();
    let metrics = &mut plan.metrics;
    metrics.source_table_size =
        (metrics.source_table_size + added_size).saturating_sub(removed_size);
    metrics.source_num_of_files =
        (metrics.source_num_of_files + added.len() as u64).saturating_sub(removed.len() as u64);
    metrics.num_removed_files = removed.len() as u64;
    metrics.removed_files_size = removed_size;

    plan.copies = copies_for(source, target, v, added.values(), options).await?;
    plan.count_copies();
    plan.removes = removed.into_values().collect();
    plan.adds = added.into_values().map(|f| f.add).collect();
    Ok(Some(plan))
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
