//! Where a table's log stands, read without building a snapshot: the version of a commit and
//! a fingerprint of its file. Two readings with the same version and fingerprint mean the
//! table's snapshot is the same one (a commit file is written once, by put-if-absent, and a
//! table deleted and recreated at the same location writes different bytes: a new table id,
//! new timestamps). The reconciler uses it to prove that a replica pair has not changed since
//! its last deep validation, at the cost of a log listing and one small read per side.

use object_store::ObjectStoreExt;

use crate::clone::{commit_versions, fingerprint};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

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
