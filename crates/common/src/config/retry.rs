//! `retry`: the policy for clone and validation attempts ([`RetryPolicy`], defined with the
//! retry loop in [`crate::retry`]); its rule lives here with the other sections'.

use super::ConfigError;
use crate::retry::RetryPolicy;

impl RetryPolicy {
    /// At least one attempt.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::key("max_attempts", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};
    use crate::retry::RetryPolicy;

    #[test]
    fn at_least_one_attempt() {
        assert!(RetryPolicy::default().validate().is_ok());
        let err = Config::from_yaml(MINIMAL, none(), &["retry.max_attempts=0".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "config key `retry.max_attempts`: must be at least 1");
        let c = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__RETRY__MAX_ATTEMPTS".to_owned(), "1".to_owned())],
            &[],
        )
        .unwrap();
        assert_eq!(c.retry.max_attempts, 1);
    }
}
