//! The `ingest` section: sources of rows (databases, files) loaded into Delta tables under
//! `target.root` (docs/ingest.md). The definitions themselves are read and validated by
//! `replicator-ingest` (this crate keeps them as YAML so it does not depend on it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `ingest`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Source definitions inline (each as one definition file holds it).
    pub sources: Vec<serde_yaml::Value>,
    /// A directory of definition files (`*.yaml` / `*.yml`, one source each; relative to
    /// the config file).
    pub definitions_dir: Option<PathBuf>,
    /// The root file sources' `path` is relative to (a local path, `s3://…`, `az://…`;
    /// relative to the config file). Default: `source.root`.
    pub files_root: Option<String>,
    /// After each load, check source and target row counts and primary-key consistency
    /// (the reconciler's task).
    pub validate: bool,
    /// Memory one ingestion may use for its buffers, MiB.
    pub memory_budget_mb: u64,
    /// Rows per batch read from a source.
    pub batch_rows: usize,
    /// Size at which a new data file is started, MiB.
    pub target_file_size_mb: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            definitions_dir: None,
            files_root: None,
            validate: true,
            memory_budget_mb: 256,
            batch_rows: 8192,
            target_file_size_mb: 128,
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sources.is_empty() && self.definitions_dir.is_none() {
            return Err(ConfigError::key(
                "sources",
                "names no source: list definitions under `sources` or set `definitions_dir`",
            ));
        }
        if self.memory_budget_mb < 16 {
            return Err(ConfigError::key(
                "memory_budget_mb",
                "must be at least 16 (MiB)",
            ));
        }
        if self.batch_rows == 0 || self.batch_rows > 1_000_000 {
            return Err(ConfigError::key(
                "batch_rows",
                "must be between 1 and 1000000",
            ));
        }
        if self.target_file_size_mb == 0 {
            return Err(ConfigError::key(
                "target_file_size_mb",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The memory budget in bytes.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget_mb << 20
    }

    /// The file size in bytes.
    pub fn target_file_size(&self) -> u64 {
        self.target_file_size_mb << 20
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(ingest: &str) -> Result<Config, crate::ConfigError> {
        Config::from_yaml(
            &format!("target: {{ root: /t }}\ningest: {ingest}\n"),
            std::iter::empty(),
            &[],
        )
    }

    #[test]
    fn an_ingest_section_needs_sources_and_sane_sizes() {
        let c = load("{ definitions_dir: ./sources }").unwrap();
        assert!(c.source.root.is_empty(), "no source.root needed");
        let ingest = c.ingest.unwrap();
        assert!(ingest.validate);
        assert_eq!(ingest.memory_budget(), 256 << 20);
        let err = load("{}").unwrap_err().to_string();
        assert!(
            err.contains("ingest.sources") && err.contains("names no source"),
            "{err}"
        );
        let err = load("{ definitions_dir: d, memory_budget_mb: 4 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest.memory_budget_mb"), "{err}");
        let err = load("{ definitions_dir: d, batch_rows: 0 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest.batch_rows"), "{err}");
    }
}
