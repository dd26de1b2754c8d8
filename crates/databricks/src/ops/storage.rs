//! `clone_mode: storage`: what Unity Catalog must say before the native engine copies a
//! table's files itself — the source table's storage location and read credentials, the
//! target path and write credentials — and the registration of a new target table
//! afterwards. Anything that rules the path out (a refusal of the credentials APIs, a managed
//! target, a streaming table, a credential kind this build cannot use) is a fallback to the
//! warehouse `DEEP CLONE`, with the reason.

use replicator_common::databricks::in_object_storage;

use crate::client::{TableType, TemporaryCredential};
use crate::{DatabricksError, Ident, TableName};

use super::{SourceTable, WorkspacePair};

/// Table credentials operation for reading a source table.
pub const READ: &str = "READ";
/// Path credentials operation for a path that will become a new external table.
pub const PATH_CREATE_TABLE: &str = "PATH_CREATE_TABLE";
/// Path credentials operation for an existing external table's path.
pub const PATH_READ_WRITE: &str = "PATH_READ_WRITE";

/// A copy the native engine can do: both locations, their first credentials, and what the
/// target metastore needs afterwards.
#[derive(Debug)]
pub struct StorageCopy {
    /// The source table's storage location.
    pub source_url: String,
    /// The table's UUID, to ask for fresh source credentials.
    pub table_id: String,
    pub source_credential: TemporaryCredential,
    /// Where the target table's files go.
    pub target_url: String,
    /// The path credentials operation, to ask for fresh target credentials.
    pub target_operation: &'static str,
    pub target_credential: TemporaryCredential,
    /// The target table's name.
    pub target: TableName,
    /// The target table does not exist yet: register it after the copy.
    pub register: bool,
}

/// Whether the storage path can take a table.
#[derive(Debug)]
pub enum StorageDecision {
    Copy(Box<StorageCopy>),
    /// Use the warehouse `DEEP CLONE`; the reason, in one line.
    Fallback(String),
}

/// A refusal of a credentials API (a 4xx answer other than throttling, or no such
/// endpoint): a reason to fall back, not a failure.
fn refused(e: &DatabricksError) -> bool {
    match e {
        DatabricksError::Http { status, .. } => (400..500).contains(status) && *status != 429,
        DatabricksError::NoEndpoint { .. } | DatabricksError::Auth { .. } => true,
        _ => false,
    }
}

/// Whether this build can use a vended credential.
fn usable(c: &TemporaryCredential) -> bool {
    c.aws_temp_credentials.is_some() || c.azure_user_delegation_sas.is_some()
}

/// `root/<catalog>/<schema>/<table>`, each name one path segment (percent-encoded).
fn under(root: &str, target: &TableName) -> Result<String, DatabricksError> {
    let mut url = url::Url::parse(root).map_err(|e| {
        DatabricksError::Config(format!("databricks.storage_location {root:?}: {e}"))
    })?;
    {
        let mut segs = url.path_segments_mut().map_err(|_| {
            DatabricksError::Config(format!(
                "databricks.storage_location {root:?} cannot hold paths"
            ))
        })?;
        segs.pop_if_empty();
        for name in [&target.catalog, &target.schema, &target.table] {
            let name = name.as_str();
            if name == "." || name == ".." {
                return Err(DatabricksError::Refused(format!(
                    "{target}: a name `{name}` cannot be a storage path segment"
                )));
            }
            segs.push(name);
        }
    }
    Ok(url.to_string())
}

impl WorkspacePair {
    /// Decide whether `t` is copied through storage, and if so get both credentials.
    pub async fn storage_plan(&self, t: &SourceTable) -> Result<StorageDecision, DatabricksError> {
        use StorageDecision::Fallback;
        let name = t.name()?;
        if t.is_streaming() {
            return Ok(Fallback(format!(
                "{name} is a streaming table: it is cloned into its pipeline's backing table on the warehouse"
            )));
        }
        let target = name.in_catalog(&Ident::new(&self.mapping(t).target())?);
        let existing = self.target.get_table(&target.full_name()).await?;
        let existing_location = match &existing {
            None => None,
            Some(e) if e.kind() == TableType::External => {
                let source_info = self.with_columns(t).await?;
                self.enforce_schema(&source_info, e, self.config.enforce_schema)?;
                e.storage_location.clone()
            }
            Some(e) => {
                return Ok(Fallback(format!(
                    "target table {target} is {}: Unity Catalog vends path credentials for external tables only",
                    e.table_type
                )));
            }
        };
        let Some(source_url) = t.info.storage_location.clone() else {
            return Ok(Fallback(format!(
                "Unity Catalog gives no storage location for {name}"
            )));
        };
        let Some(table_id) = t.info.table_id.clone() else {
            return Ok(Fallback(format!(
                "Unity Catalog gives no table_id for {name}"
            )));
        };
        let mapped = match &self.external {
            Some(p) if t.info.kind() == TableType::External => {
                if p.register {
                    return Ok(Fallback(format!(
                        "{name} is registered over its geo-replicated storage (catalog.external_tables: register)"
                    )));
                }
                Some(
                    p.mapping
                        .map_location(&source_url, &name.to_string())
                        .map_err(|e| DatabricksError::Refused(e.to_string()))?,
                )
            }
            _ => None,
        };
        let target_url = match (existing_location, mapped, &self.config.storage_location) {
            (Some(at), _, _) | (None, Some(at), _) => at,
            (None, None, Some(root)) => under(root, &target)?,
            (None, None, None) => {
                return Ok(Fallback(format!(
                    "{target} is new in the target and `databricks.storage_location` is not set"
                )));
            }
        };
        for (side, url) in [("source", &source_url), ("target", &target_url)] {
            if !in_object_storage(url) {
                return Ok(Fallback(format!(
                    "the {side} of {name} is at {url}, not in S3 or Azure storage"
                )));
            }
        }
        let source_credential = match self
            .source
            .temporary_table_credentials(&table_id, READ)
            .await
        {
            Ok(c) => c,
            Err(e) if refused(&e) => {
                return Ok(Fallback(format!(
                    "source table credentials refused for {name}: {e}"
                )));
            }
            Err(e) => return Err(e),
        };
        let register = existing.is_none();
        let target_operation = if register {
            PATH_CREATE_TABLE
        } else {
            PATH_READ_WRITE
        };
        let target_credential = match self
            .target
            .temporary_path_credentials(&target_url, target_operation)
            .await
        {
            Ok(c) => c,
            Err(e) if refused(&e) => {
                return Ok(Fallback(format!(
                    "target path credentials refused for {target} at {target_url}: {e}"
                )));
            }
            Err(e) => return Err(e),
        };
        for (side, c) in [
            ("source", &source_credential),
            ("target", &target_credential),
        ] {
            if !usable(c) {
                return Ok(Fallback(format!(
                    "the {side} credential of {name} is {}, which this build cannot use (AWS and Azure SAS only)",
                    c.kind()
                )));
            }
        }
        Ok(StorageDecision::Copy(Box::new(StorageCopy {
            source_url,
            table_id,
            source_credential,
            target_url,
            target_operation,
            target_credential,
            target,
            register,
        })))
    }

    /// Register a copied table in the target metastore as an external table over
    /// `location`: the schema first if needed, then `CREATE TABLE IF NOT EXISTS … LOCATION`.
    pub async fn register_external(
        &self,
        target: &TableName,
        location: &str,
        ids: &mut Vec<String>,
    ) -> Result<(), DatabricksError> {
        self.ensure_schema(&self.target, &target.catalog, &target.schema, ids)
            .await?;
        let literal = super::catalog::sql::literal(location)
            .map_err(|e| DatabricksError::Refused(e.to_string()))?;
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} LOCATION {literal}",
            target.quoted()
        );
        self.run_sql(&self.target, &sql, ids).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tables_go_under_the_storage_location_one_segment_per_name() {
        // Unity Catalog names have no `.`, `/` or space; `#`, `?`, `%` and backticks are
        // encoded so that each name stays one segment.
        let t = TableName::new("dr", "sales#eu", "or`ders?%").unwrap();
        assert_eq!(
            under("s3://dr-bucket/replicas/", &t).unwrap(),
            "s3://dr-bucket/replicas/dr/sales%23eu/or%60ders%3F%25"
        );
        assert_eq!(
            under("abfss://c@acct.dfs.core.windows.net", &t).unwrap(),
            "abfss://c@acct.dfs.core.windows.net/dr/sales%23eu/or%60ders%3F%25"
        );
    }

    #[test]
    fn only_refusals_fall_back() {
        let http = |status| DatabricksError::Http {
            method: "POST".into(),
            path: "/p".into(),
            status,
            code: "X".into(),
            message: "m".into(),
            retry_after: None,
        };
        assert!(refused(&http(403)) && refused(&http(400)) && refused(&http(404)));
        assert!(!refused(&http(429)) && !refused(&http(500)) && !refused(&http(503)));
    }

    #[test]
    fn only_object_storage_is_copied_with_vended_credentials() {
        for url in [
            "s3://b/t",
            "S3A://b/t",
            "abfss://c@a.dfs.core.windows.net/t",
            "az://c/t",
        ] {
            assert!(in_object_storage(url), "{url}");
        }
        for url in ["file:///etc/passwd", "/local/t", "gs://b/t", "dbfs:/x"] {
            assert!(!in_object_storage(url), "{url}");
        }
    }
}
