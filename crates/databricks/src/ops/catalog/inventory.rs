//! One catalog as Unity Catalog describes it: schemas, tables of every type, views with
//! their dependencies, grants per securable, tags, comments, row filters, masks, owners.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::CatalogError;
use crate::client::{ColumnMask, Grants, RowFilter, TableDetail, WorkspaceClient};

/// A catalog's own metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CatalogObject {
    pub name: String,
    pub comment: Option<String>,
    pub owner: Option<String>,
    pub grants: Grants,
}

/// A schema's metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SchemaObject {
    pub full_name: String,
    pub comment: Option<String>,
    pub owner: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub grants: Grants,
}

/// A column's comment, tags and mask.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ColumnObject {
    pub name: String,
    pub comment: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub mask: Option<ColumnMask>,
}

/// A table, view, materialized view or streaming table with its metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TableObject {
    pub full_name: String,
    /// `MANAGED`, `EXTERNAL`, `VIEW`, `MATERIALIZED_VIEW`, `STREAMING_TABLE`, …
    pub table_type: String,
    pub comment: Option<String>,
    pub owner: Option<String>,
    pub storage_location: Option<String>,
    pub view_definition: Option<String>,
    /// Tables, views and functions the view reads.
    pub dependencies: Vec<String>,
    /// The tables and views among `dependencies`.
    pub table_dependencies: Vec<String>,
    pub columns: Vec<ColumnObject>,
    pub row_filter: Option<RowFilter>,
    pub tags: BTreeMap<String, String>,
    pub grants: Grants,
}

impl TableObject {
    pub fn is_view(&self) -> bool {
        self.table_type == "VIEW"
    }
}

/// Which schemas of the catalog to read (empty: all but `information_schema`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryFilter {
    pub schemas: Vec<String>,
}

/// One catalog of one workspace.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Inventory {
    /// `None` when the catalog does not exist.
    pub catalog: Option<CatalogObject>,
    /// By `catalog.schema`.
    pub schemas: BTreeMap<String, SchemaObject>,
    /// By `catalog.schema.table`.
    pub tables: BTreeMap<String, TableObject>,
    /// What the inventory lists but catalog replication does not replicate (materialized
    /// views, other table types), one line each.
    pub findings: Vec<String>,
}

impl Inventory {
    /// Add another catalog's objects (a mapping may spread a catalog's schemas over
    /// several target catalogs).
    pub fn extend(&mut self, other: Inventory) {
        self.schemas.extend(other.schemas);
        self.tables.extend(other.tables);
        self.findings.extend(other.findings);
    }
}

/// Read `catalog` of the workspace behind `client`.
pub async fn inventory(
    client: &WorkspaceClient,
    catalog: &str,
    filter: &InventoryFilter,
) -> Result<Inventory, CatalogError> {
    let mut inv = Inventory::default();
    let Some(c) = client.catalog_detail(catalog).await? else {
        return Ok(inv);
    };
    inv.catalog = Some(CatalogObject {
        grants: client
            .permissions("catalog", catalog)
            .await?
            .unwrap_or_default(),
        name: c.name,
        comment: c.comment,
        owner: c.owner,
    });
    for s in client.list_schema_details(catalog).await? {
        if s.name == "information_schema"
            || (!filter.schemas.is_empty() && !filter.schemas.contains(&s.name))
        {
            continue;
        }
        let full = format!("{catalog}.{}", s.name);
        let grants = client
            .permissions("schema", &full)
            .await?
            .unwrap_or_default();
        inv.schemas.insert(
            full.clone(),
            SchemaObject {
                full_name: full,
                comment: s.comment,
                owner: s.owner,
                properties: s.properties,
                grants,
            },
        );
        for listed in client.list_table_details(catalog, &s.name).await? {
            // The listing leaves out view dependencies (and may leave out columns).
            let name = listed.full_name();
            let t = client.table_detail(&name).await?.unwrap_or(listed);
            if let Some(f) = finding(&t) {
                inv.findings.push(f);
            }
            inv.tables.insert(name, table_object(client, t).await?);
        }
    }
    Ok(inv)
}

fn finding(t: &TableDetail) -> Option<String> {
    match t.table_type.as_str() {
        "MANAGED" | "EXTERNAL" | "VIEW" | "STREAMING_TABLE" => None,
        "MATERIALIZED_VIEW" => Some(format!(
            "materialized view {} is reported, not replicated: it is maintained by its own pipeline, which must be deployed on the target",
            t.full_name()
        )),
        other => Some(format!(
            "{} is a {other} table, which catalog replication does not replicate",
            t.full_name()
        )),
    }
}

async fn table_object(
    client: &WorkspaceClient,
    t: TableDetail,
) -> Result<TableObject, CatalogError> {
    let full = t.full_name();
    let mut columns = Vec::with_capacity(t.columns.len());
    for c in &t.columns {
        columns.push(ColumnObject {
            name: c.name.clone(),
            comment: c.comment.clone(),
            tags: client
                .entity_tags("columns", &format!("{full}.{}", c.name))
                .await?,
            mask: c.mask.clone(),
        });
    }
    Ok(TableObject {
        dependencies: t.dependencies(),
        table_dependencies: t.table_dependencies(),
        tags: client.entity_tags("tables", &full).await?,
        grants: client
            .permissions("table", &full)
            .await?
            .unwrap_or_default(),
        full_name: full,
        table_type: t.table_type,
        comment: t.comment,
        owner: t.owner,
        storage_location: t.storage_location,
        view_definition: t.view_definition,
        columns,
        row_filter: t.row_filter,
    })
}

/// The inventory's views (`VIEW`) in an order where each comes after every view it reads;
/// views that read each other in a circle are an error naming them.
pub fn view_order(inventory: &Inventory) -> Result<Vec<String>, CatalogError> {
    let views: BTreeMap<&str, &TableObject> = inventory
        .tables
        .iter()
        .filter(|(_, t)| t.is_view())
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(views.len());
    for &start in views.keys() {
        // Depth-first, with the path kept to name a cycle.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some(&mut (v, ref mut next)) = path.last_mut() {
            if done.contains(v) {
                path.pop();
                continue;
            }
            let deps = &views[v].table_dependencies;
            let dep = deps.get(*next).map(String::as_str);
            *next += 1;
            match dep {
                None => {
                    done.insert(v);
                    order.push(v.to_owned());
                    path.pop();
                }
                Some(d) if !views.contains_key(d) || done.contains(d) => {}
                Some(d) => {
                    if let Some(i) = path.iter().position(|(p, _)| *p == d) {
                        let mut cycle: Vec<String> =
                            path[i..].iter().map(|(p, _)| (*p).to_owned()).collect();
                        cycle.push(d.to_owned());
                        return Err(CatalogError::Cycle(cycle));
                    }
                    path.push((d, 0));
                }
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, deps: &[&str]) -> (String, TableObject) {
        (
            name.to_owned(),
            TableObject {
                full_name: name.to_owned(),
                table_type: "VIEW".into(),
                table_dependencies: deps.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn views_come_after_the_views_they_read() {
        let inv = Inventory {
            tables: BTreeMap::from([
                view("c.s.a", &["c.s.b", "c.s.t"]),
                view("c.s.b", &["c.s.c"]),
                view("c.s.c", &["c.s.t"]),
                view("c.s.d", &[]),
            ]),
            ..Default::default()
        };
        let order = view_order(&inv).unwrap();
        let pos = |v: &str| order.iter().position(|o| o == v).unwrap();
        assert_eq!(order.len(), 4);
        assert!(pos("c.s.c") < pos("c.s.b") && pos("c.s.b") < pos("c.s.a"));
    }

    #[test]
    fn a_cycle_is_an_error_naming_it() {
        let inv = Inventory {
            tables: BTreeMap::from([
                view("c.s.a", &["c.s.b"]),
                view("c.s.b", &["c.s.c"]),
                view("c.s.c", &["c.s.a"]),
            ]),
            ..Default::default()
        };
        let e = view_order(&inv).unwrap_err();
        assert_eq!(
            e.to_string(),
            "views depend on each other in a cycle: c.s.a -> c.s.b -> c.s.c -> c.s.a"
        );
    }
}
