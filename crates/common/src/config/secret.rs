//! Secrets are references ([`SecretRef`]: an environment variable or a file), never inline;
//! a value that may be either ([`StorageValue`]) is a plain string or such a reference.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// A value given inline or read from a secret reference: a storage option, a broker URL,
/// a webhook URL. A string, number or boolean is `Plain`; a map is a [`SecretRef`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StorageValue {
    Plain(String),
    Secret(SecretRef),
}

impl StorageValue {
    /// The value, read from its reference when it is one. Errors never contain the value.
    pub fn resolve(&self) -> Result<String, ConfigError> {
        match self {
            Self::Plain(v) => Ok(v.clone()),
            Self::Secret(s) => s.resolve(),
        }
    }
}

impl From<String> for StorageValue {
    fn from(v: String) -> Self {
        Self::Plain(v)
    }
}

impl From<&str> for StorageValue {
    fn from(v: &str) -> Self {
        Self::Plain(v.to_owned())
    }
}

impl<'de> Deserialize<'de> for StorageValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StorageValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, or a secret reference ({ env: NAME } or { file: PATH })")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StorageValue, A::Error> {
                secret_from_map(map).map(StorageValue::Secret)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A secret, read from an environment variable or a file at the moment it is needed.
///
/// Only a reference deserializes: an inline value (a string, a number, …) is refused with
/// a message that names the key (through the error's path) and never contains the value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// The message for a secret given inline; the value is never part of it.
const INLINE_SECRET: &str =
    "must be a secret reference ({ env: NAME } or { file: PATH }), not an inline value";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = SecretRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a secret reference ({ env: NAME } or { file: PATH })")
            }
            // Every scalar is an inline secret: the default errors would print it.
            fn visit_str<E: Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_bytes<E: Error>(self, _: &[u8]) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_i128<E: Error>(self, _: i128) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_u128<E: Error>(self, _: u128) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_char<E: Error>(self, _: char) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
                Err(A::Error::custom(
                    "must be a secret reference ({ env: NAME } or { file: PATH }), not a list",
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretRef, A::Error> {
                secret_from_map(map)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `{ env: NAME }` or `{ file: PATH }` (whether exactly one is given is checked by
/// [`SecretRef::validate`], whose error the sections name by key).
fn secret_from_map<'de, A: serde::de::MapAccess<'de>>(mut map: A) -> Result<SecretRef, A::Error> {
    use serde::de::Error;
    let mut out = SecretRef {
        env: None,
        file: None,
    };
    while let Some(k) = map.next_key::<String>()? {
        match k.as_str() {
            "env" if out.env.is_none() => out.env = Some(map.next_value()?),
            "file" if out.file.is_none() => out.file = Some(map.next_value()?),
            "env" | "file" => return Err(A::Error::custom(format!("`{k}` is given twice"))),
            other => {
                return Err(A::Error::custom(format!(
                    "unknown key `{other}` in a secret reference: expected `env` or `file`"
                )));
            }
        }
    }
    Ok(out)
}

impl SecretRef {
    /// A reference names exactly one place to read the secret from. The error's key is
    /// empty: the caller places it ([`ConfigError::within`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.env.is_some() == self.file.is_some() {
            return Err(ConfigError::key("", "needs exactly one of `env` or `file`"));
        }
        Ok(())
    }

    /// The reference as written in short form: `env:VAR` or `file:PATH` (never the value);
    /// `None` for a reference that names neither.
    pub fn reference(&self) -> Option<String> {
        match (&self.env, &self.file) {
            (Some(var), _) => Some(format!("env:{var}")),
            (None, Some(path)) => Some(format!("file:{}", path.display())),
            (None, None) => None,
        }
    }

    /// The secret's value. Errors never contain the value.
    pub fn resolve(&self) -> Result<String, ConfigError> {
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!("secret environment variable `{var}` is not set"))
            }),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| {
                    ConfigError::Invalid(format!("secret file `{}`: {e}", path.display()))
                }),
            _ => Err(ConfigError::Invalid(
                "a secret reference needs exactly one of `env` or `file`".into(),
            )),
        }
    }
}

/// Whether a URL carries a password (`scheme://user:password@host`).
pub(super) fn has_inline_password(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};

    #[test]
    fn a_reference_names_exactly_one_source() {
        let both = SecretRef {
            env: Some("A".into()),
            file: Some("/a".into()),
        };
        let neither = SecretRef {
            env: None,
            file: None,
        };
        for s in [both, neither] {
            let err = s.validate().unwrap_err().within("x.y").to_string();
            assert_eq!(
                err, "config key `x.y`: needs exactly one of `env` or `file`",
                "{s:?}"
            );
        }
        let ok = SecretRef {
            env: Some("A".into()),
            file: None,
        };
        assert!(ok.validate().is_ok());
        // Through a config: `{}` is a reference with neither.
        let err = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: http://x, bearer_token: {{}} }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`notifications.webhooks[0].bearer_token`: needs exactly one"),
            "{err}"
        );
    }

    #[test]
    fn a_reference_map_refuses_repeated_and_unknown_keys() {
        let twice: Result<SecretRef, _> = serde_yaml::from_str("{ env: A, env: B }");
        assert!(twice.is_err());
        let err = serde_yaml::from_str::<SecretRef>("{ file: /a, value: x }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `value`"), "{err}");
    }

    #[test]
    fn plain_values_may_be_any_scalar() {
        let v: std::collections::BTreeMap<String, StorageValue> =
            serde_yaml::from_str("{ a: x, b: 3, c: true, d: { env: V } }").unwrap();
        assert_eq!(v["a"], StorageValue::from("x"));
        assert_eq!(v["b"], StorageValue::from("3"));
        assert_eq!(v["c"], StorageValue::from("true"));
        assert!(matches!(v["d"], StorageValue::Secret(_)));
    }

    #[test]
    fn inline_passwords_in_urls_are_seen() {
        assert!(has_inline_password("amqp://u:p@h:5672/%2f"));
        assert!(has_inline_password("postgres://u:p@db/x"));
        assert!(!has_inline_password("postgres://u@db/x"));
        assert!(!has_inline_password("amqp://h:5672/%2f"));
        // An `@` after the authority is not userinfo.
        assert!(!has_inline_password("https://h/a:b@c"));
        assert!(!has_inline_password("sqlite://state.db"));
    }

    #[test]
    fn secrets_come_from_env_or_file_never_inline() {
        let err = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: http://x, bearer_token: hunter2 }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("bearer_token"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        let s = SecretRef {
            env: None,
            file: Some(f),
        };
        assert_eq!(s.resolve().unwrap(), "s3cr3t");
        let missing = SecretRef {
            env: Some("REPLICATOR_TEST_UNSET_VAR".into()),
            file: None,
        };
        assert!(
            missing
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("REPLICATOR_TEST_UNSET_VAR")
        );
    }

    #[test]
    fn inline_secrets_are_refused_by_key_and_never_echoed() {
        const SECRET: &str = "hunter2-do-not-print";
        let hooks = |k: &str| {
            format!(
                "{MINIMAL}notifications: {{ webhooks: [ {{ url: \"https://x\", {k}: \"{SECRET}\" }} ] }}\n"
            )
        };
        let databricks = |auth: &str| {
            format!(
                "databricks:\n  source: {{ host: https://a, warehouse_id: w, auth: {auth} }}\n  target: {{ host: https://b, warehouse_id: w, auth: {{ token: {{ env: T }} }} }}\n  catalogs: [ {{ source: prod }} ]\n"
            )
        };
        let cases = [
            (
                hooks("bearer_token"),
                "notifications.webhooks[0].bearer_token",
            ),
            (
                hooks("signing_secret"),
                "notifications.webhooks[0].signing_secret",
            ),
            (
                format!(
                    "{MINIMAL}notifications: {{ email: {{ smtp: {{ host: h, username: u, password: \"{SECRET}\" }}, from: a@b }} }}\n"
                ),
                "notifications.email.smtp.password",
            ),
            (
                databricks(&format!("{{ token: \"{SECRET}\" }}")),
                "databricks.source.auth.token",
            ),
            (
                databricks(&format!("{{ client_id: sp, client_secret: \"{SECRET}\" }}")),
                "databricks.source.auth.client_secret",
            ),
            // Numbers and lists are inline values too.
            (
                databricks("{ token: 1234567890123 }"),
                "databricks.source.auth.token",
            ),
            (
                databricks(&format!("{{ token: [ \"{SECRET}\" ] }}")),
                "databricks.source.auth.token",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_yaml(&text, none(), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("must be a secret reference"),
                "{key}: {err}"
            );
            assert!(
                !err.contains(SECRET) && !err.contains("1234567890123"),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        // The same through an environment override.
        let err = Config::from_yaml(
            &hooks("bearer_token").replace(&format!("bearer_token: \"{SECRET}\""), "on: [failure]"),
            vec![(
                "REPLICATOR__NOTIFICATIONS__EMAIL__SMTP__PASSWORD".to_owned(),
                SECRET.to_owned(),
            )],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("must be a secret reference") && !err.contains(SECRET),
            "{err}"
        );
        // A reference map with a stray key is named, not dumped.
        let err = Config::from_yaml(
            &hooks("bearer_token").replace(&format!("\"{SECRET}\""), "{ env: A, value: x }"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown key `value`"), "{err}");
    }
}
