//! `replicator audit export`: the store's history as Delta tables.

use std::process::ExitCode;

use clap::Subcommand;

use super::{ConfigFlag, Logs, fail, one_line};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Export runs, tasks, attempts, results and notifications to Delta tables under
    /// TARGET (`TARGET/runs`, `TARGET/tasks`, …), partitioned by `run_id`:
    /// `audit export RUN_ID TARGET` or `audit export --all TARGET`.
    Export {
        /// `RUN_ID TARGET`, or `TARGET` with `--all`.
        #[arg(num_args = 1..=2, required = true, value_name = "RUN_ID|TARGET")]
        args: Vec<String>,
        /// Export every run (replaces the tables' contents).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        config: ConfigFlag,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: AuditCommand, logs: &Logs) -> ExitCode {
    let AuditCommand::Export {
        args,
        all,
        config,
        json,
    } = command;
    let (run_id, target) = match (all, args.as_slice()) {
        (true, [target]) => (None, target.clone()),
        (false, [run, target]) => match run.parse::<uuid::Uuid>() {
            Ok(id) => (Some(id), target.clone()),
            Err(_) => return fail(2, format!("`{run}` is not a run ID")),
        },
        (true, _) => return fail(2, "with --all, give only TARGET"),
        (false, _) => return fail(2, "give RUN_ID TARGET, or --all TARGET"),
    };
    let Some(config) = logs.config(&config.config, &config.overrides, Some("warn")) else {
        return ExitCode::from(2);
    };
    if let Err(e) = replicator_lake::StorageRoots::from_config(&config) {
        return fail(2, e);
    }
    match crate::audit::export(&config, run_id, &target).await {
        Err(e) => fail(1, one_line(&e)),
        Ok(done) => {
            for t in &done {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"table": t.table, "location": t.location,
                            "rows": t.rows, "version": t.version})
                    );
                } else {
                    println!(
                        "{:<14} {:>6} rows  -> {} (version {})",
                        t.table, t.rows, t.location, t.version
                    );
                }
            }
            ExitCode::SUCCESS
        }
    }
}
