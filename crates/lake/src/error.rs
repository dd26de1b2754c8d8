//! One error type for the lake crate, classified transient or permanent so the cloner knows
//! whether a retry can help.

/// Errors from table engines.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid table location `{location}`: {reason}")]
    InvalidLocation { location: String, reason: String },
    #[error("no Delta table at {url} (no _delta_log)")]
    NotATable { url: String },
    #[error("cannot read the Delta log of {url}: {}", one_line(.detail))]
    Log {
        url: String,
        detail: String,
        transient: bool,
    },
    #[error("version {version} of {url} is not available: {}", one_line(.detail))]
    VersionUnavailable {
        url: String,
        version: u64,
        detail: String,
    },
    #[error("{url}: file `{}` referenced by version {version} is missing", log_text(.path))]
    MissingFile {
        url: String,
        path: String,
        version: u64,
    },
    #[error("file `{}` has {actual} bytes where {expected} were expected", log_text(.path))]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("table feature `{}` cannot be cloned: {reason}", log_text(.feature))]
    UnsupportedFeature { feature: String, reason: String },
    #[error("path `{}` in the Delta log of {url} escapes the table root", log_text(.path))]
    UnsafePath { url: String, path: String },
    /// A log path outside the table root that the path rules do not allow (see
    /// `docs/safety.md`).
    #[error("path `{}` in the Delta log of {url} is outside the table root: {reason}", log_text(.path))]
    OutsidePath {
        url: String,
        path: String,
        reason: String,
    },
    /// The target is a Delta table this source's clone did not write, and the caller did not
    /// ask to replace it.
    #[error(
        "target {target} is a Delta table not cloned from {source_url}; pass --replace (fleet: clone.replace: true) to replace it"
    )]
    NotAReplica { target: String, source_url: String },
    #[error(
        "commit conflict: version {version} of {url} was committed by another writer while this one was being prepared"
    )]
    CommitConflict { url: String, version: u64 },
    #[error("storage error on {path}: {}", one_line(&.source.to_string()))]
    Store {
        path: String,
        source: object_store::Error,
    },
    /// A volume file whose relative path could leave the volume root (`..`, an absolute
    /// path, a control character, an entry outside the listed prefix): refused.
    #[error("file `{}` listed under {url} would escape the volume root: {reason}", log_text(.path))]
    UnsafeVolumePath {
        url: String,
        path: String,
        reason: String,
    },
    /// A volume file changed while it was being copied, on every attempt: the copy was
    /// discarded, nothing was placed under its name. Transient: a later sync may find it still.
    #[error("file `{}` changed while it was being copied ({attempts} attempts); the copy was discarded", log_text(.path))]
    SourceChanged { path: String, attempts: u32 },
    #[error("{}", bounded(.0, MAX_MESSAGE))]
    Invalid(String),
    #[error("injected failure: {0}")]
    Injected(String),
}

impl LakeError {
    /// Whether retrying may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::CommitConflict { .. } => true,
            Self::Log { transient, .. } => *transient,
            Self::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            Self::Injected(_) | Self::SourceChanged { .. } => true,
            _ => false,
        }
    }

    /// The wire-level classification.
    pub fn kind(&self) -> replicator_proto::ErrorKind {
        if self.is_transient() {
            replicator_proto::ErrorKind::Transient
        } else {
            replicator_proto::ErrorKind::Permanent
        }
    }

    pub(crate) fn store(path: impl std::fmt::Display, source: object_store::Error) -> Self {
        Self::Store {
            path: path.to_string(),
            source,
        }
    }

    /// Map a delta-rs error while loading `url`, naming unsupported features.
    pub(crate) fn from_delta(
        url: &str,
        version: Option<u64>,
        e: deltalake::DeltaTableError,
    ) -> Self {
        use deltalake::DeltaTableError as D;
        let detail = e.to_string();
        // The kernel refuses a catalog-managed table before its protocol can be read.
        if detail.contains("when loading a catalog-managed table") {
            let reason = match crate::clone::features::verdict("catalogManaged") {
                Some(crate::clone::features::Verdict::Refuse(why)) => why,
                _ => "the Delta kernel cannot read it without its catalog",
            };
            return Self::UnsupportedFeature {
                feature: "catalogManaged".into(),
                reason: reason.into(),
            };
        }
        if let Some(feature) = unsupported_feature(&detail) {
            return Self::UnsupportedFeature {
                feature,
                reason: "the Delta kernel cannot read a table that uses it".into(),
            };
        }
        match (&e, version) {
            (D::NotATable(_), _) => Self::NotATable {
                url: url.to_owned(),
            },
            (D::InvalidVersion(_), Some(v)) => Self::VersionUnavailable {
                url: url.to_owned(),
                version: v,
                detail,
            },
            (_, Some(v)) if detail.contains("not found") || detail.contains("No such file") => {
                Self::VersionUnavailable {
                    url: url.to_owned(),
                    version: v,
                    detail,
                }
            }
            (D::ObjectStore { source }, _) => Self::Log {
                url: url.to_owned(),
                transient: !matches!(source, object_store::Error::NotFound { .. }),
                detail,
            },
            _ => Self::Log {
                url: url.to_owned(),
                detail,
                transient: false,
            },
        }
    }
}

/// Pick a feature name out of a delta-rs/kernel "unsupported" message.
fn unsupported_feature(detail: &str) -> Option<String> {
    let lower = detail.to_lowercase();
    if !(lower.contains("unsupported") || lower.contains("not supported"))
        || !lower.contains("feature")
    {
        return None;
    }
    // Messages look like `Unsupported reader features: [Unknown("foo")]` or
    // `... feature 'foo' ...`; report the whole message when no name can be isolated.
    let start = detail.find(['[', '\'', '`', '"'])?;
    let rest = &detail[start + 1..];
    let end = rest.find([']', '\'', '`', '"']).unwrap_or(rest.len());
    let name = rest[..end].trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '-');
    Some(if name.is_empty() {
        detail.to_owned()
    } else {
        name.to_owned()
    })
}

impl replicator_common::Retryable for LakeError {
    fn is_transient(&self) -> bool {
        LakeError::is_transient(self)
    }
}

/// The longest error detail passed on from a library, in characters.
const MAX_DETAIL: usize = 300;

/// A library's error message made fit for one line of a user-facing error: only its first
/// line (the kernel appends a backtrace when `RUST_BACKTRACE` is set), whitespace collapsed,
/// a Rust struct dump (`Name { field: … }`) replaced by its name, and at most
/// [`MAX_DETAIL`] characters.
pub(crate) fn one_line(message: &str) -> String {
    bounded(message, MAX_DETAIL)
}

/// The longest message of our own (which may name two or three long URLs), in characters.
const MAX_MESSAGE: usize = 1000;

/// The longest text taken from a Delta log (a path, a feature name) shown in an error.
const MAX_LOG_TEXT: usize = 200;

/// Text from a table's log, shown in an error: one line, at most [`MAX_LOG_TEXT`] characters.
fn log_text(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_LOG_TEXT) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// [`one_line`] with a chosen length limit.
fn bounded(message: &str, max: usize) -> String {
    if let Some(gap) = log_gap(message) {
        return gap;
    }
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    // Cut at the start of a backtrace printed on the same line.
    let first = ["Backtrace", "stack backtrace", "\\n"]
        .iter()
        .filter_map(|m| first.find(m))
        .min()
        .map_or(first, |i| first[..i].trim_end());
    let mut out = String::with_capacity(first.len().min(max + 3));
    let mut rest = first;
    // `Ident { … }` with balanced braces: keep the identifier only.
    while let Some(open) = rest.find(" { ") {
        let ident_start = rest[..open]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let ident = &rest[ident_start..open];
        if !ident.starts_with(|c: char| c.is_ascii_uppercase()) {
            out.push_str(&rest[..open + 3]);
            rest = &rest[open + 3..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in rest[open + 1..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + 1 + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push_str(&rest[..open]);
        match end {
            Some(e) => rest = &rest[e..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    match out.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

/// The kernel reports a missing commit as two `ParsedLogPath` dumps; say it in words.
fn log_gap(message: &str) -> Option<String> {
    let rest = message.split("Expected contiguous commit files").nth(1)?;
    let versions: Vec<u64> = rest
        .split("version: ")
        .skip(1)
        .filter_map(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
        })
        .collect();
    Some(match versions.as_slice() {
        [a, b, ..] if b > a => {
            let missing = if b - a == 2 {
                format!("commit {} is missing", a + 1)
            } else {
                format!("commits {} to {} are missing", a + 1, b - 1)
            };
            format!("the log is not contiguous: {missing} (commit {a} is followed by commit {b})")
        }
        _ => "the log is not contiguous: a commit between two others is missing".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gap_is_said_in_words() {
        let kernel = "Generic delta kernel error: Expected contiguous commit files, but found gap: ParsedLogPath { location: FileMeta { location: Url { scheme: \"file\", path: \"/_delta_log/00000000000000000001.json\" }, last_modified: 0, size: 0 }, filename: \"00000000000000000001.json\", extension: \"json\", version: 1, file_type: Commit } -> ParsedLogPath { location: FileMeta { location: Url { path: \"/_delta_log/00000000000000000004.json\" }, size: 0 }, filename: \"00000000000000000004.json\", extension: \"json\", version: 4, file_type: Commit }";
        assert_eq!(
            one_line(kernel),
            "the log is not contiguous: commits 2 to 3 are missing (commit 1 is followed by commit 4)"
        );
    }

    #[test]
    fn library_messages_become_one_bounded_line() {
        let with_backtrace = "Generic delta kernel error: Invalid JSON in commit\n\nStack backtrace:\n   0: std::backtrace::Backtrace::create\n   1: delta_kernel::error::Error::generic";
        assert_eq!(
            one_line(with_backtrace),
            "Generic delta kernel error: Invalid JSON in commit"
        );
        let dump = "Invalid log: expected version 3 got ParsedLogPath { location: FileMeta { location: Url { scheme: \"file\", path: \"/t/_delta_log/5.json\" }, size: 10 }, version: 5, file_type: Commit }, and more";
        assert_eq!(
            one_line(dump),
            "Invalid log: expected version 3 got ParsedLogPath, and more"
        );
        assert!(one_line(&"x".repeat(10_000)).chars().count() <= MAX_DETAIL + 1);
        assert_eq!(one_line("a { b } c"), "a { b } c");
    }
}
