//! `concurrency`: how much work runs at once.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How much work runs at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Concurrency {
    /// Tables cloned at once.
    pub cloners: usize,
    /// Tables validated at once.
    pub reconcilers: usize,
    /// Files copied at once within one clone.
    pub copy_parallelism: usize,
    /// Lease on a target while a cloner works on it, in milliseconds (renewed every third
    /// of it; a killed cloner frees its table after at most this long).
    pub lease_ttl_ms: u64,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            cloners: 2,
            reconcilers: 2,
            copy_parallelism: 16,
            lease_ttl_ms: 30_000,
        }
    }
}

impl Concurrency {
    /// Every count is at least 1.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("cloners", self.cloners),
            ("reconcilers", self.reconcilers),
            ("copy_parallelism", self.copy_parallelism),
        ] {
            if value == 0 {
                return Err(ConfigError::key(name, "must be at least 1"));
            }
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
    fn every_count_is_at_least_one() {
        assert!(Concurrency::default().validate().is_ok());
        for key in ["cloners", "reconcilers", "copy_parallelism"] {
            let err = Config::from_yaml(MINIMAL, none(), &[format!("concurrency.{key}=0")])
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("config key `concurrency.{key}`: must be at least 1")
            );
        }
        // The same through the environment.
        let err = Config::from_yaml(
            MINIMAL,
            vec![(
                "REPLICATOR__CONCURRENCY__COPY_PARALLELISM".to_owned(),
                "0".to_owned(),
            )],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("concurrency.copy_parallelism"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let err =
            Config::from_yaml(MINIMAL, none(), &["concurrency.cloners=0".into()]).unwrap_err();
        assert!(err.to_string().contains("concurrency.cloners"), "{err}");
        let err = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: ftp://x }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("notifications.webhooks[0].url"),
            "{err}"
        );
    }
}
