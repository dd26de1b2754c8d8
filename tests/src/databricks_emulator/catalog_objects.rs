//! Catalog objects beyond tables' data, per metastore: comments, owners, properties, tags,
//! grants, row filters, column masks, views and functions — served through the REST API as
//! Databricks documents it, and changed by the SQL in `catalog_sql.rs`.
//!
//! Wire formats (docs.databricks.com REST API reference):
//! - `TableInfo` (<https://docs.databricks.com/api/workspace/tables/get>): `comment`, `owner`,
//!   `columns[].comment`, `columns[].mask` (`function_name`, `using_column_names`),
//!   `row_filter` (`function_name`, `input_column_names`), `view_definition`,
//!   `view_dependencies` (`{"dependencies":[{"table":{"table_full_name":…}},
//!   {"function":{"function_full_name":…}}]}`) — the last two only from `get`, "not set in
//!   the output of the listTables API";
//! - schemas and catalogs (<https://docs.databricks.com/api/workspace/schemas/get>,
//!   <https://docs.databricks.com/api/workspace/catalogs/get>): `comment`, `owner`,
//!   `properties`;
//! - permissions (<https://docs.databricks.com/api/workspace/grants/get>):
//!   `GET /api/2.1/unity-catalog/permissions/{securable_type}/{full_name}` →
//!   `{"privilege_assignments":[{"principal":…,"privileges":[…]}]}`, direct grants only;
//! - entity tag assignments
//!   (<https://docs.databricks.com/api/workspace/entitytagassignments/list>):
//!   `GET /api/2.1/unity-catalog/entity-tag-assignments/{entity_type}/{entity_name}/tags` →
//!   `{"tag_assignments":[{"entity_type","entity_name","tag_key","tag_value"}]}`, entity
//!   types `catalogs`, `schemas`, `tables`, `columns` (`catalog.schema.table.column`);
//! - functions (<https://docs.databricks.com/api/workspace/functions/get>).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use axum::response::Response;
use serde_json::{Value, json};

use super::server::ok;
use super::state::Inner;
use super::state::{Metastore, Table, World};
use super::unity_catalog::{missing, page};

/// A securable's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub comment: Option<String>,
    pub owner: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// principal → privileges (`SELECT`, `USE_CATALOG`, …)
    pub grants: BTreeMap<String, BTreeSet<String>>,
    /// (function, input columns)
    pub row_filter: Option<(String, Vec<String>)>,
}

/// A column's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnMeta {
    pub comment: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// (function, further columns)
    pub mask: Option<(String, Vec<String>)>,
}

/// A view's (or materialized view's) text and what it reads.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewDef {
    pub definition: String,
    pub tables: Vec<String>,
    pub functions: Vec<String>,
}

/// The catalog objects of one metastore.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// (`catalog` | `schema` | `table` | `volume`, full name) → metadata. Views are `table`.
    pub meta: BTreeMap<(String, String), Meta>,
    /// (table full name, column) → metadata.
    pub columns: BTreeMap<(String, String), ColumnMeta>,
    pub views: BTreeMap<String, ViewDef>,
    /// Full names of the functions (row filters, masks, views use them).
    pub functions: BTreeSet<String>,
}

impl Objects {
    pub fn meta(&mut self, kind: &str, name: &str) -> &mut Meta {
        self.meta
            .entry((kind.to_owned(), name.to_owned()))
            .or_default()
    }

    pub fn column(&mut self, table: &str, column: &str) -> &mut ColumnMeta {
        self.columns
            .entry((table.to_owned(), column.to_owned()))
            .or_default()
    }

    pub fn grant(&mut self, kind: &str, name: &str, principal: &str, privileges: &[&str]) {
        self.meta(kind, name)
            .grants
            .entry(principal.to_owned())
            .or_default()
            .extend(privileges.iter().map(|p| p.to_string()));
    }

    pub fn revoke(&mut self, kind: &str, name: &str, principal: &str, privileges: &[&str]) {
        let m = self.meta(kind, name);
        if let Some(p) = m.grants.get_mut(principal) {
            for x in privileges {
                p.remove(*x);
            }
            if p.is_empty() {
                m.grants.remove(principal);
            }
        }
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Meta> {
        self.meta.get(&(kind.to_owned(), name.to_owned()))
    }
}

impl World {
    /// Read or change the catalog objects of a metastore (test set-up and assertions).
    pub fn edit_objects<T>(&self, metastore: &str, f: impl FnOnce(&mut Objects) -> T) -> T {
        let mut ms = self.metastores.lock().unwrap();
        f(&mut ms.get_mut(metastore).expect("metastore exists").objects)
    }

    /// Create an empty schema (and its catalog).
    pub fn add_schema(&self, metastore: &str, catalog: &str, schema: &str) {
        let mut ms = self.metastores.lock().unwrap();
        let m = ms.get_mut(metastore).expect("metastore exists");
        m.catalogs
            .entry(catalog.to_owned())
            .or_default()
            .schemas
            .entry(schema.to_owned())
            .or_default();
    }

    /// Register a view (`VIEW` or `MATERIALIZED_VIEW`) over the tables and functions it
    /// reads, without checking them (a source set up as a test wants it).
    pub fn add_view(
        &self,
        metastore: &str,
        full_name: &str,
        table_type: &str,
        definition: &str,
        tables: &[&str],
        functions: &[&str],
    ) {
        let [c, s, v] = full_name.splitn(3, '.').collect::<Vec<_>>()[..] else {
            panic!("add_view: {full_name} is not catalog.schema.view");
        };
        let view = Table {
            table_type: table_type.into(),
            location: PathBuf::new(),
            properties: BTreeMap::new(),
        };
        self.add_table(metastore, c, s, v, view);
        self.edit_objects(metastore, |o| {
            o.views.insert(
                full_name.to_owned(),
                ViewDef {
                    definition: definition.to_owned(),
                    tables: tables.iter().map(|t| t.to_string()).collect(),
                    functions: functions.iter().map(|t| t.to_string()).collect(),
                },
            );
        });
    }

    pub fn add_function(&self, metastore: &str, full_name: &str) {
        self.edit_objects(metastore, |o| o.functions.insert(full_name.to_owned()));
    }
}

fn common(m: &Metastore, kind: &str, name: &str, v: &mut Value) {
    if let Some(meta) = m.objects.get(kind, name) {
        if let Some(c) = &meta.comment {
            v["comment"] = json!(c);
        }
        if let Some(o) = &meta.owner {
            v["owner"] = json!(o);
        }
        if kind != "table" && !meta.properties.is_empty() {
            v["properties"] = json!(meta.properties);
        }
    }
}

pub(super) fn decorate_catalog(m: &Metastore, name: &str, v: &mut Value) {
    common(m, "catalog", name, v);
}

pub(super) fn decorate_schema(m: &Metastore, full_name: &str, v: &mut Value) {
    common(m, "schema", full_name, v);
}

/// Comments, owner, masks, row filter; with `detail` (a `get`), the view definition and
/// dependencies, which the list call leaves out.
pub(super) fn decorate_table(m: &Metastore, full_name: &str, v: &mut Value, detail: bool) {
    common(m, "table", full_name, v);
    if let Some((f, cols)) = m
        .objects
        .get("table", full_name)
        .and_then(|t| t.row_filter.as_ref())
    {
        v["row_filter"] = json!({"function_name": f, "input_column_names": cols});
    }
    if let Some(cols) = v["columns"].as_array_mut() {
        for c in cols {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            if let Some(cm) = m.objects.columns.get(&(full_name.to_owned(), name)) {
                if let Some(text) = &cm.comment {
                    c["comment"] = json!(text);
                }
                if let Some((f, using)) = &cm.mask {
                    c["mask"] = json!({"function_name": f, "using_column_names": using});
                }
            }
        }
    }
    if let Some(view) = m.objects.views.get(full_name) {
        if let Some(o) = v.as_object_mut() {
            o.remove("storage_location");
            o.remove("data_source_format");
        }
        if detail {
            v["view_definition"] = json!(view.definition);
            let deps: Vec<Value> = view
                .tables
                .iter()
                .map(|t| json!({"table": {"table_full_name": t}}))
                .chain(
                    view.functions
                        .iter()
                        .map(|f| json!({"function": {"function_full_name": f}})),
                )
                .collect();
            v["view_dependencies"] = json!({ "dependencies": deps });
        }
    }
}

/// Whether the securable `kind` (`catalog`, `schema`, `table`) `name` exists.
pub(super) fn exists(m: &Metastore, kind: &str, name: &str) -> bool {
    let p: Vec<&str> = name.split('.').collect();
    match (kind, p.as_slice()) {
        ("catalog", [c]) => m.catalogs.contains_key(*c),
        ("schema", [c, s]) => m
            .catalogs
            .get(*c)
            .is_some_and(|c| c.schemas.contains_key(*s)),
        ("table", [c, s, t]) => m
            .catalogs
            .get(*c)
            .and_then(|c| c.schemas.get(*s))
            .is_some_and(|s| s.contains_key(*t)),
        _ => false,
    }
}

/// `GET …/permissions/{securable_type}/{full_name}`.
pub(super) fn permissions(
    st: &Inner,
    m: &Metastore,
    ty: &str,
    full: &str,
    q: &HashMap<String, String>,
) -> Response {
    let kind = ty.to_ascii_lowercase();
    let found = if kind == "volume" {
        st.world
            .volumes
            .lock()
            .unwrap()
            .get(&st.metastore)
            .is_some_and(|v| v.volumes.contains_key(full))
    } else {
        exists(m, &kind, full)
    };
    if !found {
        let what = match kind.as_str() {
            "catalog" => "Catalog",
            "schema" => "Schema",
            "table" => "Table",
            "volume" => "Volume",
            _ => "Securable",
        };
        return missing(what, full);
    }
    let items = m
        .objects
        .get(&kind, full)
        .map(|meta| {
            meta.grants
                .iter()
                .map(|(p, privs)| json!({"principal": p, "privileges": privs}))
                .collect()
        })
        .unwrap_or_default();
    page(st, "privilege_assignments", items, q)
}

/// `GET …/entity-tag-assignments/{entity_type}/{entity_name}/tags`.
pub(super) fn tags(
    st: &Inner,
    m: &Metastore,
    entity_type: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Response {
    let tags = match entity_type {
        "catalogs" | "schemas" | "tables" => {
            let kind = entity_type.trim_end_matches('s');
            if !exists(m, kind, name) {
                return missing("Entity", name);
            }
            m.objects.get(kind, name).map(|t| t.tags.clone())
        }
        "columns" => {
            let Some((table, column)) = name.rsplit_once('.') else {
                return missing("Entity", name);
            };
            if !exists(m, "table", table) {
                return missing("Table", table);
            }
            m.objects
                .columns
                .get(&(table.to_owned(), column.to_owned()))
                .map(|c| c.tags.clone())
        }
        _ => return missing("Entity", name),
    };
    let items = tags
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| json!({"entity_type": entity_type, "entity_name": name, "tag_key": k, "tag_value": v}))
        .collect();
    page(st, "tag_assignments", items, q)
}

/// `GET …/functions/{name}`.
pub(super) fn function(m: &Metastore, name: &str) -> Response {
    let p: Vec<&str> = name.split('.').collect();
    match (m.objects.functions.contains(name), p.as_slice()) {
        (true, [c, s, f]) => ok(json!({
            "name": f, "catalog_name": c, "schema_name": s, "full_name": name,
        })),
        _ => missing("Function", name),
    }
}
