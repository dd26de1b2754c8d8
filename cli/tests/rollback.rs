//! `replicator rollback TABLE --to-version N`: the table's latest version reads like version
//! N afterwards, row for row, with the history kept; a version that does not exist is refused
//! in one line, changing nothing.

mod common;

use common::{replicator, stderr, stdout};
use replicator_lake::inspect::{read_batches, sorted_rows, table_info};
use replicator_lake::{TableLocation, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_is_rolled_back_by_hand_with_a_new_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders");
    let t = TableLocation::parse(path.to_str().unwrap()).unwrap();
    sample::create(&t, &sample::orders(0, 20, "eu"), &[])
        .await
        .unwrap();
    sample::append(&t, &sample::orders(20, 5, "us"))
        .await
        .unwrap();
    sample::append(&t, &sample::orders(25, 5, "us"))
        .await
        .unwrap();
    let rows = |v: Option<u64>| {
        let t = t.clone();
        async move { sorted_rows(&read_batches(&t, v).await.unwrap()).unwrap() }
    };
    let at_one = rows(Some(1)).await;
    assert_eq!(table_info(&t, None).await.unwrap().version, 3);

    let out = replicator(&["rollback", path.to_str().unwrap(), "--to-version", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("restored version 1 as version 4"),
        "{}",
        stdout(&out)
    );
    assert_eq!(rows(None).await, at_one);
    assert_eq!(table_info(&t, None).await.unwrap().version, 4);
    assert_eq!(rows(Some(3)).await.len(), 30, "history kept");

    let out = replicator(&["rollback", path.to_str().unwrap(), "--to-version", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: {}: version 9 does not exist yet (the latest is 4)",
            path.display()
        )
    );
    assert_eq!(table_info(&t, None).await.unwrap().version, 4);
}
