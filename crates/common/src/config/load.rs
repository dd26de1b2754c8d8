//! Loading: the file (bounded), then environment overrides (`REPLICATOR__SECTION__KEY`),
//! then `--set section.key=value` flags, then types ([`Config`]'s serde), then rules
//! ([`Config::validate`]).

use std::io::Read;
use std::path::Path;

use serde_yaml::Value;

use super::shape::{MAX_CONFIG_BYTES, check_shape, too_large};
use super::{Config, ConfigError};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "REPLICATOR__";

impl Config {
    /// Load a config file, applying environment and CLI overrides, then validate it. A JSON
    /// file in the DR sync job's shape (an object with `workspaces`) is converted by
    /// [`super::seed::import`] first; `replicator sync import` shows what it did not map.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        // Read at most one byte past the limit: from_yaml refuses a text that long.
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid(format!(
                "the config is {}",
                too_large()
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        // A DR sync job's JSON file is converted first (`seed`), then loads as YAML does.
        let text = match super::seed::from_json_text(&text) {
            None => text,
            Some(Ok(imported)) => imported.to_yaml(),
            Some(Err(e)) => {
                return Err(ConfigError::Invalid(format!(
                    "a DR sync job's JSON file: {e}"
                )));
            }
        };
        let mut config = Self::from_yaml(&text, std::env::vars(), overrides)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        config.file = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()));
        Ok(config)
    }

    /// Make relative local paths absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &str| -> Option<String> {
            let is_url = p.contains("://") || p.starts_with("file:");
            (!is_url && !p.is_empty() && Path::new(p).is_relative())
                .then(|| base.join(p).to_string_lossy().into_owned())
        };
        if let Some(p) = resolve(&self.source.root) {
            self.source.root = p;
        }
        if let Some(p) = resolve(&self.target.root) {
            self.target.root = p;
        }
        if let Some(sync) = &mut self.sync {
            for root in [&mut sync.primary, &mut sync.secondary]
                .into_iter()
                .flatten()
            {
                if let Some(p) = resolve(root) {
                    *root = p;
                }
            }
        }
        if let Some(ingest) = &mut self.ingest {
            if let Some(p) = ingest.files_root.as_deref().and_then(resolve) {
                ingest.files_root = Some(p);
            }
            if let Some(dir) = &ingest.definitions_dir
                && dir.is_relative()
            {
                ingest.definitions_dir = Some(base.join(dir));
            }
        }
        if let Some(snowflake) = &mut self.snowflake {
            snowflake.resolve_paths(resolve);
        }
        for root in &mut self.cloning.external_roots {
            if let Some(p) = resolve(root) {
                *root = p;
            }
        }
        if let Some(path) = self.state.url.strip_prefix("sqlite://")
            && !path.is_empty()
            && Path::new(path).is_relative()
            && !path.starts_with(':')
        {
            self.state.url = format!("sqlite://{}", base.join(path).display());
        }
    }

    /// Parse `text`, apply `env` (only `REPLICATOR__*` entries matter) and `overrides`
    /// (`section.key=value`), deserialize and validate.
    pub fn from_yaml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        check_shape(text).map_err(|m| ConfigError::Invalid(format!("the config is {m}")))?;
        let mut doc: Value = serde_yaml::from_str(text)?;
        if doc.is_null() {
            doc = Value::Mapping(Default::default());
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(ENV_PREFIX).map(|rest| {
                    (
                        rest.split("__").map(str::to_lowercase).collect::<Vec<_>>(),
                        v,
                    )
                })
            })
            .collect();
        env.sort();
        for (path, value) in env {
            let value = parse_override(
                &format!("{ENV_PREFIX}{}", path.join("__").to_uppercase()),
                &value,
            )?;
            set_path(&mut doc, &path, value)?;
        }
        for o in overrides {
            let (key, value) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::Override(o.clone()))?;
            let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
            set_path(&mut doc, &path, parse_override(key.trim(), value)?)?;
        }
        let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// An override's value parsed as YAML (a string when it is not YAML), bounded like a
/// config file; `name` is the variable or `--set` key.
fn parse_override(name: &str, v: &str) -> Result<Value, ConfigError> {
    check_shape(v).map_err(|m| ConfigError::Key {
        key: name.to_owned(),
        message: format!("the override's value is {m}"),
    })?;
    Ok(serde_yaml::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned())))
}

fn set_path(doc: &mut Value, path: &[String], value: Value) -> Result<(), ConfigError> {
    let mut cur = doc;
    for (i, part) in path.iter().enumerate() {
        if part.is_empty() {
            return Err(ConfigError::Override(path.join(".")));
        }
        if !cur.is_mapping() {
            if cur.is_null() {
                *cur = Value::Mapping(Default::default());
            } else {
                return Err(ConfigError::Key {
                    key: path[..i].join("."),
                    message: "is not a section, cannot override a key inside it".into(),
                });
            }
        }
        let map = cur.as_mapping_mut().expect("checked above");
        let k = Value::String(part.clone());
        if i + 1 == path.len() {
            map.insert(k, value);
            return Ok(());
        }
        cur = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{MINIMAL, none};

    #[test]
    fn env_then_cli_overrides() {
        let env = vec![
            (
                "REPLICATOR__CONCURRENCY__CLONERS".to_owned(),
                "7".to_owned(),
            ),
            (
                "REPLICATOR__TARGET__ROOT".to_owned(),
                "/elsewhere".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = Config::from_yaml(MINIMAL, env.clone(), &[]).unwrap();
        assert_eq!(c.concurrency.cloners, 7);
        assert_eq!(c.target.root, "/elsewhere");
        let c = Config::from_yaml(MINIMAL, env, &["concurrency.cloners=9".into()]).unwrap();
        assert_eq!(c.concurrency.cloners, 9);
        let err = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__RETRY__MAX_ATEMPTS".into(), "2".into())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_atempts"), "{err}");
    }

    #[test]
    fn overrides_create_sections_and_parse_values_as_yaml() {
        // A section the file does not have, a list, a string that is not YAML.
        let c = Config::from_yaml(
            MINIMAL,
            vec![(
                "REPLICATOR__BUS__RETRY_DELAYS_MS".to_owned(),
                "[10, 20]".to_owned(),
            )],
            &[
                "notifications.email.smtp.host=mail".into(),
                "notifications.email.from=a@b".into(),
                "log.level= info ".into(),
                "tables.include=[\"sales.*\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.bus.retry_delays_ms, vec![10, 20]);
        assert_eq!(c.notifications.email.unwrap().smtp.host, "mail");
        assert_eq!(c.log.level, "info");
        assert_eq!(c.tables.include, vec!["sales.*".to_owned()]);
        // An env override is applied before a flag on the same key.
        let c = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__BUS__PREFIX".to_owned(), "env".to_owned())],
            &["bus.prefix=flag".into()],
        )
        .unwrap();
        assert_eq!(c.bus.prefix, "flag");
    }

    #[test]
    fn malformed_overrides_are_refused() {
        let err = Config::from_yaml(MINIMAL, none(), &["concurrency.cloners".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid override `concurrency.cloners`: expected KEY=VALUE"
        );
        let err = Config::from_yaml(MINIMAL, none(), &["concurrency..cloners=1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid override"), "{err}");
        // A key inside a value that is not a section.
        let err = Config::from_yaml(MINIMAL, none(), &["source.root.x=1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`source.root`: is not a section"), "{err}");
        let err = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__SOURCE__ROOT__X".to_owned(), "1".to_owned())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`source.root`"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replicator.yaml");
        std::fs::write(
            &path,
            format!(
                "{MINIMAL}clone: {{ external_roots: [shared, \"s3://b/x\", /abs] }}\nstate: {{ url: \"sqlite://st/state.db\" }}\n"
            ),
        )
        .unwrap();
        let c = Config::load(&path, &[]).unwrap();
        let base = dir.path();
        assert_eq!(c.source.root, base.join("./lake/source").to_string_lossy());
        assert_eq!(c.target.root, base.join("./lake/target").to_string_lossy());
        assert_eq!(
            c.cloning.external_roots,
            vec![
                base.join("shared").to_string_lossy().into_owned(),
                "s3://b/x".to_owned(),
                "/abs".to_owned()
            ]
        );
        assert_eq!(
            c.state.url,
            format!("sqlite://{}", base.join("st/state.db").display())
        );
        assert_eq!(c.file, Some(std::fs::canonicalize(&path).unwrap()));
        // URLs, absolute paths and an in-memory database stay as they are.
        let mut c = Config::from_yaml(
            &format!("{MINIMAL}state: {{ url: \"sqlite://:memory:\" }}\n"),
            none(),
            &[],
        )
        .unwrap();
        c.source.root = "file:///data".into();
        c.resolve_paths(base);
        assert_eq!(c.source.root, "file:///data");
        assert_eq!(c.state.url, "sqlite://:memory:");
        let err = Config::load(&base.join("missing.yaml"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read config"), "{err}");
    }

    #[test]
    fn an_empty_document_is_an_empty_config() {
        // No roots: refused by validation, not by the parser.
        let err = Config::from_yaml("", none(), &[]).unwrap_err().to_string();
        assert_eq!(err, "config key `source.root`: must not be empty");
        let c = Config::from_yaml(
            "",
            none(),
            &["source.root=/s".into(), "target.root=/t".into()],
        )
        .unwrap();
        assert_eq!(
            (c.source.root.as_str(), c.target.root.as_str()),
            ("/s", "/t")
        );
    }
}
