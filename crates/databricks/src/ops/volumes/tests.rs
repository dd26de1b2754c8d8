use super::*;

fn stat(size: u64, last_modified: i64) -> FileStat {
    FileStat {
        size,
        last_modified,
    }
}

fn tree(files: &[(&str, FileStat)], dirs: &[&str]) -> VolumeTree {
    VolumeTree {
        files: files.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        dirs: dirs.iter().map(|d| d.to_string()).collect(),
        refused: Vec::new(),
    }
}

#[test]
fn prefixes_rewrite_at_path_boundaries_and_the_longest_wins() {
    let m = PrefixMap {
        prefixes: vec![
            ("s3://a/".into(), "s3://b/".into()),
            ("s3://a/deep".into(), "s3://c/x".into()),
            (
                "abfss://data@primary.dfs.core.windows.net/".into(),
                "abfss://data@secondary.dfs.core.windows.net/".into(),
            ),
        ],
        credentials: BTreeMap::from([("src_cred".into(), "dr_cred".into())]),
    };
    assert_eq!(m.location("s3://a/v1").as_deref(), Some("s3://b/v1"));
    assert_eq!(m.location("s3://a/deep/v").as_deref(), Some("s3://c/x/v"));
    assert_eq!(
        m.location("s3://a/deeper").as_deref(),
        Some("s3://b/deeper")
    );
    assert_eq!(m.location("s3://ab/v"), None);
    assert_eq!(
        m.location("abfss://data@primary.dfs.core.windows.net/vol")
            .as_deref(),
        Some("abfss://data@secondary.dfs.core.windows.net/vol")
    );
    assert_eq!(m.credential("src_cred").as_deref(), Some("dr_cred"));
    assert_eq!(m.credential("other").as_deref(), Some("other"));
}

#[test]
fn sql_strings_escape_quotes_and_backslashes() {
    assert_eq!(sql_string(r"it's a \ path"), r"'it\'s a \\ path'");
    assert_eq!(sql_string("'); DROP"), r"'\'); DROP'");
}

#[test]
fn the_plan_copies_new_and_changed_files_and_keeps_unchanged_ones() {
    let source = tree(
        &[
            ("new.csv", stat(3, 100)),
            ("same.csv", stat(5, 100)),
            ("grown.csv", stat(9, 300)),
            ("touched.csv", stat(5, 400)),
            ("unrecorded.csv", stat(7, 100)),
            ("stale.csv", stat(7, 500)),
        ],
        &["d", "d/e"],
    );
    let target = tree(
        &[
            ("same.csv", stat(5, 200)),
            ("grown.csv", stat(5, 200)),
            ("touched.csv", stat(5, 200)),
            ("unrecorded.csv", stat(7, 150)),
            ("stale.csv", stat(7, 150)),
            ("extra.csv", stat(1, 1)),
        ],
        &["d", "old", "old/deeper"],
    );
    let rec = |s: FileStat, t: FileStat| Record {
        source_size: s.size,
        source_modified: s.last_modified,
        target_size: t.size,
        target_modified: t.last_modified,
    };
    let manifest = Manifest {
        source: "c.s.v".into(),
        files: BTreeMap::from([
            ("same.csv".into(), rec(stat(5, 100), stat(5, 200))),
            ("grown.csv".into(), rec(stat(5, 100), stat(5, 200))),
            // Same size, a newer source mtime than recorded: changed.
            ("touched.csv".into(), rec(stat(5, 100), stat(5, 200))),
        ]),
    };
    let p = plan(&source, &target, &manifest, None);
    let copied: Vec<&str> = p.copy.iter().map(|(r, _)| r.as_str()).collect();
    // Without a record: unchanged when the sizes match and the target is not older.
    assert_eq!(copied, ["grown.csv", "new.csv", "stale.csv", "touched.csv"]);
    assert_eq!(p.unchanged, ["same.csv", "unrecorded.csv"]);
    assert_eq!(p.mkdirs, ["d/e"]);
    assert_eq!(p.extra_files, ["extra.csv"]);
    assert_eq!(p.extra_dirs, ["old/deeper", "old"]);
}

#[test]
fn a_target_file_edited_after_the_copy_is_copied_again() {
    let source = tree(&[("a", stat(5, 100))], &[]);
    let target = tree(&[("a", stat(5, 900))], &[]);
    let manifest = Manifest {
        source: "c.s.v".into(),
        files: BTreeMap::from([(
            "a".into(),
            Record {
                source_size: 5,
                source_modified: 100,
                target_size: 5,
                target_modified: 200,
            },
        )]),
    };
    assert_eq!(plan(&source, &target, &manifest, None).copy.len(), 1);
}

#[test]
fn shards_split_the_files_and_leave_directories_alone() {
    let names: Vec<String> = (0..200).map(|i| format!("d/f{i}.bin")).collect();
    let source = VolumeTree {
        files: names.iter().map(|n| (n.clone(), stat(1, 1))).collect(),
        dirs: ["d".to_owned()].into(),
        refused: Vec::new(),
    };
    let target = tree(&[("gone.bin", stat(1, 1))], &["old"]);
    let mut seen = BTreeSet::new();
    let mut extra = 0;
    for index in 0..3 {
        let shard = Shard { index, count: 3 };
        let p = plan(&source, &target, &Manifest::default(), Some(shard));
        assert!(p.copy.len() > 30, "{index}: {}", p.copy.len());
        for (rel, _) in &p.copy {
            assert!(shard.holds(rel) && seen.insert(rel.clone()), "{rel}");
        }
        extra += p.extra_files.len();
        assert!(p.extra_dirs.is_empty());
    }
    assert_eq!(seen.len(), 200);
    assert_eq!(extra, 1);
    assert_eq!(shard_manifest(None), MANIFEST);
    assert_eq!(
        shard_manifest(Some(Shard { index: 1, count: 4 })),
        ".replicator/volume-sync.1-of-4.json"
    );
}
