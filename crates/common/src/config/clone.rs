//! `clone`: what a clone may overwrite and read.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What clones may overwrite and read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloneSettings {
    /// Replace a target that is a Delta table not cloned from its source (as Databricks'
    /// `CREATE OR REPLACE`). Off by default: such a table fails permanently, untouched.
    pub replace: bool,
    /// Roots outside the source tables that absolute paths in a source's Delta log may
    /// reference (shallow clones' sources, tables with files elsewhere). Only files in the
    /// source's own store are ever read; a `file://` path never for a table in an object
    /// store. Relative local paths resolve against the config file's directory.
    pub external_roots: Vec<String>,
}

impl CloneSettings {
    /// Every external root is a non-empty path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(i) = self.external_roots.iter().position(|r| r.trim().is_empty()) {
            return Err(ConfigError::key(
                format!("external_roots[{i}]"),
                "must not be empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};

    #[test]
    fn external_roots_must_not_be_empty() {
        let c = CloneSettings {
            replace: false,
            external_roots: vec!["/shared".into(), "  ".into()],
        };
        assert_eq!(
            c.validate().unwrap_err().within("clone").to_string(),
            "config key `clone.external_roots[1]`: must not be empty"
        );
        let err = Config::from_yaml(MINIMAL, none(), &["clone.external_roots=[\"\"]".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config key `clone.external_roots[0]`: must not be empty"
        );
        let c = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__CLONE__REPLACE".to_owned(), "true".to_owned())],
            &[],
        )
        .unwrap();
        assert!(c.cloning.replace && c.cloning.validate().is_ok());
    }
}
