//! `replicator`: replicate Delta tables between environments.
//!
//! Thin: parses arguments, sets up logging, and calls the libraries.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use replicator_cli::embedded::{RunOptions, RunOutput};
use replicator_cli::{demo, embedded, output};
use replicator_common::Config;
use replicator_common::telemetry::{self, LogFormat};
use replicator_lake::{CloneOptions, TableLocation, deep_clone};
use replicator_proto::Operation;

#[derive(Parser)]
#[command(
    name = "replicator",
    version,
    about = "Replicate Delta Lake tables between environments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (`RUST_LOG` wins), for example `info` or `replicator_lake=debug`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log as JSON lines (to stderr), whatever the config's `log.format` says.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum AuditCommand {
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
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Deep clone one Delta table (incremental: only new files are copied).
    Clone {
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
    },
    /// Compare a replica with its source: row counts, schema and, with `--key`, the keys
    /// missing, extra and changed in the target. Exits 0 when they match, 1 when they differ.
    Reconcile {
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
    },
    /// The audit trail in the state store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Replicate (and validate) every table a config selects, all services in this process.
    Run {
        config: PathBuf,
        /// replication, reconciliation or all (overrides `operation` in the config).
        #[arg(long)]
        operation: Option<Operation>,
        /// Print the plan (tables, source versions, what would be copied); write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Check the config, the roots and the table filters; change nothing.
        #[arg(long)]
        validate_only: bool,
        /// Print the run summary as JSON.
        #[arg(long)]
        json: bool,
        /// Override a config value: `--set concurrency.cloners=4` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Validate a config and list the tables it selects.
    Validate {
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Run one or more services as a long-lived worker over the configured broker
    /// (`bus.backend: rabbitmq` or `kafka`), with /healthz, /readyz and /metrics.
    Serve {
        /// The services to run in this process.
        #[arg(required = true, value_enum)]
        services: Vec<replicator_cli::fleet::Service>,
        #[arg(long, short)]
        config: PathBuf,
        /// Address of the health and metrics endpoints.
        #[arg(long, default_value = "0.0.0.0:9464", env = "REPLICATOR_LISTEN")]
        listen: std::net::SocketAddr,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Publish the replication request a config describes to the fleet; prints the run ID.
    Submit {
        config: PathBuf,
        #[arg(long)]
        operation: Option<Operation>,
        /// Then follow the run like `watch`.
        #[arg(long)]
        watch: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Follow a run's events with live progress; exits 0 when every table succeeded, 1 when
    /// any failed or mismatched.
    Watch {
        run_id: uuid::Uuid,
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Show a run's state and its tasks from the state store.
    Status {
        run_id: uuid::Uuid,
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Send a run's dead-lettered tasks (or one of them) back to work.
    Replay {
        run_id: uuid::Uuid,
        #[arg(long, short)]
        config: PathBuf,
        /// Only this task.
        #[arg(long)]
        task: Option<uuid::Uuid>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Run the Databricks engine's operations (the config's `databricks` section) directly:
    /// backup on the source workspace, replication and reconciliation on the target.
    Databricks {
        #[arg(long, short)]
        config: PathBuf,
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
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Create a sample Delta estate and config in DIR, then replicate it.
    Demo {
        /// Where to put the estate (`DIR/lake/source`) and config (`DIR/replicator.yaml`).
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Only create the estate and config.
        #[arg(long)]
        no_run: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 0 success, 1 a table failed or mismatched, 2 bad usage or config, 130
/// interrupted (Ctrl-C or SIGTERM).
fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

fn main() -> ExitCode {
    limit_allocator_retention();
    let cli = Cli::parse();
    // A long-lived worker keeps Rust's default (SIGPIPE ignored): it writes to sockets only.
    if !matches!(cli.command, Command::Serve { .. }) {
        end_quietly_on_closed_pipe();
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(cli_main(cli)),
        Err(e) => fail(1, format!("cannot start the async runtime: {e}")),
    }
}

/// Keep freed large buffers from staying resident. glibc's malloc raises its mmap threshold
/// each time a large block is freed; after that, large buffers (a clone's per-file upload
/// buffers, decoded column chunks) come from the per-thread arenas and stay in the process
/// once freed. Measured here: a local → S3 clone of 100 × 5 MB files at `--parallelism` 16
/// peaked at 150–167 MiB, and at 108 MiB with the threshold fixed at 1 MiB, in the same time;
/// the 2 × 10M-row key reconciliation went from 450 to 370 MiB, also in the same time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_allocator_retention() {
    // SAFETY: mallopt only sets a malloc tuning parameter, and runs before any other thread
    // exists. A refusal (return value 0) leaves glibc's default, which is only less frugal.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_allocator_retention() {}

/// Let a closed stdout or stderr end the program quietly, as it ends `cat` or `ls`
/// (`replicator validate cfg | head -1`). Rust starts programs with SIGPIPE ignored, so a
/// write to a closed pipe fails with EPIPE and `println!` panics (exit 101, "failed
/// printing to stdout: Broken pipe"); with the default disposition the kernel ends the
/// process at that write instead. Every command that prints gets this; `serve` does not.
#[cfg(unix)]
#[allow(unsafe_code)]
fn end_quietly_on_closed_pipe() {
    // SAFETY: signal() with SIG_DFL installs no handler (no code runs in signal context),
    // and this runs before any other thread exists. Sockets are unaffected: Rust and tokio
    // send with MSG_NOSIGNAL.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn end_quietly_on_closed_pipe() {}

async fn cli_main(cli: Cli) -> ExitCode {
    let (log_json, level) = (cli.log_json, cli.log_level.clone());
    // Logging is set up once per command: from the config's `log` section when the command
    // reads a config (`--log-json` and `--log-level` win), else from the flags alone.
    let init_logs = |log: Option<&replicator_common::config::Log>, default_level: &str| {
        let format = if log_json || log.is_some_and(|l| l.format == LogFormat::Json) {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
        telemetry::init(format, level.as_deref().unwrap_or(default_level))
    };
    match cli.command {
        Command::Clone {
            source,
            target,
            version,
            timestamp,
            parallelism,
            replace,
            external_roots,
            json,
        } => {
            init_logs(None, "warn");
            let roots = match external_roots
                .iter()
                .map(String::as_str)
                .map(TableLocation::parse)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(r) => r,
                Err(e) => return fail(2, format!("--allow-external-root: {e}")),
            };
            let options = CloneOptions {
                version,
                timestamp,
                parallelism,
                replace,
                external_roots: roots,
                ..Default::default()
            };
            clone(&source, &target, options, json).await
        }
        Command::Audit {
            command:
                AuditCommand::Export {
                    args,
                    all,
                    config,
                    json,
                    overrides,
                },
        } => {
            let (run_id, target) = match (all, args.as_slice()) {
                (true, [target]) => (None, target.clone()),
                (false, [run, target]) => match run.parse::<uuid::Uuid>() {
                    Ok(id) => (Some(id), target.clone()),
                    Err(_) => return fail(2, format!("`{run}` is not a run ID")),
                },
                (true, _) => return fail(2, "with --all, give only TARGET"),
                (false, _) => return fail(2, "give RUN_ID TARGET, or --all TARGET"),
            };
            let Some(config) = load_config(&config, &overrides) else {
                return ExitCode::from(2);
            };
            init_logs(Some(&config.log), "warn");
            if let Err(e) = replicator_lake::location::configure(&config) {
                return fail(2, e);
            }
            match replicator_cli::audit::export(&config, run_id, &target).await {
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
        Command::Reconcile {
            source,
            target,
            source_version,
            key,
            partition_checksums,
            sample,
            memory_mb,
            json,
        } => {
            init_logs(None, "warn");
            let checks = replicator_common::config::TableChecks {
                row_counts: true,
                schema: true,
                partition_checksums,
                primary_key: key,
                sample_size: sample,
                memory_mb,
            };
            reconcile(&source, &target, source_version, &checks, json).await
        }
        Command::Run {
            config,
            operation,
            dry_run,
            validate_only,
            json,
            overrides,
        } => {
            let opts = RunOptions {
                operation,
                dry_run,
                validate_only,
                progress: !json,
            };
            run_config(&config, &overrides, opts, json, init_logs).await
        }
        Command::Validate { config, overrides } => {
            let opts = RunOptions {
                validate_only: true,
                ..Default::default()
            };
            run_config(&config, &overrides, opts, false, init_logs).await
        }
        Command::Serve {
            services,
            config,
            listen,
            overrides,
        } => {
            let Some(config) = load_config(&config, &overrides) else {
                return ExitCode::from(2);
            };
            init_logs(Some(&config.log), &config.log.level);
            let shutdown = replicator_common::shutdown::on_signal();
            match replicator_cli::fleet::serve(&config, &services, listen, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(1, one_line(&e)),
            }
        }
        Command::Submit {
            config,
            operation,
            watch,
            overrides,
        } => {
            let Some(config) = load_config(&config, &overrides) else {
                return ExitCode::from(2);
            };
            init_logs(Some(&config.log), "warn");
            let run_id = match replicator_cli::fleet::submit(&config, operation).await {
                Ok(id) => id,
                Err(e) => return fail(1, one_line(&e)),
            };
            println!("{run_id}");
            if watch {
                return watch_run(&config, run_id, false).await;
            }
            ExitCode::SUCCESS
        }
        Command::Watch {
            run_id,
            config,
            json,
            overrides,
        } => {
            let Some(config) = load_config(&config, &overrides) else {
                return ExitCode::from(2);
            };
            init_logs(Some(&config.log), "warn");
            watch_run(&config, run_id, json).await
        }
        Command::Status {
            run_id,
            config,
            json,
            overrides,
        } => {
            let Some(config) = load_config(&config, &overrides) else {
                return ExitCode::from(2);
            };
            init_logs(Some(&config.log), "warn");
            match replicator_cli::fleet::status(&config, run_id).await {
                Err(e) => fail(1, one_line(&e)),
                Ok((run, tasks)) => {
                    if json {
                        let tasks: Vec<_> = tasks
                            .iter()
                            .map(|t| {
                                serde_json::json!({"task_id": t.task_id, "table": t.table,
                                "status": t.status, "error": t.error})
                            })
                            .collect();
                        println!(
                            "{}",
                            serde_json::json!({"run_id": run.run_id, "status": run.status,
                                "operation": run.operation, "created_at": run.created_at,
                                "completed_at": run.completed_at, "tasks": tasks})
                        );
                    } else {
                        println!(
                            "run {} ({}): {}, started {}",
                            run.run_id, run.operation, run.status, run.created_at
                        );
                        for t in &tasks {
                            println!(
                                "  {:<36} {:<32} {:<12} {}",
                                t.task_id,
                                t.table,
                                t.status,
                                t.error.as_deref().unwrap_or("")
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
            }
        }
        Command::Replay {
            run_id,
            config,
            task,
            overrides,
        } => {
            let Some(config) = load_config(&config, &overrides) else {
                return ExitCode::from(2);
            };
            init_logs(Some(&config.log), "warn");
            match replicator_cli::fleet::replay(&config, run_id, task).await {
                Ok(0) => fail(
                    1,
                    format!("no dead-lettered task of run {run_id} to replay"),
                ),
                Ok(n) => {
                    println!("replayed {n} task(s) of run {run_id}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, one_line(&e)),
            }
        }
        Command::Databricks {
            config,
            operation,
            dry_run,
            validate_only,
            json,
            overrides,
        } => {
            let Some(config) = load_config(&config, &overrides) else {
                return ExitCode::from(2);
            };
            init_logs(Some(&config.log), &config.log.level);
            let opts = replicator_cli::databricks::Options {
                operation,
                dry_run,
                validate_only,
                json,
            };
            ExitCode::from(replicator_cli::databricks::run(&config, opts).await)
        }
        Command::Demo { dir, no_run, json } => {
            init_logs(None, "warn");
            let (config_path, created) = match demo::ensure(&dir).await {
                Ok(r) => r,
                Err(e) => return fail(1, one_line(&e)),
            };
            if !json {
                if created {
                    println!(
                        "created a sample estate: {} (4 tables in 2 schemas)",
                        dir.join("lake/source").display()
                    );
                }
                println!("config: {}", config_path.display());
            }
            if no_run {
                return ExitCode::SUCCESS;
            }
            if !json {
                println!("running: replicator run {}\n", config_path.display());
            }
            let opts = RunOptions {
                progress: !json,
                ..Default::default()
            };
            run_config(&config_path, &[], opts, json, init_logs).await
        }
    }
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
    let found = match replicator_reconciler::validate(&src, &dst, source_version, checks).await {
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

/// Load and validate a config; when it is invalid, print the reason (the caller exits 2).
fn load_config(path: &std::path::Path, overrides: &[String]) -> Option<Config> {
    match Config::load(path, overrides) {
        Ok(c) => Some(c),
        Err(e) => {
            fail(2, e);
            None
        }
    }
}

/// Load a config (exit 2 with the reason when it is invalid), set up logging from it, and run.
async fn run_config(
    path: &std::path::Path,
    overrides: &[String],
    opts: RunOptions,
    json: bool,
    init_logs: impl Fn(Option<&replicator_common::config::Log>, &str),
) -> ExitCode {
    let Some(config) = load_config(path, overrides) else {
        return ExitCode::from(2);
    };
    init_logs(Some(&config.log), &config.log.level);
    run(&config, opts, json).await
}

async fn run(config: &Config, opts: RunOptions, json: bool) -> ExitCode {
    match embedded::run(config, &opts).await {
        Err(e) => fail(if opts.validate_only { 2 } else { 1 }, one_line(&e)),
        Ok(RunOutput::Validated { tables }) => {
            if json {
                println!("{}", serde_json::json!({ "valid": true, "tables": tables }));
            } else {
                println!("config is valid; {} tables selected:", tables.len());
                for t in tables {
                    println!("  {t}");
                }
            }
            ExitCode::SUCCESS
        }
        Ok(RunOutput::Planned(plan)) => {
            let problems = plan.items.iter().filter(|i| i.problem.is_some()).count();
            if json {
                let items: Vec<_> = plan
                    .items
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "table": i.table, "source": i.source, "target": i.target,
                            "source_version": i.source_version, "would": i.would, "problem": i.problem,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "dry_run": true, "operation": plan.operation, "tables": items })
                );
            } else {
                println!(
                    "dry run ({}): {} tables; nothing will be written",
                    plan.operation,
                    plan.items.len()
                );
                for i in &plan.items {
                    match (&i.would, &i.problem) {
                        (_, Some(p)) => println!("  {:<32} cannot clone: {p}", i.table),
                        (Some(m), None) => println!(
                            "  {:<32} source v{:<6} copy {} files ({}), remove {} files",
                            i.table,
                            i.source_version.unwrap_or(0),
                            m.num_copied_files,
                            output::bytes(m.copied_files_size),
                            m.num_removed_files
                        ),
                        (None, None) => println!("  {}", i.table),
                    }
                }
            }
            if problems > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(RunOutput::Completed(done)) => {
            if json {
                println!("{}", serde_json::to_string(&done).unwrap_or_default());
            } else {
                println!("run {}\n", done.header.run_id);
                print!("{}", output::summary_table(&done.summary));
            }
            if done.summary.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `replicator watch`: live progress, then the summary; exit 1 unless every table succeeded.
async fn watch_run(config: &Config, run_id: uuid::Uuid, json: bool) -> ExitCode {
    let bar = output::progress_bar(
        0,
        "{spinner} [{elapsed_precise}] {pos} tables done  {msg}",
        !json,
    );
    let pb = bar.clone();
    let result = replicator_cli::fleet::watch(config, run_id, move |key, v| {
        let table = v.get("table").and_then(|t| t.as_str()).unwrap_or("");
        if key.starts_with("clone.") || key.starts_with("reconcile.") {
            pb.inc(u64::from(key != "clone.succeeded"));
            pb.set_message(format!("{key}: {table}"));
        } else if key == "run.planned" {
            pb.set_message("planned".to_string());
        }
    })
    .await;
    bar.finish_and_clear();
    match result {
        Err(e) => fail(1, one_line(&e)),
        Ok(summary) => {
            if json {
                println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            } else {
                println!("run {run_id}\n");
                print!("{}", output::summary_table(&summary));
            }
            if summary.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
