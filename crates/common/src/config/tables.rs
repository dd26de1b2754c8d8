//! `tables`: which tables to replicate.

use replicator_proto::TableFilter;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Include/exclude glob patterns over dotted table names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    #[serde(default = "all_tables")]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn all_tables() -> Vec<String> {
    vec!["*".into()]
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            include: all_tables(),
            exclude: Vec::new(),
        }
    }
}

impl From<&Tables> for TableFilter {
    fn from(t: &Tables) -> Self {
        TableFilter {
            include: t.include.clone(),
            exclude: t.exclude.clone(),
        }
    }
}

impl Tables {
    /// Every pattern is a glob. The key counts `include` then `exclude` (`tables[2]` is the
    /// first exclude after two includes).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, p) in self.include.iter().chain(&self.exclude).enumerate() {
            globset::Glob::new(p)
                .map_err(|e| ConfigError::key(format!("[{i}]"), format!("bad glob `{p}`: {e}")))?;
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
    fn every_pattern_must_be_a_glob() {
        let t = Tables {
            include: vec!["sales.*".into(), "*.orders".into()],
            exclude: vec!["sales.[".into()],
        };
        let err = t.validate().unwrap_err().within("tables").to_string();
        assert!(
            err.starts_with("config key `tables[2]`: bad glob `sales.[`"),
            "{err}"
        );
        let err = Config::from_yaml(MINIMAL, none(), &["tables.include=[\"a{b\"]".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`tables[0]`: bad glob"), "{err}");
        assert!(Tables::default().validate().is_ok());
    }

    #[test]
    fn the_default_is_every_table() {
        let c =
            Config::from_yaml("source: { root: /s }\ntarget: { root: /t }\n", none(), &[]).unwrap();
        assert_eq!(c.tables, Tables::default());
        let f = TableFilter::from(&c.tables);
        assert_eq!((f.include, f.exclude), (vec!["*".to_owned()], vec![]));
    }
}
