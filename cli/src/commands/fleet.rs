//! The fleet commands: `serve`, `submit`, `watch`, `status`, `replay`.

use std::process::ExitCode;

use replicator_common::Config;
use replicator_proto::Operation;

use super::{ConfigArg, ConfigFlag, Logs, fail, one_line};
use crate::output;
use crate::progress::RunProgress;
use crate::runtime::Service;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The services to run in this process.
    #[arg(required = true, value_enum)]
    services: Vec<Service>,
    #[command(flatten)]
    config: ConfigFlag,
    /// Address of the health and metrics endpoints.
    #[arg(long, default_value = "0.0.0.0:9464", env = "REPLICATOR_LISTEN")]
    listen: std::net::SocketAddr,
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    operation: Option<Operation>,
    /// Then follow the run like `watch`.
    #[arg(long)]
    watch: bool,
}

#[derive(clap::Args)]
pub struct WatchArgs {
    run_id: uuid::Uuid,
    #[command(flatten)]
    config: ConfigFlag,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    run_id: uuid::Uuid,
    #[command(flatten)]
    config: ConfigFlag,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    run_id: uuid::Uuid,
    #[command(flatten)]
    config: ConfigFlag,
    /// Only this task.
    #[arg(long)]
    task: Option<uuid::Uuid>,
}

pub async fn serve(args: ServeArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, None) else {
        return ExitCode::from(2);
    };
    let shutdown = replicator_common::shutdown::on_signal();
    match crate::fleet::serve(&config, &args.services, args.listen, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, one_line(&e)),
    }
}

pub async fn submit(args: SubmitArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    let run_id = match crate::fleet::submit(&config, args.operation).await {
        Ok(id) => id,
        Err(e) => return fail(1, one_line(&e)),
    };
    println!("{run_id}");
    if args.watch {
        return watch_run(&config, run_id, false).await;
    }
    ExitCode::SUCCESS
}

pub async fn watch(args: WatchArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    watch_run(&config, args.run_id, args.json).await
}

pub async fn status(args: StatusArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    let (run, tasks) = match crate::fleet::status(&config, args.run_id).await {
        Err(e) => return fail(1, one_line(&e)),
        Ok(found) => found,
    };
    let progress =
        RunProgress::from_statuses(run.operation, tasks.iter().map(|t| (t.task_id, t.status)));
    if args.json {
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
                "completed_at": run.completed_at, "tasks_total": progress.total,
                "tasks_finished": progress.done, "tasks": tasks})
        );
    } else {
        println!(
            "run {} ({}): {}, started {}, {} of {} tasks finished",
            run.run_id,
            run.operation,
            run.status,
            run.created_at,
            progress.done,
            progress.total.unwrap_or(0)
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

pub async fn replay(args: ReplayArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    let run_id = args.run_id;
    match crate::fleet::replay(&config, run_id, args.task).await {
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

/// `replicator watch`: live progress, then the summary; exit 1 unless every table succeeded.
async fn watch_run(config: &Config, run_id: uuid::Uuid, json: bool) -> ExitCode {
    let bar = output::progress_bar(
        0,
        "{spinner} [{elapsed_precise}] {pos} tables done  {msg}",
        !json,
    );
    let pb = bar.clone();
    let result = crate::fleet::watch(config, run_id, move |key, v, progress| {
        let table = v.get("table").and_then(|t| t.as_str()).unwrap_or("");
        pb.set_position(progress.done);
        if key.starts_with("clone.") || key.starts_with("reconcile.") {
            pb.set_message(format!("{key}: {table}"));
        } else if key.starts_with("catalog.") {
            let kind = v.get("kind").and_then(|t| t.as_str()).unwrap_or("");
            let name = v.get("name").and_then(|t| t.as_str()).unwrap_or("");
            pb.set_message(format!("{key}: {kind} {name}"));
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
