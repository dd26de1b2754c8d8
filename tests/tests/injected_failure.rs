//! A failure in the middle of the copy leaves the target at its previous version, readable;
//! running the clone again completes it. A failed first clone leaves no target behind.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::{CloneOptions, LakeError, TableLocation, deep_clone, sample};

/// Delegates to the local store, but fails every write after the first `allowed` ones.
#[derive(Debug)]
struct FailAfter {
    inner: Arc<dyn ObjectStore>,
    allowed: usize,
    writes: AtomicUsize,
}

impl fmt::Display for FailAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailAfter({})", self.allowed)
    }
}

impl FailAfter {
    fn check(&self) -> object_store::Result<()> {
        if self.writes.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(object_store::Error::Generic {
                store: "FailAfter",
                source: "injected write failure".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailAfter {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check()?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, options).await
    }
}

fn failing(target: &TableLocation, allowed: usize) -> TableLocation {
    let store = Arc::new(FailAfter {
        inner: target.object_store().clone(),
        allowed,
        writes: AtomicUsize::new(0),
    });
    TableLocation::with_store(target.url().clone(), store, target.prefix().clone())
}

async fn rows(loc: &TableLocation) -> Vec<String> {
    sorted_rows(&read_batches(loc, None).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mid_copy_keeps_the_previous_version_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let src = TableLocation::parse(dir.path().join("src").to_str().unwrap()).unwrap();
    let dst = TableLocation::parse(dir.path().join("dst").to_str().unwrap()).unwrap();
    sample::create(&src, &sample::orders(0, 100, "emea"), &[])
        .await
        .unwrap();
    let opts = CloneOptions {
        parallelism: 1,
        ..Default::default()
    };
    let first = deep_clone(&src, &dst, &opts).await.unwrap();
    assert_eq!(first.target_version, 0);
    let before = rows(&dst).await;

    for i in 0..5 {
        sample::append(&src, &sample::orders(100 + i * 10, 10, "emea"))
            .await
            .unwrap();
    }
    // Two of five copies succeed, the third write fails.
    let err = deep_clone(&src, &failing(&dst, 2), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::Store { .. }), "{err}");
    assert!(err.is_transient(), "an I/O failure is worth retrying");
    assert_eq!(
        rows(&dst).await,
        before,
        "the target is still readable at its previous version"
    );
    assert!(
        !dir.path()
            .join("dst/_delta_log/00000000000000000001.json")
            .exists()
    );

    // The rerun reuses the files that made it, copies the rest, and commits.
    let done = deep_clone(&src, &dst, &opts).await.unwrap();
    assert_eq!(done.target_version, 1);
    assert_eq!(
        done.metrics.num_copied_files, 3,
        "two files were already there"
    );
    assert_eq!(rows(&dst).await, rows(&src).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_first_clone_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let src = TableLocation::parse(dir.path().join("src").to_str().unwrap()).unwrap();
    let dst_path = dir.path().join("dst");
    let dst = TableLocation::parse(dst_path.to_str().unwrap()).unwrap();
    sample::create(&src, &sample::orders(0, 10, "emea"), &[])
        .await
        .unwrap();
    for i in 0..3 {
        sample::append(&src, &sample::orders(10 + i * 10, 10, "emea"))
            .await
            .unwrap();
    }
    let opts = CloneOptions {
        parallelism: 1,
        ..Default::default()
    };
    deep_clone(&src, &failing(&dst, 2), &opts)
        .await
        .unwrap_err();
    let left: Vec<_> = walk(&dst_path);
    assert!(left.is_empty(), "partial target left behind: {left:?}");
    // And the commit itself failing also cleans up: allow all four copies, fail the commit.
    deep_clone(&src, &failing(&dst, 4), &opts)
        .await
        .unwrap_err();
    assert!(walk(&dst_path).is_empty());
    deep_clone(&src, &dst, &opts).await.unwrap();
    assert_eq!(rows(&dst).await, rows(&src).await);
}

/// A cloner killed (SIGKILL) during its first commit leaves copied files and a `_delta_log`
/// holding only the commit's staged file (object_store writes `NNN.json#1`, then links it).
/// The retry must clone into that target, not refuse it as "no Delta table".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_clone_killed_mid_commit_is_finished_by_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let src = TableLocation::parse(dir.path().join("src").to_str().unwrap()).unwrap();
    let dst_path = dir.path().join("dst");
    sample::create(&src, &sample::orders(0, 10, "emea"), &[])
        .await
        .unwrap();
    sample::append(&src, &sample::orders(10, 10, "emea"))
        .await
        .unwrap();
    // What the killed process left: its copies (one of them still staged) and the staged
    // commit, with an empty `_delta_log` beside it in a second target.
    let full = dir.path().join("full");
    deep_clone(
        &src,
        &TableLocation::parse(full.to_str().unwrap()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    std::fs::create_dir_all(dst_path.join("_delta_log")).unwrap();
    for f in walk(&full) {
        let rel = f.strip_prefix(&full).unwrap();
        if rel.starts_with("_delta_log") {
            continue;
        }
        std::fs::create_dir_all(dst_path.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&f, dst_path.join(rel)).unwrap();
    }
    std::fs::copy(
        full.join("_delta_log/00000000000000000000.json"),
        dst_path.join("_delta_log/00000000000000000000.json#1"),
    )
    .unwrap();
    let empty_log = dir.path().join("empty-log");
    std::fs::create_dir_all(empty_log.join("_delta_log")).unwrap();

    for target in [&dst_path, &empty_log] {
        let target = TableLocation::parse(target.to_str().unwrap()).unwrap();
        let done = deep_clone(&src, &target, &Default::default())
            .await
            .unwrap();
        assert!(done.committed);
        assert_eq!(done.target_version, 0);
        assert_eq!(rows(&target).await, rows(&src).await);
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commit_is_detected_as_a_conflict() {
    // Two clones racing for the same target version: the loser sees a conflict, which is
    // transient, and its retry converges.
    let dir = tempfile::tempdir().unwrap();
    let src = TableLocation::parse(dir.path().join("src").to_str().unwrap()).unwrap();
    let dst = TableLocation::parse(dir.path().join("dst").to_str().unwrap()).unwrap();
    sample::create(&src, &sample::orders(0, 10, "emea"), &[])
        .await
        .unwrap();
    let opts = CloneOptions::default();
    let (a, b) = tokio::join!(deep_clone(&src, &dst, &opts), deep_clone(&src, &dst, &opts));
    let ok = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1, "{a:?} {b:?}");
    for r in [&a, &b] {
        if let Err(e) = r {
            assert!(
                matches!(e, LakeError::CommitConflict { .. }) && e.is_transient(),
                "{e}"
            );
        }
    }
    let again = deep_clone(&src, &dst, &opts).await.unwrap();
    assert!(
        !again.committed,
        "after the race the target already matches"
    );
    assert_eq!(rows(&dst).await, rows(&src).await);
}
