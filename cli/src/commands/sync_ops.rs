//! `replicator sync status | trigger | failover | failback` ([`crate::sync`]).

use std::process::ExitCode;

use super::{ConfigFlag, Logs, fail, one_line};
use crate::output;
use crate::sync::Triggered;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigFlag,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct GroupArgs {
    /// The sync group (its `name` in the config's `sync.groups`).
    group: String,
    #[command(flatten)]
    config: ConfigFlag,
}

#[derive(clap::Args)]
pub struct ActArgs {
    /// The sync group (its `name` in the config's `sync.groups`).
    group: String,
    #[command(flatten)]
    config: ConfigFlag,
    /// Act; without it, print what would be done.
    #[arg(long)]
    execute: bool,
}

pub async fn status(args: StatusArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    let groups = match crate::sync::status(&config).await {
        Ok(g) => g,
        Err(e) => return fail(1, one_line(&e)),
    };
    if args.json {
        println!("{}", serde_json::to_string(&groups).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    for g in &groups {
        let cut = g
            .last_cut
            .map(|c| c.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "never".into());
        let lag = g
            .lag_seconds
            .map(|s| format!("{s}s"))
            .unwrap_or_else(|| "-".into());
        let rpo = match (g.rpo_seconds, g.rpo_exceeded) {
            (Some(r), true) => format!("RPO {r}s EXCEEDED"),
            (Some(r), false) => format!("RPO {r}s"),
            (None, _) => String::new(),
        };
        println!(
            "{:<24} {:<12} cut {cut}  lag {lag}  {rpo}",
            g.group, g.status
        );
        if let Some(next) = g.next_fire {
            println!(
                "  next firing {}",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        if let Some(u) = &g.newest_uncovered_commit {
            println!(
                "  not covered: {} version {} committed {}",
                u.table,
                u.version,
                u.committed_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        if let Some(m) = &g.message {
            println!("  {m}");
        }
        for a in &g.secondary_active {
            println!("  WARNING: {a} while the secondary is passive");
        }
    }
    ExitCode::SUCCESS
}

pub async fn trigger(args: GroupArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    match crate::sync::trigger(&config, &args.group).await {
        Err(e) => fail(1, one_line(&e)),
        Ok(Triggered::Published(f)) => {
            println!("{}", f.run_id);
            ExitCode::SUCCESS
        }
        Ok(Triggered::Ran { fired, run, group }) => {
            println!(
                "sync of {} as of {} (run {})\n",
                fired.group,
                fired.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                fired.run_id
            );
            print!("{}", output::summary_table(&run.summary));
            match group {
                Some(g) if g.status == replicator_store::SyncStatus::Success => ExitCode::SUCCESS,
                Some(g) => fail(
                    1,
                    format!(
                        "group {} kept its previous cut: {}",
                        g.name,
                        g.message.unwrap_or_default()
                    ),
                ),
                None => ExitCode::from(1),
            }
        }
    }
}

pub async fn failover(args: ActArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    if !args.execute {
        println!("dry run: nothing is changed (add --execute to fail over)");
    }
    match crate::sync::failover(&config, &args.group, args.execute).await {
        Err(e) => fail(1, one_line(&e)),
        Ok(lines) => {
            for l in lines {
                println!("  {l}");
            }
            ExitCode::SUCCESS
        }
    }
}

pub async fn failback(args: ActArgs, logs: &Logs) -> ExitCode {
    let Some(config) = logs.config(&args.config.config, &args.config.overrides, Some("warn"))
    else {
        return ExitCode::from(2);
    };
    if !args.execute {
        println!("dry run: nothing is changed (add --execute to fail back)");
    }
    match crate::sync::failback(&config, &args.group, args.execute).await {
        Err(e) => fail(1, one_line(&e)),
        Ok(lines) => {
            for l in lines {
                println!("  {l}");
            }
            ExitCode::SUCCESS
        }
    }
}
