//! `source` and `target`: a root holding Delta tables and its object store options.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, StorageValue};

/// A root holding Delta tables: a local path or a `file://` URL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Required unless a `databricks` section replaces the roots ([`super::Config::validate`]).
    #[serde(default)]
    pub root: String,
    /// Object store options for an `s3://`, `az://` or `abfss://` root (object_store keys such
    /// as `aws_region`, `aws_endpoint`, `azure_storage_account_name`). Secrets must be
    /// references: `aws_secret_access_key: { env: PROD_AWS_SECRET }`. The standard
    /// environment variables (`AWS_*`, `AZURE_*`) apply underneath.
    #[serde(default)]
    pub storage: BTreeMap<String, StorageValue>,
}

/// Storage option keys whose values are credentials: they must be references.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "access_key",
        "account_key",
        "sas",
        "client_secret",
    ]
    .iter()
    .any(|s| k.contains(s))
        && !k.ends_with("_id")
        && !k.ends_with("_file")
}

impl Endpoint {
    /// The storage options with secrets read from their references.
    pub fn storage_options(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        self.storage
            .iter()
            .map(|(k, v)| match v {
                StorageValue::Plain(p) => Ok((k.clone(), p.clone())),
                StorageValue::Secret(s) => Ok((k.clone(), s.resolve()?)),
            })
            .collect()
    }

    /// A credential among the storage options is a reference, never inline. (Whether `root`
    /// is required depends on the `databricks` section: [`super::Config::validate`].)
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (k, v) in &self.storage {
            let within = |e: ConfigError| e.within(k).within("storage");
            match v {
                StorageValue::Plain(_) if is_secret_key(k) => {
                    return Err(within(ConfigError::key(
                        "",
                        "is a credential: reference it ({ env: VAR } or { file: PATH }), never inline it",
                    )));
                }
                StorageValue::Secret(s) => s.validate().map_err(within)?,
                StorageValue::Plain(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{MINIMAL, none};
    use crate::config::{Config, SecretRef};

    #[test]
    fn credential_keys_are_recognised() {
        for k in [
            "aws_secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
            "azure_storage_account_key",
            "azure_storage_sas_key",
            "azure_client_secret",
            "aws_session_token",
            "password",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "aws_region",
            "aws_endpoint",
            "aws_access_key_id",
            "azure_client_id",
            "azure_federated_token_file",
            "azure_storage_account_name",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn an_inline_credential_is_refused_by_key() {
        let mut ep = Endpoint {
            root: "s3://b".into(),
            storage: BTreeMap::from([("aws_region".to_owned(), "eu-west-1".into())]),
        };
        assert!(ep.validate().is_ok());
        ep.storage
            .insert("aws_secret_access_key".into(), "hunter2".into());
        let err = ep.validate().unwrap_err().within("target").to_string();
        assert!(
            err.starts_with("config key `target.storage.aws_secret_access_key`: is a credential"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        // A reference must name exactly one source.
        ep.storage.insert(
            "aws_secret_access_key".into(),
            StorageValue::Secret(SecretRef {
                env: None,
                file: None,
            }),
        );
        let err = ep.validate().unwrap_err().within("source").to_string();
        assert_eq!(
            err,
            "config key `source.storage.aws_secret_access_key`: needs exactly one of `env` or `file`"
        );
    }

    #[test]
    fn storage_credentials_must_be_references() {
        let inline = MINIMAL.replace(
            "target: { root: ./lake/target }",
            "target: { root: \"s3://dr\", storage: { aws_region: eu-west-1, aws_secret_access_key: hunter2 } }",
        );
        let err = Config::from_yaml(&inline, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target.storage.aws_secret_access_key") && !err.contains("hunter2"),
            "{err}"
        );
        let by_ref = inline.replace("hunter2", "{ env: REPLICATOR_TEST_SECRET_UNSET }");
        let c = Config::from_yaml(&by_ref, none(), &[]).unwrap();
        assert_eq!(
            c.target.storage["aws_region"],
            StorageValue::Plain("eu-west-1".into())
        );
        let err = c.target.storage_options().unwrap_err().to_string();
        assert!(err.contains("REPLICATOR_TEST_SECRET_UNSET"), "{err}");
    }

    #[test]
    fn a_credential_override_is_checked_too() {
        let err = Config::from_yaml(
            MINIMAL,
            vec![(
                "REPLICATOR__SOURCE__STORAGE__AZURE_STORAGE_ACCOUNT_KEY".to_owned(),
                "k3y".to_owned(),
            )],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`source.storage.azure_storage_account_key`") && !err.contains("k3y"),
            "{err}"
        );
    }
}
