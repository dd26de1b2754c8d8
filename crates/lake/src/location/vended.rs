//! Locations reached with short-lived credentials that someone else vends (Unity Catalog's
//! temporary table and path credentials): AWS session credentials or an Azure SAS token,
//! each with an expiry, refreshed from their [`Vendor`] before they run out — also in the
//! middle of a long copy.
//!
//! Such a location gets a store of its own (never the shared per-bucket store of
//! [`TableLocation::parse_with`]: a source and a target in one bucket carry different
//! credentials), and delta-rs reads it through that store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use object_store::azure::AzureCredential;
use url::Url;

use super::{Cloud, StorageOptions, TableLocation, cloud_kind};
use crate::LakeError;

/// A vended secret: AWS session credentials, or an Azure SAS token (query string).
#[derive(Clone)]
pub enum VendedSecret {
    Aws {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    AzureSas(String),
}

impl std::fmt::Debug for VendedSecret {
    /// Never the secret itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Aws { .. } => f.write_str("Aws(<redacted>)"),
            Self::AzureSas(_) => f.write_str("AzureSas(<redacted>)"),
        }
    }
}

/// One credential as vended: the secret and when it expires (none: it does not).
#[derive(Clone, Debug)]
pub struct Vended {
    pub secret: VendedSecret,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who hands out fresh credentials for one location (a Unity Catalog call).
#[async_trait]
pub trait Vendor: Send + Sync {
    /// A fresh credential; the error is one line naming what refused.
    async fn vend(&self) -> Result<Vended, String>;
}

/// A credential and the instant it was received.
struct Held {
    vended: Vended,
    received: DateTime<Utc>,
}

/// The credential cache of one location: refreshed when a request finds it inside its
/// refresh margin (a quarter of its lifetime, at most five minutes, before it expires).
pub struct VendedCredentials {
    vendor: Arc<dyn Vendor>,
    held: tokio::sync::Mutex<Held>,
    refreshes: AtomicU32,
    what: String,
}

impl std::fmt::Debug for VendedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendedCredentials")
            .field("what", &self.what)
            .finish()
    }
}

/// How long before its expiry a credential of `lifetime` is replaced.
fn margin(lifetime: chrono::Duration) -> chrono::Duration {
    (lifetime / 4).min(chrono::Duration::minutes(5))
}

impl VendedCredentials {
    /// `first` as vended now, refreshed from `vendor`; `what` names the location in errors.
    pub fn new(vendor: Arc<dyn Vendor>, first: Vended, what: &str) -> Arc<Self> {
        Arc::new(Self {
            vendor,
            held: tokio::sync::Mutex::new(Held {
                vended: first,
                received: Utc::now(),
            }),
            refreshes: AtomicU32::new(0),
            what: what.to_owned(),
        })
    }

    /// How many times the credential was replaced.
    pub fn refreshes(&self) -> u32 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The current credential, refreshed first when it is about to expire.
    async fn current(&self) -> object_store::Result<Vended> {
        let mut held = self.held.lock().await;
        let now = Utc::now();
        if let Some(exp) = held.vended.expires_at
            && due(held.received, exp, now)
        {
            let fresh = self
                .vendor
                .vend()
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "vended credentials",
                    source: format!("refreshing the credentials of {}: {e}", self.what).into(),
                })?;
            tracing::debug!(location = %self.what, expires_at = ?fresh.expires_at, "storage credentials refreshed");
            *held = Held {
                vended: fresh,
                received: Utc::now(),
            };
            self.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(held.vended.clone())
    }

    fn wrong(&self, want: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "vended credentials",
            source: format!("{}: the vended credential is not {want}", self.what).into(),
        }
    }
}

#[derive(Debug)]
struct AwsProvider(Arc<VendedCredentials>);

#[async_trait]
impl CredentialProvider for AwsProvider {
    type Credential = AwsCredential;
    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        match self.0.current().await?.secret {
            VendedSecret::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            } => Ok(Arc::new(AwsCredential {
                key_id: access_key_id,
                secret_key: secret_access_key,
                token: session_token,
            })),
            VendedSecret::AzureSas(_) => Err(self.0.wrong("an AWS credential")),
        }
    }
}

#[derive(Debug)]
struct AzureProvider(Arc<VendedCredentials>);

#[async_trait]
impl CredentialProvider for AzureProvider {
    type Credential = AzureCredential;
    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        match self.0.current().await?.secret {
            VendedSecret::AzureSas(sas) => {
                let pairs = url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                    .into_owned()
                    .collect();
                Ok(Arc::new(AzureCredential::SASToken(pairs)))
            }
            VendedSecret::Aws { .. } => Err(self.0.wrong("an Azure SAS token")),
        }
    }
}

/// Storage option keys that name a credential: the vended one replaces them.
fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "access_key",
        "secret",
        "session_token",
        "token",
        "sas",
        "account_key",
        "client_id",
        "tenant",
        "federated",
        "msi",
        "use_azure_cli",
        "skip_signature",
    ]
    .iter()
    .any(|c| k.contains(c))
}

/// A vended store's settings: the standard environment variables of its kind (`AWS_*`,
/// `AZURE_*`: endpoint, region, …), then the location's options, never a credential.
fn configure<B, K: std::str::FromStr<Err = object_store::Error>>(
    mut b: B,
    env_prefix: &str,
    options: &StorageOptions,
    with: impl Fn(B, K, String) -> B,
) -> Result<B, String> {
    for (k, v) in std::env::vars() {
        if k.starts_with(env_prefix)
            && !is_credential_key(&k)
            && let Ok(key) = k.to_ascii_lowercase().parse::<K>()
        {
            b = with(b, key, v);
        }
    }
    for (k, v) in options.iter().filter(|(k, _)| !is_credential_key(k)) {
        let key = k
            .to_ascii_lowercase()
            .parse::<K>()
            .map_err(|e| e.to_string())?;
        b = with(b, key, v.clone());
    }
    Ok(b)
}

impl TableLocation {
    /// `location` (an `s3://` or Azure URL) reached with `credentials`: a store of its own,
    /// configured with `options` (endpoint, region: the worker's options for that storage;
    /// any credential among them is left out) and the standard environment variables for
    /// what they do not say, never with credentials from the environment.
    pub fn parse_vended(
        location: &str,
        options: StorageOptions,
        credentials: Arc<VendedCredentials>,
    ) -> Result<Self, LakeError> {
        let invalid = |reason: String| LakeError::InvalidLocation {
            location: location.to_owned(),
            reason,
        };
        let url = Url::parse(location.trim()).map_err(|e| invalid(e.to_string()))?;
        let (url, prefix) = super::cloud_url(location, url)?;
        let store: Arc<dyn object_store::ObjectStore> = match cloud_kind(url.scheme()) {
            Some(Cloud::S3) => {
                let b = object_store::aws::AmazonS3Builder::new().with_url(url.as_str());
                let b = configure(b, "AWS_", &options, |b, k, v| b.with_config(k, v))
                    .map_err(invalid)?;
                Arc::new(
                    b.with_credentials(Arc::new(AwsProvider(credentials)))
                        .build()
                        .map_err(|e| invalid(e.to_string()))?,
                )
            }
            Some(Cloud::Azure) => {
                let b = object_store::azure::MicrosoftAzureBuilder::new().with_url(url.as_str());
                let b = configure(b, "AZURE_", &options, |b, k, v| b.with_config(k, v))
                    .map_err(invalid)?;
                Arc::new(
                    b.with_credentials(Arc::new(AzureProvider(credentials)))
                        .build()
                        .map_err(|e| invalid(e.to_string()))?,
                )
            }
            None => {
                return Err(invalid(
                    "vended credentials reach s3:// and Azure locations only".into(),
                ));
            }
        };
        let mut loc = Self::with_store(url, store, prefix);
        loc.options = options;
        loc.own_store = true;
        Ok(loc)
    }
}

/// Whether a credential expiring at `expires_at` (received at `received`) is replaced at
/// `now`.
fn due(received: DateTime<Utc>, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now + margin(expires_at - received) >= expires_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_a_quarter_of_the_lifetime_early_and_at_most_five_minutes() {
        let t0 = Utc::now();
        let s = chrono::Duration::seconds;
        // One hour: replaced five minutes before.
        assert!(!due(t0, t0 + s(3600), t0 + s(3294)));
        assert!(due(t0, t0 + s(3600), t0 + s(3300)));
        // Four seconds: replaced after three.
        assert!(!due(
            t0,
            t0 + s(4),
            t0 + chrono::Duration::milliseconds(2900)
        ));
        assert!(due(t0, t0 + s(4), t0 + s(3)));
        // Already expired.
        assert!(due(t0, t0 - s(1), t0));
    }

    #[test]
    fn secrets_are_never_printed() {
        let v = Vended {
            secret: VendedSecret::Aws {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "hunter2".into(),
                session_token: Some("tok".into()),
            },
            expires_at: None,
        };
        let shown = format!("{v:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("AKIA") && !shown.contains("tok"));
    }
}
