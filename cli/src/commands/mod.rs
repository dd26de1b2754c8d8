//! The `replicator` command line: one module per command, each with its arguments and what
//! it prints. `main.rs` only sets the process up and calls [`main`].
//!
//! Exit codes: 0 success, 1 a table failed or mismatched, 2 bad usage or config, 130
//! interrupted (Ctrl-C or SIGTERM).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use replicator_common::Config;
use replicator_common::telemetry::{self, LogFormat};

pub mod audit;
pub mod clone;
pub mod databricks;
pub mod fleet;
pub mod reconcile;
pub mod rollback;
pub mod run;
pub mod sync;
pub mod sync_ops;
pub mod volume;

#[derive(Parser)]
#[command(
    name = "replicator",
    version,
    about = "Replicate Delta Lake tables between environments"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (`RUST_LOG` wins), for example `info` or `replicator_lake=debug`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log as JSON lines (to stderr), whatever the config's `log.format` says.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Deep clone one Delta table (incremental: only new files are copied).
    Clone(clone::Args),
    /// Sync a file tree (a volume): new and changed files copied, each atomically; files
    /// gone from the source deleted only with `--delete` (docs/volumes.md).
    Volume(volume::Args),
    /// Compare a replica with its source: row counts, schema and, with `--key`, the keys
    /// missing, extra and changed in the target. Exits 0 when they match, 1 when they differ.
    Reconcile(reconcile::Args),
    /// Restore a table to an earlier version with a new commit (history kept): what
    /// `reconciliation.on_mismatch: rollback` does after a failed validation, by hand.
    Rollback(rollback::Args),
    /// The audit trail in the state store.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Replicate (and validate) every table a config selects, all services in this process.
    Run(run::RunArgs),
    /// Validate a config and list the tables it selects.
    Validate(run::ValidateArgs),
    /// Ingest the config's `ingest` sources (databases, files) into Delta tables: a full
    /// load when a table is missing, a merge by key afterwards (docs/ingest.md). Only the
    /// sources, not the tables under `source.root`; all services in this process.
    Ingest(run::IngestArgs),
    /// Mirror the tables into another engine: `replicator mirror snowflake -c CONFIG`.
    Mirror {
        #[command(subcommand)]
        command: run::MirrorCommand,
    },
    /// Run one or more services as a long-lived worker over the configured broker
    /// (`bus.backend: rabbitmq` or `kafka`), with /healthz, /readyz and /metrics.
    Serve(fleet::ServeArgs),
    /// Publish the replication request a config describes to the fleet; prints the run ID.
    Submit(fleet::SubmitArgs),
    /// Follow a run's events with live progress; exits 0 when every table succeeded, 1 when
    /// any failed or mismatched.
    Watch(fleet::WatchArgs),
    /// Show a run's state and its tasks from the state store.
    Status(fleet::StatusArgs),
    /// Send a run's dead-lettered tasks (or one of them) back to work.
    Replay(fleet::ReplayArgs),
    /// Run the Databricks engine's operations (the config's `databricks` section) directly:
    /// backup on the source workspace, replication and reconciliation on the target.
    Databricks(databricks::Args),
    /// Create a sample Delta estate and config in DIR, then replicate it.
    Demo(run::DemoArgs),
    /// Disaster-recovery sync groups (docs/sync.md).
    Sync {
        #[command(subcommand)]
        command: sync::SyncCommand,
    },
}

impl Cli {
    /// Whether the command is a long-lived worker (`serve`).
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// A config file given as `--config PATH` (`-c`), with `--set KEY=VALUE` overrides.
#[derive(clap::Args, Clone, Debug)]
pub struct ConfigFlag {
    #[arg(long, short)]
    pub config: PathBuf,
    /// Override a config value: `--set concurrency.cloners=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// A config file given as the first argument, with `--set KEY=VALUE` overrides.
#[derive(clap::Args, Clone, Debug)]
pub struct ConfigArg {
    pub config: PathBuf,
    /// Override a config value: `--set concurrency.cloners=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// How logging is set up, once per command: from the config's `log` section when the
/// command reads a config (`--log-json` and `--log-level` win), else from the flags alone.
#[derive(Clone, Debug)]
pub struct Logs {
    json: bool,
    level: Option<String>,
}

impl Logs {
    pub fn init(&self, log: Option<&replicator_common::config::Log>, default_level: &str) {
        let format = if self.json || log.is_some_and(|l| l.format == LogFormat::Json) {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
        telemetry::init(format, self.level.as_deref().unwrap_or(default_level))
    }

    /// Load a config and set logging up from it; when the config is invalid, print the
    /// reason and return `None` (the caller exits 2).
    pub fn config(
        &self,
        path: &std::path::Path,
        overrides: &[String],
        default_level: Option<&str>,
    ) -> Option<Config> {
        // The ingest sources (inline and from their directory) are checked with the rest.
        match Config::load(path, overrides).and_then(|c| crate::ingest::sources(&c).map(|_| c)) {
            Ok(c) => {
                self.init(Some(&c.log), default_level.unwrap_or(&c.log.level));
                Some(c)
            }
            Err(e) => {
                fail(2, e);
                None
            }
        }
    }
}

/// Print `error: {msg}` and return `code`.
pub fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// An error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// Run the parsed command.
pub async fn main(cli: Cli) -> ExitCode {
    let logs = Logs {
        json: cli.log_json,
        level: cli.log_level.clone(),
    };
    match cli.command {
        Command::Clone(args) => clone::run(args, &logs).await,
        Command::Volume(args) => volume::run(args, &logs).await,
        Command::Reconcile(args) => reconcile::run(args, &logs).await,
        Command::Rollback(args) => rollback::run(args, &logs).await,
        Command::Audit { command } => audit::run(command, &logs).await,
        Command::Run(args) => run::run(args, &logs).await,
        Command::Validate(args) => run::validate(args, &logs).await,
        Command::Ingest(args) => run::ingest(args, &logs).await,
        Command::Mirror { command } => run::mirror(command, &logs).await,
        Command::Serve(args) => fleet::serve(args, &logs).await,
        Command::Submit(args) => fleet::submit(args, &logs).await,
        Command::Watch(args) => fleet::watch(args, &logs).await,
        Command::Status(args) => fleet::status(args, &logs).await,
        Command::Replay(args) => fleet::replay(args, &logs).await,
        Command::Databricks(args) => databricks::run(args, &logs).await,
        Command::Demo(args) => run::demo(args, &logs).await,
        Command::Sync { command } => sync::run(command, &logs).await,
    }
}
