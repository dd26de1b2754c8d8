//! Tracing set-up. Log lines are structured; every task span carries `run_id`, `task_id`,
//! `table` and `attempt`, so every line a task logs names its run.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log output format (the config's `log.format`: `text` or `json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Install the global subscriber; logs go to stderr. `RUST_LOG` overrides `default_filter`.
/// Safe to call twice (the second call is ignored), which tests rely on.
pub fn init(format: LogFormat, default_filter: &str) {
    // delta-rs logs expected conditions (probing a table that does not exist yet) at ERROR;
    // lapin logs every closed connection at ERROR as a struct dump (a refused login, a
    // connection closed by the broker); our own errors carry whatever of those matters, in
    // one line, so their logs are opt-in via RUST_LOG.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default_filter},deltalake_core=off,buoyant_kernel=off,buoyant_kernel_engine=off,sqlx=warn,lapin=off"
        ))
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true),
            )
            .try_init(),
    };
}
