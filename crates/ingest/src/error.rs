//! Why an ingestion failed, in one line that names the object (source, table, column, file)
//! and never a secret: connection URLs are redacted (`user:***@host`) and the resolved
//! password is masked wherever a driver error might repeat it.

use replicator_common::ConfigError;
use replicator_lake::LakeError;

/// Everything an ingestion can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A source definition was refused (the key is named).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The source could not be read (connection, query, file).
    #[error("source {source_name}: {detail}")]
    Source {
        source_name: String,
        detail: String,
        /// Whether another attempt may help (a dropped connection, a timeout).
        transient: bool,
    },
    /// A column of a type ingestion cannot carry.
    #[error(
        "source {source_name}: column `{column}` has type {ty}, which ingestion does not support"
    )]
    UnsupportedType {
        source_name: String,
        column: String,
        ty: String,
    },
    /// The source's shape no longer fits the target (a type change, a dropped key column).
    #[error("table {table}: column `{column}`: {detail}")]
    SchemaDrift {
        table: String,
        column: String,
        detail: String,
    },
    /// The data broke a rule of the load (a duplicate key in the source, a NULL key).
    #[error("table {table}: {detail}")]
    Data { table: String, detail: String },
    /// Someone else committed to the target between our read and our commit.
    #[error("table {table}: concurrent commit, nothing written: {detail}")]
    CommitConflict { table: String, detail: String },
    /// Reading or writing the target Delta table failed.
    #[error("table {table}: {detail}")]
    Target { table: String, detail: String },
    #[error(transparent)]
    Lake(#[from] LakeError),
}

impl IngestError {
    /// Whether another attempt may succeed (connection drops, commit conflicts, transient
    /// store errors); schema drift, bad data and bad definitions will not change by retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Source { transient, .. } => *transient,
            Self::CommitConflict { .. } => true,
            Self::Lake(e) => e.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn target(table: &str, detail: impl std::fmt::Display) -> Self {
        Self::Target {
            table: table.to_owned(),
            detail: one_line(&detail.to_string()),
        }
    }
}

/// A URL with the password of its `user:password@` part replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

/// Masks one secret (a connection's password) in messages.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secret: Option<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor")
    }
}

impl Redactor {
    /// A redactor for the password of `url` (percent-decoded and raw), if it has one.
    pub(crate) fn for_url(url: &str) -> Self {
        let secret = url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty());
        Self { secret }
    }

    pub(crate) fn clean(&self, message: &str) -> String {
        let mut out = message.to_owned();
        if let Some(s) = &self.secret {
            out = out.replace(s.as_str(), "***");
            if let Ok(decoded) = url_decode(s)
                && !decoded.is_empty()
            {
                out = out.replace(decoded.as_str(), "***");
            }
        }
        one_line(&redact_all_urls(&out))
    }
}

fn url_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

/// Every `scheme://user:password@` in `message` redacted.
fn redact_all_urls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | '>'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `s` on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("mysql://root@db/x"), "mysql://root@db/x");
        let r = Redactor::for_url("postgres://app:p%40ss@db/x");
        let msg = r.clean("failed: postgres://app:p%40ss@db/x said\n p@ss is wrong");
        assert_eq!(msg, "failed: postgres://app:***@db/x said *** is wrong");
    }
}
