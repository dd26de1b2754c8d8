//! Volumes between two emulated workspaces: an external and a managed volume with nested
//! files (names with spaces, quotes, backticks, unicode) replicated under a catalog rename
//! and a storage prefix rewrite (the external location created first); files added, changed
//! and deleted between runs; a second run that copies nothing and issues no DDL; a dry run
//! that issues nothing; paths with `..` refused at every layer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use replicator_common::retry::RetryPolicy;
use replicator_databricks::WorkspacePair;
use replicator_databricks::client::VolumeName;
use replicator_databricks::ops::volumes::{
    LocationStatus, PrefixMap, Shard, VolumeSyncOptions, diff_volume, ensure_external_location,
    shard_manifest, sync_volume,
};
use replicator_tests::databricks_emulator::Workspace;

mod databricks_env;
use databricks_env::Env;

const LANDING: &str = "prod.sales.landing";
const MODELS: &str = "prod.sales.models";
const LANDING_DR: &str = "prod_dr.sales.landing";
const MODELS_DR: &str = "prod_dr.sales.models";

struct Vols {
    env: Env,
    map: PrefixMap,
    landing: PathBuf,
    models: PathBuf,
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Every file under `root` (the manifest directory left out) and its bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".replicator" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Requests that change something (anything but reads and the OAuth token endpoint).
fn writes(ws: &Workspace) -> Vec<String> {
    let mut out: Vec<String> = ws
        .calls()
        .into_iter()
        .filter(|c| !matches!(c.method.as_str(), "GET" | "HEAD") && c.path != "/oidc/v1/token")
        .filter(|c| !c.path.starts_with("/api/2.0/sql/statements"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    out.extend(ws.statements().into_iter().map(|(_, s)| s));
    out
}

fn opts(delete_extra: bool, dry_run: bool) -> VolumeSyncOptions {
    VolumeSyncOptions {
        delete_extra,
        dry_run,
        parallelism: 4,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay_ms: 1,
            max_delay_ms: 5,
        },
        shard: None,
    }
}

impl Vols {
    async fn new() -> Self {
        let env = Env::new().await;
        let dir = env.dir.path().to_owned();
        let (src_ms, tgt_ms) = (&env.src.metastore, &env.tgt.metastore);
        let primary = format!("file://{}/primary", dir.display());
        let secondary = format!("file://{}/secondary", dir.display());
        env.world.add_storage_credential(src_ms, "src_cred");
        env.world.add_external_location(
            src_ms,
            "landing_loc",
            &format!("{primary}/landing"),
            "src_cred",
        );
        env.world.add_storage_credential(tgt_ms, "dr_cred");
        env.world
            .create_volume(
                src_ms,
                LANDING,
                Some(&format!("{primary}/landing/raw")),
                Some("it's raw \\ data"),
            )
            .unwrap();
        env.world.create_volume(src_ms, MODELS, None, None).unwrap();
        let landing = env.world.volume_dir(src_ms, LANDING).unwrap();
        let models = env.world.volume_dir(src_ms, MODELS).unwrap();
        write(&landing, "a.csv", b"id,v\n1,2\n");
        write(&landing, "nested/deeper/b c.csv", b"id\n3\n");
        write(&landing, "quotes/it's \"q\" `tick`.txt", b"quoted");
        write(
            &landing,
            "unicode/\u{e9}t\u{e9} \u{65e5}\u{672c}.bin",
            &[0, 1, 2, 255],
        );
        std::fs::create_dir_all(landing.join("empty dir")).unwrap();
        let weights: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        write(&models, "m1/weights.bin", &weights);
        write(&models, "m1/config.json", b"{\"layers\": 3}");
        write(&models, "m2/notes.md", b"# notes");
        let map = PrefixMap {
            prefixes: vec![(format!("{primary}/"), format!("{secondary}/"))],
            credentials: BTreeMap::from([("src_cred".into(), "dr_cred".into())]),
        };
        Self {
            env,
            map,
            landing,
            models,
        }
    }

    fn pair(&self, dry_run: bool) -> WorkspacePair {
        WorkspacePair::from_config(&self.env.config(""), dry_run).unwrap()
    }

    async fn target_schema(&self) {
        let p = self.pair(false);
        for sql in [
            "CREATE CATALOG IF NOT EXISTS `prod_dr`",
            "CREATE SCHEMA IF NOT EXISTS `prod_dr`.`sales`",
        ] {
            p.target.execute(sql).await.unwrap();
        }
    }

    fn target_dir(&self, full: &str) -> PathBuf {
        self.env
            .world
            .volume_dir(&self.env.tgt.metastore, full)
            .unwrap()
    }

    fn clear(&self) {
        self.env.src.clear_log();
        self.env.tgt.clear_log();
    }

    /// Sync both volumes; returns (copied, deleted, unchanged, statements) summed.
    async fn sync(&self, delete_extra: bool) -> (u64, u64, u64, Vec<String>, Vec<String>) {
        let p = self.pair(false);
        let mut t = (0, 0, 0, Vec::new(), Vec::new());
        for (s, d) in [(LANDING, LANDING_DR), (MODELS, MODELS_DR)] {
            let o = sync_volume(
                &p.source,
                &p.target,
                s,
                d,
                &self.map,
                &opts(delete_extra, false),
            )
            .await
            .unwrap();
            assert_eq!(o.files_failed, 0, "{o:#?}");
            t.0 += o.files_copied;
            t.1 += o.files_deleted;
            t.2 += o.files_unchanged;
            t.3.extend(o.statements);
            t.4.extend(o.findings);
        }
        t
    }

    async fn assert_in_sync(&self) {
        let p = self.pair(false);
        for (s, d, dir) in [
            (LANDING, LANDING_DR, &self.landing),
            (MODELS, MODELS_DR, &self.models),
        ] {
            let diff = diff_volume(&p.source, &p.target, s, d).await.unwrap();
            assert!(diff.is_empty(), "{diff:#?}");
            assert_eq!(files(&self.target_dir(d)), files(dir), "{d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_replicate_incrementally_under_a_rename_and_a_prefix_rewrite() {
    let v = Vols::new().await;
    v.target_schema().await;
    let tgt_ms = v.env.tgt.metastore.clone();

    // A dry run reads both sides, says what it would do, and changes nothing.
    v.clear();
    let dry = v.pair(true);
    let loc = ensure_external_location(&dry.source, &dry.target, "landing_loc", &v.map, true)
        .await
        .unwrap();
    assert_eq!(loc.status, LocationStatus::Created);
    assert_eq!(loc.statements.len(), 1, "{loc:#?}");
    let o = sync_volume(
        &dry.source,
        &dry.target,
        LANDING,
        LANDING_DR,
        &v.map,
        &opts(true, true),
    )
    .await
    .unwrap();
    assert_eq!((o.files_copied, o.statements.len()), (4, 1), "{o:#?}");
    assert!(o.changed);
    assert!(writes(&v.env.tgt).is_empty(), "{:#?}", writes(&v.env.tgt));
    assert!(v.env.world.volume(&tgt_ms, LANDING_DR).is_none());

    // First run: the external location, then both volumes and every file.
    let p = v.pair(false);
    let loc = ensure_external_location(&p.source, &p.target, "landing_loc", &v.map, false)
        .await
        .unwrap();
    assert_eq!(loc.status, LocationStatus::Created, "{loc:#?}");
    assert!(loc.target_url.ends_with("/secondary/landing"), "{loc:#?}");
    assert_eq!(loc.target_credential, "dr_cred");
    let (copied, deleted, unchanged, statements, _) = v.sync(false).await;
    assert_eq!((copied, deleted, unchanged), (7, 0, 0));
    let secondary = format!(
        "file://{}/secondary/landing/raw",
        v.env.dir.path().display()
    );
    assert_eq!(
        statements,
        [
            format!(
                "CREATE EXTERNAL VOLUME IF NOT EXISTS `prod_dr`.`sales`.`landing` LOCATION '{secondary}' COMMENT 'it\\'s raw \\\\ data'"
            ),
            "CREATE VOLUME IF NOT EXISTS `prod_dr`.`sales`.`models`".to_owned(),
        ]
    );
    let (ty, location, comment) = v.env.world.volume(&tgt_ms, LANDING_DR).unwrap();
    assert_eq!(
        (ty.as_str(), location.as_str()),
        ("EXTERNAL", secondary.as_str())
    );
    assert_eq!(comment.as_deref(), Some("it's raw \\ data"));
    assert_eq!(v.env.world.volume(&tgt_ms, MODELS_DR).unwrap().0, "MANAGED");
    assert!(v.target_dir(LANDING_DR).join("empty dir").is_dir());
    v.assert_in_sync().await;

    // Second run: nothing to copy, no DDL, no write of any kind.
    v.clear();
    let loc = ensure_external_location(&p.source, &p.target, "landing_loc", &v.map, false)
        .await
        .unwrap();
    assert_eq!(loc.status, LocationStatus::Covered("landing_loc".into()));
    let (copied, deleted, unchanged, statements, _) = v.sync(true).await;
    assert_eq!((copied, deleted, unchanged), (0, 0, 7));
    assert!(statements.is_empty());
    assert!(writes(&v.env.tgt).is_empty(), "{:#?}", writes(&v.env.tgt));

    // Between runs: a file added, one grown, one rewritten with the same size, one deleted.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&v.landing, "nested/new one.csv", b"new");
    write(&v.landing, "a.csv", b"id,v\n1,2\n3,4\n");
    write(&v.models, "m1/config.json", b"{\"layers\": 4}");
    std::fs::remove_dir_all(v.models.join("m2")).unwrap();
    let (copied, deleted, unchanged, statements, findings) = v.sync(false).await;
    assert_eq!((copied, deleted, unchanged), (3, 0, 4));
    assert!(statements.is_empty());
    assert!(
        findings.iter().any(|f| f.contains("only in target")),
        "{findings:#?}"
    );
    let p = v.pair(false);
    let diff = diff_volume(&p.source, &p.target, MODELS, MODELS_DR)
        .await
        .unwrap();
    assert_eq!(diff.extra, ["m2/notes.md"]);
    // Deletions only when asked.
    let (copied, deleted, ..) = v.sync(true).await;
    assert_eq!((copied, deleted), (0, 1));
    assert!(!v.target_dir(MODELS_DR).join("m2").exists());
    v.assert_in_sync().await;
    // A file edited on the target is put back.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&v.target_dir(LANDING_DR), "a.csv", b"tampered!!!!!");
    let (copied, ..) = v.sync(false).await;
    assert_eq!(copied, 1);
    v.assert_in_sync().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_without_its_credential_is_reported_not_created() {
    let v = Vols::new().await;
    let p = v.pair(false);
    let map = PrefixMap {
        credentials: BTreeMap::from([("src_cred".into(), "no_such_cred".into())]),
        ..v.map.clone()
    };
    let loc = ensure_external_location(&p.source, &p.target, "landing_loc", &map, false)
        .await
        .unwrap();
    assert_eq!(loc.status, LocationStatus::Missing);
    assert!(
        loc.findings[0].contains("`no_such_cred` does not exist"),
        "{loc:#?}"
    );
    assert!(writes(&v.env.tgt).is_empty());
    // Unmapped storage is an error naming the volume, never a guess.
    v.target_schema().await;
    let none = PrefixMap::default();
    let e = sync_volume(
        &p.source,
        &p.target,
        LANDING,
        LANDING_DR,
        &none,
        &opts(false, false),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("volume prod.sales.landing") && e.contains("no storage mapping"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_with_dot_dot_are_refused_at_every_layer() {
    let v = Vols::new().await;
    v.target_schema().await;
    let p = v.pair(false);
    let vol = VolumeName::parse(LANDING).unwrap();
    // The client refuses before sending anything.
    for bad in ["../escape.txt", "nested/../../models/x", "a/./b"] {
        let e = p
            .source
            .download(&vol, bad, None)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("may not leave its volume"), "{bad}: {e}");
    }
    let body = futures::stream::empty().boxed();
    assert!(p.target.upload(&vol, "../x", 0, body).await.is_err());

    // The server refuses an encoded slash and a literal `..` segment.
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/2.0/fs/files/Volumes/prod/sales/landing/..%2F..%2Fmodels%2Fx",
        v.env.src.url
    );
    let r = http
        .get(url)
        .bearer_auth(databricks_env::PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let addr = v.env.src.url.trim_start_matches("http://").to_owned();
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /api/2.0/fs/files/Volumes/prod/sales/landing/../models/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            databricks_env::PAT
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");

    // A listing naming a path outside the volume is reported and not followed.
    v.env.src.faults(|f| {
        f.listing_inject = vec![(
            "/Volumes/prod/sales/landing/nested".into(),
            "/Volumes/prod/sales/landing/nested/../../models/m1/weights.bin".into(),
        )]
    });
    ensure_external_location(&p.source, &p.target, "landing_loc", &v.map, false)
        .await
        .unwrap();
    let o = sync_volume(
        &p.source,
        &p.target,
        LANDING,
        LANDING_DR,
        &v.map,
        &opts(false, false),
    )
    .await
    .unwrap();
    assert_eq!(o.files_copied, 4, "{o:#?}");
    assert!(
        o.findings
            .iter()
            .any(|f| f.starts_with("source listing:") && f.contains("..")),
        "{o:#?}"
    );
    assert!(!v.target_dir(LANDING_DR).join("models").exists());
    assert_eq!(files(&v.target_dir(LANDING_DR)), files(&v.landing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_api_serves_metadata_ranges_and_preconditions_and_a_throttled_sync_completes() {
    let v = Vols::new().await;
    v.target_schema().await;
    let p = v.pair(false);
    let vol = VolumeName::parse(LANDING).unwrap();
    let (len, modified) = p
        .source
        .file_metadata(&vol, "a.csv")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(len, Some(9));
    assert!(modified.unwrap().ends_with(" GMT"));
    assert_eq!(
        p.source.file_metadata(&vol, "absent.csv").await.unwrap(),
        None
    );

    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/2.0/fs/files/Volumes/prod/sales/landing/a.csv",
        v.env.src.url
    );
    let get = |range: Option<&str>, since: Option<&str>| {
        let mut r = http.get(&url).bearer_auth(databricks_env::PAT);
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        if let Some(since) = since {
            r = r.header("If-Unmodified-Since", since);
        }
        r.send()
    };
    let r = get(Some("bytes=1-2"), None).await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1-2/9");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"d,");
    let r = get(Some("bytes=50-"), None).await.unwrap();
    assert_eq!(r.status().as_u16(), 416);
    let r = get(None, Some("Mon, 01 Jan 2001 00:00:00 GMT"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 412);
    let r = get(None, None).await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"id,v\n1,2\n");

    // Throttled answers on both sides (429 with Retry-After) are waited out.
    for ws in [&v.env.src, &v.env.tgt] {
        ws.faults(|f| {
            f.throttle = 6;
            f.retry_after_s = 0;
        });
    }
    ensure_external_location(&p.source, &p.target, "landing_loc", &v.map, false)
        .await
        .unwrap();
    let (copied, ..) = v.sync(false).await;
    assert_eq!(copied, 7);
    v.assert_in_sync().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_split_over_shards_is_copied_once_and_each_shard_keeps_its_own_manifest() {
    let v = Vols::new().await;
    v.target_schema().await;
    let p = v.pair(false);
    let shard = |index| VolumeSyncOptions {
        shard: Some(Shard { index, count: 2 }),
        ..opts(true, false)
    };
    let run = || async {
        let mut copied = 0;
        for index in 0..2 {
            let o = sync_volume(
                &p.source,
                &p.target,
                MODELS,
                MODELS_DR,
                &v.map,
                &shard(index),
            )
            .await
            .unwrap();
            copied += o.files_copied;
        }
        copied
    };
    assert_eq!(run().await, 3);
    v.clear();
    assert_eq!(run().await, 0);
    assert!(writes(&v.env.tgt).is_empty(), "{:#?}", writes(&v.env.tgt));
    let dr = v.target_dir(MODELS_DR);
    for index in 0..2 {
        assert!(
            dr.join(shard_manifest(Some(Shard { index, count: 2 })))
                .is_file()
        );
    }
    assert_eq!(files(&dr), files(&v.models));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changing_between_its_listing_and_its_copy_is_left_for_the_next_run() {
    let v = Vols::new().await;
    v.target_schema().await;
    let p = v.pair(false);
    v.env.src.faults(|f| {
        f.change_on_download = vec!["/Volumes/prod/sales/models/m1/config.json".into()];
    });
    let o = sync_volume(
        &p.source,
        &p.target,
        MODELS,
        MODELS_DR,
        &v.map,
        &opts(false, false),
    )
    .await
    .unwrap();
    assert_eq!(o.files_copied, 2, "{o:#?}");
    assert!(
        o.findings
            .iter()
            .any(|f| f.contains("m1/config.json changed while being copied")),
        "{o:#?}"
    );
    // Never a file of the wrong length at its name: absent until the next run copies it.
    let dr = v.target_dir(MODELS_DR);
    assert!(!dr.join("m1/config.json").exists());
    let o = sync_volume(
        &p.source,
        &p.target,
        MODELS,
        MODELS_DR,
        &v.map,
        &opts(false, false),
    )
    .await
    .unwrap();
    assert_eq!((o.files_copied, o.files_unchanged), (1, 2), "{o:#?}");
    assert_eq!(files(&dr), files(&v.models));
}
