//! The `replicator` command, as a library so tests drive exactly what users run.
//!
//! - [`embedded`]: `replicator run` — all four services in one process over the memory bus
//!   and the SQLite store;
//! - [`demo`]: a small sample estate and config, so a fresh machine has something to run;
//! - [`output`]: summary tables and progress bars.

pub mod demo;
pub mod embedded;
pub mod output;
