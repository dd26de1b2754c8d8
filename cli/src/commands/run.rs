//! `replicator run`, `validate` and `demo`: a config's request end to end in this process.

use std::path::PathBuf;
use std::process::ExitCode;

use replicator_common::Config;
use replicator_proto::Operation;

use super::{ConfigArg, Logs, fail, one_line};
use crate::embedded::{self, RunOptions, RunOutput};
use crate::{demo, output};

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
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
    /// Serve the operator console (docs/console.md) on `console.listen` during the run and
    /// after it, until Ctrl-C.
    #[arg(long, conflicts_with_all = ["dry_run", "validate_only"])]
    ui: bool,
}

#[derive(clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print each source's plan (full load or merge) after opening it; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the run summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    config: super::ConfigFlag,
    /// Print the SQL the mirror would run, in execution order (after reading what Snowflake
    /// has with `SHOW`); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the run summary (or the dry run) as JSON.
    #[arg(long)]
    json: bool,
}

/// `replicator mirror …`.
#[derive(clap::Subcommand)]
pub enum MirrorCommand {
    /// Expose the tables in Snowflake as Iceberg tables that read them in place: UniForm
    /// tables of Unity Catalog through catalog integrations, Delta tables through their
    /// files (the config's `snowflake` section; docs/snowflake.md).
    Snowflake(MirrorArgs),
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where to put the estate (`DIR/lake/source`) and config (`DIR/replicator.yaml`).
    #[arg(long, default_value = "demo")]
    dir: PathBuf,
    /// Only create the estate and config.
    #[arg(long)]
    no_run: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RunArgs, logs: &Logs) -> ExitCode {
    let opts = RunOptions {
        operation: args.operation,
        dry_run: args.dry_run,
        validate_only: args.validate_only,
        progress: !args.json,
        ui: args.ui,
        ..Default::default()
    };
    run_config(&args.config, opts, args.json, logs).await
}

pub async fn ingest(args: IngestArgs, logs: &Logs) -> ExitCode {
    let opts = RunOptions {
        dry_run: args.dry_run,
        progress: !args.json,
        ingest_only: true,
        ..Default::default()
    };
    run_config(&args.config, opts, args.json, logs).await
}

pub async fn mirror(command: MirrorCommand, logs: &Logs) -> ExitCode {
    let MirrorCommand::Snowflake(args) = command;
    let opts = RunOptions {
        dry_run: args.dry_run,
        progress: !args.json,
        mirror_only: true,
        ..Default::default()
    };
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, None) else {
        return ExitCode::from(2);
    };
    if config.snowflake.is_none() {
        return fail(
            2,
            format!(
                "{}: the config has no `snowflake` section: nothing to mirror (docs/snowflake.md)",
                args.config.config.display()
            ),
        );
    }
    run_loaded(&config, opts, args.json).await
}

pub async fn validate(args: ValidateArgs, logs: &Logs) -> ExitCode {
    let opts = RunOptions {
        validate_only: true,
        ..Default::default()
    };
    run_config(&args.config, opts, false, logs).await
}

pub async fn demo(args: DemoArgs, logs: &Logs) -> ExitCode {
    let DemoArgs { dir, no_run, json } = args;
    logs.init(None, "warn");
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
    let config = ConfigArg {
        config: config_path,
        overrides: Vec::new(),
    };
    run_config(&config, opts, json, logs).await
}

/// Load a config (exit 2 with the reason when it is invalid), set up logging from it, and run.
async fn run_config(config: &ConfigArg, opts: RunOptions, json: bool, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&config.config, &config.overrides, None) else {
        return ExitCode::from(2);
    };
    run_loaded(&config, opts, json).await
}

async fn run_loaded(config: &Config, opts: RunOptions, json: bool) -> ExitCode {
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
            let problems = plan.items.iter().filter(|i| i.problem.is_some()).count()
                + plan.would_apply.iter().filter(|w| w.is_err()).count();
            if json {
                let items: Vec<_> = plan
                    .items
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "table": i.table, "source": i.source, "target": i.target,
                            "source_version": i.source_version, "would": i.would, "problem": i.problem,
                            "ingest": i.ingest.is_some().then(|| serde_json::json!({
                                "mode": if i.target_version.is_some() { "merge" } else { "full" },
                                "target_version": i.target_version,
                            })),
                        })
                    })
                    .collect();
                let objects: Vec<_> = plan
                    .objects
                    .iter()
                    .zip(&plan.would_apply)
                    .map(|(o, w)| {
                        let (would, problem) = match w {
                            Ok(a) => (Some(a), None),
                            Err(e) => (None, Some(e)),
                        };
                        serde_json::json!({
                            "kind": o.kind, "name": o.name, "source": o.source, "target": o.target,
                            "would": would, "problem": problem,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "dry_run": true, "operation": plan.operation, "tables": items, "objects": objects })
                );
            } else {
                println!(
                    "dry run ({}): {} tables; nothing will be written",
                    plan.operation,
                    plan.items.len()
                );
                for i in &plan.items {
                    if i.ingest.is_some() {
                        match (&i.problem, i.target_version) {
                            (Some(p), _) => println!("  {:<32} cannot ingest: {p}", i.table),
                            (None, None) => println!(
                                "  {:<32} ingest {}: full load (no table yet)",
                                i.table, i.source
                            ),
                            (None, Some(v)) => println!(
                                "  {:<32} ingest {}: merge by key into v{v}",
                                i.table, i.source
                            ),
                        }
                        continue;
                    }
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
                if !plan.objects.is_empty() {
                    println!("{} catalog objects:", plan.objects.len());
                }
                for (o, w) in plan.objects.iter().zip(&plan.would_apply) {
                    let label = replicator_planner::object_label(o);
                    match w {
                        Err(e) => println!("  {label}: cannot apply: {e}"),
                        Ok(a)
                            if a.statements.is_empty() && a.files_copied + a.files_deleted == 0 =>
                        {
                            println!("  {label}: nothing to do")
                        }
                        Ok(a) => {
                            println!("  {label}:");
                            for st in &a.statements {
                                println!("    {st}");
                            }
                            if a.files_copied + a.files_deleted > 0 {
                                println!(
                                    "    copy {} files ({}), delete {}",
                                    a.files_copied,
                                    output::bytes(a.bytes_copied),
                                    a.files_deleted
                                );
                            }
                        }
                    }
                    if let Ok(a) = w {
                        for f in &a.findings {
                            println!("    reported: {f}");
                        }
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
