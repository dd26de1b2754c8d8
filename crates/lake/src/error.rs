//! One error type for the lake crate, classified transient or permanent so the cloner knows
//! whether a retry can help.

/// Errors from table engines.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid table location `{location}`: {reason}")]
    InvalidLocation { location: String, reason: String },
    #[error("no Delta table at {url} (no _delta_log)")]
    NotATable { url: String },
    #[error("cannot read the Delta log of {url}: {detail}")]
    Log {
        url: String,
        detail: String,
        transient: bool,
    },
    #[error("version {version} of {url} is not available: {detail}")]
    VersionUnavailable {
        url: String,
        version: u64,
        detail: String,
    },
    #[error("{url}: file `{path}` referenced by version {version} is missing")]
    MissingFile {
        url: String,
        path: String,
        version: u64,
    },
    #[error("file `{path}` has {actual} bytes where {expected} were expected")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("unsupported table feature `{feature}`: the native engine cannot honour it yet")]
    UnsupportedFeature { feature: String },
    #[error("path `{path}` in the Delta log of {url} escapes the table root")]
    UnsafePath { url: String, path: String },
    /// A log path outside the table root that the path rules do not allow (see
    /// `docs/safety.md`).
    #[error("path `{path}` in the Delta log of {url} is outside the table root: {reason}")]
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
        "commit conflict: version {version} of {url} was committed by another writer while this clone ran"
    )]
    CommitConflict { url: String, version: u64 },
    #[error("storage error on {path}: {source}")]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("{0}")]
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
            Self::Injected(_) => true,
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
        if let Some(feature) = unsupported_feature(&detail) {
            return Self::UnsupportedFeature { feature };
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
