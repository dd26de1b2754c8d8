//! Unity Catalog objects in full, as catalog replication reads them: catalogs, schemas and
//! tables with their comments, owners, properties, view definitions and dependencies, row
//! filters and column masks; the permissions API; entity tag assignments; functions.
//!
//! Wire formats (docs.databricks.com REST API reference):
//! - tables: <https://docs.databricks.com/api/workspace/tables/get> (`TableInfo`:
//!   `view_definition`, `view_dependencies` — not set by the list call, so views are read
//!   one by one — `row_filter`, `columns[].mask`, `comment`, `owner`);
//! - schemas and catalogs: <https://docs.databricks.com/api/workspace/schemas/get>,
//!   <https://docs.databricks.com/api/workspace/catalogs/get>;
//! - permissions: <https://docs.databricks.com/api/workspace/grants/get>
//!   (`GET /api/2.1/unity-catalog/permissions/{securable_type}/{full_name}` →
//!   `privilege_assignments`; direct grants, not inherited ones);
//! - tags: <https://docs.databricks.com/api/workspace/entitytagassignments/list>
//!   (`GET /api/2.1/unity-catalog/entity-tag-assignments/{entity_type}/{entity_name}/tags`,
//!   entity types `catalogs`, `schemas`, `tables`, `columns`, `volumes`);
//! - functions: <https://docs.databricks.com/api/workspace/functions/get>.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::DatabricksError;

use super::WorkspaceClient;

/// A catalog's owner and comment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogDetail {
    pub name: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub catalog_type: Option<String>,
}

/// A schema with its comment, owner and properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaDetail {
    pub name: String,
    pub catalog_name: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A column mask: the function and the further columns it takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMask {
    pub function_name: String,
    #[serde(default)]
    pub using_column_names: Vec<String>,
}

/// A row filter: the function and the columns it takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFilter {
    pub function_name: String,
    #[serde(default)]
    pub input_column_names: Vec<String>,
}

/// A column with its comment and mask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDetail {
    pub name: String,
    #[serde(default)]
    pub type_text: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub mask: Option<ColumnMask>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableDependency {
    pub table_full_name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDependency {
    pub function_full_name: String,
}

/// One entry of `view_dependencies.dependencies`: a table (or view) or a function.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default)]
    pub table: Option<TableDependency>,
    #[serde(default)]
    pub function: Option<FunctionDependency>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DependencyList {
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

/// A table, view or materialized view as `tables/get` describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDetail {
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub table_type: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<ColumnDetail>,
    #[serde(default)]
    pub storage_location: Option<String>,
    #[serde(default)]
    pub view_definition: Option<String>,
    #[serde(default)]
    pub view_dependencies: Option<DependencyList>,
    #[serde(default)]
    pub row_filter: Option<RowFilter>,
}

impl TableDetail {
    pub fn full_name(&self) -> String {
        format!("{}.{}.{}", self.catalog_name, self.schema_name, self.name)
    }

    /// The tables and functions the view depends on, by full name.
    pub fn dependencies(&self) -> Vec<String> {
        self.view_dependencies
            .iter()
            .flat_map(|l| &l.dependencies)
            .filter_map(|d| {
                d.table
                    .as_ref()
                    .map(|t| t.table_full_name.clone())
                    .or_else(|| d.function.as_ref().map(|f| f.function_full_name.clone()))
            })
            .collect()
    }

    /// The tables (and views) the view depends on, by full name.
    pub fn table_dependencies(&self) -> Vec<String> {
        self.view_dependencies
            .iter()
            .flat_map(|l| &l.dependencies)
            .filter_map(|d| d.table.as_ref().map(|t| t.table_full_name.clone()))
            .collect()
    }
}

/// Principal → privileges, as the permissions API lists direct grants.
pub type Grants = BTreeMap<String, BTreeSet<String>>;

#[derive(Deserialize)]
struct Assignment {
    principal: String,
    #[serde(default)]
    privileges: Vec<String>,
}

#[derive(Deserialize)]
struct TagAssignment {
    tag_key: String,
    #[serde(default)]
    tag_value: Option<String>,
}

/// `None` for an answer that says the object does not exist.
fn absent<T>(r: Result<T, DatabricksError>) -> Result<Option<T>, DatabricksError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl WorkspaceClient {
    pub async fn catalog_detail(
        &self,
        name: &str,
    ) -> Result<Option<CatalogDetail>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "catalogs", name], &[])
            .await
    }

    pub async fn list_schema_details(
        &self,
        catalog: &str,
    ) -> Result<Vec<SchemaDetail>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "schemas"],
            &[("catalog_name", catalog.to_owned())],
            "schemas",
        )
        .await
    }

    /// The schema `catalog.schema`.
    pub async fn schema_detail(
        &self,
        full_name: &str,
    ) -> Result<Option<SchemaDetail>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "schemas", full_name], &[])
            .await
    }

    /// The tables of a schema (views without their dependencies: read them one by one).
    pub async fn list_table_details(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Vec<TableDetail>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "tables"],
            &[
                ("catalog_name", catalog.to_owned()),
                ("schema_name", schema.to_owned()),
            ],
            "tables",
        )
        .await
    }

    pub async fn table_detail(
        &self,
        full_name: &str,
    ) -> Result<Option<TableDetail>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "tables", full_name], &[])
            .await
    }

    /// Direct grants on a securable (`catalog`, `schema`, `table` — views too —, `volume`,
    /// …); `None` when the securable does not exist.
    pub async fn permissions(
        &self,
        securable_type: &str,
        full_name: &str,
    ) -> Result<Option<Grants>, DatabricksError> {
        let list: Option<Vec<Assignment>> = absent(
            self.list_all(
                &[
                    "api",
                    "2.1",
                    "unity-catalog",
                    "permissions",
                    securable_type,
                    full_name,
                ],
                &[],
                "privilege_assignments",
            )
            .await,
        )?;
        Ok(list.map(|l| {
            let mut grants = Grants::new();
            for a in l {
                grants.entry(a.principal).or_default().extend(a.privileges);
            }
            grants.retain(|_, p| !p.is_empty());
            grants
        }))
    }

    /// Tags on an entity (`catalogs`, `schemas`, `tables`, `columns`, `volumes`; a column is
    /// `catalog.schema.table.column`); a tag without a value has the value `""`.
    pub async fn entity_tags(
        &self,
        entity_type: &str,
        entity_name: &str,
    ) -> Result<BTreeMap<String, String>, DatabricksError> {
        let list: Vec<TagAssignment> = self
            .list_all(
                &[
                    "api",
                    "2.1",
                    "unity-catalog",
                    "entity-tag-assignments",
                    entity_type,
                    entity_name,
                    "tags",
                ],
                &[],
                "tag_assignments",
            )
            .await?;
        Ok(list
            .into_iter()
            .map(|t| (t.tag_key, t.tag_value.unwrap_or_default()))
            .collect())
    }

    /// Whether the function `catalog.schema.function` exists.
    pub async fn function_exists(&self, full_name: &str) -> Result<bool, DatabricksError> {
        let f: Option<serde_json::Value> = self
            .get_optional(
                &["api", "2.1", "unity-catalog", "functions", full_name],
                &[],
            )
            .await?;
        Ok(f.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_view_as_the_api_describes_it() {
        let t: TableDetail = serde_json::from_value(json!({
            "name": "v", "catalog_name": "c", "schema_name": "s", "table_type": "VIEW",
            "view_definition": "SELECT 1",
            "view_dependencies": {"dependencies": [
                {"table": {"table_full_name": "c.s.t"}},
                {"function": {"function_full_name": "c.s.f"}}
            ]},
            "columns": [{"name": "a", "comment": "x", "mask": {"function_name": "c.s.m"}}],
            "row_filter": {"function_name": "c.s.f", "input_column_names": ["a"]},
        }))
        .unwrap();
        assert_eq!(t.dependencies(), vec!["c.s.t", "c.s.f"]);
        assert_eq!(t.table_dependencies(), vec!["c.s.t"]);
        assert_eq!(
            t.columns[0].mask.as_ref().unwrap().using_column_names.len(),
            0
        );
        assert_eq!(t.row_filter.unwrap().input_column_names, vec!["a"]);
    }
}
