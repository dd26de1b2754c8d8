//! Unity Catalog volumes, external locations and storage credentials over REST, as documented:
//!
//! - volumes: <https://docs.databricks.com/api/uc-volumes/v1/list-volumes> (`GET
//!   /api/2.1/unity-catalog/volumes?catalog_name=&schema_name=`, paged: a page may be empty
//!   and still carry `next_page_token`), `…/get-volume` (`GET …/volumes/{full_name}`),
//!   `…/create-volume` (`POST …/volumes`, `volume_type` `EXTERNAL` with a `storage_location`,
//!   or `MANAGED`);
//! - external locations: <https://docs.databricks.com/api/uc-external-locations/v1/external-location>
//!   (list, get, create with `name`, `url`, `credential_name`);
//! - storage credentials: <https://docs.databricks.com/api/uc-credentials/v1/get-storage-credential>;
//!   only the name and read-only flag are read — a credential's secret fields are never
//!   deserialized, so none can reach a log or a report.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{DatabricksError, Ident};

use super::WorkspaceClient;

/// A three-level volume name `catalog.schema.volume`, each part validated by [`Ident`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeName {
    pub catalog: Ident,
    pub schema: Ident,
    pub volume: Ident,
}

impl VolumeName {
    pub fn new(catalog: &str, schema: &str, volume: &str) -> Result<Self, DatabricksError> {
        Ok(Self {
            catalog: Ident::new(catalog)?,
            schema: Ident::new(schema)?,
            volume: Ident::new(volume)?,
        })
    }

    /// Parse an unquoted `catalog.schema.volume` (as Unity Catalog's `full_name`).
    pub fn parse(full_name: &str) -> Result<Self, DatabricksError> {
        match full_name.split('.').collect::<Vec<_>>().as_slice() {
            [c, s, v] => Self::new(c, s, v),
            _ => Err(DatabricksError::InvalidIdentifier {
                name: full_name.escape_debug().to_string(),
                reason: "expected catalog.schema.volume".into(),
            }),
        }
    }

    /// `catalog.schema.volume`, as the REST API names it.
    pub fn full_name(&self) -> String {
        format!("{}.{}.{}", self.catalog, self.schema, self.volume)
    }

    /// `` `catalog`.`schema`.`volume` `` for SQL.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}.{}",
            self.catalog.quoted(),
            self.schema.quoted(),
            self.volume.quoted()
        )
    }

    /// The path segments of the volume's root in the Files API: `Volumes`, catalog, schema,
    /// volume.
    pub fn root_segments(&self) -> [&str; 4] {
        [
            "Volumes",
            self.catalog.as_str(),
            self.schema.as_str(),
            self.volume.as_str(),
        ]
    }

    /// `/Volumes/catalog/schema/volume`.
    pub fn root(&self) -> String {
        format!("/{}", self.root_segments().join("/"))
    }
}

impl std::fmt::Display for VolumeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full_name())
    }
}

/// A volume as Unity Catalog describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
    /// `EXTERNAL` or `MANAGED`.
    pub volume_type: String,
    #[serde(default)]
    pub storage_location: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
}

impl VolumeInfo {
    pub fn is_external(&self) -> bool {
        self.volume_type == "EXTERNAL"
    }
}

/// An external location: a storage URL and the storage credential (by name) that reaches it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExternalLocationInfo {
    pub name: String,
    pub url: String,
    pub credential_name: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// A storage credential, by name only (its cloud secrets are not read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StorageCredentialInfo {
    pub name: String,
    #[serde(default)]
    pub read_only: bool,
}

impl WorkspaceClient {
    pub async fn list_volumes(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Vec<VolumeInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "volumes"],
            &[
                ("catalog_name", catalog.to_owned()),
                ("schema_name", schema.to_owned()),
            ],
            "volumes",
        )
        .await
    }

    /// Delete a volume (`DELETE /api/2.1/unity-catalog/volumes/{name}`,
    /// <https://docs.databricks.com/api/workspace/volumes/delete>): a managed volume's files
    /// go with it, an external volume's stay in its storage.
    pub async fn delete_volume(&self, name: &VolumeName) -> Result<(), DatabricksError> {
        let url = self.url(&["api", "2.1", "unity-catalog", "volumes", &name.full_name()]);
        self.call(Method::DELETE, url, &[], None).await.map(drop)
    }

    pub async fn get_volume(&self, full_name: &str) -> Result<Option<VolumeInfo>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "volumes", full_name], &[])
            .await
    }

    /// Create a volume through REST: external at `storage_location`, managed without one.
    pub async fn create_volume(
        &self,
        name: &VolumeName,
        storage_location: Option<&str>,
        comment: Option<&str>,
    ) -> Result<(), DatabricksError> {
        let url = self.url(&["api", "2.1", "unity-catalog", "volumes"]);
        let mut body = json!({
            "catalog_name": name.catalog.as_str(),
            "schema_name": name.schema.as_str(),
            "name": name.volume.as_str(),
            "volume_type": if storage_location.is_some() { "EXTERNAL" } else { "MANAGED" },
        });
        if let Some(l) = storage_location {
            body["storage_location"] = json!(l);
        }
        if let Some(c) = comment {
            body["comment"] = json!(c);
        }
        self.call(Method::POST, url, &[], Some(body))
            .await
            .map(drop)
    }

    pub async fn list_external_locations(
        &self,
    ) -> Result<Vec<ExternalLocationInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "external-locations"],
            &[],
            "external_locations",
        )
        .await
    }

    pub async fn get_external_location(
        &self,
        name: &str,
    ) -> Result<Option<ExternalLocationInfo>, DatabricksError> {
        self.get_optional(
            &["api", "2.1", "unity-catalog", "external-locations", name],
            &[],
        )
        .await
    }

    /// Create an external location at `url` reached through the storage credential named
    /// `credential_name` (a reference: no secret is sent).
    pub async fn create_external_location(
        &self,
        name: &str,
        url: &str,
        credential_name: &str,
        comment: Option<&str>,
    ) -> Result<(), DatabricksError> {
        let endpoint = self.url(&["api", "2.1", "unity-catalog", "external-locations"]);
        let mut body = json!({"name": name, "url": url, "credential_name": credential_name});
        if let Some(c) = comment {
            body["comment"] = json!(c);
        }
        self.call(Method::POST, endpoint, &[], Some(body))
            .await
            .map(drop)
    }

    pub async fn get_storage_credential(
        &self,
        name: &str,
    ) -> Result<Option<StorageCredentialInfo>, DatabricksError> {
        self.get_optional(
            &["api", "2.1", "unity-catalog", "storage-credentials", name],
            &[],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_validated_and_quoted() {
        let v = VolumeName::parse("c.s.we`ird").unwrap();
        assert_eq!(v.quoted(), "`c`.`s`.`we``ird`");
        assert_eq!(v.root(), "/Volumes/c/s/we`ird");
        for bad in ["c.s", "c.s.v.x", "c.s.a b", "c..v"] {
            assert!(VolumeName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_credential_is_read_by_name_only() {
        let c: StorageCredentialInfo = serde_json::from_value(json!({
            "name": "cred",
            "azure_service_principal": {"client_secret": "s3cr3t"},
        }))
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
