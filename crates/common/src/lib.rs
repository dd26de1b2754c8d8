//! Shared plumbing for every replicator service:
//!
//! - [`config`]: the one YAML config, validated before anything connects, with environment
//!   (`REPLICATOR__SECTION__KEY`) and CLI overrides;
//! - [`retry`]: the only retry loop in the code base (exponential backoff with jitter, errors
//!   classified transient or permanent);
//! - [`telemetry`]: tracing set-up;
//! - [`shutdown`]: a cancellation token wired to SIGINT/SIGTERM;
//! - [`mapping`]: catalog, schema, location and principal renames for catalog replication.

pub mod config;
pub mod databricks;
pub mod health;
pub mod mapping;
pub mod metrics;
pub mod retry;
pub mod shutdown;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use retry::{RetryPolicy, Retryable};

/// A unique identity for this worker process: `{role}-{host}-{pid}-{random}`, recorded
/// in leases and attempts so the audit shows which process did what.
pub fn worker_id(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{host}-{}-{}", std::process::id(), &random[..8])
}
