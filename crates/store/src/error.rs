//! The store's one error type.

use uuid::Uuid;

use crate::UnknownState;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid state URL `{0}`: expected sqlite://PATH, sqlite::memory: or postgres://…")]
    Url(String),
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    /// The database refused the login or a privilege: permanent, never retried.
    #[error(
        "{database} at {endpoint} refused access: {message} (check the user in state.url and its password in PGPASSWORD or ~/.pgpass)"
    )]
    Denied {
        database: &'static str,
        /// The URL without password or query string.
        endpoint: String,
        message: String,
    },
    #[error("cannot connect to the state database at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: sqlx::Error,
    },
    #[error("state database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("state database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("run {0} not found")]
    RunNotFound(Uuid),
    /// A state word this version does not know (written by another version, or by hand).
    #[error("the state database holds {0}")]
    State(#[from] UnknownState),
}
