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
