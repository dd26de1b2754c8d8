//! `DESCRIBE HISTORY` and `RESTORE TABLE … TO VERSION AS OF` on the real Delta tables.
//!
//! History rows come from the table's log, newest first, in the documented column order
//! (<https://docs.databricks.com/aws/en/tables/history-schema>): `version` and `timestamp`
//! from the log's versions, the rest from each commit's `commitInfo` (NULL where it has no
//! such field). A restore is `replicator_lake::restore::restore` (one new commit, history
//! kept), reported with the columns of `RESTORE`
//! (<https://docs.databricks.com/sql/language-manual/delta-restore.html>).

use std::collections::BTreeMap;
use std::path::Path;

use replicator_lake::{TableLocation, inspect};

use super::sql::SqlError;
use super::warehouse::{Rows, lake};

/// Columns of `DESCRIBE HISTORY`, as documented.
const COLUMNS: &[&str] = &[
    "version",
    "timestamp",
    "userId",
    "userName",
    "operation",
    "operationParameters",
    "job",
    "notebook",
    "clusterId",
    "readVersion",
    "isolationLevel",
    "isBlindAppend",
    "operationMetrics",
    "userMetadata",
    "engineInfo",
];

/// The `commitInfo` of version `v`, read from its commit file (empty when it is gone).
fn commit_info(dir: &Path, v: u64) -> serde_json::Map<String, serde_json::Value> {
    let file = dir.join("_delta_log").join(format!("{v:020}.json"));
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|a| a.get("commitInfo").and_then(|c| c.as_object()).cloned())
        .unwrap_or_default()
}

/// `DESCRIBE HISTORY` of the table at `dir`, newest first, at most `limit` rows.
pub(super) async fn describe(dir: &Path, limit: Option<usize>) -> Result<Rows, SqlError> {
    let loc = TableLocation::parse(&dir.to_string_lossy()).map_err(lake)?;
    let mut versions = inspect::version_timestamps(&loc).await.map_err(lake)?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    let rows = versions
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|(v, ts)| {
            let info = commit_info(dir, v);
            let ts = chrono::DateTime::from_timestamp_millis(ts)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            COLUMNS
                .iter()
                .map(|c| match *c {
                    "version" => Some(v.to_string()),
                    "timestamp" => Some(ts.clone()),
                    c => info.get(c).filter(|x| !x.is_null()).map(|x| match x {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                })
                .collect()
        })
        .collect();
    Ok((COLUMNS.iter().map(|c| c.to_string()).collect(), rows))
}

/// `RESTORE TABLE … TO VERSION AS OF version` on the table at `loc`.
pub(super) async fn restore(loc: &TableLocation, version: u64) -> Result<Rows, SqlError> {
    let before = inspect::log_facts(loc, None).await.map_err(lake)?.files;
    replicator_lake::restore::restore(loc, version)
        .await
        .map_err(|e| match e {
            replicator_lake::LakeError::VersionUnavailable { version, detail, .. } => (
                "BAD_REQUEST".to_owned(),
                format!(
                    "[DELTA_CANNOT_RESTORE_TABLE_VERSION] Cannot restore table to version {version}: {detail}. SQLSTATE: 22003"
                ),
            ),
            e => lake(e),
        })?;
    let after = inspect::log_facts(loc, None).await.map_err(lake)?.files;
    let only = |a: &BTreeMap<String, (i64, Option<i64>)>,
                b: &BTreeMap<String, (i64, Option<i64>)>| {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .fold((0u64, 0u64), |(n, s), (_, (size, _))| {
                (n + 1, s + (*size).max(0) as u64)
            })
    };
    let (removed, removed_size) = only(&before, &after);
    let (restored, restored_size) = only(&after, &before);
    let size_after: u64 = after.values().map(|(s, _)| (*s).max(0) as u64).sum();
    let cols = [
        "table_size_after_restore",
        "num_of_files_after_restore",
        "num_removed_files",
        "num_restored_files",
        "removed_files_size",
        "restored_files_size",
    ];
    let vals = [
        size_after,
        after.len() as u64,
        removed,
        restored,
        removed_size,
        restored_size,
    ];
    Ok((
        cols.iter().map(|c| c.to_string()).collect(),
        vec![vals.iter().map(|v| Some(v.to_string())).collect()],
    ))
}
