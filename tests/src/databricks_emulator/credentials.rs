//! Unity Catalog credential vending, per the documented wire formats:
//!
//! - `POST /api/2.0/unity-catalog/temporary-table-credentials` with `table_id` and
//!   `operation` (`READ`, `READ_WRITE`)
//!   (<https://docs.databricks.com/api/uc-credentials/v1/generate-temporary-table-credential.md>);
//! - `POST /api/2.0/unity-catalog/temporary-path-credentials` with `url` and `operation`
//!   (`PATH_READ`, `PATH_READ_WRITE`, `PATH_CREATE_TABLE`), for external storage paths only
//!   ("Managed tables are not supported by this API")
//!   (<https://docs.databricks.com/api/uc-credentials/v1/generate-temporary-path-credential.md>).
//!
//! Both need the metastore's `external_access_enabled` flag ([`World::enable_external_access`],
//! off by default, as in Unity Catalog). The answer holds `aws_temp_credentials`
//! (`access_key_id`, `secret_access_key`, `session_token`) for an `s3://` location, or
//! `azure_user_delegation_sas` (`sas_token`) for an Azure one, `expiration_time` (epoch
//! milliseconds) and `url`.
//!
//! The credentials are real in the sense that matters: AWS ones are recorded here with their
//! scope (bucket and key prefix), access (read or read-write) and expiry, and the S3 gateway
//! ([`crate::s3_gateway`]) in front of moto refuses any request they do not cover or made
//! after they expire; Azure ones are service SAS tokens for the location's container signed
//! with the storage account's key ([`World::set_azure_account`]), which azurite checks itself
//! (signature, permissions, expiry).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::server::{error, ok};
use super::state::{Inner, Table, World};
use super::volumes::covers;

/// Vending state of a world: which metastores allow external access, how long credentials
/// live, what was issued, and the Azure account that signs SAS tokens.
#[derive(Debug)]
pub(super) struct Vending {
    enabled: std::collections::BTreeSet<String>,
    lifetime: Duration,
    issued: Vec<Issued>,
    azure: Option<(String, String)>,
    /// Credentials requests answered, per metastore.
    requests: std::collections::BTreeMap<String, u32>,
}

impl Default for Vending {
    fn default() -> Self {
        Self {
            enabled: Default::default(),
            lifetime: Duration::from_secs(3600),
            issued: Vec::new(),
            azure: None,
            requests: Default::default(),
        }
    }
}

/// An AWS credential handed out.
#[derive(Clone, Debug)]
struct Issued {
    access_key_id: String,
    session_token: String,
    /// `s3://bucket/prefix` it covers.
    url: String,
    write: bool,
    expires: DateTime<Utc>,
}

/// Why the S3 gateway refuses a request: S3 error code and message.
pub type S3Refusal = (u16, &'static str, String);

impl World {
    /// Set a metastore's `external_access_enabled` flag.
    pub fn enable_external_access(&self, metastore: &str, enabled: bool) {
        let mut v = self.vending.lock().unwrap();
        if enabled {
            v.enabled.insert(metastore.to_owned());
        } else {
            v.enabled.remove(metastore);
        }
    }

    /// How long vended credentials live (default one hour).
    pub fn set_credential_lifetime(&self, lifetime: Duration) {
        self.vending.lock().unwrap().lifetime = lifetime;
    }

    /// The Azure storage account (name, base64 key) whose key signs vended SAS tokens.
    pub fn set_azure_account(&self, name: &str, key: &str) {
        self.vending.lock().unwrap().azure = Some((name.to_owned(), key.to_owned()));
    }

    /// Credentials requests a metastore answered with a credential.
    pub fn credential_requests(&self, metastore: &str) -> u32 {
        self.vending
            .lock()
            .unwrap()
            .requests
            .get(metastore)
            .copied()
            .unwrap_or(0)
    }

    /// Whether an S3 request by `access_key_id` (with `session_token`) on `bucket`/`key`
    /// (`key` a prefix for listings) is covered by a vended credential: known, unexpired, in
    /// scope, and allowed to write when `write`.
    pub fn check_s3(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        bucket: &str,
        key: &str,
        write: bool,
    ) -> Result<(), S3Refusal> {
        let v = self.vending.lock().unwrap();
        let Some(c) = v.issued.iter().find(|c| c.access_key_id == access_key_id) else {
            return Err((
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.".into(),
            ));
        };
        if session_token != Some(c.session_token.as_str()) {
            return Err((
                400,
                "InvalidToken",
                "The provided token is malformed or otherwise invalid.".into(),
            ));
        }
        if Utc::now() >= c.expires {
            return Err((
                400,
                "ExpiredToken",
                "The provided token has expired.".into(),
            ));
        }
        let object = format!("s3://{bucket}/{key}");
        if !covers(&c.url, &object) {
            return Err((
                403,
                "AccessDenied",
                format!("{object} is outside {}", c.url),
            ));
        }
        if write && !c.write {
            return Err((
                403,
                "AccessDenied",
                format!("read-only credential for {}", c.url),
            ));
        }
        Ok(())
    }
}

/// The answer with a fresh credential for `url` (a table's or a path's storage location).
fn vend(st: &Inner, url: &str, write: bool) -> Response {
    match credential(st, url, write) {
        Ok(v) => ok(v),
        Err(message) => invalid(message),
    }
}

fn credential(st: &Inner, url: &str, write: bool) -> Result<Value, String> {
    let mut v = st.world.vending.lock().unwrap();
    let expires = Utc::now() + chrono::Duration::from_std(v.lifetime).unwrap();
    let mut answer = json!({
        "expiration_time": expires.timestamp_millis(),
        "url": url,
    });
    let parsed = url::Url::parse(url).map_err(|_| format!("{url} is not a cloud storage URL"))?;
    match parsed.scheme() {
        "s3" | "s3a" => {
            let issued = Issued {
                access_key_id: format!(
                    "ASIA{}",
                    &Uuid::new_v4().simple().to_string()[..16].to_uppercase()
                ),
                session_token: format!("IQoJb3JpZ2luX2Vj{}", Uuid::new_v4().simple()),
                url: format!("s3://{}{}", parsed.host_str().unwrap_or(""), parsed.path()),
                write,
                expires,
            };
            answer["aws_temp_credentials"] = json!({
                "access_key_id": issued.access_key_id,
                "secret_access_key": Uuid::new_v4().simple().to_string(),
                "session_token": issued.session_token,
                "access_point": "",
            });
            v.issued.push(issued);
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let (account, key) = v.azure.clone().ok_or_else(|| {
                "no Azure storage account is configured for this metastore".to_owned()
            })?;
            // `abfss://container@account.dfs…/path` or `az://container/path`.
            let container = parsed.username().to_owned();
            let container = if container.is_empty() {
                parsed.host_str().unwrap_or("").to_owned()
            } else {
                container
            };
            let permissions = if write { "racwdl" } else { "rl" };
            answer["azure_user_delegation_sas"] = json!({
                "sas_token": service_sas(&account, &key, &container, permissions, expires),
            });
        }
        other => {
            return Err(format!(
                "{url}: `{other}://` is not a cloud storage location credentials can be vended for"
            ));
        }
    }
    *v.requests.entry(st.metastore.clone()).or_default() += 1;
    Ok(answer)
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
}

/// A service SAS (version 2018-11-09) for a whole blob container, signed with the account key
/// (<https://learn.microsoft.com/rest/api/storageservices/create-service-sas>): the
/// string-to-sign is the permissions, start, expiry, canonicalized resource
/// (`/blob/<account>/<container>`), identifier, IP, protocol, version, resource (`c`),
/// snapshot time and the five response header overrides, joined by newlines.
pub fn service_sas(
    account: &str,
    key: &str,
    container: &str,
    permissions: &str,
    expires: DateTime<Utc>,
) -> String {
    let version = "2018-11-09";
    let expiry = expires.to_rfc3339_opts(SecondsFormat::Secs, true);
    let resource = format!("/blob/{account}/{container}");
    let to_sign = [
        permissions,
        "",
        &expiry,
        &resource,
        "",
        "",
        "",
        version,
        "c",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("the account key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", version)
        .append_pair("se", &expiry)
        .append_pair("sr", "c")
        .append_pair("sp", permissions)
        .append_pair("sig", &sig)
        .finish()
}

/// A deterministic UUID for a table of a metastore (Unity Catalog's `table_id`).
pub(super) fn table_id(metastore: &str, catalog: &str, schema: &str, name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut halves = [0u64; 2];
    for (i, h) in halves.iter_mut().enumerate() {
        let mut s = std::collections::hash_map::DefaultHasher::new();
        (i, metastore, catalog, schema, name).hash(&mut s);
        *h = s.finish();
    }
    Uuid::from_u64_pair(halves[0], halves[1]).to_string()
}

/// A table's storage location as Unity Catalog reports it: a cloud URL as is, a local
/// directory as a `file://` URL.
pub(super) fn storage_url(t: &Table) -> String {
    let s = t.location.to_string_lossy();
    if s.contains("://") {
        s.into_owned()
    } else {
        format!("file://{s}")
    }
}

fn refused_access(st: &Inner) -> Option<Response> {
    let v = st.world.vending.lock().unwrap();
    (!v.enabled.contains(&st.metastore)).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "External access is not enabled for this metastore (external_access_enabled is false)",
        )
    })
}

/// `POST …/temporary-table-credentials` and `POST …/temporary-path-credentials`.
pub(super) fn handle(st: &Inner, kind: &str, body: &Value) -> Response {
    if let Some(r) = refused_access(st) {
        return r;
    }
    match kind {
        "temporary-table-credentials" => {
            let (Some(id), Some(op)) = (body["table_id"].as_str(), body["operation"].as_str())
            else {
                return invalid("table_id and operation are required");
            };
            let write = match op {
                "READ" => false,
                "READ_WRITE" => true,
                other => return invalid(format!("operation {other} is not READ or READ_WRITE")),
            };
            let found = {
                let ms = st.world.metastores.lock().unwrap();
                let m = &ms[&st.metastore];
                m.catalogs.iter().find_map(|(c, cat)| {
                    cat.schemas.iter().find_map(|(s, tables)| {
                        tables.iter().find_map(|(n, t)| {
                            (table_id(&st.metastore, c, s, n) == id).then(|| t.clone())
                        })
                    })
                })
            };
            let Some(t) = found else {
                return error(
                    StatusCode::NOT_FOUND,
                    "TABLE_DOES_NOT_EXIST",
                    format!("Table '{id}' does not exist."),
                );
            };
            if !matches!(t.table_type.as_str(), "MANAGED" | "EXTERNAL") {
                return invalid(format!(
                    "credentials cannot be vended for a {} ",
                    t.table_type
                ));
            }
            vend(st, &storage_url(&t), write)
        }
        "temporary-path-credentials" => {
            let (Some(url), Some(op)) = (body["url"].as_str(), body["operation"].as_str()) else {
                return invalid("url and operation are required");
            };
            let write = match op {
                "PATH_READ" => false,
                "PATH_READ_WRITE" | "PATH_CREATE_TABLE" => true,
                other => {
                    return invalid(format!(
                        "operation {other} is not PATH_READ, PATH_READ_WRITE or PATH_CREATE_TABLE"
                    ));
                }
            };
            if url.split('/').any(|s| s == ".." || s == ".") {
                return invalid(format!("{url}: a path with `.` or `..` segments"));
            }
            let in_location = st
                .world
                .with_locations(&st.metastore, |locs| locs.iter().any(|l| covers(l, url)));
            if !in_location {
                return error(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    format!("{url} is not in an external location of this metastore"),
                );
            }
            let managed = {
                let ms = st.world.metastores.lock().unwrap();
                ms[&st.metastore].catalogs.values().any(|c| {
                    c.schemas.values().flat_map(|s| s.values()).any(|t| {
                        t.table_type == "MANAGED"
                            && (covers(&storage_url(t), url) || covers(url, &storage_url(t)))
                    })
                })
            };
            if managed {
                return invalid(format!(
                    "{url} is the location of a managed table: the Generate Temporary Path Credentials API supports external storage paths only"
                ));
            }
            vend(st, url, write)
        }
        other => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint {other}"),
        ),
    }
}
