use replicator_lake::*;
#[tokio::main]
async fn main() {
    let corpus = std::path::Path::new("/work/shared/delta-corpus");
    let out = tempfile::tempdir().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(corpus)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    for n in names {
        let src = TableLocation::parse(corpus.join(&n).to_str().unwrap()).unwrap();
        let dst = TableLocation::parse(out.path().join(&n).to_str().unwrap()).unwrap();
        let r = deep_clone(&src, &dst, &CloneOptions::default()).await;
        match r {
            Ok(rep) => {
                let a = inspect::read_batches(&src, Some(rep.source_version))
                    .await
                    .and_then(|b| inspect::sorted_rows(&b));
                let b = inspect::read_batches(&dst, None)
                    .await
                    .and_then(|b| inspect::sorted_rows(&b));
                let cmp = match (&a, &b) {
                    (Ok(a), Ok(b)) => format!("rows_equal={} n={}", a == b, a.len()),
                    _ => format!(
                        "read src={:?} dst={:?}",
                        a.as_ref().err().map(|e| e.to_string()),
                        b.as_ref().err().map(|e| e.to_string())
                    ),
                };
                let again = deep_clone(&src, &dst, &CloneOptions::default())
                    .await
                    .map(|r| r.committed);
                println!(
                    "OK   {n}: v{} files={} {cmp} reclone_committed={:?}",
                    rep.source_version,
                    rep.metrics.num_copied_files,
                    again.map_err(|e| e.to_string())
                );
            }
            Err(e) => println!(
                "FAIL {n}: {e}  [target_log_exists={}]",
                out.path().join(&n).join("_delta_log").exists()
            ),
        }
    }
}
