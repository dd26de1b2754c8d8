//! `reconciliation`: which checks the reconciler runs, per table, and how often deeply.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which validations the reconciler runs. The top-level switches apply to every table;
/// `tables` rules (first match wins) refine them per table and give primary keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconciliation {
    /// Compare row counts (from log statistics when every file has them, else by scanning).
    pub row_counts: bool,
    /// Compare schemas and partition columns.
    pub schema: bool,
    /// Row count and checksum per table partition (the whole table when unpartitioned).
    pub partition_checksums: bool,
    /// Keys kept per category (missing, extra, changed) in a key comparison's result.
    pub sample_size: usize,
    /// Memory one key comparison may use for hash tables and buffers, in MiB; larger
    /// tables spill to temporary files.
    pub memory_mb: u64,
    /// Per-table rules: `tables` globs over dotted table names, `primary_key` turns on the
    /// key comparison, and any of the switches above may be overridden.
    pub tables: Vec<TableReconciliation>,
    /// How often each replica is validated deeply (every configured check on both tables).
    /// In between, a replica whose source and target logs have not changed since a deep
    /// validation that matched gets the cheap check instead: latest versions and commit
    /// fingerprints, no snapshot read. `0` validates deeply every run.
    pub deep_every: Period,
    /// What a failed validation of a fresh clone does to its target: `report` (the default)
    /// leaves it; `rollback` restores the version it had before the clone, with a new commit
    /// (history kept), and says so in the result, the audit and the digest.
    pub on_mismatch: OnMismatch,
}

/// `reconciliation.on_mismatch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMismatch {
    /// Report the mismatch; the target stays as the clone left it.
    #[default]
    Report,
    /// Restore the target to the version it had before the clone.
    Rollback,
}

impl Default for Reconciliation {
    fn default() -> Self {
        Self {
            row_counts: true,
            schema: true,
            partition_checksums: false,
            sample_size: 10,
            memory_mb: 512,
            tables: Vec::new(),
            deep_every: Period(std::time::Duration::from_secs(24 * 3600)),
            on_mismatch: OnMismatch::Report,
        }
    }
}

/// A length of time written `90s`, `30m`, `24h` or `7d` (a whole number of seconds is
/// accepted too; `0` is none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(pub std::time::Duration);

impl Period {
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| {
            format!(
                "`{s}` is not a period: expected a number and a unit (`90s`, `30m`, `24h`, `7d`)"
            )
        })?;
        let secs = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => return Err(format!("unknown unit `{other}` in `{s}`: use s, m, h or d")),
        };
        n.checked_mul(secs)
            .map(|secs| Self(std::time::Duration::from_secs(secs)))
            .ok_or_else(|| format!("`{s}` is too long"))
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            0 => f.write_str("0"),
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Self(std::time::Duration::from_secs(n))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Reconciliation settings for the tables matching `tables`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableReconciliation {
    /// Glob patterns over dotted table names (`sales.*`, `*.orders`).
    pub tables: Vec<String>,
    /// Primary-key columns: compare row by row (missing, extra and changed keys).
    #[serde(default)]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub row_counts: Option<bool>,
    #[serde(default)]
    pub schema: Option<bool>,
    #[serde(default)]
    pub partition_checksums: Option<bool>,
}

/// The checks one table gets (see [`Reconciliation::for_table`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableChecks {
    pub row_counts: bool,
    pub schema: bool,
    pub partition_checksums: bool,
    /// Empty: no key comparison.
    pub primary_key: Vec<String>,
    pub sample_size: usize,
    pub memory_mb: u64,
}

impl Reconciliation {
    /// The checks for `table`: the first rule whose globs match, over the defaults.
    pub fn for_table(&self, table: &str) -> TableChecks {
        let rule = self.tables.iter().find(|r| {
            r.tables.iter().any(|g| {
                globset::Glob::new(g)
                    .map(|g| g.compile_matcher().is_match(table))
                    .unwrap_or(false)
            })
        });
        TableChecks {
            row_counts: rule.and_then(|r| r.row_counts).unwrap_or(self.row_counts),
            schema: rule.and_then(|r| r.schema).unwrap_or(self.schema),
            partition_checksums: rule
                .and_then(|r| r.partition_checksums)
                .unwrap_or(self.partition_checksums),
            primary_key: rule.map(|r| r.primary_key.clone()).unwrap_or_default(),
            sample_size: self.sample_size,
            memory_mb: self.memory_mb,
        }
    }
}

impl TableReconciliation {
    /// A rule names its tables by globs and its key columns by non-empty names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tables.is_empty() {
            return Err(ConfigError::key(
                "",
                "needs `tables`: glob patterns over table names",
            ));
        }
        for g in &self.tables {
            globset::Glob::new(g)
                .map_err(|e| ConfigError::key("tables", format!("bad glob `{g}`: {e}")))?;
        }
        if self.primary_key.iter().any(|c| c.trim().is_empty()) {
            return Err(ConfigError::key(
                "primary_key",
                "column names must not be empty",
            ));
        }
        Ok(())
    }
}

impl Reconciliation {
    /// The memory budget is usable, and every per-table rule is well formed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_mb < 16 {
            return Err(ConfigError::key("memory_mb", "must be at least 16"));
        }
        for (i, rule) in self.tables.iter().enumerate() {
            rule.validate()
                .map_err(|e| e.within(&format!("[{i}]")).within("tables"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};

    fn rule(tables: &[&str], primary_key: &[&str]) -> TableReconciliation {
        TableReconciliation {
            tables: tables.iter().map(|s| s.to_string()).collect(),
            primary_key: primary_key.iter().map(|s| s.to_string()).collect(),
            ..TableReconciliation::default()
        }
    }

    #[test]
    fn deep_every_is_a_period_with_a_unit() {
        let day = Period(std::time::Duration::from_secs(86_400));
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        assert_eq!(c.reconciliation.deep_every, day, "default");
        for (text, secs) in [
            ("90s", 90),
            ("30m", 1800),
            ("6h", 21_600),
            ("7d", 604_800),
            ("0", 0),
            ("45", 45),
        ] {
            let c = Config::from_yaml(
                MINIMAL,
                none(),
                &[format!("reconciliation.deep_every={text}")],
            )
            .unwrap();
            assert_eq!(c.reconciliation.deep_every.0.as_secs(), secs, "{text}");
        }
        let env = vec![(
            "REPLICATOR__RECONCILIATION__DEEP_EVERY".to_owned(),
            "12h".to_owned(),
        )];
        let c = Config::from_yaml(MINIMAL, env, &[]).unwrap();
        assert_eq!(c.reconciliation.deep_every.to_string(), "12h");
        assert_eq!(day.to_string(), "1d");
        for bad in ["1w", "h", "-1h", "1.5h"] {
            let err = Config::from_yaml(
                MINIMAL,
                none(),
                &[format!("reconciliation.deep_every={bad}")],
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("reconciliation.deep_every"), "{bad}: {err}");
        }
    }

    #[test]
    fn periods_print_in_their_largest_whole_unit() {
        for (secs, text) in [
            (0, "0"),
            (59, "59s"),
            (120, "2m"),
            (7200, "2h"),
            (90_000, "25h"),
        ] {
            let p = Period(std::time::Duration::from_secs(secs));
            assert_eq!(p.to_string(), text);
            assert_eq!(text.parse::<Period>().unwrap(), p);
        }
        assert!(Period::default().is_zero());
        let err = format!("{}d", u64::MAX / 10).parse::<Period>().unwrap_err();
        assert!(err.ends_with("is too long"), "{err}");
    }

    #[test]
    fn the_first_matching_rule_refines_the_defaults() {
        let r = Reconciliation {
            tables: vec![
                TableReconciliation {
                    partition_checksums: Some(true),
                    row_counts: Some(false),
                    ..rule(&["sales.*"], &["id"])
                },
                rule(&["sales.orders", "*.events"], &["order_id"]),
            ],
            ..Reconciliation::default()
        };
        let orders = r.for_table("sales.orders");
        assert_eq!(orders.primary_key, vec!["id".to_owned()]);
        assert!(orders.partition_checksums && !orders.row_counts && orders.schema);
        let events = r.for_table("web.events");
        assert_eq!(events.primary_key, vec!["order_id".to_owned()]);
        assert!(events.row_counts && !events.partition_checksums);
        let other = r.for_table("hr.people");
        assert!(other.primary_key.is_empty());
        assert_eq!((other.sample_size, other.memory_mb), (10, 512));
    }

    #[test]
    fn each_rule_names_its_key() {
        assert!(Reconciliation::default().validate().is_ok());
        let small = Reconciliation {
            memory_mb: 15,
            ..Reconciliation::default()
        };
        assert_eq!(
            small
                .validate()
                .unwrap_err()
                .within("reconciliation")
                .to_string(),
            "config key `reconciliation.memory_mb`: must be at least 16"
        );
        for (bad, key, message) in [
            (rule(&[], &["id"]), "tables[1]", "needs `tables`"),
            (rule(&["a.["], &[]), "tables[1].tables", "bad glob `a.[`"),
            (
                rule(&["a.*"], &["id", " "]),
                "tables[1].primary_key",
                "must not be empty",
            ),
        ] {
            let r = Reconciliation {
                tables: vec![rule(&["*"], &[]), bad],
                ..Reconciliation::default()
            };
            let err = r
                .validate()
                .unwrap_err()
                .within("reconciliation")
                .to_string();
            assert!(
                err.starts_with(&format!("config key `reconciliation.{key}`: "))
                    && err.contains(message),
                "{err}"
            );
        }
        // Through a config and its overrides.
        let err = Config::from_yaml(MINIMAL, none(), &["reconciliation.memory_mb=8".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`reconciliation.memory_mb`"), "{err}");
        let err = Config::from_yaml(
            &format!(
                "{MINIMAL}reconciliation: {{ tables: [ {{ tables: [], primary_key: [id] }} ] }}\n"
            ),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`reconciliation.tables[0]`: needs `tables`"),
            "{err}"
        );
    }
}
