//! How the names, storage locations and principals of a source catalog become the target's.
//!
//! A [`Mapping`] is the one place a replicated catalog's renames live: catalog renames,
//! schema renames (`cat.schema` → `cat2.schema2`, which win over the catalog rename),
//! storage-location prefix rewrites (the longest matching prefix wins) and a principal map.
//!
//! **Anything a mapping does not cover is an error naming the object, never a guess**: a
//! catalog absent from `catalogs` (list identity renames explicitly, `prod: prod`), an
//! external location under no mapped prefix, a view whose dependency its text does not name
//! fully qualified. Principals are the one exception, because most workspaces share their
//! account's groups: a principal not in `principals` passes through unchanged, unless
//! `strict_principals` is set, which makes it an error too.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Renames from a source catalog to the target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Source catalog → target catalog.
    #[serde(default)]
    pub catalogs: BTreeMap<String, String>,
    /// `catalog.schema` → `catalog2.schema2`; wins over `catalogs` for that schema.
    #[serde(default)]
    pub schemas: BTreeMap<String, String>,
    /// Storage-location prefix rewrites, `[from, to]`; the longest matching prefix wins.
    /// Both ends with `/`, so a prefix never matches half a path segment.
    #[serde(default)]
    pub locations: Vec<(String, String)>,
    /// Source principal (user, group, service principal) → target principal.
    #[serde(default)]
    pub principals: BTreeMap<String, String>,
    /// A principal not in `principals` is an error instead of passing through unchanged.
    #[serde(default)]
    pub strict_principals: bool,
}

/// A name, location or principal the mapping does not cover, or cannot map safely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("{object}: catalog `{catalog}` is not in the mapping's `catalogs`")]
    Catalog { object: String, catalog: String },
    #[error("{object}: location `{location}` is under no mapped prefix (`locations`)")]
    Location { object: String, location: String },
    #[error(
        "{object}: principal `{principal}` is not in the mapping's `principals` (strict_principals)"
    )]
    Principal { object: String, principal: String },
    #[error("{object}: {reason}")]
    Name { object: String, reason: String },
    #[error("mapping: {0}")]
    Invalid(String),
}

/// `` `a`.`b`.`c` ``: each part backtick-quoted, backticks doubled.
pub fn quote_parts(name: &str) -> String {
    name.split('.')
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

impl Mapping {
    /// Refuse a mapping that cannot work: empty names, dotted catalog names, schema keys
    /// that are not `catalog.schema`, location prefixes not ending with `/`, a prefix given
    /// twice.
    pub fn validate(&self) -> Result<(), MappingError> {
        let bad = |m: String| Err(MappingError::Invalid(m));
        for (from, to) in &self.catalogs {
            if from.is_empty() || to.is_empty() || from.contains('.') || to.contains('.') {
                return bad(format!(
                    "catalog rename `{from}` → `{to}`: names must be non-empty and undotted"
                ));
            }
        }
        for (from, to) in &self.schemas {
            let two = |s: &str| {
                s.split('.').filter(|p| !p.is_empty()).count() == 2 && s.matches('.').count() == 1
            };
            if !two(from) || !two(to) {
                return bad(format!(
                    "schema rename `{from}` → `{to}`: both must be `catalog.schema`"
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (from, to) in &self.locations {
            if !from.ends_with('/') || !to.ends_with('/') || !from.contains("://") {
                return bad(format!(
                    "location rewrite `{from}` → `{to}`: both must be URLs ending with `/`"
                ));
            }
            if !seen.insert(from) {
                return bad(format!("location prefix `{from}` is given twice"));
            }
        }
        if self
            .principals
            .iter()
            .any(|(a, b)| a.is_empty() || b.is_empty())
        {
            return bad("a principal mapping has an empty name".into());
        }
        Ok(())
    }

    /// The target name of source catalog `catalog` (`object` names what is being mapped).
    pub fn map_catalog(&self, catalog: &str, object: &str) -> Result<String, MappingError> {
        self.catalogs
            .get(catalog)
            .cloned()
            .ok_or_else(|| MappingError::Catalog {
                object: object.to_owned(),
                catalog: catalog.to_owned(),
            })
    }

    /// The target `catalog.schema` of source `catalog.schema`.
    pub fn map_schema(&self, full_name: &str, object: &str) -> Result<String, MappingError> {
        if let Some(to) = self.schemas.get(full_name) {
            return Ok(to.clone());
        }
        let Some((catalog, schema)) = full_name.split_once('.').filter(|(_, s)| !s.contains('.'))
        else {
            return Err(MappingError::Name {
                object: object.to_owned(),
                reason: format!("`{full_name}` is not `catalog.schema`"),
            });
        };
        Ok(format!("{}.{schema}", self.map_catalog(catalog, object)?))
    }

    /// The target `catalog.schema.name` of a source three-part name.
    pub fn map_name(&self, full_name: &str, object: &str) -> Result<String, MappingError> {
        let parts: Vec<&str> = full_name.split('.').collect();
        let [c, s, n] = parts[..] else {
            return Err(MappingError::Name {
                object: object.to_owned(),
                reason: format!("`{full_name}` is not `catalog.schema.name`"),
            });
        };
        Ok(format!(
            "{}.{n}",
            self.map_schema(&format!("{c}.{s}"), object)?
        ))
    }

    /// The target location of a source storage location: the longest mapped prefix
    /// rewritten; a location under no prefix is an error naming `object`.
    pub fn map_location(&self, location: &str, object: &str) -> Result<String, MappingError> {
        self.locations
            .iter()
            .filter(|(from, _)| location.starts_with(from.as_str()))
            .max_by_key(|(from, _)| from.len())
            .map(|(from, to)| format!("{to}{}", &location[from.len()..]))
            .ok_or_else(|| MappingError::Location {
                object: object.to_owned(),
                location: location.to_owned(),
            })
    }

    /// The target principal: mapped, else unchanged (an error with `strict_principals`).
    pub fn map_principal(&self, principal: &str, object: &str) -> Result<String, MappingError> {
        match self.principals.get(principal) {
            Some(p) => Ok(p.clone()),
            None if self.strict_principals => Err(MappingError::Principal {
                object: object.to_owned(),
                principal: principal.to_owned(),
            }),
            None => Ok(principal.to_owned()),
        }
    }

    /// A view's SQL text with its dependencies renamed: every fully qualified reference
    /// (`a.b.c`, parts bare or backtick-quoted, compared case-insensitively as Unity
    /// Catalog does) to one of `dependencies` (the view's `view_dependencies`, tables and
    /// functions) is replaced by the mapped name, backtick-quoted; a reference the mapping
    /// does not rename keeps its spelling. String literals and
    /// comments are left alone. A dependency the text never names fully qualified (a
    /// one- or two-part name resolved against the session's catalog) cannot be remapped
    /// safely: that is an error naming the view.
    pub fn rewrite_view_sql(
        &self,
        view: &str,
        sql: &str,
        dependencies: &[String],
    ) -> Result<String, MappingError> {
        let deps: BTreeMap<String, &String> =
            dependencies.iter().map(|d| (d.to_lowercase(), d)).collect();
        let toks = scan(sql);
        let mut out = String::with_capacity(sql.len());
        let mut copied = 0;
        let mut named = BTreeSet::new();
        let mut i = 0;
        while i < toks.len() {
            let three = match toks.get(i..i + 5) {
                Some(
                    [
                        Tok::Ident(s, _, a),
                        Tok::Dot,
                        Tok::Ident(_, _, b),
                        Tok::Dot,
                        Tok::Ident(_, e, c),
                    ],
                ) if !matches!(i.checked_sub(1).map(|p| &toks[p]), Some(Tok::Dot))
                    && !matches!(toks.get(i + 5), Some(Tok::Dot)) =>
                {
                    Some((*s, *e, format!("{a}.{b}.{c}").to_lowercase()))
                }
                _ => None,
            };
            match three.and_then(|(s, e, key)| deps.get(&key).map(|d| (s, e, *d))) {
                Some((start, end, dep)) => {
                    let mapped = self.map_name(dep, view)?;
                    // An unrenamed reference keeps its spelling, so an identity mapping
                    // leaves the text as it is.
                    if !mapped.eq_ignore_ascii_case(dep) {
                        out.push_str(&sql[copied..start]);
                        out.push_str(&quote_parts(&mapped));
                        copied = end;
                    }
                    named.insert(dep.to_lowercase());
                    i += 5;
                }
                None => i += 1,
            }
        }
        out.push_str(&sql[copied..]);
        if let Some(missing) = deps.iter().find(|(k, _)| !named.contains(*k)) {
            return Err(MappingError::Name {
                object: view.to_owned(),
                reason: format!(
                    "depends on `{}` but its text does not name it as catalog.schema.name, so it cannot be remapped safely",
                    missing.1
                ),
            });
        }
        Ok(out)
    }
}

/// A token of SQL text that matters for renaming: identifiers (byte span and unquoted
/// value) and dots; everything else (literals, comments, operators) is `Other`.
#[derive(Debug, PartialEq)]
enum Tok {
    Ident(usize, usize, String),
    Dot,
    Other,
}

fn scan(sql: &str) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'`' => {
                let start = i;
                let mut v = Vec::new();
                i += 1;
                while i < b.len() {
                    if b[i] == b'`' {
                        if b.get(i + 1) == Some(&b'`') {
                            v.push(b'`');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    v.push(b[i]);
                    i += 1;
                }
                toks.push(Tok::Ident(
                    start,
                    i,
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
            b'\'' | b'"' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                toks.push(Tok::Other);
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'.' => {
                toks.push(Tok::Dot);
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                toks.push(Tok::Ident(start, i, sql[start..i].to_owned()));
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                // One token per character; multi-byte characters are skipped whole.
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                toks.push(Tok::Other);
            }
        }
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        serde_json::from_value(serde_json::json!({
            "catalogs": {"prod": "dr", "ref": "ref"},
            "schemas": {"prod.legacy": "archive.old"},
            "locations": [
                ["abfss://data@primary.dfs.core.windows.net/", "abfss://data@secondary.dfs.core.windows.net/"],
                ["s3://a/", "s3://b/"],
                ["s3://a/special/", "s3://c/"]
            ],
            "principals": {"analysts": "dr-analysts"}
        }))
        .unwrap()
    }

    #[test]
    fn names_map_by_schema_then_catalog() {
        let m = mapping();
        m.validate().unwrap();
        assert_eq!(m.map_catalog("prod", "x").unwrap(), "dr");
        assert_eq!(m.map_schema("prod.sales", "x").unwrap(), "dr.sales");
        assert_eq!(m.map_schema("prod.legacy", "x").unwrap(), "archive.old");
        assert_eq!(m.map_name("prod.legacy.t", "x").unwrap(), "archive.old.t");
        assert_eq!(m.map_name("prod.sales.t", "x").unwrap(), "dr.sales.t");
        let e = m
            .map_name("other.sales.t", "table other.sales.t")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "table other.sales.t: catalog `other` is not in the mapping's `catalogs`"
        );
        assert!(m.map_name("prod.sales", "x").is_err());
        assert!(m.map_schema("prod", "x").is_err());
    }

    #[test]
    fn locations_take_the_longest_prefix_and_refuse_the_rest() {
        let m = mapping();
        assert_eq!(
            m.map_location("abfss://data@primary.dfs.core.windows.net/ext/t", "t")
                .unwrap(),
            "abfss://data@secondary.dfs.core.windows.net/ext/t"
        );
        assert_eq!(m.map_location("s3://a/x/y", "t").unwrap(), "s3://b/x/y");
        assert_eq!(m.map_location("s3://a/special/y", "t").unwrap(), "s3://c/y");
        let e = m.map_location("s3://ab/x", "table prod.s.ext").unwrap_err();
        assert_eq!(
            e.to_string(),
            "table prod.s.ext: location `s3://ab/x` is under no mapped prefix (`locations`)"
        );
    }

    #[test]
    fn principals_pass_through_unless_strict() {
        let mut m = mapping();
        assert_eq!(m.map_principal("analysts", "x").unwrap(), "dr-analysts");
        assert_eq!(m.map_principal("a@b.com", "x").unwrap(), "a@b.com");
        m.strict_principals = true;
        let e = m
            .map_principal("a@b.com", "grants on table prod.s.t")
            .unwrap_err();
        assert!(e.to_string().contains("`a@b.com`"), "{e}");
    }

    #[test]
    fn bad_mappings_are_refused() {
        for bad in [
            serde_json::json!({"catalogs": {"a.b": "c"}}),
            serde_json::json!({"schemas": {"a": "b.c"}}),
            serde_json::json!({"locations": [["s3://a", "s3://b/"]]}),
            serde_json::json!({"locations": [["s3://a/", "s3://b/"], ["s3://a/", "s3://c/"]]}),
        ] {
            let m: Mapping = serde_json::from_value(bad.clone()).unwrap();
            assert!(m.validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<Mapping>(serde_json::json!({"catalog": {}})).is_err());
    }

    #[test]
    fn view_text_is_rewritten_only_where_it_names_a_dependency() {
        let m = mapping();
        let deps = vec!["prod.sales.orders".to_owned(), "prod.legacy.x".to_owned()];
        let sql = "SELECT o.id, 'prod.sales.orders' AS s -- prod.sales.orders\n FROM `prod`.sales.`Orders` o JOIN PROD . legacy . x USING (id) /* prod.legacy.x */";
        let out = m.rewrite_view_sql("prod.sales.v", sql, &deps).unwrap();
        assert_eq!(
            out,
            "SELECT o.id, 'prod.sales.orders' AS s -- prod.sales.orders\n FROM `dr`.`sales`.`orders` o JOIN `archive`.`old`.`x` USING (id) /* prod.legacy.x */"
        );
        // An identity mapping leaves the text alone.
        let same: Mapping =
            serde_json::from_value(serde_json::json!({"catalogs": {"prod": "prod"}})).unwrap();
        assert_eq!(same.rewrite_view_sql("v", sql, &deps[..1]).unwrap(), sql);
        // A struct field path `t.a.b.c` is not a three-part name.
        let out = m
            .rewrite_view_sql(
                "v",
                "SELECT s.prod.sales.orders FROM prod.sales.orders s",
                &deps[..1],
            )
            .unwrap();
        assert_eq!(
            out,
            "SELECT s.prod.sales.orders FROM `dr`.`sales`.`orders` s"
        );
        // A dependency named by a two-part name cannot be remapped: refused, not guessed.
        let e = m
            .rewrite_view_sql("prod.sales.v", "SELECT * FROM sales.orders", &deps[..1])
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("prod.sales.v: depends on `prod.sales.orders`"),
            "{e}"
        );
        // A dependency in an unmapped catalog names the view.
        let e = m
            .rewrite_view_sql(
                "prod.sales.v",
                "SELECT * FROM other.s.t",
                &["other.s.t".to_owned()],
            )
            .unwrap_err();
        assert!(matches!(e, MappingError::Catalog { ref object, .. } if object == "prod.sales.v"));
        // Backticks in names are quoted, not broken out of.
        let out = m
            .rewrite_view_sql(
                "v",
                "SELECT * FROM prod.sales.`a``b`",
                &["prod.sales.a`b".to_owned()],
            )
            .unwrap();
        assert_eq!(out, "SELECT * FROM `dr`.`sales`.`a``b`");
    }
}
