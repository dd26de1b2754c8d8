//! Errors of the Snowflake crate: one line each, naming the object, never a secret.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SnowflakeError {
    /// A name that cannot be used as a Snowflake identifier.
    #[error("invalid Snowflake name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// The configuration cannot work (bad URL, account, user, lifetime, location).
    #[error("snowflake configuration: {0}")]
    Config(String),
    /// The private key file cannot be read or parsed.
    #[error("the private key in {path}: {detail}")]
    Key { path: String, detail: String },
    /// An encrypted private key that the passphrase given does not open.
    #[error("the private key in {path} could not be decrypted: wrong passphrase?")]
    WrongPassphrase { path: String },
    /// No HTTP answer (connection refused, reset, timed out).
    #[error("{method} {path}: {detail}")]
    Transport {
        method: String,
        path: String,
        detail: String,
    },
    /// The JWT was refused (after one re-mint when Snowflake said it was invalid).
    #[error("authentication failed at {host} for user {user}: HTTP {status} {code}: {message}")]
    Auth {
        host: String,
        user: String,
        status: u16,
        code: String,
        message: String,
    },
    /// An HTTP answer that is neither a result nor a statement error (throttling after the
    /// last attempt, a gateway error, a refused request).
    #[error("{method} {path}: HTTP {status} {code}: {message}")]
    Http {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Snowflake ran the statement and it failed (HTTP 422, a `QueryFailureStatus`).
    #[error("statement failed ({code}, SQLSTATE {sql_state}): {message} [statement: {statement}]")]
    Statement {
        statement: String,
        handle: String,
        code: String,
        sql_state: String,
        message: String,
    },
    /// A statement still running when the client's overall timeout ran out (cancelled).
    #[error(
        "statement {handle} still running after {waited_ms} ms; cancelled [statement: {statement}]"
    )]
    Timeout {
        statement: String,
        handle: String,
        waited_ms: u64,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected response from {path}: {detail}")]
    Protocol { path: String, detail: String },
}

impl SnowflakeError {
    /// Whether retrying the same request may help: throttling, gateway errors and
    /// transport failures.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Http { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The `Retry-After` the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One line of at most `max` characters: control characters (newlines in Snowflake's
/// messages) become spaces, runs of spaces collapse, a longer text ends with `…`.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    let out = out.trim();
    if out.chars().count() > max {
        let cut: String = out.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    } else {
        out.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_blanks_newlines_and_shortens() {
        assert_eq!(
            one_line("SQL compilation error:\nsyntax error", 100),
            "SQL compilation error: syntax error"
        );
        let long = one_line(&"x".repeat(300), 50);
        assert_eq!(long.chars().count(), 50);
        assert!(long.ends_with('…'));
    }
}
