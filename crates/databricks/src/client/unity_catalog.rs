//! Unity Catalog and Delta Sharing over REST (`/api/2.1/unity-catalog/…`): the objects as
//! the API describes them, and the calls that read and create them.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::DatabricksError;

use super::WorkspaceClient;

/// Unity Catalog table types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableType {
    Managed,
    External,
    StreamingTable,
    MaterializedView,
    View,
    Other(String),
}

impl TableType {
    pub fn parse(s: &str) -> Self {
        match s {
            "MANAGED" => Self::Managed,
            "EXTERNAL" => Self::External,
            "STREAMING_TABLE" => Self::StreamingTable,
            "MATERIALIZED_VIEW" => Self::MaterializedView,
            "VIEW" => Self::View,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A catalog as Unity Catalog lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogInfo {
    pub name: String,
    #[serde(default)]
    pub catalog_type: Option<String>,
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub share_name: Option<String>,
}

/// A schema as Unity Catalog lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub name: String,
    pub catalog_name: String,
}

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(default)]
    pub type_text: String,
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

/// A table as Unity Catalog describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub table_type: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<ColumnInfo>,
    #[serde(default)]
    pub pipeline_id: Option<String>,
    #[serde(default)]
    pub storage_location: Option<String>,
    /// The table's UUID (what the temporary table credentials API asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_id: Option<String>,
    /// A UniForm table's Iceberg metadata (`delta_uniform_iceberg` of the Tables API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_uniform_iceberg: Option<UniformIceberg>,
}

/// Where Unity Catalog says a UniForm table's current Iceberg metadata is
/// (`TableInfo.delta_uniform_iceberg`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniformIceberg {
    #[serde(default)]
    pub metadata_location: Option<String>,
    #[serde(default)]
    pub converted_delta_version: Option<i64>,
    #[serde(default)]
    pub converted_delta_timestamp: Option<String>,
}

impl TableInfo {
    /// Whether the table is UniForm with Iceberg reads enabled: its
    /// `delta.universalFormat.enabledFormats` property lists `iceberg`.
    pub fn uniform_iceberg(&self) -> bool {
        self.properties
            .get("delta.universalFormat.enabledFormats")
            .is_some_and(|f| {
                f.split(',')
                    .any(|x| x.trim().eq_ignore_ascii_case("iceberg"))
            })
    }

    pub fn kind(&self) -> TableType {
        TableType::parse(&self.table_type)
    }

    /// The pipeline that maintains a streaming table, from its properties
    /// (`pipelines.pipelineId`), else from `pipeline_id`.
    pub fn pipeline(&self) -> Option<&str> {
        self.properties
            .get("pipelines.pipelineId")
            .map(String::as_str)
            .or(self.pipeline_id.as_deref())
            .filter(|p| !p.is_empty())
    }
}

/// An object in a share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedObject {
    pub name: String,
    pub data_object_type: String,
    /// `ENABLED` or `DISABLED` (the default when absent) for a table: whether its history is
    /// shared, which time travel through the share needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_data_sharing_status: Option<String>,
}

impl SharedObject {
    /// A schema entry: every table of the schema, without history.
    pub fn schema(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            data_object_type: "SCHEMA".into(),
            history_data_sharing_status: None,
        }
    }

    /// A table entry (`catalog.schema.table`) shared with its history.
    pub fn table_with_history(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            data_object_type: "TABLE".into(),
            history_data_sharing_status: Some("ENABLED".into()),
        }
    }

    /// The same object as `other` (by name and type; history aside).
    pub fn same_as(&self, other: &SharedObject) -> bool {
        self.name == other.name && self.data_object_type == other.data_object_type
    }
}

/// A share and what it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareInfo {
    pub name: String,
    #[serde(default)]
    pub objects: Vec<SharedObject>,
}

/// A Delta Sharing recipient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipientInfo {
    pub name: String,
    #[serde(default)]
    pub authentication_type: Option<String>,
    #[serde(default)]
    pub data_recipient_global_metastore_id: Option<String>,
}

/// A Delta Sharing provider, as the recipient's metastore sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub name: String,
    #[serde(default)]
    pub data_provider_global_metastore_id: Option<String>,
}

impl WorkspaceClient {
    // ---- Unity Catalog --------------------------------------------------------------------

    pub async fn metastore_global_id(&self) -> Result<String, DatabricksError> {
        let v: Value = self
            .get_json(&["api", "2.1", "unity-catalog", "metastore_summary"], &[])
            .await?;
        v["global_metastore_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DatabricksError::Protocol {
                path: "/api/2.1/unity-catalog/metastore_summary".into(),
                detail: "no global_metastore_id".into(),
            })
    }

    pub async fn list_catalogs(&self) -> Result<Vec<CatalogInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "catalogs"],
            &[],
            "catalogs",
        )
        .await
    }

    pub async fn get_catalog(&self, name: &str) -> Result<Option<CatalogInfo>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "catalogs", name], &[])
            .await
    }

    pub async fn list_schemas(&self, catalog: &str) -> Result<Vec<SchemaInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "schemas"],
            &[("catalog_name", catalog.to_owned())],
            "schemas",
        )
        .await
    }

    pub async fn get_schema(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<SchemaInfo>, DatabricksError> {
        let full_name = format!("{catalog}.{schema}");
        self.get_optional(&["api", "2.1", "unity-catalog", "schemas", &full_name], &[])
            .await
    }

    pub async fn list_tables(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Vec<TableInfo>, DatabricksError> {
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

    pub async fn get_table(&self, full_name: &str) -> Result<Option<TableInfo>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "tables", full_name], &[])
            .await
    }

    // ---- Delta Sharing ----------------------------------------------------------------------

    pub async fn get_share(&self, name: &str) -> Result<Option<ShareInfo>, DatabricksError> {
        self.get_optional(
            &["api", "2.1", "unity-catalog", "shares", name],
            &[("include_shared_data", "true".into())],
        )
        .await
    }

    pub async fn create_share(&self, name: &str) -> Result<(), DatabricksError> {
        let url = self.url(&["api", "2.1", "unity-catalog", "shares"]);
        self.call(Method::POST, url, &[], Some(json!({ "name": name })))
            .await
            .map(drop)
    }

    /// Add objects (schemas, tables) to a share.
    pub async fn add_to_share(
        &self,
        share: &str,
        objects: &[SharedObject],
    ) -> Result<(), DatabricksError> {
        let updates: Vec<Value> = objects
            .iter()
            .map(|o| json!({"action": "ADD", "data_object": o}))
            .collect();
        let url = self.url(&["api", "2.1", "unity-catalog", "shares", share]);
        self.call(Method::PATCH, url, &[], Some(json!({ "updates": updates })))
            .await
            .map(drop)
    }

    pub async fn get_recipient(
        &self,
        name: &str,
    ) -> Result<Option<RecipientInfo>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "recipients", name], &[])
            .await
    }

    /// A Databricks-to-Databricks recipient for the metastore with `global_metastore_id`.
    pub async fn create_recipient(
        &self,
        name: &str,
        global_metastore_id: &str,
    ) -> Result<(), DatabricksError> {
        let url = self.url(&["api", "2.1", "unity-catalog", "recipients"]);
        let body = json!({
            "name": name,
            "authentication_type": "DATABRICKS",
            "data_recipient_global_metastore_id": global_metastore_id,
        });
        self.call(Method::POST, url, &[], Some(body))
            .await
            .map(drop)
    }

    /// Principals and their privileges on a share.
    pub async fn share_permissions(
        &self,
        share: &str,
    ) -> Result<Vec<(String, Vec<String>)>, DatabricksError> {
        #[derive(Deserialize)]
        struct Assignment {
            principal: String,
            #[serde(default)]
            privileges: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Permissions {
            #[serde(default)]
            privilege_assignments: Vec<Assignment>,
        }
        let p: Permissions = self
            .get_json(
                &[
                    "api",
                    "2.1",
                    "unity-catalog",
                    "shares",
                    share,
                    "permissions",
                ],
                &[],
            )
            .await?;
        Ok(p.privilege_assignments
            .into_iter()
            .map(|a| (a.principal, a.privileges))
            .collect())
    }

    pub async fn grant_share(&self, share: &str, recipient: &str) -> Result<(), DatabricksError> {
        let url = self.url(&[
            "api",
            "2.1",
            "unity-catalog",
            "shares",
            share,
            "permissions",
        ]);
        let body = json!({"changes": [{"principal": recipient, "add": ["SELECT"]}]});
        self.call(Method::PATCH, url, &[], Some(body))
            .await
            .map(drop)
    }

    pub async fn list_providers(&self) -> Result<Vec<ProviderInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "providers"],
            &[],
            "providers",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_types_parse_and_keep_unknown_ones() {
        assert_eq!(
            TableType::parse("STREAMING_TABLE"),
            TableType::StreamingTable
        );
        assert_eq!(TableType::parse("MANAGED"), TableType::Managed);
        assert_eq!(
            TableType::parse("FOREIGN"),
            TableType::Other("FOREIGN".into())
        );
    }

    #[test]
    fn a_table_as_the_api_describes_it() {
        let t: TableInfo = serde_json::from_value(json!({
            "name": "events",
            "catalog_name": "prod",
            "schema_name": "sales",
            "full_name": "prod.sales.events",
            "table_type": "STREAMING_TABLE",
            "data_source_format": "DELTA",
            "columns": [{"name": "id", "type_text": "bigint", "nullable": false}, {"name": "note"}],
            "pipeline_id": "p-from-field",
        }))
        .unwrap();
        assert_eq!(t.kind(), TableType::StreamingTable);
        // A column says nothing about nullability: nullable, as Unity Catalog defaults.
        assert!(!t.columns[0].nullable && t.columns[1].nullable);
        assert_eq!(t.columns[1].type_text, "");
        assert_eq!(t.pipeline(), Some("p-from-field"));
    }

    #[test]
    fn the_pipeline_property_wins_and_empty_means_none() {
        let mut t: TableInfo = serde_json::from_value(json!({
            "name": "t", "catalog_name": "c", "schema_name": "s", "table_type": "STREAMING_TABLE",
            "properties": {"pipelines.pipelineId": "p-prop"},
            "pipeline_id": "p-field",
        }))
        .unwrap();
        assert_eq!(t.pipeline(), Some("p-prop"));
        t.properties
            .insert("pipelines.pipelineId".into(), String::new());
        assert_eq!(t.pipeline(), None);
        t.properties.clear();
        t.pipeline_id = None;
        assert_eq!(t.pipeline(), None);
    }
}
