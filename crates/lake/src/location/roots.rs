//! The storage options of configured roots, handed to the engines.

use std::sync::Arc;

use url::Url;

use super::{StorageOptions, TableLocation, cloud_kind};
use crate::LakeError;

/// The storage options of configured roots: every location at or under a root gets its
/// root's options (endpoint, region, account…), including the locations a worker reads from
/// a task message, which never carries them. Built once from the config and handed to the
/// engines (no process-wide registry); cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StorageRoots {
    roots: Arc<Vec<(String, StorageOptions)>>,
}

impl StorageRoots {
    /// Roots with their options (object_store config keys; secrets already read from their
    /// references). Roots without options are left out: they need nothing.
    pub fn new(
        roots: impl IntoIterator<Item = (String, std::collections::BTreeMap<String, String>)>,
    ) -> Result<Self, LakeError> {
        let mut out: Vec<(String, StorageOptions)> = Vec::new();
        for (root, options) in roots {
            if options.is_empty() || root.trim().is_empty() {
                continue;
            }
            let options: StorageOptions = Arc::new(options);
            let loc = TableLocation::parse_with(&root, options.clone())?;
            out.retain(|(r, _)| r != loc.url().as_str());
            out.push((loc.url().to_string(), options));
        }
        Ok(Self {
            roots: Arc::new(out),
        })
    }

    /// The source and target roots' storage options of a config (secrets read from their
    /// references now).
    pub fn from_config(config: &replicator_common::Config) -> Result<Self, LakeError> {
        let mut roots = Vec::new();
        for (name, ep) in [("source", &config.source), ("target", &config.target)] {
            let options = ep
                .storage_options()
                .map_err(|e| LakeError::Invalid(format!("{name}.storage: {e}")))?;
            roots.push((ep.root.clone(), options));
        }
        Self::new(roots)
    }

    /// Parse `location` with the options of the longest configured root it lies under (none:
    /// the standard environment variables only, as [`TableLocation::parse`]).
    pub fn resolve(&self, location: &str) -> Result<TableLocation, LakeError> {
        let options = Url::parse(location.trim())
            .ok()
            .filter(|u| cloud_kind(u.scheme()).is_some())
            .map(|mut url| {
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                self.options_for(&url)
            })
            .unwrap_or_default();
        TableLocation::parse_with(location, options)
    }

    fn options_for(&self, url: &Url) -> StorageOptions {
        self.roots
            .iter()
            .filter(|(root, _)| url.as_str().starts_with(root.as_str()))
            .max_by_key(|(root, _)| root.len())
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    }
}
