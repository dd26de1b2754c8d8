//! Shared plumbing for every replicator service:
//!
//! - [`config`]: the one YAML config, validated before anything connects, with environment
//!   (`REPLICATOR__SECTION__KEY`) and CLI overrides;
//! - [`retry`]: the only retry loop in the code base (exponential backoff with jitter, errors
//!   classified transient or permanent);
//! - [`telemetry`]: tracing set-up;
//! - [`shutdown`]: a cancellation token wired to SIGINT/SIGTERM.

pub mod config;
pub mod retry;
pub mod shutdown;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use retry::{RetryPolicy, Retryable};

/// The `main` of a standalone service binary: `replicator-<name> --config FILE [--set k=v]…`.
/// Loads and validates the config, sets up logging, and runs `serve` until SIGINT/SIGTERM.
pub async fn service_main<F, Fut>(name: &str, serve: F) -> std::process::ExitCode
where
    F: FnOnce(Config, shutdown::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let mut args = std::env::args().skip(1);
    let mut config_path = None;
    let mut overrides = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config_path = args.next(),
            "--set" => overrides.extend(args.next()),
            "-h" | "--help" => {
                println!("usage: replicator-{name} --config FILE [--set section.key=value]...");
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("replicator-{name}: unexpected argument `{other}` (try --help)");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(path) = config_path else {
        eprintln!("replicator-{name}: --config FILE is required");
        return std::process::ExitCode::from(2);
    };
    let config = match Config::load(std::path::Path::new(&path), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("replicator-{name}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let format = if config.log.format == "json" {
        telemetry::LogFormat::Json
    } else {
        telemetry::LogFormat::Text
    };
    telemetry::init(format, &config.log.level);
    match serve(config, shutdown::on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replicator-{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
