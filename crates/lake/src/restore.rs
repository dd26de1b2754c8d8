//! `RESTORE TABLE … TO VERSION AS OF n`, natively: make a table's latest snapshot equal to its
//! snapshot at an earlier version with **one new commit**, never by deleting history.
//!
//! Like Delta's `RestoreTableCommand`, the commit holds
//!
//! - `add` actions (`dataChange: true`, with their statistics, partition values, deletion
//!   vectors and tags as version `n` logged them) for the files active at `n` but not now;
//! - `remove` actions (`dataChange: true`, with size and partition values) for the files
//!   active now but not at `n`;
//! - the metadata of `n` when it differs from the current one, and the protocol when `n`
//!   needs more than the current one (the merge of both: a restore upgrades a protocol, never
//!   downgrades it, as Delta does unless told otherwise);
//! - the domain metadata of `n` (except `delta.rowTracking`, whose high-water mark only
//!   grows);
//! - `commitInfo` with operation `RESTORE`, `operationParameters` `{version}` and Delta's
//!   restore metrics.
//!
//! Files are identified by `(path, deletion vector)`, as the clone identifies them. Every
//! file to re-add is checked first, with the clone's checks (present, logged size, deletion
//! vectors in their files, path rules): a file vacuumed since `n` refuses the restore, naming
//! the table. The commit is written put-if-absent at the next version (the clone's
//! [`crate::clone`] commit helpers), so a concurrent writer is a transient
//! [`LakeError::CommitConflict`]. The restore writes that one log file and nothing else: no
//! data file is written, copied or deleted, and no other table (the source a replica was
//! cloned from) is read or touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::clone::features::check_protocol;
use crate::clone::{
    check_present, commit_info, domain_changes, domain_metadata, dv_unique_id, json_err, load,
    new_commit_info, put_commit, read_commit,
};
use crate::{LakeError, TableLocation};

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The table's latest version before the restore.
    pub table_version_before: u64,
    /// The version whose snapshot the table now shows.
    pub restored_version: u64,
    /// The version the restore committed; `None` when nothing was committed.
    pub new_version: Option<u64>,
    /// Files re-added (active at `restored_version`, not before the restore).
    pub files_added: u64,
    /// Files removed (active before the restore, not at `restored_version`).
    pub files_removed: u64,
    /// False when the table already was at `restored_version` (its latest version): a no-op.
    pub committed: bool,
}

/// A `domainMetadata` domain a restore leaves as it is: the row-tracking high-water mark must
/// never go back, or row IDs would be handed out twice.
const KEEP_DOMAINS: &[&str] = &["delta.rowTracking"];

/// Restore `table` to its snapshot at `version` with one new commit (see the module docs).
/// Restoring to the latest version is a no-op (`committed: false`); a version past the latest
/// or no longer in the log, or a file of `version` that is gone, is refused with one line
/// naming the table.
pub async fn restore(table: &TableLocation, version: u64) -> Result<RestoreReport, LakeError> {
    let url = table.url().as_str();
    let current = load(table, None).await?;
    let now = current
        .snapshot()
        .map_err(|e| LakeError::from_delta(url, None, e))?;
    let before = now.version() as u64;
    let mut report = RestoreReport {
        table_version_before: before,
        restored_version: version,
        new_version: None,
        files_added: 0,
        files_removed: 0,
        committed: false,
    };
    if version > before {
        return Err(LakeError::VersionUnavailable {
            url: url.to_owned(),
            version,
            detail: format!("the table's latest version is {before}"),
        });
    }
    if version == before {
        return Ok(report);
    }
    let old_table = load(table, Some(version)).await?;
    let old = old_table
        .snapshot()
        .map_err(|e| LakeError::from_delta(url, Some(version), e))?;

    // The current files, keyed by (path, deletion vector), with their remove actions.
    let mut active: HashMap<(String, Option<String>), (Value, u64)> = HashMap::new();
    for view in now.log_data().iter() {
        let remove = view.remove_action(true);
        let key = (
            view.path().into_owned(),
            remove.deletion_vector.as_ref().map(dv_unique_id),
        );
        let size = view.size().max(0) as u64;
        active.insert(
            key,
            (serde_json::to_value(&remove).map_err(json_err)?, size),
        );
    }
    // The files of `version` that are not active now.
    let mut adds = Vec::new();
    let mut kept = std::collections::HashSet::new();
    let (mut size_after, mut files_after) = (0u64, 0u64);
    for view in old.log_data().iter() {
        #[allow(deprecated)] // the only public way to get the complete add action
        let mut add = view.add_action();
        let key = (
            view.path().into_owned(),
            add.deletion_vector.as_ref().map(dv_unique_id),
        );
        size_after += add.size.max(0) as u64;
        files_after += 1;
        if active.contains_key(&key) {
            kept.insert(key);
        } else {
            add.data_change = true;
            adds.push(add);
        }
    }
    let removes: Vec<(Value, u64)> = active
        .into_iter()
        .filter(|(k, _)| !kept.contains(k))
        .map(|(_, r)| r)
        .collect();

    // Protocol: never downgraded; metadata: the restored version's.
    let now_protocol = serde_json::to_value(now.protocol()).map_err(json_err)?;
    let old_protocol = serde_json::to_value(old.protocol()).map_err(json_err)?;
    let protocol = merge_protocol(&now_protocol, &old_protocol);
    check_protocol(&protocol)?;
    let now_metadata = serde_json::to_value(now.metadata()).map_err(json_err)?;
    let old_metadata = serde_json::to_value(old.metadata()).map_err(json_err)?;
    let keep = |mut d: BTreeMap<String, String>| {
        d.retain(|k, _| !KEEP_DOMAINS.contains(&k.as_str()));
        d
    };
    let now_domains = keep(domain_metadata(&current, before, &now_protocol).await?);
    let old_domains = keep(domain_metadata(&old_table, version, &old_protocol).await?);

    // Every file to re-add must still be there (not vacuumed).
    let added_size: u64 = adds.iter().map(|a| a.size.max(0) as u64).sum();
    check_present(table, version, adds.clone())
        .await
        .map_err(|e| match e {
            LakeError::MissingFile { path, .. } => LakeError::Invalid(format!(
                "cannot restore {url} to version {version}: its file `{path}` is gone (vacuumed?); nothing was committed"
            )),
            e => e,
        })?;

    let mut actions = Vec::new();
    if protocol != now_protocol {
        actions.push(json!({ "protocol": protocol }));
    }
    if old_metadata != now_metadata {
        actions.push(json!({ "metaData": old_metadata }));
    }
    actions.extend(
        domain_changes(&old_domains, &now_domains)
            .into_iter()
            .map(|d| json!({ "domainMetadata": d })),
    );
    let removed_size: u64 = removes.iter().map(|(_, s)| s).sum();
    report.files_added = adds.len() as u64;
    report.files_removed = removes.len() as u64;
    actions.extend(removes.into_iter().map(|(r, _)| json!({ "remove": r })));
    for add in adds {
        actions.push(json!({ "add": serde_json::to_value(&add).map_err(json_err)? }));
    }

    // In-commit timestamps (on in the metadata the commit leaves): after the previous one.
    let metadata_after = if old_metadata != now_metadata {
        &old_metadata
    } else {
        &now_metadata
    };
    let ict = metadata_after["configuration"]["delta.enableInCommitTimestamps"] == json!("true");
    let in_commit_after = if ict {
        let last = read_commit(table, before)
            .await?
            .and_then(|body| commit_info(&body))
            .and_then(|info| info["inCommitTimestamp"].as_i64());
        Some(last.or(now.version_timestamp(before as _)).unwrap_or(0))
    } else {
        None
    };
    let metrics = json!({
        "tableSizeAfterRestore": size_after.to_string(),
        "numOfFilesAfterRestore": files_after.to_string(),
        "numRemovedFiles": report.files_removed.to_string(),
        "numRestoredFiles": report.files_added.to_string(),
        "removedFilesSize": removed_size.to_string(),
        "restoredFilesSize": added_size.to_string(),
    });
    let info = new_commit_info(
        "RESTORE",
        json!({ "version": version.to_string() }),
        metrics,
        Some(before),
        in_commit_after,
    );
    let committed = put_commit(table, before + 1, info, actions).await?;
    tracing::info!(
        table = %table, restored_version = version, new_version = committed,
        files_added = report.files_added, files_removed = report.files_removed,
        "restore committed"
    );
    report.new_version = Some(committed);
    report.committed = true;
    Ok(report)
}

/// Legacy writer versions and the writer features each one implies.
const LEGACY_WRITER: &[(u64, &str)] = &[
    (2, "appendOnly"),
    (2, "invariants"),
    (3, "checkConstraints"),
    (4, "changeDataFeed"),
    (4, "generatedColumns"),
    (5, "columnMapping"),
    (6, "identityColumns"),
];

/// A protocol's reader and writer versions and its features (the explicit lists of a
/// table-features protocol, or the features a legacy version implies).
struct Features {
    reader: u64,
    writer: u64,
    reader_features: BTreeSet<String>,
    writer_features: BTreeSet<String>,
}

fn features(p: &Value) -> Features {
    let reader = p["minReaderVersion"].as_u64().unwrap_or(1);
    let writer = p["minWriterVersion"].as_u64().unwrap_or(2);
    let list = |key: &str| -> BTreeSet<String> {
        p[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect()
    };
    let reader_features = if reader >= 3 {
        list("readerFeatures")
    } else if reader == 2 {
        ["columnMapping".to_owned()].into()
    } else {
        BTreeSet::new()
    };
    let writer_features = if writer >= 7 {
        list("writerFeatures")
    } else {
        LEGACY_WRITER
            .iter()
            .filter(|(v, _)| writer >= *v)
            .map(|(_, f)| (*f).to_owned())
            .collect()
    };
    Features {
        reader,
        writer,
        reader_features,
        writer_features,
    }
}

/// The protocol a restore leaves: the current one when it already allows everything the
/// restored version's does, the restored one when it allows everything the current one does,
/// else their union (higher versions, both feature lists). Never a downgrade.
fn merge_protocol(current: &Value, restored: &Value) -> Value {
    let (c, r) = (features(current), features(restored));
    let covers = |a: &Features, b: &Features| {
        a.reader >= b.reader
            && a.writer >= b.writer
            && b.reader_features.is_subset(&a.reader_features)
            && b.writer_features.is_subset(&a.writer_features)
    };
    if covers(&c, &r) {
        return current.clone();
    }
    if covers(&r, &c) {
        return restored.clone();
    }
    let reader = c.reader.max(r.reader);
    let writer = c.writer.max(r.writer);
    if writer < 7 {
        return json!({ "minReaderVersion": reader, "minWriterVersion": writer });
    }
    let mut out = json!({ "minReaderVersion": reader, "minWriterVersion": 7 });
    let writer_features: BTreeSet<&String> = c.writer_features.union(&r.writer_features).collect();
    if reader >= 3 {
        let reader_features: BTreeSet<&String> =
            c.reader_features.union(&r.reader_features).collect();
        out["readerFeatures"] = json!(reader_features);
    }
    out["writerFeatures"] = json!(writer_features);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::count_rows;
    use crate::sample;

    fn loc(dir: &tempfile::TempDir, name: &str) -> TableLocation {
        TableLocation::parse(dir.path().join(name).to_str().unwrap()).unwrap()
    }

    /// A table with versions 0 (create), 1 (10 rows), 2 (+5), 3 (+7).
    async fn three_appends(t: &TableLocation) {
        sample::create(t, &sample::orders(0, 10, "eu"), &[])
            .await
            .unwrap();
        sample::append(t, &sample::orders(10, 5, "eu"))
            .await
            .unwrap();
        sample::append(t, &sample::orders(15, 7, "us"))
            .await
            .unwrap();
    }

    async fn rows(t: &TableLocation, version: Option<u64>) -> u64 {
        crate::inspect::read_batches(t, version)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum()
    }

    #[tokio::test]
    async fn restore_brings_back_an_old_version_with_one_new_commit() {
        let dir = tempfile::tempdir().unwrap();
        let t = loc(&dir, "t");
        three_appends(&t).await;
        // An overwrite too, so the restore both removes and re-adds files.
        sample::overwrite(&t, &sample::orders(100, 3, "apac"))
            .await
            .unwrap();
        assert_eq!(rows(&t, None).await, 3);

        let report = restore(&t, 1).await.unwrap();
        assert_eq!(
            report,
            RestoreReport {
                table_version_before: 4,
                restored_version: 1,
                new_version: Some(5),
                files_added: 1,
                files_removed: 1,
                committed: true,
            }
        );
        // The rows read back are version 1's.
        assert_eq!(rows(&t, None).await, rows(&t, Some(1)).await);
        assert_eq!(rows(&t, None).await, 10);
        assert_eq!(count_rows(&t, None).await.unwrap().0, 10);
        // History is kept: every version is still readable.
        for v in 0..=5 {
            crate::clone::load(&t, Some(v)).await.unwrap();
        }
        assert_eq!(rows(&t, Some(3)).await, 22);
        // The commit says what it was.
        let body = read_commit(&t, 5).await.unwrap().unwrap();
        let info = commit_info(&body).unwrap();
        assert_eq!(info["operation"], "RESTORE");
        assert_eq!(info["operationParameters"]["version"], "1");
        assert_eq!(info["readVersion"], 4);
        let text = String::from_utf8(body.to_vec()).unwrap();
        let remove = text.lines().find(|l| l.starts_with("{\"remove\"")).unwrap();
        let remove: Value = serde_json::from_str(remove).unwrap();
        assert_eq!(remove["remove"]["dataChange"], true);
        assert!(remove["remove"]["size"].as_u64().unwrap() > 0);
        let add: Value =
            serde_json::from_str(text.lines().find(|l| l.starts_with("{\"add\"")).unwrap())
                .unwrap();
        assert_eq!(add["add"]["dataChange"], true);
        assert!(add["add"]["stats"].as_str().unwrap().contains("numRecords"));
    }

    #[tokio::test]
    async fn restore_after_appends_removes_the_later_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = loc(&dir, "t");
        three_appends(&t).await;
        let report = restore(&t, 1).await.unwrap();
        assert_eq!(report.new_version, Some(4));
        assert_eq!((report.files_added, report.files_removed), (0, 2));
        assert_eq!(rows(&t, None).await, 10);
        for v in 0..=4 {
            crate::clone::load(&t, Some(v)).await.unwrap();
        }
        // Restoring again to version 3 re-adds the two files.
        let again = restore(&t, 3).await.unwrap();
        assert_eq!((again.files_added, again.files_removed), (2, 0));
        assert_eq!(rows(&t, None).await, 22);
    }

    #[tokio::test]
    async fn restore_to_the_latest_version_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let t = loc(&dir, "t");
        three_appends(&t).await;
        let report = restore(&t, 3).await.unwrap();
        assert!(!report.committed);
        assert_eq!(report.new_version, None);
        assert_eq!(report.table_version_before, 3);
        assert!(read_commit(&t, 4).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_missing_version_or_a_vacuumed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = loc(&dir, "t");
        three_appends(&t).await;
        let err = restore(&t, 9).await.unwrap_err().to_string();
        assert!(
            err.contains("version 9") && err.contains(t.url().as_str()),
            "{err}"
        );

        // Remove version 2's file (as VACUUM would after a delete), then restore to 2.
        let (_, n) = sample::delete_files(&t, |_| true).await.unwrap();
        assert_eq!(n, 3);
        let v1_file = {
            let table = load(&t, Some(1)).await.unwrap();
            let snap = table.snapshot().unwrap();
            snap.log_data().iter().next().unwrap().path().into_owned()
        };
        let v2_files: Vec<String> = {
            let table = load(&t, Some(2)).await.unwrap();
            let snap = table.snapshot().unwrap();
            snap.log_data()
                .iter()
                .map(|f| f.path().into_owned())
                .collect()
        };
        let vacuumed = v2_files.iter().find(|p| **p != v1_file).unwrap();
        std::fs::remove_file(dir.path().join("t").join(vacuumed)).unwrap();
        let err = restore(&t, 2).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cannot restore")
                && text.contains(t.url().as_str())
                && text.contains(vacuumed.as_str())
                && !text.contains('\n'),
            "{text}"
        );
        assert!(!err.is_transient());
        assert!(
            read_commit(&t, 5).await.unwrap().is_none(),
            "nothing committed"
        );
        // Version 1's file is still there: that restore works.
        assert_eq!(restore(&t, 1).await.unwrap().files_added, 1);
        assert_eq!(rows(&t, None).await, 10);
    }

    #[tokio::test]
    async fn a_restored_replica_is_still_the_clone_s_replica() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (loc(&dir, "src"), loc(&dir, "dst"));
        three_appends(&src).await;
        let options = crate::CloneOptions::default();
        let first = crate::deep_clone(&src, &dst, &options).await.unwrap();
        sample::append(&src, &sample::orders(30, 4, "eu"))
            .await
            .unwrap();
        let second = crate::deep_clone(&src, &dst, &options).await.unwrap();
        assert_eq!(rows(&dst, None).await, 26);
        // Failover: the replica goes back to the first cut; the source is not touched.
        let src_log = std::fs::read_dir(dir.path().join("src/_delta_log"))
            .unwrap()
            .count();
        let report = restore(&dst, first.target_version).await.unwrap();
        assert_eq!(report.table_version_before, second.target_version);
        assert_eq!(rows(&dst, None).await, 22);
        assert_eq!(
            std::fs::read_dir(dir.path().join("src/_delta_log"))
                .unwrap()
                .count(),
            src_log
        );
        // The next clone brings it forward again (a full diff: its latest commit is the
        // restore's).
        let third = crate::deep_clone(&src, &dst, &options).await.unwrap();
        assert!(third.committed && !third.log_tail);
        assert_eq!(rows(&dst, None).await, 26);
    }

    #[test]
    fn protocols_are_merged_never_downgraded() {
        let legacy = json!({"minReaderVersion": 1, "minWriterVersion": 2});
        let dv = json!({"minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors", "appendOnly", "invariants"]});
        assert_eq!(
            merge_protocol(&dv, &legacy),
            dv,
            "current covers the old one"
        );
        assert_eq!(merge_protocol(&legacy, &dv), dv, "an upgrade");
        let cdf = json!({"minReaderVersion": 1, "minWriterVersion": 4});
        let merged = merge_protocol(&dv, &cdf);
        assert_eq!(merged["minReaderVersion"], 3);
        assert_eq!(merged["minWriterVersion"], 7);
        let writer: Vec<&str> = merged["writerFeatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for f in ["changeDataFeed", "generatedColumns", "deletionVectors"] {
            assert!(writer.contains(&f), "{merged}");
        }
        assert_eq!(merged["readerFeatures"], json!(["deletionVectors"]));
    }
}
