//! The `replicator` command, as a library so tests drive exactly what users run.
//!
//! - [`commands`]: the command line, one module per command;
//! - [`audit`]: `replicator audit export` — the store's history as Delta tables;
//! - [`embedded`]: `replicator run` — all four services in one process over the memory bus
//!   and the SQLite store;
//! - [`fleet`]: `replicator serve` (one service per process over a broker) and the fleet
//!   commands `submit`, `watch`, `status`, `replay`;
//! - [`databricks`]: `replicator databricks` — the Databricks engine's operations, directly;
//! - [`demo`]: a small sample estate and config, so a fresh machine has something to run;
//! - [`output`]: summary tables and progress bars;
//! - [`progress`]: how far a run has got, one count for `run`, `watch` and `status`;
//! - [`runtime`]: the one place that starts services over a bus, a store and the engines.

pub mod audit;
pub mod commands;
pub mod console;
pub mod databricks;
pub mod demo;
pub mod embedded;
pub mod fleet;
pub mod ingest;
pub mod output;
pub mod progress;
pub mod runtime;
pub mod sync;
