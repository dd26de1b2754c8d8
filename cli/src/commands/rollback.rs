//! `replicator rollback TABLE --to-version N`: restore a target table to an earlier version
//! with a new commit, history kept (as `RESTORE TABLE … TO VERSION AS OF` does). What
//! `reconciliation.on_mismatch: rollback` does after a failed validation, by hand.

use std::process::ExitCode;

use replicator_engine::Engines;

use super::{Logs, fail};

#[derive(clap::Args)]
pub struct Args {
    /// The table: a path or URL (`s3://…`, `az://…`), or with a config's `databricks`
    /// section a Databricks location (`databricks:https://<workspace>/<catalog.schema.table>`).
    table: String,
    /// The version to bring back.
    #[arg(long)]
    to_version: u64,
    /// A config whose storage options (and `databricks` section) reach the table.
    #[arg(long, short)]
    config: Option<std::path::PathBuf>,
    /// Override a config value (`--set target.storage.aws_region=eu-west-1`).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "config")]
    overrides: Vec<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, logs: &Logs) -> ExitCode {
    let engines = match &args.config {
        Some(path) => {
            let Some(config) = logs.config(path, &args.overrides, Some("warn")) else {
                return ExitCode::from(2);
            };
            match Engines::from_config(&config) {
                Ok(e) => e,
                Err(e) => return fail(2, e),
            }
        }
        None => {
            logs.init(None, "warn");
            Engines::default()
        }
    };
    let engine = match engines.for_location(&args.table) {
        Ok(e) => e,
        Err(e) => return fail(2, e),
    };
    let current = match engine.table_version(&args.table).await {
        Ok(v) => v,
        Err(e) => return fail(1, format!("{}: {e}", args.table)),
    };
    if args.to_version > current {
        return fail(
            2,
            format!(
                "{}: version {} does not exist yet (the latest is {current})",
                args.table, args.to_version
            ),
        );
    }
    match engine.restore(&args.table, args.to_version).await {
        Ok(done) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "table": args.table, "from_version": current, "to_version": args.to_version, "detail": done })
                );
            } else {
                println!("{done}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(
            1,
            format!(
                "rolling {} back to version {}: {e}",
                args.table, args.to_version
            ),
        ),
    }
}
