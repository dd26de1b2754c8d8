//! `replicator clone SOURCE TARGET`: deep clone one Delta table.

use std::process::ExitCode;
use std::sync::Arc;

use replicator_lake::{CloneOptions, TableLocation, deep_clone};

use super::{Logs, fail};
use crate::output;

#[derive(clap::Args)]
pub struct Args {
    /// Source table (path, file://, s3:// or az:// URL).
    source: String,
    /// Target table (path, file://, s3:// or az:// URL).
    target: String,
    /// Clone this source version (`VERSION AS OF`).
    #[arg(long, conflicts_with = "timestamp")]
    version: Option<u64>,
    /// Clone the latest version committed at or before this time (`TIMESTAMP AS OF`):
    /// RFC 3339 (`2026-11-21T06:00:00Z`), or `YYYY-MM-DD[ HH:MM:SS[.fff]]` in UTC.
    #[arg(long, value_parser = parse_timestamp)]
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
    /// Files copied at once.
    #[arg(long, default_value_t = 16)]
    parallelism: usize,
    /// Replace a target that is a Delta table not cloned from this source (as `CREATE OR
    /// REPLACE`); without it such a target is refused, untouched.
    #[arg(long)]
    replace: bool,
    /// Let absolute paths in the source's log reference files under this root (in the
    /// source's own store); repeatable. Without it only files inside the source table are
    /// read.
    #[arg(long = "allow-external-root", value_name = "URL")]
    external_roots: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, logs: &Logs) -> ExitCode {
    logs.init(None, "warn");
    let roots = match args
        .external_roots
        .iter()
        .map(String::as_str)
        .map(TableLocation::parse)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(r) => r,
        Err(e) => return fail(2, format!("--allow-external-root: {e}")),
    };
    let options = CloneOptions {
        version: args.version,
        timestamp: args.timestamp,
        parallelism: args.parallelism,
        replace: args.replace,
        external_roots: roots,
        ..Default::default()
    };
    clone(&args.source, &args.target, options, args.json).await
}

/// Parse `--timestamp`: RFC 3339, or a UTC date and optional time.
fn parse_timestamp(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")))
        .map_err(|_| {
            format!("`{s}` is not a timestamp (RFC 3339, or YYYY-MM-DD[ HH:MM:SS] in UTC)")
        })
}

/// `replicator clone`. Ctrl-C (or SIGTERM) stops it cleanly: copies in flight finish,
/// nothing is committed, a first clone removes what it copied, and the exit code is 130. A
/// second signal exits at once (the next clone of the target removes what was staged).
async fn clone(source: &str, target: &str, mut options: CloneOptions, json: bool) -> ExitCode {
    let (src, dst) = match (TableLocation::parse(source), TableLocation::parse(target)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return fail(2, e),
    };
    let bar = output::progress_bar(
        0,
        "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}) {msg}",
        !json,
    );
    let pb = bar.clone();
    options.progress = Some(Arc::new(move |p: &replicator_lake::CloneProgress| {
        pb.set_length(p.bytes_total);
        pb.set_position(p.bytes_done);
        pb.set_message(format!("{}/{} files", p.files_done, p.files_total));
    }));
    let cancel = replicator_common::shutdown::CancellationToken::new();
    options.cancel = Some(cancel.clone());
    let signals = tokio::spawn({
        let (cancel, bar) = (cancel.clone(), bar.clone());
        async move {
            replicator_common::shutdown::wait_for_signal().await;
            bar.set_message("interrupted: finishing the copies in flight, then cleaning up");
            cancel.cancel();
            replicator_common::shutdown::wait_for_signal().await;
            bar.finish_and_clear();
            eprintln!(
                "error: clone interrupted twice: exiting without cleaning up (the next clone of the target removes what was staged and reuses the files already copied)"
            );
            std::process::exit(130);
        }
    });
    let result = deep_clone(&src, &dst, &options).await;
    signals.abort();
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            if json {
                let v = serde_json::json!({
                    "source": src.url().as_str(),
                    "target": dst.url().as_str(),
                    "source_version": r.source_version,
                    "target_version": r.target_version,
                    "committed": r.committed,
                    "duration_ms": r.duration_ms,
                    "log_tail": r.log_tail,
                    "metrics": r.metrics,
                });
                println!("{v}");
            } else {
                let what = if r.committed {
                    format!(
                        "cloned version {} of {} into version {} of {}",
                        r.source_version, src, r.target_version, dst
                    )
                } else {
                    format!(
                        "{dst} is already at version {} of {src}: nothing to copy",
                        r.source_version
                    )
                };
                println!(
                    "{what} in {:.2}s\n{}",
                    r.duration_ms as f64 / 1000.0,
                    output::metrics_text(&r.metrics)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) if cancel.is_cancelled() => fail(130, e),
        Err(e) => fail(1, format!("clone failed: {e}")),
    }
}
