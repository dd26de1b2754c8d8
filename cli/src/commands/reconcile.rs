//! `replicator reconcile SOURCE TARGET`: compare a replica with its source (the native
//! engine's checks, run directly).

use std::process::ExitCode;

use replicator_lake::TableLocation;

use super::{Logs, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Source table (path or URL).
    source: String,
    /// Target table (path or URL).
    target: String,
    /// Compare the source at this version (default: latest).
    #[arg(long)]
    source_version: Option<u64>,
    /// Primary-key column (repeat, or separate with commas, for a composite key).
    #[arg(long = "key", value_delimiter = ',')]
    key: Vec<String>,
    /// Row count and checksum per table partition.
    #[arg(long)]
    partition_checksums: bool,
    /// Keys listed per category.
    #[arg(long, default_value_t = 10)]
    sample: usize,
    /// Memory budget for the key comparison, in MiB (larger tables spill to disk).
    #[arg(long, default_value_t = 512)]
    memory_mb: u64,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, logs: &Logs) -> ExitCode {
    logs.init(None, "warn");
    let checks = replicator_common::config::TableChecks {
        row_counts: true,
        schema: true,
        partition_checksums: args.partition_checksums,
        primary_key: args.key,
        sample_size: args.sample,
        memory_mb: args.memory_mb,
    };
    reconcile(
        &args.source,
        &args.target,
        args.source_version,
        &checks,
        args.json,
    )
    .await
}

async fn reconcile(
    source: &str,
    target: &str,
    source_version: Option<u64>,
    checks: &replicator_common::config::TableChecks,
    json: bool,
) -> ExitCode {
    let (src, dst) = match (TableLocation::parse(source), TableLocation::parse(target)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return fail(2, e),
    };
    let started = std::time::Instant::now();
    let found =
        match replicator_engine::native::check_pair(&src, &dst, source_version, checks).await {
            Ok(f) => f,
            Err(e) => return fail(2, e),
        };
    let matched = found.checks.iter().all(|c| c.passed);
    if json {
        let v = serde_json::json!({
            "source": src.url().as_str(),
            "target": dst.url().as_str(),
            "matched": matched,
            "source_version": found.source_version,
            "target_version": found.target_version,
            "source_rows": found.source_rows,
            "target_rows": found.target_rows,
            "checks": found.checks,
            "keys": found.keys,
            "partitions": found.partitions,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        println!("{v}");
    } else {
        println!(
            "{} (source v{} against target v{}, {:.2} s)",
            if matched { "MATCH" } else { "DIFFERENT" },
            found.source_version,
            found.target_version,
            started.elapsed().as_secs_f64()
        );
        for c in &found.checks {
            println!(
                "  {} {}: {}",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
    }
    if matched {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
