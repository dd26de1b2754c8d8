//! The Snowflake side of the mirror (issue 17): Snowflake catalog integrations and Iceberg
//! tables that read the lakehouse's tables in place, rendered as SQL and executed through the
//! SQL API v2 with key-pair (JWT) authentication.
//!
//! - [`ident`]: identifiers double-quoted by Snowflake's rules, string literals escaped;
//! - [`ddl`]: typed statements (catalog integrations, external volumes, databases, schemas,
//!   Iceberg tables over an Iceberg REST catalog or over Delta files), their rendering for
//!   execution and a redacted rendering for dry runs and messages, and [`ddl::plan`], which
//!   turns a desired and a current state into the statements to run, in order;
//! - [`auth`]: an RSA private key from a PKCS#8 PEM file (encrypted or not), its public key's
//!   fingerprint and RS256 JWTs minted from it;
//! - [`client`]: the SQL API v2 client (submit, poll, retry, re-mint);
//! - [`mirror`]: reading the current state with `SHOW` and applying a plan.
//!
//! See `docs/snowflake.md` for the documented grammar each statement follows.

pub mod auth;
pub mod client;
pub mod ddl;
mod error;
pub mod ident;
pub mod mirror;

pub use auth::{JwtMinter, KeyPair};
pub use client::{ClientOptions, SqlClient, StatementResult};
pub use error::SnowflakeError;
pub use ident::{Name, quote_ident, quote_string};
