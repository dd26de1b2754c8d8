//! `replicator databricks`: the Databricks engine's operations run directly
//! ([`crate::databricks`]).

use std::process::ExitCode;

use super::{ConfigFlag, Logs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigFlag,
    /// backup, replication, reconciliation or all.
    #[arg(long, default_value = "all")]
    operation: replicator_databricks::DbOperation,
    /// Print every SQL statement and API call (reads are sent; nothing is changed).
    #[arg(long)]
    dry_run: bool,
    /// Check the config, connectivity and access; change nothing.
    #[arg(long)]
    validate_only: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, None) else {
        return ExitCode::from(2);
    };
    let opts = crate::databricks::Options {
        operation: args.operation,
        dry_run: args.dry_run,
        validate_only: args.validate_only,
        json: args.json,
    };
    ExitCode::from(crate::databricks::run(&config, opts).await)
}
