//! Where a table's log stands, read without building a snapshot: the version of a commit and
//! a fingerprint of its file. Two readings with the same version and fingerprint mean the
//! table's snapshot is the same one (a commit file is written once, by put-if-absent, and a
//! table deleted and recreated at the same location writes different bytes: a new table id,
//! new timestamps). The reconciler uses it to prove that a replica pair has not changed since
//! its last deep validation, at the cost of a log listing and one small read per side.
//!
//! [`newest_commit_after`] reads the same tail of the log for a sync group's RPO: the newest
//! commit a cut at some instant does not cover.

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;

use crate::clone::{commit_info, commit_versions, fingerprint, has_delta_log};
use crate::{LakeError, TableLocation};

/// A commit of a table: its version and the fingerprint of its commit file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPoint {
    pub version: u64,
    /// xxh3 of the commit file's bytes, as hex.
    pub commit: String,
}

/// The commit of `loc` at `version` (its latest commit when `None`), or `None` when there is
/// no such commit file (not a table, or a version kept only in a checkpoint). `from` is a
/// hint for finding the latest commit: a version the log is known to have reached, so that an
/// object store lists only from there.
pub async fn log_point(
    loc: &TableLocation,
    version: Option<u64>,
    from: Option<u64>,
) -> Result<Option<LogPoint>, LakeError> {
    let version = match version {
        Some(v) => v,
        None => {
            let after = from.and_then(|v| v.checked_sub(1));
            let mut latest = commit_versions(loc, after).await?.last().copied();
            if latest.is_none() && after.is_some() {
                // The hint was wrong (the table was recreated shorter): list it all.
                latest = commit_versions(loc, None).await?.last().copied();
            }
            match latest {
                Some(v) => v,
                None => return Ok(None),
            }
        }
    };
    let relative = format!("_delta_log/{version:020}.json");
    let bytes = match loc.local_dir() {
        // A small local file: one read, no thread hop through the object store.
        Some(dir) => match std::fs::read(dir.join(&relative)) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LakeError::Invalid(format!(
                    "cannot read {}/{relative}: {e}",
                    dir.display()
                )));
            }
        },
        None => {
            let path = loc.object_path(&relative);
            match loc.object_store().get(&path).await {
                Ok(r) => r.bytes().await.map_err(|e| LakeError::store(&path, e))?,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(LakeError::store(&path, e)),
            }
        }
    };
    Ok(Some(LogPoint {
        version,
        commit: fingerprint(&bytes),
    }))
}

/// The newest commit of `table` whose timestamp is after `instant` — its version and
/// timestamp — or `None` when the table's latest commit is at or before `instant` (a cut
/// `TIMESTAMP AS OF instant` covers every commit). A commit's timestamp is its
/// `inCommitTimestamp` when the commit has one (in-commit timestamps enabled), else its
/// commit file's modification time, which delta-rs's `TIMESTAMP AS OF` reads.
///
/// Commit timestamps grow with versions (in-commit timestamps guarantee it; `TIMESTAMP AS
/// OF`'s binary search assumes it of modification times), so the answer is the latest commit
/// or nothing: this reads `_last_checkpoint`, lists the log from the checkpoint on, and reads
/// one commit file, however long the table's history.
pub async fn newest_commit_after(
    table: &TableLocation,
    instant: DateTime<Utc>,
) -> Result<Option<(u64, DateTime<Utc>)>, LakeError> {
    let checkpoint = last_checkpoint(table).await?;
    let mut versions = commit_versions(table, checkpoint.and_then(|v| v.checked_sub(1))).await?;
    if versions.is_empty() && checkpoint.is_some() {
        versions = commit_versions(table, None).await?;
    }
    let Some(&latest) = versions.last() else {
        if has_delta_log(table).await? {
            return Ok(None);
        }
        return Err(LakeError::NotATable {
            url: table.url().to_string(),
        });
    };
    let path = table.object_path(&format!("_delta_log/{latest:020}.json"));
    let got = table
        .object_store()
        .get(&path)
        .await
        .map_err(|e| LakeError::store(&path, e))?;
    let modified = got.meta.last_modified;
    let body = got.bytes().await.map_err(|e| LakeError::store(&path, e))?;
    let at = commit_info(&body)
        .and_then(|info| info["inCommitTimestamp"].as_i64())
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(modified);
    Ok((at > instant).then_some((latest, at)))
}

/// The version `_delta_log/_last_checkpoint` names, if there is one.
async fn last_checkpoint(table: &TableLocation) -> Result<Option<u64>, LakeError> {
    let path = table.object_path("_delta_log/_last_checkpoint");
    let body = match table.object_store().get(&path).await {
        Ok(r) => r.bytes().await.map_err(|e| LakeError::store(&path, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(LakeError::store(&path, e)),
    };
    Ok(serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["version"].as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[tokio::test]
    async fn the_newest_commit_after_an_instant() {
        let dir = tempfile::tempdir().unwrap();
        let loc = TableLocation::parse(dir.path().join("t").to_str().unwrap()).unwrap();
        assert!(matches!(
            newest_commit_after(&loc, Utc::now()).await,
            Err(LakeError::NotATable { .. })
        ));
        sample::create(&loc, &sample::orders(0, 10, "eu"), &[])
            .await
            .unwrap();
        let mtime = |v: u64| -> DateTime<Utc> {
            std::fs::metadata(dir.path().join(format!("t/_delta_log/{v:020}.json")))
                .unwrap()
                .modified()
                .unwrap()
                .into()
        };
        let t1 = mtime(1);
        // Covered: a cut at or after the latest commit.
        assert_eq!(newest_commit_after(&loc, t1).await.unwrap(), None);
        assert_eq!(
            newest_commit_after(&loc, t1 + chrono::Duration::hours(1))
                .await
                .unwrap(),
            None
        );
        // Not covered: a cut before it.
        let before = t1 - chrono::Duration::milliseconds(1);
        assert_eq!(
            newest_commit_after(&loc, before).await.unwrap(),
            Some((1, mtime(1)))
        );
        // Two more commits and a checkpoint: the newest is reported, read from the tail.
        sample::append(&loc, &sample::orders(10, 5, "eu"))
            .await
            .unwrap();
        sample::checkpoint(&loc, 2).await.unwrap();
        sample::append(&loc, &sample::orders(15, 5, "eu"))
            .await
            .unwrap();
        assert_eq!(
            newest_commit_after(&loc, before).await.unwrap(),
            Some((3, mtime(3)))
        );
        assert_eq!(newest_commit_after(&loc, mtime(3)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_in_commit_timestamp_is_the_commit_time() {
        let dir = tempfile::tempdir().unwrap();
        let loc = TableLocation::parse(dir.path().join("t").to_str().unwrap()).unwrap();
        std::fs::create_dir_all(dir.path().join("t/_delta_log")).unwrap();
        // A commit whose in-commit timestamp (2026-01-01) differs from its file's time (now).
        let ict = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        std::fs::write(
            dir.path().join("t/_delta_log/00000000000000000000.json"),
            format!(
                "{{\"commitInfo\":{{\"inCommitTimestamp\":{},\"timestamp\":1}}}}\n",
                ict.timestamp_millis()
            ),
        )
        .unwrap();
        let day = chrono::Duration::days(1);
        assert_eq!(
            newest_commit_after(&loc, ict - day).await.unwrap(),
            Some((0, ict))
        );
        assert_eq!(newest_commit_after(&loc, ict).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_log_point_changes_with_a_commit_and_with_a_recreated_table() {
        let dir = tempfile::tempdir().unwrap();
        let loc = TableLocation::parse(dir.path().join("t").to_str().unwrap()).unwrap();
        assert_eq!(log_point(&loc, None, None).await.unwrap(), None, "no table");
        sample::create(&loc, &sample::orders(0, 10, "eu"), &[])
            .await
            .unwrap();
        let first = log_point(&loc, None, None).await.unwrap().unwrap();
        assert_eq!(first.version, 1);
        assert_eq!(
            log_point(&loc, None, Some(1)).await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            log_point(&loc, Some(1), None).await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(log_point(&loc, Some(7), None).await.unwrap(), None);
        assert_eq!(
            log_point(&loc, None, Some(9)).await.unwrap(),
            Some(first.clone()),
            "a hint past the end falls back to a full listing"
        );
        sample::append(&loc, &sample::orders(10, 5, "eu"))
            .await
            .unwrap();
        let second = log_point(&loc, None, Some(1)).await.unwrap().unwrap();
        assert_eq!(second.version, 2);
        // The same table written again from scratch, to the same version: other bytes.
        std::fs::remove_dir_all(dir.path().join("t")).unwrap();
        sample::create(&loc, &sample::orders(0, 10, "eu"), &[])
            .await
            .unwrap();
        let again = log_point(&loc, None, None).await.unwrap().unwrap();
        assert_eq!(again.version, first.version);
        assert_ne!(
            again.commit, first.commit,
            "a recreated table is another table"
        );
    }
}
