//! Unity Catalog credential vending: short-lived storage credentials for a table
//! (`POST /api/2.0/unity-catalog/temporary-table-credentials`, operation `READ` or
//! `READ_WRITE`) and for a path under an external location
//! (`POST /api/2.0/unity-catalog/temporary-path-credentials`, operation `PATH_READ`,
//! `PATH_READ_WRITE` or `PATH_CREATE_TABLE`), as documented at
//! <https://docs.databricks.com/api/uc-credentials/v1/generate-temporary-table-credential.md>
//! and
//! <https://docs.databricks.com/api/uc-credentials/v1/generate-temporary-path-credential.md>:
//! the answer holds one of `aws_temp_credentials` (`access_key_id`, `secret_access_key`,
//! `session_token`), `azure_user_delegation_sas` (`sas_token`), `azure_aad`,
//! `gcp_oauth_token`, …, plus `expiration_time` (epoch milliseconds) and `url` (the storage
//! location the credential is for).

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::DatabricksError;

use super::WorkspaceClient;

/// AWS session credentials (`aws_temp_credentials`).
#[derive(Clone, Deserialize)]
pub struct AwsTempCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

/// A user delegation SAS (`azure_user_delegation_sas`).
#[derive(Clone, Deserialize)]
pub struct AzureUserDelegationSas {
    pub sas_token: String,
}

/// A temporary credential as the API returns it. Its `Debug` never shows a secret.
#[derive(Clone, Deserialize)]
pub struct TemporaryCredential {
    #[serde(default)]
    pub aws_temp_credentials: Option<AwsTempCredentials>,
    #[serde(default)]
    pub azure_user_delegation_sas: Option<AzureUserDelegationSas>,
    /// Kinds this client does not use (`azure_aad`, `gcp_oauth_token`,
    /// `r2_temp_credentials`): only their presence is kept, to name them in an error.
    #[serde(default)]
    pub azure_aad: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub gcp_oauth_token: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub r2_temp_credentials: Option<serde::de::IgnoredAny>,
    /// Epoch milliseconds.
    #[serde(default)]
    pub expiration_time: Option<i64>,
    /// The storage location the credential is for.
    #[serde(default)]
    pub url: Option<String>,
}

impl std::fmt::Debug for TemporaryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryCredential")
            .field("kind", &self.kind())
            .field("expiration_time", &self.expiration_time)
            .field("url", &self.url)
            .finish()
    }
}

impl TemporaryCredential {
    /// Which kind of credential this is, for messages.
    pub fn kind(&self) -> &'static str {
        if self.aws_temp_credentials.is_some() {
            "aws_temp_credentials"
        } else if self.azure_user_delegation_sas.is_some() {
            "azure_user_delegation_sas"
        } else if self.azure_aad.is_some() {
            "azure_aad"
        } else if self.gcp_oauth_token.is_some() {
            "gcp_oauth_token"
        } else if self.r2_temp_credentials.is_some() {
            "r2_temp_credentials"
        } else {
            "none"
        }
    }
}

impl WorkspaceClient {
    /// Credentials for the files of table `table_id` (`READ` or `READ_WRITE`).
    pub async fn temporary_table_credentials(
        &self,
        table_id: &str,
        operation: &str,
    ) -> Result<TemporaryCredential, DatabricksError> {
        let url = self.url(&["api", "2.0", "unity-catalog", "temporary-table-credentials"]);
        self.credential(url, json!({ "table_id": table_id, "operation": operation }))
            .await
    }

    /// Credentials for the storage path `path` (`PATH_READ`, `PATH_READ_WRITE`,
    /// `PATH_CREATE_TABLE`).
    pub async fn temporary_path_credentials(
        &self,
        path: &str,
        operation: &str,
    ) -> Result<TemporaryCredential, DatabricksError> {
        let url = self.url(&["api", "2.0", "unity-catalog", "temporary-path-credentials"]);
        self.credential(url, json!({ "url": path, "operation": operation }))
            .await
    }

    async fn credential(
        &self,
        url: url::Url,
        body: serde_json::Value,
    ) -> Result<TemporaryCredential, DatabricksError> {
        let path = url.path().to_owned();
        let v = self.call(Method::POST, url, &[], Some(body)).await?;
        // Never echo the body: it holds the secret.
        serde_json::from_value(v).map_err(|e| DatabricksError::Protocol {
            path,
            detail: format!(
                "not a temporary credential (field error at line {}, column {})",
                e.line(),
                e.column()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_answer_and_never_prints_secrets() {
        let c: TemporaryCredential = serde_json::from_str(
            r#"{"aws_temp_credentials":{"access_key_id":"ASIAX","secret_access_key":"s3cr3t","session_token":"tok","access_point":""},"expiration_time":1764460800000,"url":"s3://b/t"}"#,
        )
        .unwrap();
        assert_eq!(c.kind(), "aws_temp_credentials");
        assert_eq!(c.expiration_time, Some(1_764_460_800_000));
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("ASIAX") && !shown.contains("tok"));
        let c: TemporaryCredential = serde_json::from_str(
            r#"{"azure_user_delegation_sas":{"sas_token":"sv=2020&sig=x"},"expiration_time":1}"#,
        )
        .unwrap();
        assert_eq!(c.kind(), "azure_user_delegation_sas");
        let c: TemporaryCredential =
            serde_json::from_str(r#"{"gcp_oauth_token":{"oauth_token":"x"}}"#).unwrap();
        assert_eq!(c.kind(), "gcp_oauth_token");
    }
}
