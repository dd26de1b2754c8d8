//! Opening the state database: which backend a URL names, the connection pool, and the
//! migrations in `migrations/` applied on open.

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

use crate::{Store, StoreError};

/// The database behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (embedded mode, one machine).
    Sqlite,
    /// PostgreSQL (fleet mode).
    Postgres,
}

impl Backend {
    /// The backend a state URL names.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Url(url.to_owned()))
        }
    }
}

/// A state URL as it may be shown: no password, no query string.
fn redact_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{path}")
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// The server's reason when `e` is an authentication or authorization failure (SQLSTATE
/// class 28, invalid authorization, or 42501, insufficient privilege): no retry can help.
fn refusal(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("28") || c == "42501") =>
        {
            Some(db.message().to_owned())
        }
        _ => None,
    }
}

impl Store {
    /// Open the database at `url` and apply migrations: `sqlite://PATH` (created on first
    /// use), `sqlite::memory:`, or `postgres://…` (the database must exist).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let (url, max) = match backend {
            Backend::Postgres => (url.to_owned(), 8),
            Backend::Sqlite if url == "sqlite::memory:" => (url.to_owned(), 1),
            Backend::Sqlite => {
                let path = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| StoreError::Url(url.to_owned()))?;
                let path = std::path::Path::new(path);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                // One connection: SQLite has one writer at a time anyway, and writers on
                // several connections of one process wait on each other in SQLite's busy
                // handler (sleeps of up to 100 ms) and re-read every page another one changed.
                // Other processes sharing the file still wait through `busy_timeout`.
                (format!("sqlite://{}?mode=rwc", path.display()), 1)
            }
        };
        let endpoint = redact_url(&url);
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // No ping before every use: it is a round trip per statement (to SQLite's
            // connection thread, or to PostgreSQL), a third of the fleet's round trips to
            // PostgreSQL on a re-check (bench/RESULTS.md, "Scale"). A PostgreSQL connection
            // that broke fails its statement instead, which the caller retries or nacks (the
            // task is redelivered), and the pool drops the connection.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Several processes (CLI, services) may share one SQLite file.
                        // `synchronous = NORMAL`: in WAL mode a commit no longer waits for an
                        // fsync (the WAL is synced at checkpoints); the database stays
                        // consistent, and a power cut may lose only its last commits: results
                        // of tasks that a rerun redoes (clones are idempotent).
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| match refusal(&e) {
                Some(message) => StoreError::Denied {
                    database: "PostgreSQL",
                    endpoint: endpoint.clone(),
                    message,
                },
                None => StoreError::Connect {
                    endpoint: endpoint.clone(),
                    source: e,
                },
            })?;
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        if let Err(e) = migrated {
            return Err(match &e {
                sqlx::migrate::MigrateError::Execute(db) => match refusal(db) {
                    Some(message) => StoreError::Denied {
                        database: "PostgreSQL",
                        endpoint,
                        message,
                    },
                    None => e.into(),
                },
                _ => e.into(),
            });
        }
        Ok(Self { pool, backend })
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A login the server refuses fails at once, with one line that names the endpoint
    /// (never a password) and says what to check.
    #[tokio::test]
    async fn a_refused_login_is_permanent_and_names_the_endpoint() {
        let url = "postgres://no_such_role_x:hunter2@127.0.0.1:5432/postgres?password=hunter3";
        let started = std::time::Instant::now();
        let e = Store::open(url).await.unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "refused after {:?}",
            started.elapsed()
        );
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Denied { .. }), "{e:?}");
        assert!(
            msg.starts_with(
                "PostgreSQL at postgres://no_such_role_x@127.0.0.1:5432/postgres refused access: "
            ),
            "{msg}"
        );
        assert!(msg.contains("no_such_role_x"), "{msg}");
        assert!(!msg.contains("hunter"), "no password: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn state_urls_are_shown_without_secrets() {
        assert_eq!(
            redact_url("postgres://u:p@db:5432/x?sslmode=require&password=q"),
            "postgres://u@db:5432/x"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_url("sqlite://a/b.db?mode=rwc"), "sqlite://a/b.db");
    }
}
