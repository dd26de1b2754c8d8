//! `replicator databricks`: the Databricks engine's operations run directly from this
//! process (backup, replication, reconciliation), without the bus and services. The fleet
//! path (`run`, `submit`, `serve` with a `databricks` section) runs the same operations
//! through planner, cloners and reconcilers.

use replicator_common::Config;
use replicator_databricks::WorkspacePair;
use replicator_databricks::ops::{DbOperation, Report, TableVerdict};

/// What the command should do.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub operation: DbOperation,
    pub dry_run: bool,
    pub validate_only: bool,
    pub json: bool,
}

/// Run and print; returns the exit code (0 success, 1 a table failed or mismatched or a
/// check failed, 2 bad config).
pub async fn run(config: &Config, opts: Options) -> u8 {
    let Some(db) = &config.databricks else {
        eprintln!("error: the config has no `databricks` section");
        return 2;
    };
    if db.clone_mode == replicator_common::databricks::CloneMode::Storage
        && !opts.validate_only
        && matches!(opts.operation, DbOperation::Replication | DbOperation::All)
    {
        eprintln!(
            "note: `databricks.clone_mode: storage` applies to `replicator run` (the fleet's clone tasks); this command replicates with the warehouse DEEP CLONE"
        );
    }
    let pair = match WorkspacePair::from_config(db, opts.dry_run) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if opts.validate_only {
        let probes = pair.probe().await;
        if opts.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&probes).expect("serializes")
            );
        } else {
            for p in &probes {
                println!(
                    "{} {:<48} {}",
                    if p.ok { "ok  " } else { "FAIL" },
                    p.check,
                    p.detail
                );
            }
        }
        return if probes.iter().all(|p| p.ok) { 0 } else { 1 };
    }
    match pair.run(opts.operation).await {
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
        Ok(report) => {
            if opts.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializes")
                );
            } else {
                print_report(&report);
            }
            if report.is_success() { 0 } else { 1 }
        }
    }
}

fn print_report(r: &Report) {
    if !r.dry_run.is_empty() {
        println!("dry run: nothing was changed; these would run:");
        for line in &r.dry_run {
            println!("  {line}");
        }
    }
    println!("run {} ({:?})", r.run_id, r.operation);
    for s in &r.sharing {
        println!("  sharing: {s}");
    }
    for t in &r.tables {
        let status = match t.status {
            TableVerdict::Succeeded => "succeeded",
            TableVerdict::Failed => "FAILED",
            TableVerdict::Skipped => "skipped",
            TableVerdict::Matched => "matched",
            TableVerdict::Mismatched => "MISMATCHED",
        };
        let mut detail = String::new();
        if let Some(m) = &t.metrics {
            detail.push_str(&format!(
                "copied {} files ({} bytes) ",
                m.num_copied_files, m.copied_files_size
            ));
        }
        for c in t.checks.iter().filter(|c| !c.passed) {
            detail.push_str(&format!("{}: {} ", c.name, c.detail));
        }
        if let Some(e) = &t.error {
            detail.push_str(&e.message);
        }
        println!(
            "  {:<15} {:<40} {:<11} {} [{}]",
            t.operation,
            t.table,
            status,
            detail.trim_end(),
            t.statement_ids.join(", ")
        );
    }
}
