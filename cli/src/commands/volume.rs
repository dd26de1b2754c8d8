//! `replicator volume SOURCE TARGET`: sync a file tree (a volume) incrementally.

use std::process::ExitCode;
use std::sync::Arc;

use replicator_lake::{TableLocation, VolumeOptions, sync_volume};

use super::{Logs, fail};
use crate::output;

#[derive(clap::Args)]
pub struct Args {
    /// Source directory (path, file://, s3:// or az:// URL).
    source: String,
    /// Target directory (path, file://, s3:// or az:// URL).
    target: String,
    /// Delete target files the source no longer has (without it they are only reported).
    #[arg(long)]
    delete: bool,
    /// Print what would be copied and deleted; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Files copied at once.
    #[arg(long, default_value_t = 16)]
    parallelism: usize,
    /// Only the files of shard INDEX of COUNT (`--shard 0/4`), by a stable hash of the path.
    #[arg(long, value_parser = parse_shard, value_name = "INDEX/COUNT")]
    shard: Option<(u32, u32)>,
    /// Trust the target's manifest instead of listing the target while its last check by a
    /// listing is younger than PERIOD (`1h`, `24h`); by default every sync lists the target.
    #[arg(long, value_name = "PERIOD", value_parser = parse_period)]
    verify_every: Option<replicator_common::config::Period>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_period(s: &str) -> Result<replicator_common::config::Period, String> {
    s.parse()
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not INDEX/COUNT (for example 0/4)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(format!(
            "shard {i}/{n}: the index counts from 0 and is below the count"
        ));
    }
    Ok((i, n))
}

/// `replicator volume`. Ctrl-C (or SIGTERM) stops it: copies in flight finish, what was
/// copied is recorded in the target's manifest, and the exit code is 130.
pub async fn run(args: Args, logs: &Logs) -> ExitCode {
    logs.init(None, "warn");
    let (src, dst) = match (
        TableLocation::parse(&args.source),
        TableLocation::parse(&args.target),
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return fail(2, e),
    };
    let bar = output::progress_bar(
        0,
        "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}) {msg}",
        !args.json && !args.dry_run,
    );
    let pb = bar.clone();
    let cancel = replicator_common::shutdown::CancellationToken::new();
    let options = VolumeOptions {
        parallelism: args.parallelism,
        delete_extra: args.delete,
        dry_run: args.dry_run,
        shard: args.shard,
        verify_every: args.verify_every.filter(|p| !p.is_zero()).map(|p| p.0),
        progress: Some(Arc::new(move |p: &replicator_lake::CloneProgress| {
            pb.set_length(p.bytes_total);
            pb.set_position(p.bytes_done);
            pb.set_message(format!("{}/{} files", p.files_done, p.files_total));
        })),
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let signals = tokio::spawn({
        let (cancel, bar) = (cancel.clone(), bar.clone());
        async move {
            replicator_common::shutdown::wait_for_signal().await;
            bar.set_message("interrupted: finishing the copies in flight");
            cancel.cancel();
            replicator_common::shutdown::wait_for_signal().await;
            bar.finish_and_clear();
            eprintln!(
                "error: volume sync interrupted twice: exiting at once (the next sync copies what is missing)"
            );
            std::process::exit(130);
        }
    });
    let result = sync_volume(&src, &dst, &options).await;
    signals.abort();
    bar.finish_and_clear();
    match result {
        Ok(r) if args.json => {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["source"] = src.url().as_str().into();
            v["target"] = dst.url().as_str().into();
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            if r.dry_run {
                for f in &r.planned {
                    println!("would copy {f}");
                }
                let verb = if args.delete { "would delete" } else { "extra" };
                for f in &r.extra {
                    println!("{verb} {f}");
                }
                println!(
                    "dry run: {} files ({}) to copy, {} unchanged, {} extra in {dst}",
                    r.files_planned,
                    output::bytes(r.bytes_planned),
                    r.files_unchanged,
                    r.files_extra
                );
            } else {
                let extra = if args.delete {
                    format!("{} deleted", r.files_deleted)
                } else {
                    format!("{} extra left (--delete removes them)", r.files_extra)
                };
                let trusted = if r.target_trusted {
                    " (target not listed: its manifest, checked within --verify-every, stood for it)"
                } else {
                    ""
                };
                println!(
                    "synced {src} into {dst} in {:.2}s: {} files copied ({}), {} unchanged, {extra}{trusted}",
                    r.duration_ms as f64 / 1000.0,
                    r.files_copied,
                    output::bytes(r.bytes_copied),
                    r.files_unchanged,
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) if cancel.is_cancelled() => fail(130, e),
        Err(e) => fail(1, format!("volume sync failed: {e}")),
    }
}
