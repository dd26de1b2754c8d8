//! `restore` on real Delta tables written by Spark and Databricks (the shared corpus):
//! deletion vectors, change data, OPTIMIZE and checkpoints. Each table is copied to a
//! temporary directory and restored to every earlier version in turn; after each restore the
//! rows read back are exactly those of the restored version.

use std::path::{Path, PathBuf};

use arrow::util::display::{ArrayFormatter, FormatOptions};
use replicator_lake::TableLocation;
use replicator_lake::inspect::{read_batches, table_info};
use replicator_lake::restore::restore;

/// `REPLICATOR_CORPUS`, else `../shared/delta-corpus` beside the repository.
fn corpus() -> PathBuf {
    std::env::var_os("REPLICATOR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/delta-corpus")
        })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every row of a version as text, sorted.
async fn rows(t: &TableLocation, version: u64) -> Option<Vec<String>> {
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for batch in read_batches(t, Some(version)).await.ok()? {
        let columns: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| c.value(i).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out.sort();
    Some(out)
}

#[tokio::test]
async fn restoring_corpus_tables_gives_back_each_version_exactly() {
    for name in ["cdf-table-with-cdc-and-dvs", "table-with-dv-small"] {
        let src = corpus().join(name);
        assert!(src.is_dir(), "corpus table {} is missing", src.display());
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&src, &dir.path().join(name));
        let t = TableLocation::parse(dir.path().join(name).to_str().unwrap()).unwrap();
        let latest = table_info(&t, None).await.unwrap().version;
        let mut version = latest;
        for target in (0..latest).rev() {
            let expected = rows(&t, target).await.expect("the corpus version reads");
            let report = restore(&t, target)
                .await
                .unwrap_or_else(|e| panic!("{name}: restore to {target}: {e}"));
            assert!(report.committed, "{name}: {report:?}");
            assert_eq!(report.table_version_before, version);
            version += 1;
            assert_eq!(report.new_version, Some(version));
            assert_eq!(
                rows(&t, version).await,
                Some(expected),
                "{name} restored to {target}"
            );
        }
        // History kept: every version still reads.
        for v in 0..=version {
            replicator_lake::inspect::table_info(&t, Some(v))
                .await
                .unwrap();
        }
    }
}
