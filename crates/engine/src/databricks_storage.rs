//! `databricks.clone_mode: storage`: a Databricks table cloned with no warehouse time for
//! the copy. Unity Catalog vends read credentials for the source table and write credentials
//! for the target path; the native deep clone copies the files between the two object
//! stores, asking for fresh credentials before the current ones expire; the target
//! warehouse only registers a table that is new (`CREATE TABLE … LOCATION`). Whatever rules
//! the path out falls back to the warehouse `DEEP CLONE`, and the result says why.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use replicator_databricks::WorkspacePair;
use replicator_databricks::client::TemporaryCredential;
use replicator_databricks::ops::storage::{READ, StorageCopy, StorageDecision};
use replicator_lake::location::StorageOptions;
use replicator_lake::location::vended::{Vended, VendedCredentials, VendedSecret, Vendor};
use replicator_lake::{CloneOptions, LakeError, TableLocation, deep_clone};
use replicator_proto::{ClonePath, CloneTask, ErrorKind};

use crate::{CloneContext, Cloned, Failure};

/// A vended credential as the lake crate takes it.
fn vended(c: &TemporaryCredential) -> Result<Vended, String> {
    let secret = if let Some(a) = &c.aws_temp_credentials {
        VendedSecret::Aws {
            access_key_id: a.access_key_id.clone(),
            secret_access_key: a.secret_access_key.clone(),
            session_token: a.session_token.clone().filter(|t| !t.is_empty()),
        }
    } else if let Some(s) = &c.azure_user_delegation_sas {
        VendedSecret::AzureSas(s.sas_token.clone())
    } else {
        return Err(format!(
            "Unity Catalog vended a {} credential, which this build cannot use",
            c.kind()
        ));
    };
    Ok(Vended {
        secret,
        expires_at: c.expiration_time.and_then(DateTime::from_timestamp_millis),
    })
}

/// Fresh read credentials for a source table.
struct TableVendor {
    pair: Arc<WorkspacePair>,
    table_id: String,
}

#[async_trait]
impl Vendor for TableVendor {
    async fn vend(&self) -> Result<Vended, String> {
        let c = self
            .pair
            .source
            .temporary_table_credentials(&self.table_id, READ)
            .await
            .map_err(|e| e.to_string())?;
        vended(&c)
    }
}

/// Fresh write credentials for a target path.
struct PathVendor {
    pair: Arc<WorkspacePair>,
    url: String,
    operation: &'static str,
}

#[async_trait]
impl Vendor for PathVendor {
    async fn vend(&self) -> Result<Vended, String> {
        let c = self
            .pair
            .target
            .temporary_path_credentials(&self.url, self.operation)
            .await
            .map_err(|e| e.to_string())?;
        vended(&c)
    }
}

/// What a storage-mode attempt came to.
pub(crate) enum StorageClone {
    Done(Box<Cloned>),
    /// Use the warehouse; the reason.
    Fallback(String),
}

/// The worker's storage options (endpoint, region) for each side.
#[derive(Clone, Default)]
pub(crate) struct SideOptions {
    pub source: StorageOptions,
    pub target: StorageOptions,
}

/// Clone the table of `task` through storage, or say why not.
pub(crate) async fn clone(
    pair: &Arc<WorkspacePair>,
    options: &SideOptions,
    t: &replicator_databricks::ops::SourceTable,
    task: &CloneTask,
    ctx: &CloneContext,
) -> Result<StorageClone, Failure> {
    let plan = match pair.storage_plan(t).await {
        Ok(StorageDecision::Copy(plan)) => plan,
        Ok(StorageDecision::Fallback(reason)) => return Ok(StorageClone::Fallback(reason)),
        Err(e) => return Err(crate::databricks::failure((Vec::new(), e))),
    };
    let StorageCopy {
        source_url,
        table_id,
        source_credential,
        target_url,
        target_operation,
        target_credential,
        target,
        register,
    } = *plan;
    let first = |c: &TemporaryCredential| {
        vended(c).map_err(|e| Failure::new(ErrorKind::Permanent, e, false))
    };
    let source_creds = VendedCredentials::new(
        Arc::new(TableVendor {
            pair: pair.clone(),
            table_id,
        }),
        first(&source_credential)?,
        &source_url,
    );
    let target_creds = VendedCredentials::new(
        Arc::new(PathVendor {
            pair: pair.clone(),
            url: target_url.clone(),
            operation: target_operation,
        }),
        first(&target_credential)?,
        &target_url,
    );
    let src =
        TableLocation::parse_vended(&source_url, options.source.clone(), source_creds.clone())
            .map_err(Failure::from)?;
    let dst =
        TableLocation::parse_vended(&target_url, options.target.clone(), target_creds.clone())
            .map_err(Failure::from)?;
    let clone_options = CloneOptions {
        timestamp: task.as_of,
        parallelism: ctx.parallelism,
        progress: ctx.progress.clone(),
        // The target table exists in the target metastore under the mapped name: it is this
        // source's replica whatever wrote it last (the warehouse path replaces it too). A
        // new path that already holds a table not cloned from this source is refused.
        replace: !register,
        ..Default::default()
    };
    let report = match deep_clone(&src, &dst, &clone_options).await {
        Ok(r) => r,
        Err(LakeError::UnsupportedFeature { feature, reason }) => {
            return Ok(StorageClone::Fallback(format!(
                "the native engine cannot copy {source_url}: table feature `{feature}` ({reason})"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let mut ids = Vec::new();
    if register {
        pair.register_external(&target, &target_url, &mut ids)
            .await
            .map_err(|e| {
                let mut f = Failure::new(
                    e.kind(),
                    format!("{target}: files copied to {target_url}, registration failed: {e}"),
                    false,
                );
                f.statement_ids = ids.clone();
                f
            })?;
    }
    let requests = 2 + source_creds.refreshes() + target_creds.refreshes();
    tracing::info!(
        table = %target,
        bytes = report.metrics.copied_files_size,
        files = report.metrics.num_copied_files,
        credential_requests = requests,
        statements = ids.len(),
        "databricks table cloned through storage"
    );
    Ok(StorageClone::Done(Box::new(Cloned {
        source_version: Some(report.source_version),
        target_version: Some(report.target_version),
        committed: report.committed,
        metrics: Some(report.metrics),
        statement_ids: ids,
        ingest: None,
        path: Some(ClonePath {
            mode: "storage".into(),
            fallback: None,
            credential_requests: requests,
        }),
    })))
}
