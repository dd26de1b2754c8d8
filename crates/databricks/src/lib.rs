//! The **Databricks engine**: replication between Unity Catalog metastores done by
//! Databricks itself, driven over REST.
//!
//! - [`client`]: one workspace — the HTTP client (PAT or OAuth M2M auth; retries honouring
//!   `Retry-After`), SQL Statement Execution (`/api/2.0/sql/statements`; statements
//!   cancelled on timeout), and the Unity Catalog and Delta Sharing objects and calls;
//! - [`ident`]: every name that reaches SQL is validated and backtick-quoted;
//! - [`ops`]: the operations on a [`WorkspacePair`] (the source and target workspaces) —
//!   backup (source side), replication (target side), reconciliation — the Delta Sharing
//!   setup that links the two metastores, and the access probe.
//!
//! This crate moves no bytes itself: `DEEP CLONE` runs on the warehouses.

pub mod auth;
pub mod client;
pub mod error;
pub mod ident;
pub mod ops;

pub use auth::Credentials;
pub use client::{ClientOptions, Journal, StatementResult, TableInfo, TableType, WorkspaceClient};
pub use error::DatabricksError;
pub use ident::{Ident, TableName};
pub use ops::{DbOperation, Report, WorkspacePair};
