//! Volumes on local filesystems: discovery beside Delta tables, incremental syncs (new,
//! changed, deleted, tampered files), shards, dry runs, awkward names, refused paths, and
//! sources that change while they are copied.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use replicator_lake::volume::shard_of;
use replicator_lake::{
    LakeError, TableLocation, VolumeOptions, diff_volume, discover_volumes, sync_volume,
};
use replicator_proto::TableFilter;

/// Write `content` at `root/rel` with a modification time well in the past (`age` seconds
/// ago), so the sync records it as clean at once.
fn write_aged(root: &FsPath, rel: &str, content: &[u8], age: u64) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age))
        .unwrap();
}

fn write(root: &FsPath, rel: &str, content: &[u8]) {
    write_aged(root, rel, content, 3600);
}

fn loc(p: &FsPath) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

/// Every regular file under `root` (relative path → content), skipping the replicator's own
/// `_replicator_*` directories at the root.
fn tree(root: &FsPath) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &FsPath, dir: &FsPath, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
            if rel.starts_with("_replicator_") {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Default::default();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

fn table(dir: &FsPath) {
    write(dir, "_delta_log/00000000000000000000.json", b"{}\n");
    write(dir, "part-0.parquet", b"PAR1");
}

#[tokio::test]
async fn discovery_finds_file_trees_beside_tables_not_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    table(&root.join("sales/orders"));
    table(&root.join("hr/people"));
    write(&root, "landing/csv/2024/a.csv", b"a,b\n");
    write(&root, "landing/images/x.png", b"png");
    write(&root, "sales/raw/f.csv", b"1\n");
    write(&root, "sales/readme.txt", b"loose beside a table");
    write(&root, "top.txt", b"loose at the root");
    write(&root, "_checkpoints/offsets", b"skipped");
    write(&root, ".hidden/y", b"skipped");
    std::fs::create_dir_all(root.join("empty/deeper")).unwrap();

    let found = discover_volumes(&loc(&root), &TableFilter::default())
        .await
        .unwrap();
    let got: Vec<_> = found
        .iter()
        .map(|v| (v.name.as_str(), v.relative.as_str(), v.recursive, v.files))
        .collect();
    assert_eq!(
        got,
        [
            ("lake", "", false, 1),
            ("landing", "landing", true, 2),
            ("sales", "sales", false, 1),
            ("sales.raw", "sales/raw", true, 1),
        ]
    );

    let filter = TableFilter {
        include: vec!["*".into()],
        exclude: vec!["sales*".into()],
    };
    let names: Vec<_> = discover_volumes(&loc(&root), &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["lake", "landing"]);

    // The loose files of a directory holding tables sync without touching the tables.
    let target = dir.path().join("dr");
    let opts = VolumeOptions {
        recursive: false,
        ..Default::default()
    };
    let r = sync_volume(&loc(&root.join("sales")), &loc(&target), &opts)
        .await
        .unwrap();
    assert_eq!(r.files_copied, 1);
    assert_eq!(
        tree(&target).into_keys().collect::<Vec<_>>(),
        ["readme.txt"]
    );
}

#[tokio::test]
async fn added_changed_and_deleted_files_sync_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    for i in 0..20 {
        write(
            &src,
            &format!("d{}/f{i}.csv", i % 3),
            format!("row {i}\n").as_bytes(),
        );
    }
    write(&src, "keep.bin", b"same content");
    write(&src, "change.bin", b"version one!");
    write(&src, "gone.txt", b"to be deleted");
    let (s, d) = (loc(&src), loc(&dst));
    let opts = VolumeOptions::default();

    // A dry run plans everything and writes nothing.
    let dry = sync_volume(
        &s,
        &d,
        &VolumeOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((dry.files_planned, dry.files_copied), (23, 0));
    assert!(dry.planned.contains(&"change.bin".to_owned()));
    assert!(!dst.exists(), "a dry run wrote the target");

    let first = sync_volume(&s, &d, &opts).await.unwrap();
    assert_eq!((first.files_copied, first.files_unchanged), (23, 0));
    assert_eq!(tree(&src), tree(&dst));

    // Added, changed (same size, other content and mtime), deleted.
    write(&src, "new/added.txt", b"new file");
    write_aged(&src, "change.bin", b"version two!", 60);
    std::fs::remove_file(src.join("gone.txt")).unwrap();
    let second = sync_volume(&s, &d, &opts).await.unwrap();
    assert_eq!(second.files_copied, 2, "{second:?}");
    let mut planned = second.planned.clone();
    planned.sort();
    assert_eq!(planned, ["change.bin", "new/added.txt"]);
    assert_eq!(second.files_unchanged, 21);
    assert_eq!((second.files_extra, second.files_deleted), (1, 0));
    assert_eq!(second.extra, ["gone.txt"]);
    assert!(
        dst.join("gone.txt").exists(),
        "deleted without delete_extra"
    );
    assert_eq!(
        std::fs::read(dst.join("change.bin")).unwrap(),
        b"version two!"
    );

    // Deletions only when asked.
    let third = sync_volume(
        &s,
        &d,
        &VolumeOptions {
            delete_extra: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((third.files_copied, third.files_deleted), (0, 1));
    assert_eq!(tree(&src), tree(&dst));

    // Nothing left to do.
    let fourth = sync_volume(&s, &d, &opts).await.unwrap();
    assert_eq!((fourth.files_copied, fourth.files_unchanged), (0, 23));
    assert!(diff_volume(&s, &d, &opts).await.unwrap().is_empty());

    // A target copy rewritten behind the sync's back no longer matches its manifest entry.
    write_aged(&dst, "keep.bin", b"tampered!!!!", 10);
    let fifth = sync_volume(&s, &d, &opts).await.unwrap();
    assert_eq!(fifth.planned, ["keep.bin"]);
    assert_eq!(tree(&src), tree(&dst));

    // A source file modified just now is copied, and copied again next time (its stamp may
    // not show a second write within the timestamp granularity).
    write_aged(&src, "hot.log", b"fresh", 0);
    assert_eq!(
        sync_volume(&s, &d, &opts).await.unwrap().planned,
        ["hot.log"]
    );
    assert_eq!(
        sync_volume(&s, &d, &opts).await.unwrap().planned,
        ["hot.log"]
    );
}

#[tokio::test]
async fn shards_split_the_files_and_share_one_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let names: Vec<String> = (0..40)
        .map(|i| format!("p{}/file-{i}.dat", i % 4))
        .collect();
    for n in &names {
        write(&src, n, n.as_bytes());
    }
    let (s, d) = (loc(&src), loc(&dst));
    let shard = |i| VolumeOptions {
        shard: Some((i, 2)),
        delete_extra: true,
        ..Default::default()
    };
    let zero = sync_volume(&s, &d, &shard(0)).await.unwrap();
    let in_zero = names.iter().filter(|n| shard_of(n, 2) == 0).count() as u64;
    assert_eq!(zero.files_copied, in_zero);
    assert!(tree(&dst).keys().all(|k| shard_of(k, 2) == 0));
    // Concurrent shards: each writes only its own files and its own manifest.
    let (one, zero) = (shard(1), shard(0));
    let (a, b) = tokio::join!(sync_volume(&s, &d, &one), sync_volume(&s, &d, &zero));
    assert_eq!(a.unwrap().files_copied, 40 - in_zero);
    assert_eq!(b.unwrap().files_copied, 0);
    assert_eq!(tree(&src), tree(&dst));
    // An unsharded run trusts what either shard's manifest proves.
    let all = sync_volume(&s, &d, &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!((all.files_copied, all.files_unchanged), (0, 40));

    // A deletion reaches the target only through the deleted file's own shard.
    let victim = names.iter().find(|n| shard_of(n, 2) == 1).unwrap();
    std::fs::remove_file(src.join(victim)).unwrap();
    let other = sync_volume(&s, &d, &shard(0)).await.unwrap();
    assert_eq!((other.files_deleted, other.files_extra), (0, 0));
    let own = sync_volume(&s, &d, &shard(1)).await.unwrap();
    assert_eq!(own.files_deleted, 1);
    assert_eq!(tree(&src), tree(&dst));

    let bad = sync_volume(&s, &d, &shard(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("shard 2 of 2"), "{bad}");
}

#[tokio::test]
async fn awkward_names_are_copied_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let names = [
        "with space/a b.csv",
        "it's \"quoted\".txt",
        "back`tick`/x.txt",
        "dots.in.name/v1.2.3.tar.gz",
        "ünïcødé/日本語 ファイル.txt",
        "100%/a%20b.txt",
        "hash#tag.txt",
        "...",
        ".hidden-file",
        "_underscore",
    ];
    for n in names {
        write(&src, n, format!("content of {n}").as_bytes());
    }
    let r = sync_volume(&loc(&src), &loc(&dst), &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!(r.files_copied, names.len() as u64);
    assert_eq!(tree(&src), tree(&dst));
    let again = sync_volume(&loc(&src), &loc(&dst), &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!(again.files_unchanged, names.len() as u64);
}

#[tokio::test]
async fn a_link_loop_in_a_local_source_is_not_followed_forever() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    write(&src, "a/file.txt", b"once");
    std::os::unix::fs::symlink(&src, src.join("a/loop")).unwrap();
    std::os::unix::fs::symlink(src.join("gone"), src.join("dangling")).unwrap();
    let r = sync_volume(&loc(&src), &loc(&dst), &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!(r.files_copied, 1);
    assert_eq!(tree(&dst).into_keys().collect::<Vec<_>>(), ["a/file.txt"]);
}

/// A local store whose listing adds an entry of its own.
#[derive(Debug)]
struct Injecting {
    inner: Arc<LocalFileSystem>,
    extra: Path,
}

impl std::fmt::Display for Injecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Injecting")
    }
}

/// A local store that rewrites a file (same size, other bytes) each time it is read (not
/// for a HEAD), the first `times` times: the copy reads a file that changes under it.
#[derive(Debug)]
struct Mutating {
    inner: Arc<LocalFileSystem>,
    file: PathBuf,
    times: usize,
    reads: AtomicUsize,
}

impl std::fmt::Display for Mutating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mutating")
    }
}

/// Version `n` of the mutated file: every byte is `n`.
fn version(n: u8, size: usize) -> Vec<u8> {
    vec![n; size]
}

macro_rules! delegate {
    ($t:ty, $get:item, $list:item) => {
        #[async_trait]
        impl ObjectStore for $t {
            async fn put_opts(
                &self,
                location: &Path,
                payload: PutPayload,
                opts: PutOptions,
            ) -> object_store::Result<PutResult> {
                self.inner.put_opts(location, payload, opts).await
            }
            async fn put_multipart_opts(
                &self,
                location: &Path,
                opts: PutMultipartOptions,
            ) -> object_store::Result<Box<dyn MultipartUpload>> {
                self.inner.put_multipart_opts(location, opts).await
            }
            $get
            fn delete_stream(
                &self,
                locations: BoxStream<'static, object_store::Result<Path>>,
            ) -> BoxStream<'static, object_store::Result<Path>> {
                self.inner.delete_stream(locations)
            }
            $list
            async fn list_with_delimiter(
                &self,
                prefix: Option<&Path>,
            ) -> object_store::Result<ListResult> {
                self.inner.list_with_delimiter(prefix).await
            }
            async fn copy_opts(
                &self,
                from: &Path,
                to: &Path,
                options: CopyOptions,
            ) -> object_store::Result<()> {
                self.inner.copy_opts(from, to, options).await
            }
        }
    };
}

delegate!(
    Injecting,
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    },
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        use futures::StreamExt;
        let extra = ObjectMeta {
            location: self.extra.clone(),
            last_modified: chrono::Utc::now(),
            size: 1,
            e_tag: None,
            version: None,
        };
        self.inner
            .list(prefix)
            .chain(futures::stream::iter([Ok(extra)]))
            .boxed()
    }
);

delegate!(
    Mutating,
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if head {
            return Ok(result);
        }
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        if n < self.times {
            // Rewritten in place, after the read was opened and before its bytes are read.
            let size = std::fs::metadata(&self.file).unwrap().len() as usize;
            std::thread::sleep(Duration::from_millis(20));
            std::fs::write(&self.file, version(n as u8 + 2, size)).unwrap();
        }
        Ok(result)
    },
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
);

/// `dir` seen through `store` (not the shared local store: copies go through reads and
/// uploads, as between object stores).
fn through(dir: &FsPath, store: Arc<dyn ObjectStore>) -> TableLocation {
    let url = url::Url::from_directory_path(dir).unwrap();
    TableLocation::with_store(url, store, Path::from_absolute_path(dir).unwrap())
}

#[tokio::test]
async fn a_listing_entry_outside_the_root_is_refused_before_anything_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    write(&src, "ok.txt", b"fine");
    write(&src, "sub/ok.txt", b"fine too");
    std::fs::create_dir_all(&dst).unwrap();
    let src_prefix = Path::from_absolute_path(&src).unwrap();
    for (extra, shown) in [
        (
            Path::from_absolute_path(dir.path().join("secret")).unwrap(),
            "secret",
        ),
        (
            Path::parse(format!("{src_prefix}/sub/%2E%2E/x")).unwrap(),
            "sub/%2E%2E/x",
        ),
    ] {
        let store = Arc::new(Injecting {
            inner: Arc::new(LocalFileSystem::new()),
            extra,
        });
        let err = sync_volume(&through(&src, store), &loc(&dst), &VolumeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, LakeError::UnsafeVolumePath { .. }), "{err}");
        assert!(err.to_string().contains(shown), "{err}");
        assert!(tree(&dst).is_empty(), "copied before refusing");
    }
}

/// Copy `big.bin` (every byte 1) from a source that rewrites it (every byte 2, 3, …) while
/// it is read, into `target`; the target must hold one whole version or nothing.
async fn copy_while_changing(times: usize, target: impl Fn(&FsPath) -> TableLocation) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let size = 12 << 20; // three 5 MiB parts through a multipart upload
    write(&src, "big.bin", &version(1, size));
    std::fs::create_dir_all(&dst).unwrap();
    let store = Arc::new(Mutating {
        inner: Arc::new(LocalFileSystem::new()),
        file: src.join("big.bin"),
        times,
        reads: AtomicUsize::new(0),
    });
    let opts = VolumeOptions {
        part_size: 5 << 20,
        ..Default::default()
    };
    let result = sync_volume(&through(&src, store.clone()), &target(&dst), &opts).await;
    let placed = std::fs::read(dst.join("big.bin")).ok();
    if times < 3 {
        let r = result.unwrap();
        assert_eq!(r.files_copied, 1);
        // The version the source had once it stopped changing, whole.
        assert!(
            placed == Some(std::fs::read(src.join("big.bin")).unwrap()),
            "mixed copy"
        );
        assert!(store.reads.load(Ordering::SeqCst) > times, "not read again");
    } else {
        let err = result.unwrap_err();
        assert!(matches!(err, LakeError::SourceChanged { .. }), "{err}");
        assert!(err.to_string().contains("big.bin"), "{err}");
        assert!(placed.is_none(), "a file was placed from a changing source");
    }
    // Nothing half-written anywhere in the target, nothing left staged.
    let staging = dst.join(replicator_lake::clone::STAGING_DIR);
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().count() == 0,
        "staged files left behind"
    );
    assert!(
        tree(&dst).keys().all(|k| k == "big.bin"),
        "{:?}",
        tree(&dst).keys().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_file_changing_during_its_copy_into_a_local_target_is_copied_again() {
    copy_while_changing(1, loc).await;
    copy_while_changing(3, loc).await;
}

#[tokio::test]
async fn a_file_changing_during_its_multipart_upload_is_never_completed() {
    let store = || through_store();
    copy_while_changing(2, |d| through(d, store())).await;
    copy_while_changing(3, |d| through(d, store())).await;
}

fn through_store() -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new())
}

/// With `verify_every`, a re-sync trusts the target's manifest instead of listing the
/// target while the manifest's last check is recent: what changed in the source is still
/// copied, but a file deleted in the target behind the sync's back is restored only by the
/// next sync that lists the target.
#[tokio::test]
async fn a_recently_verified_manifest_stands_for_the_target_listing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    for i in 0..10 {
        write(
            &src,
            &format!("d/f{i}.csv"),
            format!("row {i}\n").as_bytes(),
        );
    }
    let (s, d) = (loc(&src), loc(&dst));
    let trusting = VolumeOptions {
        verify_every: Some(Duration::from_secs(3600)),
        ..Default::default()
    };

    // The first sync has no manifest to trust: it lists, and records the check.
    let first = sync_volume(&s, &d, &trusting).await.unwrap();
    assert_eq!((first.files_copied, first.target_trusted), (10, false));

    // Within the hour the target is not listed; a new source file is still copied.
    write(&src, "d/new.csv", b"new\n");
    std::fs::remove_file(dst.join("d/f3.csv")).unwrap();
    let second = sync_volume(&s, &d, &trusting).await.unwrap();
    assert!(second.target_trusted, "{second:?}");
    assert_eq!((second.files_copied, second.files_unchanged), (1, 10));
    assert!(
        !dst.join("d/f3.csv").exists(),
        "not listed: the deletion is not seen yet"
    );

    // A sync that lists the target (the default) finds it and copies it back…
    let listed = sync_volume(&s, &d, &VolumeOptions::default())
        .await
        .unwrap();
    assert!(!listed.target_trusted);
    assert_eq!(listed.files_copied, 1);
    assert_eq!(tree(&src), tree(&dst));

    // …and so does a trusting sync once the last check is older than `verify_every`.
    std::fs::remove_file(dst.join("d/f4.csv")).unwrap();
    let stale = VolumeOptions {
        verify_every: Some(Duration::ZERO),
        ..Default::default()
    };
    let r = sync_volume(&s, &d, &stale).await.unwrap();
    assert_eq!((r.files_copied, r.target_trusted), (1, false));
    assert_eq!(tree(&src), tree(&dst));
}
