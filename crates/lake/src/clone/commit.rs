//! Writing the clone's one commit: `commitInfo` (operation `CLONE`, the source, its version
//! and the fingerprint of its commit file, the six metrics) followed by the plan's actions,
//! put-if-absent at the next target version so a concurrent writer is a conflict, never a
//! lost update. [`put_commit`] and [`new_commit_info`] are shared with the other commits this
//! crate writes itself (`RESTORE`, the sync metadata tables).

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use replicator_proto::CloneMetrics;
use serde_json::{Value, json};

use super::json_err;
use crate::{LakeError, TableLocation};

/// The commit a clone writes: `commitInfo` (operation `CLONE`, source, source version and
/// the six metrics) followed by the clone's actions.
pub(super) struct CloneCommit<'a> {
    pub(super) source: &'a TableLocation,
    pub(super) source_version: u64,
    /// Fingerprint of the source's commit file at `source_version` (see
    /// [`commit_fingerprint`]), when it exists.
    pub(super) source_commit: Option<String>,
    pub(super) metrics: &'a CloneMetrics,
    /// The target version the clone read (none for a first clone).
    pub(super) read_version: Option<u64>,
    /// With in-commit timestamps on: the previous commit's timestamp, which the new one
    /// must exceed.
    pub(super) in_commit_after: Option<i64>,
}

impl CloneCommit<'_> {
    /// Write the next target version (`read_version + 1`, or 0) with put-if-absent, so the
    /// commit is atomic and a concurrent writer is detected as a conflict. Our copied
    /// files stay behind on a conflict: harmless orphans, or adopted by a retry that
    /// re-reads the target and converges.
    pub(super) async fn write(
        &self,
        target: &TableLocation,
        actions: Vec<Value>,
    ) -> Result<u64, LakeError> {
        let next_version = self.read_version.map_or(0, |v| v + 1);
        let m = self.metrics;
        let mut parameters = json!({
            "source": self.source.url().as_str(),
            "sourceVersion": self.source_version.to_string(),
            "isShallow": "false",
        });
        if let Some(f) = &self.source_commit {
            parameters[SOURCE_COMMIT_PARAM] = json!(f);
        }
        let metrics = json!({
            "sourceTableSize": m.source_table_size.to_string(),
            "sourceNumOfFiles": m.source_num_of_files.to_string(),
            "numRemovedFiles": m.num_removed_files.to_string(),
            "numCopiedFiles": m.num_copied_files.to_string(),
            "removedFilesSize": m.removed_files_size.to_string(),
            "copiedFilesSize": m.copied_files_size.to_string(),
        });
        let info = new_commit_info(
            "CLONE",
            parameters,
            metrics,
            self.read_version,
            self.in_commit_after,
        );
        put_commit(target, next_version, info, actions).await
    }
}

/// A `commitInfo` written by this engine: `timestamp` (now), `operation`,
/// `operationParameters`, `operationMetrics`, `readVersion` (when there was one),
/// `engineInfo`, a fresh `txnId`, and `inCommitTimestamp` when in-commit timestamps are on
/// (`in_commit_after`: the previous commit's, which the new one must exceed).
pub(crate) fn new_commit_info(
    operation: &str,
    parameters: Value,
    metrics: Value,
    read_version: Option<u64>,
    in_commit_after: Option<i64>,
) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let mut info = json!({
        "timestamp": now,
        "operation": operation,
        "operationParameters": parameters,
        "operationMetrics": metrics,
        "isBlindAppend": false,
        "engineInfo": ENGINE_INFO,
        "txnId": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(v) = read_version {
        info["readVersion"] = json!(v);
    }
    if let Some(last) = in_commit_after {
        info["inCommitTimestamp"] = json!(now.max(last + 1));
    }
    info
}

/// Write commit `version` of `loc` — `commitInfo` first (in-commit timestamps require it),
/// then `actions` — with put-if-absent, so the commit is atomic and a concurrent writer is a
/// [`LakeError::CommitConflict`] (transient: the caller re-reads and retries), never a lost
/// update. Returns `version`.
pub(crate) async fn put_commit(
    loc: &TableLocation,
    version: u64,
    commit_info: Value,
    actions: Vec<Value>,
) -> Result<u64, LakeError> {
    let mut body = String::new();
    for mut a in std::iter::once(json!({ "commitInfo": commit_info })).chain(actions) {
        // Optional fields are omitted, not null, as Spark and Databricks write them.
        if let Some(action) = a
            .as_object_mut()
            .and_then(|o| o.values_mut().next())
            .and_then(|v| v.as_object_mut())
        {
            action.retain(|_, v| !v.is_null());
        }
        body.push_str(&serde_json::to_string(&a).map_err(json_err)?);
        body.push('\n');
    }
    let log_path = loc.object_path(&format!("_delta_log/{version:020}.json"));
    let put = loc
        .object_store()
        .put_opts(
            &log_path,
            PutPayload::from(body),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    match put {
        Ok(_) => Ok(version),
        Err(object_store::Error::AlreadyExists { .. }) => Err(LakeError::CommitConflict {
            url: loc.url().to_string(),
            version,
        }),
        Err(e) => Err(LakeError::store(&log_path, e)),
    }
}

/// The operation parameter holding the fingerprint of the source commit a clone copied: a
/// later incremental clone checks it to be sure the source is still the same table (not
/// deleted and recreated at the same location).
pub(super) const SOURCE_COMMIT_PARAM: &str = "sourceCommitFingerprint";

/// xxh3 of a commit file's bytes, as hex.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", twox_hash::XxHash3_64::oneshot(bytes))
}

/// The fingerprint of `loc`'s commit file at `version`; `None` when it cannot be read (a
/// version kept only in a checkpoint).
pub(super) async fn commit_fingerprint(loc: &TableLocation, version: u64) -> Option<String> {
    let path = loc.object_path(&format!("_delta_log/{version:020}.json"));
    let bytes = loc
        .object_store()
        .get(&path)
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    Some(fingerprint(&bytes))
}

/// `engineInfo` of the commits a clone writes.
pub(super) const ENGINE_INFO: &str = concat!("replicator/", env!("CARGO_PKG_VERSION"));
