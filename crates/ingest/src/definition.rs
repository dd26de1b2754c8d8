//! Source definitions: what to ingest and where to, one YAML file per source or a list.
//!
//! ```yaml
//! type: postgres                  # postgres | mysql | csv | jsonl | parquet
//! connection: env:ORDERS_DB_URL   # or file:/run/secrets/orders, { env: … }, { file: … }
//! table: public.orders            # or query: "SELECT …"; files: path + pattern
//! primary_key: [id]
//! watermark: updated_at           # optional: incremental by `updated_at > last`
//! target: sales/orders            # under the target root
//! hard_deletes: true              # delete target keys gone from the source (default false)
//! deletion_vectors: true          # a new table marks merged-away rows in deletion vectors
//! ```
//!
//! Validation names the key (`sources[2].primary_key: …`) through the config crate's
//! [`ConfigError`], and never shows a connection's value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, TimeUnit};
use replicator_common::ConfigError;
use replicator_common::config::SecretRef;
use serde::{Deserialize, Serialize};

/// The kind of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Postgres,
    Mysql,
    Csv,
    Jsonl,
    Parquet,
}

impl SourceKind {
    pub fn is_sql(self) -> bool {
        matches!(self, Self::Postgres | Self::Mysql)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }
}

/// A connection URL by reference: `env:VAR`, `file:/path`, `{ env: VAR }` or
/// `{ file: PATH }` — the config crate's [`SecretRef`]. An inline URL is refused (it may
/// carry a password), and the refusal never repeats it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionRef(pub SecretRef);

/// Written back as it is read (`env:VAR`, `file:/path`): a definition travels to the
/// fleet's workers in its request and must read the same there.
impl Serialize for ConnectionRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.reference() {
            Some(r) => s.serialize_str(&r),
            None => s.serialize_none(),
        }
    }
}

impl ConnectionRef {
    pub fn env(var: &str) -> Self {
        Self(SecretRef {
            env: Some(var.to_owned()),
            file: None,
        })
    }

    /// The URL, read from its reference now. Errors never contain the value.
    pub fn resolve(&self) -> Result<String, ConfigError> {
        self.0.resolve().map(|s| s.trim().to_owned())
    }
}

impl<'de> Deserialize<'de> for ConnectionRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ConnectionRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a reference: `env:VAR`, `file:/path`, { env: VAR } or { file: PATH }")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<ConnectionRef, E> {
                if let Some(var) = v.strip_prefix("env:") {
                    return Ok(ConnectionRef::env(var.trim()));
                }
                if let Some(path) = v.strip_prefix("file:")
                    && !path.starts_with("//")
                {
                    return Ok(ConnectionRef(SecretRef {
                        env: None,
                        file: Some(PathBuf::from(path.trim())),
                    }));
                }
                Err(E::custom(
                    "must be a reference (`env:VAR`, `file:/path`, { env: VAR } or { file: PATH }), not an inline value",
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ConnectionRef, A::Error> {
                SecretRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ConnectionRef)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Options of file sources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOptions {
    /// CSV: the first line names the columns (default true).
    #[serde(default)]
    pub header: Option<bool>,
    /// CSV: one ASCII character (default `,`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// CSV: declared column types (`int64`, `float64`, `decimal(10,2)`, `string`, `bool`,
    /// `date`, `timestamp` (UTC), `timestamp_ntz`, …); the others are inferred.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
}

/// One source: what to read, its key, and where it lands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDefinition {
    /// A name for messages and reports (default: the target).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// SQL sources: the connection URL, by reference.
    #[serde(default)]
    pub connection: Option<ConnectionRef>,
    /// SQL sources: a table (`schema.table` or `table`) …
    #[serde(default)]
    pub table: Option<String>,
    /// … or a query.
    #[serde(default)]
    pub query: Option<String>,
    /// File sources: a directory under the files root (or a location).
    #[serde(default)]
    pub path: Option<String>,
    /// File sources: a glob over paths relative to `path` (default `*.csv`, `*.jsonl`,
    /// `*.parquet`; `**/` reaches subdirectories).
    #[serde(default)]
    pub pattern: Option<String>,
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub watermark: Option<String>,
    /// The target table, relative to the target root.
    pub target: String,
    #[serde(default)]
    pub hard_deletes: bool,
    /// Create the target with deletion vectors enabled (reader 3, writer 7,
    /// `delta.enableDeletionVectors`): a merge then marks updated and deleted rows in a
    /// deletion vector instead of rewriting every file that holds one. Readers must support
    /// deletion vectors (Spark 3.4+/Delta 2.3+, Databricks, delta-rs, DuckDB). Only a new
    /// table is created so; an existing table merges by the table's own setting.
    #[serde(default)]
    pub deletion_vectors: bool,
    #[serde(default)]
    pub options: SourceOptions,
}

/// Several sources (`sources: [...]`), e.g. inline in a config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDefinitions {
    pub sources: Vec<SourceDefinition>,
}

fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let doc = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde_yaml starts its message with the path again; the key says it already.
        let message = message
            .strip_prefix(&format!("{path}: "))
            .map(str::to_owned)
            .unwrap_or(message);
        if path == "." || path.is_empty() {
            ConfigError::Invalid(message)
        } else {
            ConfigError::key(path, message)
        }
    })
}

impl SourceDefinitions {
    /// Parse and validate a list.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let defs: Self = parse_yaml(text)?;
        defs.validate()?;
        Ok(defs)
    }

    /// Every source valid, no two with one target.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut targets: BTreeMap<String, usize> = BTreeMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}]");
            s.validate().map_err(|e| e.within(&at))?;
            let t = s.target.trim_matches('/').to_owned();
            if let Some(first) = targets.insert(t, i) {
                return Err(ConfigError::key(
                    format!("{at}.target"),
                    format!("is also the target of sources[{first}]"),
                ));
            }
        }
        Ok(())
    }

    /// Every `*.yaml`/`*.yml` file of `dir`, one source per file, in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, ConfigError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        for p in paths {
            sources.push(SourceDefinition::load(&p)?);
        }
        let defs = Self { sources };
        defs.validate()?;
        Ok(defs)
    }
}

impl SourceDefinition {
    /// Parse and validate one source.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let def: Self = parse_yaml(text)?;
        def.validate()?;
        Ok(def)
    }

    /// One source from a file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Key { key, message } => {
                ConfigError::key(format!("{}: {key}", path.display()), message)
            }
            ConfigError::Invalid(m) => ConfigError::Invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The name used in messages.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.target.clone())
    }

    /// Check the definition; keys in errors are relative to it (`primary_key`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str, m: &str| Err(ConfigError::key(k, m));
        if self.kind.is_sql() {
            match &self.connection {
                None => return key("connection", "is required for a SQL source"),
                Some(c) => c.0.validate().map_err(|e| e.within("connection"))?,
            }
            match (&self.table, &self.query) {
                (Some(_), Some(_)) => return key("query", "give `table` or `query`, not both"),
                (None, None) => return key("table", "a SQL source needs `table` or `query`"),
                (Some(t), None) => {
                    if let Err(m) = check_table_name(t) {
                        return key("table", &m);
                    }
                }
                (None, Some(q)) => {
                    if q.trim().is_empty() {
                        return key("query", "is empty");
                    }
                }
            }
            for (k, set) in [
                ("path", self.path.is_some()),
                ("pattern", self.pattern.is_some()),
                ("options", self.options != SourceOptions::default()),
            ] {
                if set {
                    return key(k, "is for file sources only");
                }
            }
        } else {
            for (k, set) in [
                ("connection", self.connection.is_some()),
                ("table", self.table.is_some()),
                ("query", self.query.is_some()),
            ] {
                if set {
                    return key(k, "is for SQL sources only");
                }
            }
            match &self.path {
                None => return key("path", "a file source needs `path`"),
                Some(p) if p.split('/').any(|s| s == "..") => {
                    return key("path", "must not contain `..`");
                }
                Some(_) => {}
            }
            if let Some(p) = &self.pattern
                && let Err(e) = globset::Glob::new(p)
            {
                return key("pattern", &format!("is not a valid glob: {e}"));
            }
            if self.kind != SourceKind::Csv && self.options != SourceOptions::default() {
                return key(
                    "options",
                    "`header`, `delimiter` and `types` are for csv sources",
                );
            }
            if let Some(d) = &self.options.delimiter
                && !(d.len() == 1 && d.is_ascii())
            {
                return key("options.delimiter", "must be one ASCII character");
            }
            for (column, ty) in &self.options.types {
                if let Err(m) = declared_type(ty) {
                    return key(&format!("options.types.{column}"), &m);
                }
            }
        }
        if self.primary_key.is_empty() {
            return key("primary_key", "needs at least one column");
        }
        for (i, c) in self.primary_key.iter().enumerate() {
            if c.trim().is_empty() {
                return key(&format!("primary_key[{i}]"), "is empty");
            }
            if self.primary_key[..i].contains(c) {
                return key(&format!("primary_key[{i}]"), "is listed twice");
            }
        }
        if let Some(w) = &self.watermark
            && w.trim().is_empty()
        {
            return key("watermark", "is empty");
        }
        let t = self.target.trim_matches('/');
        if t.is_empty() {
            return key("target", "is empty");
        }
        if t.split('/').any(|s| s == ".." || s == "." || s.is_empty()) {
            return key(
                "target",
                "must be a relative path without `.`, `..` or `//`",
            );
        }
        if t.contains("://") {
            return key("target", "must be a path under the target root, not a URL");
        }
        Ok(())
    }

    /// The file pattern, or the kind's default.
    pub fn pattern_or_default(&self) -> String {
        self.pattern.clone().unwrap_or_else(|| match self.kind {
            SourceKind::Jsonl => "*.jsonl".into(),
            SourceKind::Parquet => "*.parquet".into(),
            _ => "*.csv".into(),
        })
    }
}

/// A table name of one or two dotted parts, each of letters, digits, `_` or `$`.
fn check_table_name(t: &str) -> Result<(), String> {
    let parts: Vec<&str> = t.split('.').collect();
    if parts.len() > 2
        || parts.iter().any(|p| {
            p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
    {
        return Err(
            "must be `table` or `schema.table` (letters, digits, `_`, `$`); use `query` for anything else"
                .into(),
        );
    }
    Ok(())
}

/// The Arrow type of a declared CSV column type.
pub fn declared_type(ty: &str) -> Result<DataType, String> {
    let t = ty.trim().to_ascii_lowercase();
    if let Some(args) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) {
        let mut it = args.split(',').map(|s| s.trim().parse::<u8>());
        return match (it.next(), it.next(), it.next()) {
            (Some(Ok(p)), Some(Ok(s)), None) if (1..=38).contains(&p) && s <= p => {
                Ok(DataType::Decimal128(p, s as i8))
            }
            _ => Err(format!(
                "`{ty}`: decimal needs a precision of 1 to 38 and a scale at most the precision"
            )),
        };
    }
    Ok(match t.as_str() {
        "string" | "text" | "varchar" => DataType::Utf8,
        "int8" | "tinyint" | "byte" => DataType::Int8,
        "int16" | "smallint" | "short" => DataType::Int16,
        "int32" | "int" | "integer" => DataType::Int32,
        "int64" | "bigint" | "long" => DataType::Int64,
        "float32" | "float" | "real" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "bool" | "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "timestamp_ntz" => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ => {
            return Err(format!(
                "`{ty}` is not a known type (string, int8…int64, float32, float64, bool, date, timestamp, timestamp_ntz, decimal(p,s))"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
sources:
  - type: postgres
    connection: env:PG_URL
    table: public.orders
    primary_key: [id]
    watermark: updated_at
    target: sales/orders
  - type: csv
    path: landing/orders
    pattern: '*.csv'
    primary_key: [id, line]
    target: sales/order_lines
    hard_deletes: true
    options: { header: true, delimiter: ';', types: { amount: 'decimal(10,2)' } }
";

    #[test]
    fn a_list_parses_and_validates() {
        let d = SourceDefinitions::from_yaml(GOOD).unwrap();
        assert_eq!(d.sources.len(), 2);
        assert_eq!(d.sources[0].connection, Some(ConnectionRef::env("PG_URL")));
        assert!(d.sources[1].hard_deletes);
        assert_eq!(d.sources[1].options.delimiter.as_deref(), Some(";"));
    }

    #[test]
    fn errors_name_the_key() {
        let bad = GOOD.replace("primary_key: [id, line]", "primary_key: []");
        let e = SourceDefinitions::from_yaml(&bad).unwrap_err().to_string();
        assert!(
            e.contains("`sources[1].primary_key`: needs at least one"),
            "{e}"
        );
        let bad = GOOD.replace("'decimal(10,2)'", "'decimal(50,2)'");
        let e = SourceDefinitions::from_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("sources[1].options.types.amount"), "{e}");
        let bad = GOOD.replace("target: sales/order_lines", "target: sales/orders");
        let e = SourceDefinitions::from_yaml(&bad).unwrap_err().to_string();
        assert!(
            e.contains("`sources[1].target`: is also the target of sources[0]"),
            "{e}"
        );
        let bad = GOOD.replace("table: public.orders", "table: x; drop table y");
        let e = SourceDefinitions::from_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("sources[0].table"), "{e}");
        let bad = GOOD.replace("primary_key: [id]", "primary_key: [id]\n    colour: red");
        let e = SourceDefinitions::from_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("sources[0]") && e.contains("colour"), "{e}");
    }

    #[test]
    fn an_inline_connection_is_refused_without_echoing_it() {
        let bad = GOOD.replace("env:PG_URL", "postgres://app:hunter2@db/x");
        let e = SourceDefinitions::from_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("sources[0].connection"), "{e}");
        assert!(e.contains("not an inline value"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let map = GOOD.replace("env:PG_URL", "{ file: /run/secrets/pg }");
        let d = SourceDefinitions::from_yaml(&map).unwrap();
        assert_eq!(
            d.sources[0].connection.as_ref().unwrap().0.file,
            Some(PathBuf::from("/run/secrets/pg"))
        );
    }

    #[test]
    fn one_source_per_file() {
        let one = "type: jsonl\npath: in\nprimary_key: [k]\ntarget: t\n";
        let d = SourceDefinition::from_yaml(one).unwrap();
        assert_eq!(d.pattern_or_default(), "*.jsonl");
        let e = SourceDefinition::from_yaml(
            "type: mysql\nconnection: env:X\nprimary_key: [k]\ntarget: t\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`table`: a SQL source needs"), "{e}");
    }
}
