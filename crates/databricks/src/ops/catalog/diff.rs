//! Catalog reconciliation: a source inventory against a target inventory, after mapping.
//! Owners are not compared (they are replicated only on request).

use std::collections::{BTreeMap, BTreeSet};

use replicator_common::mapping::Mapping;
use serde::Serialize;

use super::grants::{map_grants, missing};
use super::inventory::{Inventory, TableObject};
use crate::client::Grants;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// On the source, not on the target.
    Missing,
    /// On the target only.
    Extra,
    /// On both, not the same after mapping.
    Different,
    /// On the source, not replicated by design (a materialized view), or not mappable.
    Reported,
}

/// One difference, naming the object (by its target name where it has one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub object: String,
    /// The source object it comes from (`None` for an object only the target has); a
    /// column's finding names its table.
    pub source: Option<String>,
    pub kind: FindingKind,
    pub detail: String,
}

struct Out {
    findings: Vec<Finding>,
    /// The source object being compared.
    source: Option<String>,
}

impl Out {
    fn push(&mut self, object: &str, kind: FindingKind, detail: impl Into<String>) {
        self.findings.push(Finding {
            object: object.to_owned(),
            source: self.source.clone(),
            kind,
            detail: detail.into(),
        });
    }

    fn grants(&mut self, mapping: &Mapping, object: &str, source: &Grants, target: &Grants) {
        let want = match map_grants(mapping, source, object) {
            Ok(w) => w,
            Err(e) => return self.push(object, FindingKind::Reported, e.to_string()),
        };
        for (p, privs) in missing(&want, target) {
            self.push(
                object,
                FindingKind::Different,
                format!("grants: `{p}` lacks {}", privs.join(", ")),
            );
        }
        for (p, privs) in missing(target, &want) {
            self.push(
                object,
                FindingKind::Different,
                format!("grants: `{p}` has {} on the target only", privs.join(", ")),
            );
        }
    }

    fn text(&mut self, object: &str, what: &str, source: Option<&str>, target: Option<&str>) {
        fn norm(s: Option<&str>) -> Option<&str> {
            s.filter(|s| !s.is_empty())
        }
        if norm(source) != norm(target) {
            self.push(
                object,
                FindingKind::Different,
                format!(
                    "{what}: {:?} on the source, {:?} on the target",
                    norm(source),
                    norm(target)
                ),
            );
        }
    }

    fn tags(
        &mut self,
        object: &str,
        source: &BTreeMap<String, String>,
        target: &BTreeMap<String, String>,
    ) {
        if source != target {
            self.push(
                object,
                FindingKind::Different,
                format!("tags: {source:?} on the source, {target:?} on the target"),
            );
        }
    }
}

/// The differences between `source` (one catalog) and `target` (its mapped catalog or
/// catalogs, see [`Inventory::extend`]): objects missing or extra, and view text after
/// mapping, comments, tags, grants, row filters and masks that differ. Materialized views
/// and other objects the source inventory reports come out as [`FindingKind::Reported`].
pub fn diff_catalog(source: &Inventory, target: &Inventory, mapping: &Mapping) -> Vec<Finding> {
    let mut out = Out {
        findings: Vec::new(),
        source: None,
    };
    if let Some(c) = &source.catalog {
        out.source = Some(c.name.clone());
        let name = mapping.map_catalog(&c.name, &format!("catalog {}", c.name));
        match (name, &target.catalog) {
            (Err(e), _) => out.push(&c.name, FindingKind::Reported, e.to_string()),
            (Ok(n), None) => out.push(&n, FindingKind::Missing, "catalog"),
            (Ok(n), Some(t)) => {
                out.text(&n, "comment", c.comment.as_deref(), t.comment.as_deref());
                out.grants(mapping, &n, &c.grants, &t.grants);
            }
        }
    }
    let mut expected = BTreeSet::new();
    for (full, s) in &source.schemas {
        out.source = Some(full.clone());
        let name = match mapping.map_schema(full, &format!("schema {full}")) {
            Ok(n) => n,
            Err(e) => {
                out.push(full, FindingKind::Reported, e.to_string());
                continue;
            }
        };
        expected.insert(name.clone());
        let Some(t) = target.schemas.get(&name) else {
            out.push(&name, FindingKind::Missing, "schema");
            continue;
        };
        out.text(&name, "comment", s.comment.as_deref(), t.comment.as_deref());
        for (k, v) in &s.properties {
            if t.properties.get(k) != Some(v) {
                out.push(
                    &name,
                    FindingKind::Different,
                    format!(
                        "property `{k}`: {v:?} on the source, {:?} on the target",
                        t.properties.get(k)
                    ),
                );
            }
        }
        out.grants(mapping, &name, &s.grants, &t.grants);
    }
    out.source = None;
    for name in target.schemas.keys().filter(|n| !expected.contains(*n)) {
        out.push(name, FindingKind::Extra, "schema");
    }
    let mut expected = BTreeSet::new();
    for (full, s) in &source.tables {
        out.source = Some(full.clone());
        let name = match mapping.map_name(full, &format!("table {full}")) {
            Ok(n) => n,
            Err(e) => {
                out.push(full, FindingKind::Reported, e.to_string());
                continue;
            }
        };
        expected.insert(name.clone());
        if s.table_type == "MATERIALIZED_VIEW" {
            out.push(
                &name,
                FindingKind::Reported,
                "materialized view: maintained by its own pipeline, not replicated",
            );
            continue;
        }
        match target.tables.get(&name) {
            None => out.push(
                &name,
                FindingKind::Missing,
                s.table_type.to_lowercase().replace('_', " "),
            ),
            Some(t) => table(&mut out, mapping, &name, s, t),
        }
    }
    out.source = None;
    for name in target.tables.keys().filter(|n| !expected.contains(*n)) {
        out.push(
            name,
            FindingKind::Extra,
            target.tables[name]
                .table_type
                .to_lowercase()
                .replace('_', " "),
        );
    }
    out.findings
}

fn table(out: &mut Out, mapping: &Mapping, name: &str, s: &TableObject, t: &TableObject) {
    if s.table_type != t.table_type {
        out.push(
            name,
            FindingKind::Different,
            format!(
                "type: {} on the source, {} on the target",
                s.table_type, t.table_type
            ),
        );
    }
    if s.is_view() {
        let text = s
            .view_definition
            .as_deref()
            .map(|d| mapping.rewrite_view_sql(name, d, &s.dependencies));
        match text {
            Some(Err(e)) => out.push(name, FindingKind::Reported, e.to_string()),
            Some(Ok(text)) if t.view_definition.as_deref() != Some(text.as_str()) => out.push(
                name,
                FindingKind::Different,
                "view text differs after mapping",
            ),
            _ => {}
        }
    }
    out.text(name, "comment", s.comment.as_deref(), t.comment.as_deref());
    out.tags(name, &s.tags, &t.tags);
    out.grants(mapping, name, &s.grants, &t.grants);
    let mapped_fn = |f: &str| {
        mapping
            .map_name(f, name)
            .unwrap_or_else(|_| format!("{f} (unmapped)"))
    };
    let filter = |f: &Option<crate::client::RowFilter>, map: bool| {
        f.as_ref().map(|f| {
            (
                if map {
                    mapped_fn(&f.function_name)
                } else {
                    f.function_name.clone()
                },
                f.input_column_names.clone(),
            )
        })
    };
    if filter(&s.row_filter, true) != filter(&t.row_filter, false) {
        out.push(
            name,
            FindingKind::Different,
            format!(
                "row filter: {:?} on the source (mapped), {:?} on the target",
                filter(&s.row_filter, true),
                filter(&t.row_filter, false)
            ),
        );
    }
    for c in &s.columns {
        let object = format!("{name}.{}", c.name);
        let Some(tc) = t.columns.iter().find(|tc| tc.name == c.name) else {
            out.push(&object, FindingKind::Missing, "column");
            continue;
        };
        out.text(
            &object,
            "comment",
            c.comment.as_deref(),
            tc.comment.as_deref(),
        );
        out.tags(&object, &c.tags, &tc.tags);
        let sm = c
            .mask
            .as_ref()
            .map(|m| (mapped_fn(&m.function_name), m.using_column_names.clone()));
        let tm = tc
            .mask
            .as_ref()
            .map(|m| (m.function_name.clone(), m.using_column_names.clone()));
        if sm != tm {
            out.push(
                &object,
                FindingKind::Different,
                format!("mask: {sm:?} on the source (mapped), {tm:?} on the target"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::catalog::inventory::SchemaObject;

    fn table(name: &str, ty: &str, def: Option<&str>, deps: &[&str]) -> (String, TableObject) {
        (
            name.to_owned(),
            TableObject {
                full_name: name.to_owned(),
                table_type: ty.to_owned(),
                view_definition: def.map(str::to_owned),
                dependencies: deps.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn missing_extra_and_different_objects_are_named_after_mapping() {
        let mapping: Mapping =
            serde_json::from_value(serde_json::json!({"catalogs": {"p": "d"}})).unwrap();
        let schema = |n: &str| {
            (
                n.to_owned(),
                SchemaObject {
                    full_name: n.to_owned(),
                    ..Default::default()
                },
            )
        };
        let mut source = Inventory {
            schemas: BTreeMap::from([schema("p.s"), schema("p.t")]),
            tables: BTreeMap::from([
                table("p.s.a", "MANAGED", None, &[]),
                table("p.s.v", "VIEW", Some("SELECT * FROM p.s.a"), &["p.s.a"]),
            ]),
            ..Default::default()
        };
        source.tables.get_mut("p.s.a").unwrap().grants =
            Grants::from([("g".to_owned(), BTreeSet::from(["SELECT".to_owned()]))]);
        let target = Inventory {
            schemas: BTreeMap::from([schema("d.s"), schema("d.x")]),
            tables: BTreeMap::from([
                table("d.s.a", "MANAGED", None, &[]),
                // Still reads the source catalog: not the mapped text.
                table("d.s.v", "VIEW", Some("SELECT * FROM p.s.a"), &["p.s.a"]),
                table("d.s.z", "MANAGED", None, &[]),
            ]),
            ..Default::default()
        };
        let diff = diff_catalog(&source, &target, &mapping);
        let sources: Vec<Option<&str>> = diff.iter().map(|f| f.source.as_deref()).collect();
        assert_eq!(
            sources,
            vec![Some("p.t"), None, Some("p.s.a"), Some("p.s.v"), None]
        );
        let got: Vec<(String, FindingKind, String)> = diff
            .into_iter()
            .map(|f| (f.object, f.kind, f.detail))
            .collect();
        let f = |o: &str, k, d: &str| (o.to_owned(), k, d.to_owned());
        assert_eq!(
            got,
            vec![
                f("d.t", FindingKind::Missing, "schema"),
                f("d.x", FindingKind::Extra, "schema"),
                f("d.s.a", FindingKind::Different, "grants: `g` lacks SELECT"),
                f(
                    "d.s.v",
                    FindingKind::Different,
                    "view text differs after mapping"
                ),
                f("d.s.z", FindingKind::Extra, "managed"),
            ]
        );
        // Identical after mapping: nothing.
        assert!(
            diff_catalog(
                &source,
                &source,
                &Mapping {
                    catalogs: BTreeMap::from([("p".to_owned(), "p".to_owned())]),
                    ..Default::default()
                }
            )
            .is_empty()
        );
    }
}
