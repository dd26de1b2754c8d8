//! `replicator sync`: disaster-recovery sync groups (docs/sync.md).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use replicator_common::Config;
use replicator_common::config::{MAX_CONFIG_BYTES, seed};

use super::{Logs, fail};

#[derive(Subcommand)]
pub enum SyncCommand {
    /// Print the config (YAML, on stdout) equivalent to a DR sync job's JSON file
    /// (`workspaces[].sync_groups[]`); on stderr, one line per group found and one per field
    /// that could not be mapped. The JSON file is also accepted wherever a config is.
    Import {
        /// The JSON file.
        file: PathBuf,
    },
    /// Every group: status, last consistent cut, lag, RPO, next firing, the newest source
    /// commit the cut does not cover, the last error.
    Status(super::sync_ops::StatusArgs),
    /// Sync one group now (on the embedded default, in this process; on a broker, published
    /// for the fleet).
    Trigger(super::sync_ops::GroupArgs),
    /// Bring the group's tables in the secondary back to its last consistent cut (a dry run
    /// unless `--execute`).
    Failover(super::sync_ops::ActArgs),
    /// Replicate the group back from the secondary to the primary (a dry run unless
    /// `--execute`).
    Failback(super::sync_ops::ActArgs),
}

pub async fn run(command: SyncCommand, logs: &Logs) -> ExitCode {
    match command {
        SyncCommand::Import { file } => import(&file, logs),
        SyncCommand::Status(args) => super::sync_ops::status(args, logs).await,
        SyncCommand::Trigger(args) => super::sync_ops::trigger(args, logs).await,
        SyncCommand::Failover(args) => super::sync_ops::failover(args, logs).await,
        SyncCommand::Failback(args) => super::sync_ops::failback(args, logs).await,
    }
}

fn import(file: &std::path::Path, logs: &Logs) -> ExitCode {
    logs.init(None, "warn");
    let mut bytes = Vec::new();
    if let Err(e) = std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
    {
        return fail(2, format!("cannot read {}: {e}", file.display()));
    }
    if bytes.len() > MAX_CONFIG_BYTES {
        return fail(
            2,
            format!("{} is larger than {MAX_CONFIG_BYTES} bytes", file.display()),
        );
    }
    let doc: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(d) => d,
        Err(e) => return fail(2, format!("{} is not JSON: {e}", file.display())),
    };
    let imported = match seed::import(&doc) {
        Ok(i) => i,
        Err(e) => return fail(2, format!("{}: {e}", file.display())),
    };
    let yaml = imported.to_yaml();
    print!("{yaml}");
    for g in &imported.groups {
        eprintln!("group {g}");
    }
    for n in &imported.notes {
        eprintln!("not mapped: {n}");
    }
    // What loading it would say: the whole config, then each group.
    match Config::from_yaml(&yaml, Vec::new(), &[]) {
        Err(e) => fail(2, e),
        Ok(config) => {
            if let Some(sync) = &config.sync {
                for (group, reason) in sync.check_groups() {
                    eprintln!("group {group}: invalid, skipped when syncing: {reason}");
                }
            }
            ExitCode::SUCCESS
        }
    }
}
