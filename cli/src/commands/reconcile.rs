//! `replicator reconcile SOURCE TARGET`: compare a replica with its source (the native
//! engine's checks, run directly). `replicator reconcile --catalog CONFIG`: the inventory
//! diff of a config's catalogs — every object missing, extra or different (docs/catalog.md).

use std::process::ExitCode;

use replicator_lake::TableLocation;

use super::{Logs, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Source table (path or URL); with `--catalog`, the config file.
    source: String,
    /// Target table (path or URL); not with `--catalog`.
    #[arg(required_unless_present = "catalog")]
    target: Option<String>,
    /// Compare the catalogs of a config's source and target instead of two tables: every
    /// schema, view, volume, grant set and tag missing, extra or different on the target.
    /// Exit 1 on any difference.
    #[arg(long, conflicts_with = "target")]
    catalog: bool,
    /// With `--catalog`: override a config value (`--set catalog.owners=true`).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "catalog")]
    overrides: Vec<String>,
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
    if args.catalog {
        return catalog(&args, logs).await;
    }
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
        args.target.as_deref().unwrap_or_default(),
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

/// `--catalog`: the engine's inventory diff of the config's scope.
async fn catalog(args: &Args, logs: &Logs) -> ExitCode {
    let path = std::path::Path::new(&args.source);
    let Some(config) = logs.config(path, &args.overrides, Some("warn")) else {
        return ExitCode::from(2);
    };
    let engines = match replicator_engine::Engines::from_config(&config) {
        Ok(e) => e,
        Err(e) => return fail(2, e),
    };
    let mut request = config.request(None, Some("replicator-cli/reconcile".into()));
    request.catalog = true;
    let engine = match engines.get_for(request.engine, &request.source_root) {
        Ok(e) => e,
        Err(e) => return fail(2, e),
    };
    let started = std::time::Instant::now();
    let diffs = match engine
        .diff_objects(&request, engines.catalog_settings())
        .await
    {
        Ok(d) => d,
        Err(e) => return fail(2, e),
    };
    // Objects reported by design (a materialized view) are listed, not counted against
    // the match.
    let mismatches = diffs.iter().filter(|d| d.is_mismatch()).count();
    if args.json {
        let v = serde_json::json!({
            "matched": mismatches == 0,
            "mismatches": mismatches,
            "differences": diffs,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        println!("{v}");
    } else {
        let took = started.elapsed().as_secs_f64();
        let reported = diffs.len() - mismatches;
        if mismatches == 0 {
            print!("MATCH: the target's catalog objects match the source's");
        } else {
            print!("DIFFERENT: {mismatches} difference(s)");
        }
        if reported > 0 {
            print!(", {reported} object(s) reported, not replicated by design");
        }
        println!(" ({took:.2} s)");
        for d in &diffs {
            println!("  {d}");
        }
    }
    if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
