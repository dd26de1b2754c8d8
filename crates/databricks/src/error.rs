//! Errors of the Databricks engine, classified transient (retrying may help) or permanent.

use std::time::Duration;

use replicator_common::retry::Retryable;
use replicator_proto::ErrorKind;

/// Statement error codes that describe a passing condition.
const TRANSIENT_CODES: &[&str] = &[
    "TEMPORARILY_UNAVAILABLE",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
    "ABORTED",
    "REQUEST_LIMIT_EXCEEDED",
];

#[derive(Debug, thiserror::Error)]
pub enum DatabricksError {
    /// A name that cannot safely reach SQL or a REST path.
    #[error("invalid identifier {name:?}: {reason}")]
    InvalidIdentifier { name: String, reason: String },
    /// The configuration cannot work (missing secret, bad host, wrong option).
    #[error("databricks configuration: {0}")]
    Config(String),
    /// The request never got an HTTP answer (connection refused, reset, timed out).
    #[error("{method} {path}: {detail}")]
    Transport {
        method: String,
        path: String,
        detail: String,
    },
    /// An HTTP error answer. 429 and 503 carry the server's `Retry-After`.
    #[error("{method} {path}: HTTP {status} {code}: {message}")]
    Http {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// HTTP 404 without a Databricks "does not exist" error code: the path is not an API of
    /// this host (`ENDPOINT_NOT_FOUND`, or a bare 404 from something that is not Databricks),
    /// which says nothing about the object asked for.
    #[error(
        "{method} {path}: HTTP 404 {code}: no such API endpoint at this host ({message}); check the workspace URL and that the API is enabled there"
    )]
    NoEndpoint {
        method: String,
        path: String,
        code: String,
        message: String,
    },
    /// Credentials were refused (after one token refresh for OAuth).
    #[error("authentication failed at {host}: {message}")]
    Auth { host: String, message: String },
    /// A statement reached FAILED, CANCELED or CLOSED.
    #[error("statement {statement_id} {state}: {code}: {message}")]
    Statement {
        statement_id: String,
        state: String,
        code: String,
        message: String,
    },
    /// A statement was still running when the client's timeout ran out; it was cancelled.
    #[error(
        "statement {statement_id} still {state} after {timeout_ms} ms; cancelled (raise `statement_timeout_ms` if the work is legitimately this long)"
    )]
    Timeout {
        statement_id: String,
        state: String,
        timeout_ms: u64,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected response from {path}: {detail}")]
    Protocol { path: String, detail: String },
    /// An operation refused a table (unsupported type, schema mismatch, missing object).
    #[error("{0}")]
    Refused(String),
    /// No job of the workspace at `host` has the name a sync group's `workflow` gives.
    #[error("workflow `{workflow}` not found in {host}")]
    WorkflowNotFound { workflow: String, host: String },
}

/// Whether a Databricks REST `error_code` says the object asked for does not exist
/// (`RESOURCE_DOES_NOT_EXIST`, `NOT_FOUND`, `TABLE_DOES_NOT_EXIST`, `CATALOG_DOES_NOT_EXIST`,
/// …). `ENDPOINT_NOT_FOUND` is not one: it is about the path, not the object.
pub fn means_not_found(code: &str) -> bool {
    code == "NOT_FOUND" || code.ends_with("DOES_NOT_EXIST")
}

/// Whether a Databricks REST `error_code` says the object to create already exists
/// (`RESOURCE_ALREADY_EXISTS`, `ALREADY_EXISTS`, `CATALOG_ALREADY_EXISTS`, …).
pub fn means_already_exists(code: &str) -> bool {
    code.ends_with("ALREADY_EXISTS")
}

impl DatabricksError {
    /// The object asked for does not exist (a 4xx answer with a "does not exist" code).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Http { status: 400..=499, code, .. } if means_not_found(code))
    }

    /// A create was refused because the object exists (a 4xx answer, normally 409, with an
    /// "already exists" code) — for instance created by a concurrent run.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::Http { status: 400..=499, code, .. } if means_already_exists(code))
    }

    pub fn kind(&self) -> ErrorKind {
        if self.is_transient() {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        }
    }

    /// The `Retry-After` the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The statement this error belongs to, if any.
    pub fn statement_id(&self) -> Option<&str> {
        match self {
            Self::Statement { statement_id, .. } | Self::Timeout { statement_id, .. } => {
                Some(statement_id)
            }
            _ => None,
        }
    }
}

impl Retryable for DatabricksError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Http { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            Self::Statement { code, message, .. } => {
                TRANSIENT_CODES.contains(&code.as_str())
                    // Delta optimistic-concurrency conflicts: another writer committed first.
                    || message.contains("DELTA_CONCURRENT")
                    || message.contains("ConcurrentAppendException")
            }
            Self::InvalidIdentifier { .. }
            | Self::NoEndpoint { .. }
            | Self::Config(_)
            | Self::Auth { .. }
            | Self::Timeout { .. }
            | Self::Protocol { .. }
            | Self::Refused(_)
            | Self::WorkflowNotFound { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> DatabricksError {
        DatabricksError::Http {
            method: "GET".into(),
            path: "/x".into(),
            status,
            code: "X".into(),
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn classifies() {
        assert!(http(429).is_transient());
        assert!(http(503).is_transient());
        assert!(!http(400).is_transient());
        assert!(!http(404).is_transient());
        let coded = |status: u16, code: &str| DatabricksError::Http {
            method: "GET".into(),
            path: "/x".into(),
            status,
            code: code.into(),
            message: "m".into(),
            retry_after: None,
        };
        for code in [
            "RESOURCE_DOES_NOT_EXIST",
            "NOT_FOUND",
            "TABLE_DOES_NOT_EXIST",
            "SCHEMA_DOES_NOT_EXIST",
            "CATALOG_DOES_NOT_EXIST",
        ] {
            assert!(coded(404, code).is_not_found(), "{code}");
        }
        for code in ["ENDPOINT_NOT_FOUND", "", "X"] {
            assert!(!coded(404, code).is_not_found(), "{code}");
        }
        assert!(coded(409, "RESOURCE_ALREADY_EXISTS").is_already_exists());
        assert!(coded(409, "ALREADY_EXISTS").is_already_exists());
        assert!(!coded(409, "ABORTED").is_already_exists());
        assert!(!coded(500, "RESOURCE_ALREADY_EXISTS").is_already_exists());
        let st = |code: &str, message: &str| DatabricksError::Statement {
            statement_id: "s".into(),
            state: "FAILED".into(),
            code: code.into(),
            message: message.into(),
        };
        assert!(st("TEMPORARILY_UNAVAILABLE", "").is_transient());
        assert!(st("BAD_REQUEST", "[DELTA_CONCURRENT_APPEND] x").is_transient());
        assert!(!st("BAD_REQUEST", "[TABLE_OR_VIEW_NOT_FOUND] x").is_transient());
        let missing = DatabricksError::WorkflowNotFound {
            workflow: "core_product_job".into(),
            host: "https://adb-1.azuredatabricks.net".into(),
        };
        assert!(!missing.is_transient());
        assert_eq!(
            missing.to_string(),
            "workflow `core_product_job` not found in https://adb-1.azuredatabricks.net"
        );
    }
}
