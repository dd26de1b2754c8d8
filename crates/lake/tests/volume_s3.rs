//! Volumes on S3 (the `moto` server, started by this test on a free port;
//! `scripts/test-tools.sh` installs it): local → S3 with awkward names, a multipart file and a
//! streamed one, an incremental re-sync, deletions, a shard, and back S3 → local.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::time::{Duration, SystemTime};

use replicator_lake::{TableLocation, VolumeOptions, diff_volume, sync_volume};
use replicator_tests::servers::Moto;

fn bucket(name: &str) -> String {
    Moto::shared().bucket(name)
}

fn s3(url: &str) -> TableLocation {
    Moto::shared().location(url)
}

fn write(root: &FsPath, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

fn local(p: &FsPath) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

fn tree(root: &FsPath) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
            if rel.starts_with("_replicator_") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn local_to_s3_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let names = [
        "csv/2024/01/a b.csv",
        "it's \"quoted\" `tick`.txt",
        "ünïcødé/日本.txt",
        "dots.v1.2/x.y",
        "100%.txt",
    ];
    for n in names {
        write(&src, n, format!("content of {n}").as_bytes());
    }
    // Larger than a part and the upload cutoff: a multipart upload of three parts; larger
    // than a part only: one streamed `PUT`.
    let big: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 251) as u8).collect();
    write(&src, "models/big.bin", &big);
    write(&src, "models/mid.bin", &big[..7 << 20]);
    let target = s3(&format!("{}/volumes/landing", bucket("volumes")));
    let opts = VolumeOptions {
        part_size: 5 << 20,
        upload_cutoff: 8 << 20,
        ..Default::default()
    };

    let first = sync_volume(&local(&src), &target, &opts).await.unwrap();
    assert_eq!(first.files_copied, names.len() as u64 + 2);
    use object_store::ObjectStoreExt;
    let etag = async |rel: &str| {
        let meta = target.object_store().head(&target.object_path(rel)).await;
        meta.unwrap().e_tag.unwrap()
    };
    assert!(etag("models/big.bin").await.ends_with("-3\""));
    assert!(!etag("models/mid.bin").await.contains('-'));
    assert!(
        diff_volume(&local(&src), &target, &opts)
            .await
            .unwrap()
            .is_empty()
    );

    // Unchanged: nothing copied; then one changed file, one new, one deleted.
    let again = sync_volume(&local(&src), &target, &opts).await.unwrap();
    assert_eq!((again.files_copied, again.files_unchanged), (0, 7));
    write(&src, "csv/2024/01/a b.csv", b"CONTENT OF A B.CSV!!");
    write(&src, "new.txt", b"new");
    std::fs::remove_file(src.join("100%.txt")).unwrap();
    let diff = diff_volume(&local(&src), &target, &opts).await.unwrap();
    assert_eq!(
        (
            diff.missing.clone(),
            diff.extra.clone(),
            diff.files_different
        ),
        (vec!["new.txt".to_owned()], vec!["100%.txt".to_owned()], 1)
    );
    let third = sync_volume(
        &local(&src),
        &target,
        &VolumeOptions {
            delete_extra: true,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!((third.files_copied, third.files_deleted), (2, 1));
    assert!(
        diff_volume(&local(&src), &target, &opts)
            .await
            .unwrap()
            .is_empty()
    );

    // A target object overwritten behind the sync's back is copied again.
    target
        .object_store()
        .put(&target.object_path("new.txt"), b"NEW".to_vec().into())
        .await
        .unwrap();
    let fourth = sync_volume(&local(&src), &target, &opts).await.unwrap();
    assert_eq!(fourth.planned, ["new.txt"]);

    // Back: S3 → local, byte for byte; then one shard of an S3 → S3 copy in one bucket.
    let back = dir.path().join("back");
    let r = sync_volume(&target, &local(&back), &opts).await.unwrap();
    assert_eq!(r.files_copied, 7);
    assert_eq!(tree(&src), tree(&back));
    let again = sync_volume(&target, &local(&back), &opts).await.unwrap();
    assert_eq!(again.files_unchanged, 7);

    let copy = s3(&format!("{}/volumes/copy", "s3://volumes"));
    let shard = VolumeOptions {
        shard: Some((0, 2)),
        ..opts.clone()
    };
    let r = sync_volume(&target, &copy, &shard).await.unwrap();
    let in_shard = tree(&src)
        .keys()
        .filter(|k| replicator_lake::volume::shard_of(k, 2) == 0)
        .count() as u64;
    assert_eq!(r.files_copied, in_shard);
    assert!(
        diff_volume(&target, &copy, &shard)
            .await
            .unwrap()
            .is_empty()
    );
}
