//! A 500 MB volume file is copied within the memory bound: ranged reads and a multipart
//! upload with a fixed number of parts in flight, not the file in memory. Alone in this file
//! so that its process's peak RSS (`VmHWM`) is its own.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use replicator_lake::{TableLocation, VolumeOptions, sync_volume};

/// Peak resident set size of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

/// `dir` behind its own store instance: the copy streams through reads and a multipart
/// upload, as between two object stores (not the filesystem's copy).
fn elsewhere(dir: &FsPath) -> TableLocation {
    let url = url::Url::from_directory_path(dir).unwrap();
    TableLocation::with_store(
        url,
        Arc::new(LocalFileSystem::new()),
        Path::from_absolute_path(dir).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_mb_file_streams_through_in_bounded_memory() {
    const SIZE: u64 = 500 << 20;
    const BOUND: u64 = 150 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(src.join("models")).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    // Sparse, with a few real bytes so a misplaced part would show.
    let file = std::fs::File::create(src.join("models/big.bin")).unwrap();
    file.set_len(SIZE).unwrap();
    {
        use std::os::unix::fs::FileExt;
        for i in 0..10u64 {
            file.write_all_at(&i.to_le_bytes(), i * (SIZE / 10) + 12345)
                .unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        file.set_modified(old).unwrap();
    }
    let source = TableLocation::parse(src.to_str().unwrap()).unwrap();
    let before = peak_rss();
    let r = sync_volume(&source, &elsewhere(&dst), &VolumeOptions::default())
        .await
        .unwrap();
    let growth = peak_rss().saturating_sub(before);
    assert_eq!((r.files_copied, r.bytes_copied), (1, SIZE));
    assert!(
        growth < BOUND,
        "peak RSS grew by {} MiB copying a 500 MiB file (bound {} MiB)",
        growth >> 20,
        BOUND >> 20
    );
    // The copy is the file, byte for byte (compared in 8 MiB blocks).
    use std::io::Read;
    let (mut a, mut b) = (
        std::fs::File::open(src.join("models/big.bin")).unwrap(),
        std::fs::File::open(dst.join("models/big.bin")).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        let mut m = 0;
        while m < n {
            let k = b.read(&mut y[m..n]).unwrap();
            assert!(k > 0, "copy is shorter");
            m += k;
        }
        assert!(x[..n] == y[..n], "copy differs");
        if n == 0 {
            assert_eq!(b.read(&mut y).unwrap(), 0, "copy is longer");
            break;
        }
    }
    println!("peak RSS growth: {} MiB", growth >> 20);
}
