//! Unity Catalog volumes, external locations and storage credentials, per their documented
//! wire formats:
//!
//! - volumes: <https://docs.databricks.com/api/uc-volumes/v1/list-volumes>,
//!   `…/get-volume`, `…/create-volume` (`GET /api/2.1/unity-catalog/volumes?catalog_name=&
//!   schema_name=` paged with `max_results`/`page_token`, `GET …/volumes/{full_name}`,
//!   `POST …/volumes` with `volume_type` `EXTERNAL`/`MANAGED` and `storage_location`);
//! - SQL `CREATE [EXTERNAL] VOLUME [IF NOT EXISTS] v [LOCATION '…'] [COMMENT '…']`
//!   (<https://docs.databricks.com/sql/language-manual/sql-ref-syntax-ddl-create-volume.html>),
//!   reached from the warehouse through [`sql`];
//! - external locations: <https://docs.databricks.com/api/uc-external-locations/v1/external-location>
//!   (list, get, create with `name`, `url`, `credential_name`);
//! - storage credentials: `GET /api/2.1/unity-catalog/storage-credentials/{name}`
//!   (<https://docs.databricks.com/api/uc-credentials/v1/get-storage-credential>); the emulator
//!   holds names only, never a secret.
//!
//! Volumes store their files in real directories: an external volume in the local directory
//! its `file://` location names (which must lie in an external location, and overlap no other
//! volume, as Unity Catalog requires), a managed volume in a directory under the metastore's
//! root. The Files API (`files.rs`) serves them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::server::{error, ok};
use super::state::{Inner, World};
use super::unity_catalog::{missing, page};

/// A volume of an emulated metastore.
#[derive(Clone, Debug)]
pub(super) struct Volume {
    pub(super) catalog: String,
    pub(super) schema: String,
    pub(super) name: String,
    /// `EXTERNAL` or `MANAGED`.
    pub(super) volume_type: String,
    /// As Unity Catalog reports it (`file:///…`).
    pub(super) storage_location: String,
    /// The directory holding its files.
    pub(super) dir: PathBuf,
    pub(super) comment: Option<String>,
    pub(super) owner: String,
    pub(super) id: String,
}

#[derive(Clone, Debug)]
pub(super) struct ExternalLocation {
    pub(super) url: String,
    pub(super) credential_name: String,
    pub(super) comment: Option<String>,
}

/// The volumes, external locations and storage credentials of one metastore.
#[derive(Clone, Debug, Default)]
pub(super) struct VolumeStore {
    pub(super) volumes: BTreeMap<String, Volume>,
    pub(super) locations: BTreeMap<String, ExternalLocation>,
    pub(super) credentials: BTreeSet<String>,
}

/// A refusal: HTTP status, error code, message.
pub(super) type Refusal = (StatusCode, &'static str, String);

fn refuse(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Refusal {
    (status, code, msg.into())
}

/// The local directory of a `file://` URL.
fn local_dir(url: &str) -> Result<PathBuf, Refusal> {
    url::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!("storage location '{url}': the emulator stores volumes on file:// URLs"),
            )
        })
}

/// Whether `inner` is `outer` or under it, at a path boundary.
pub(super) fn covers(outer: &str, inner: &str) -> bool {
    let (o, i) = (outer.trim_end_matches('/'), inner.trim_end_matches('/'));
    i == o || i.strip_prefix(o).is_some_and(|rest| rest.starts_with('/'))
}

impl World {
    fn with_store<T>(&self, metastore: &str, f: impl FnOnce(&mut VolumeStore) -> T) -> T {
        f(self
            .volumes
            .lock()
            .unwrap()
            .entry(metastore.to_owned())
            .or_default())
    }

    /// Register a storage credential (by name; the emulator holds no secret).
    pub fn add_storage_credential(&self, metastore: &str, name: &str) {
        self.with_store(metastore, |s| s.credentials.insert(name.to_owned()));
    }

    /// Register an external location at `url` using the storage credential `credential`.
    pub fn add_external_location(&self, metastore: &str, name: &str, url: &str, credential: &str) {
        self.with_store(metastore, |s| {
            s.locations.insert(
                name.to_owned(),
                ExternalLocation {
                    url: url.to_owned(),
                    credential_name: credential.to_owned(),
                    comment: None,
                },
            )
        });
    }

    /// The URLs of a metastore's external locations.
    pub(super) fn with_locations<T>(&self, metastore: &str, f: impl FnOnce(&[String]) -> T) -> T {
        self.with_store(metastore, |s| {
            let urls: Vec<String> = s.locations.values().map(|l| l.url.clone()).collect();
            f(&urls)
        })
    }

    /// The directory holding the files of volume `catalog.schema.volume`, if it exists.
    pub fn volume_dir(&self, metastore: &str, full_name: &str) -> Option<PathBuf> {
        self.with_store(metastore, |s| {
            s.volumes.get(full_name).map(|v| v.dir.clone())
        })
    }

    /// `(volume_type, storage_location, comment)` of a volume, if it exists.
    pub fn volume(
        &self,
        metastore: &str,
        full_name: &str,
    ) -> Option<(String, String, Option<String>)> {
        self.with_store(metastore, |s| {
            s.volumes.get(full_name).map(|v| {
                (
                    v.volume_type.clone(),
                    v.storage_location.clone(),
                    v.comment.clone(),
                )
            })
        })
    }

    /// Drop a volume as `DELETE …/volumes/{name}` does (a managed one's files with it);
    /// whether it existed.
    pub fn drop_volume(&self, metastore: &str, full_name: &str) -> bool {
        let Some(v) = self.with_store(metastore, |s| s.volumes.remove(full_name)) else {
            return false;
        };
        if v.volume_type == "MANAGED" {
            let _ = std::fs::remove_dir_all(&v.dir);
        }
        true
    }

    /// Create a volume as `POST …/volumes` or `CREATE VOLUME` would (the schema must exist).
    pub fn create_volume(
        &self,
        metastore: &str,
        full_name: &str,
        storage_location: Option<&str>,
        comment: Option<&str>,
    ) -> Result<(), String> {
        let parts: Vec<&str> = full_name.split('.').collect();
        let [c, s, v] = parts[..] else {
            return Err(format!("bad volume name {full_name}"));
        };
        let ty = if storage_location.is_some() {
            "EXTERNAL"
        } else {
            "MANAGED"
        };
        create(self, metastore, c, s, v, ty, storage_location, comment)
            .map(drop)
            .map_err(|(_, _, m)| m)
    }
}

/// Create a volume; `Ok(false)` when it existed and `if_not_exists` is set.
#[allow(clippy::too_many_arguments)]
fn create(
    world: &World,
    metastore: &str,
    catalog: &str,
    schema: &str,
    name: &str,
    volume_type: &str,
    location: Option<&str>,
    comment: Option<&str>,
) -> Result<Volume, Refusal> {
    let root = {
        let ms = world.metastores.lock().unwrap();
        let m = &ms[metastore];
        let cat = m.catalogs.get(catalog).ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                "CATALOG_DOES_NOT_EXIST",
                format!("Catalog '{catalog}' does not exist."),
            )
        })?;
        if !cat.schemas.contains_key(schema) || cat.share.is_some() {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "SCHEMA_DOES_NOT_EXIST",
                format!("Schema '{catalog}.{schema}' does not exist."),
            ));
        }
        m.root.clone()
    };
    let full = format!("{catalog}.{schema}.{name}");
    world.with_store(metastore, |store| {
        if store.volumes.contains_key(&full) {
            return Err(refuse(
                StatusCode::CONFLICT,
                "RESOURCE_ALREADY_EXISTS",
                format!("Volume '{full}' already exists"),
            ));
        }
        let id = Uuid::new_v4().to_string();
        let (storage_location, dir) =
            match (volume_type, location) {
                ("EXTERNAL", Some(url)) => {
                    let dir = local_dir(url)?;
                    if !store.locations.values().any(|l| covers(&l.url, url)) {
                        return Err(refuse(
                            StatusCode::BAD_REQUEST,
                            "INVALID_PARAMETER_VALUE",
                            format!("no external location covers '{url}'"),
                        ));
                    }
                    if let Some(other) = store.volumes.values().find(|o| {
                        covers(&o.storage_location, url) || covers(url, &o.storage_location)
                    }) {
                        return Err(refuse(
                            StatusCode::BAD_REQUEST,
                            "INVALID_PARAMETER_VALUE",
                            format!(
                                "'{url}' overlaps the location of volume {}.{}.{}",
                                other.catalog, other.schema, other.name
                            ),
                        ));
                    }
                    (url.to_owned(), dir)
                }
                ("MANAGED", None) => {
                    let dir = root.join("__volumes").join(&id);
                    (format!("file://{}", dir.display()), dir)
                }
                _ => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "an EXTERNAL volume needs a storage_location, a MANAGED volume takes none",
                    ));
                }
            };
        std::fs::create_dir_all(&dir).map_err(|e| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                e.to_string(),
            )
        })?;
        let v = Volume {
            catalog: catalog.to_owned(),
            schema: schema.to_owned(),
            name: name.to_owned(),
            volume_type: volume_type.to_owned(),
            storage_location,
            dir,
            comment: comment.map(str::to_owned),
            owner: "admins".into(),
            id,
        };
        store.volumes.insert(full, v.clone());
        Ok(v)
    })
}

fn volume_json(v: &Volume, metastore: &str) -> Value {
    let mut j = json!({
        "name": v.name,
        "catalog_name": v.catalog,
        "schema_name": v.schema,
        "full_name": format!("{}.{}.{}", v.catalog, v.schema, v.name),
        "volume_type": v.volume_type,
        "storage_location": v.storage_location,
        "owner": v.owner,
        "volume_id": v.id,
        "metastore_id": metastore.rsplit(':').next(),
    });
    if let Some(c) = &v.comment {
        j["comment"] = json!(c);
    }
    j
}

fn location_json(name: &str, l: &ExternalLocation) -> Value {
    let mut j = json!({"name": name, "url": l.url, "credential_name": l.credential_name, "read_only": false});
    if let Some(c) = &l.comment {
        j["comment"] = json!(c);
    }
    j
}

fn answer(r: Result<Value, Refusal>) -> Response {
    match r {
        Ok(v) => ok(v),
        Err((status, code, msg)) => error(status, code, msg),
    }
}

/// Volumes, external locations and storage credentials over REST (`rest` follows
/// `/api/2.1/unity-catalog/`).
pub(super) fn uc(
    st: &Inner,
    method: &str,
    rest: &[&str],
    q: &HashMap<String, String>,
    body: &Value,
) -> Response {
    let me = st.metastore.clone();
    let world = &st.world;
    let store = world.with_store(&me, |s| s.clone());
    match (method, rest) {
        ("GET", ["volumes"]) => {
            let (c, s) = (
                q.get("catalog_name").cloned().unwrap_or_default(),
                q.get("schema_name").cloned().unwrap_or_default(),
            );
            let schema_exists = world.metastores.lock().unwrap()[&me]
                .catalogs
                .get(&c)
                .is_some_and(|cat| cat.schemas.contains_key(&s));
            if !schema_exists {
                return missing("Schema", &format!("{c}.{s}"));
            }
            let items = store
                .volumes
                .values()
                .filter(|v| v.catalog == c && v.schema == s)
                .map(|v| volume_json(v, &me))
                .collect();
            page(st, "volumes", items, q)
        }
        ("GET", ["volumes", full]) => match store.volumes.get(*full) {
            Some(v) => ok(volume_json(v, &me)),
            None => missing("Volume", full),
        },
        // `DELETE /api/2.1/unity-catalog/volumes/{name}`
        // (<https://docs.databricks.com/api/workspace/volumes/delete>): a managed volume's
        // files go with it; an external volume's stay in its storage location.
        ("DELETE", ["volumes", full]) => {
            if world.drop_volume(&me, full) {
                ok(json!({}))
            } else {
                missing("Volume", full)
            }
        }
        ("POST", ["volumes"]) => {
            let field = |k: &str| body[k].as_str();
            let (Some(c), Some(s), Some(n), Some(ty)) = (
                field("catalog_name"),
                field("schema_name"),
                field("name"),
                field("volume_type"),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "catalog_name, schema_name, name and volume_type are required",
                );
            };
            answer(
                create(
                    world,
                    &me,
                    c,
                    s,
                    n,
                    ty,
                    field("storage_location"),
                    field("comment"),
                )
                .map(|v| volume_json(&v, &me)),
            )
        }
        ("GET", ["external-locations"]) => page(
            st,
            "external_locations",
            store
                .locations
                .iter()
                .map(|(n, l)| location_json(n, l))
                .collect(),
            q,
        ),
        ("GET", ["external-locations", name]) => match store.locations.get(*name) {
            Some(l) => ok(location_json(name, l)),
            None => missing("External location", name),
        },
        ("POST", ["external-locations"]) => {
            let field = |k: &str| body[k].as_str();
            let (Some(name), Some(url), Some(cred)) =
                (field("name"), field("url"), field("credential_name"))
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "name, url and credential_name are required",
                );
            };
            let comment = field("comment").map(str::to_owned);
            answer(world.with_store(&me, |s| {
                if s.locations.contains_key(name) {
                    return Err(refuse(
                        StatusCode::CONFLICT,
                        "RESOURCE_ALREADY_EXISTS",
                        format!("External location '{name}' already exists"),
                    ));
                }
                if !s.credentials.contains(cred) {
                    return Err(refuse(
                        StatusCode::NOT_FOUND,
                        "RESOURCE_DOES_NOT_EXIST",
                        format!("Storage credential '{cred}' does not exist."),
                    ));
                }
                if let Some((other, _)) = s
                    .locations
                    .iter()
                    .find(|(_, l)| covers(&l.url, url) || covers(url, &l.url))
                {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        format!("'{url}' overlaps external location '{other}'"),
                    ));
                }
                let l = ExternalLocation {
                    url: url.to_owned(),
                    credential_name: cred.to_owned(),
                    comment,
                };
                let j = location_json(name, &l);
                s.locations.insert(name.to_owned(), l);
                Ok(j)
            }))
        }
        ("GET", ["storage-credentials", name]) => {
            if store.credentials.contains(*name) {
                ok(
                    json!({"name": name, "id": format!("cred-{name}"), "read_only": false, "owner": "admins"}),
                )
            } else {
                missing("Storage credential", name)
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!(
                "no endpoint {method} /api/2.1/unity-catalog/{}",
                rest.join("/")
            ),
        ),
    }
}

// ---- SQL: CREATE [EXTERNAL] VOLUME ------------------------------------------------------------

/// A `CREATE [EXTERNAL] VOLUME` statement run on the warehouse: `None` when `sql` is not one
/// (the warehouse parses it), else its result. Names must be backtick-quoted; string literals
/// are single-quoted with backslash escapes, as Databricks SQL reads them.
pub(super) fn sql(st: &Inner, sql: &str) -> Option<Result<(), (String, String)>> {
    let words: Vec<&str> = sql.split_whitespace().take(3).collect();
    let external = match words.as_slice() {
        ["CREATE", "VOLUME", ..] => false,
        ["CREATE", "EXTERNAL", "VOLUME"] => true,
        _ => return None,
    };
    Some(create_by_sql(st, sql, external))
}

fn syntax(near: &str) -> (String, String) {
    (
        "BAD_REQUEST".into(),
        format!("[PARSE_SYNTAX_ERROR] Syntax error at or near '{near}'. SQLSTATE: 42601"),
    )
}

fn create_by_sql(st: &Inner, sql: &str, external: bool) -> Result<(), (String, String)> {
    let mut rest = sql.trim();
    for kw in ["CREATE", if external { "EXTERNAL" } else { "" }, "VOLUME"] {
        rest = rest
            .strip_prefix(kw)
            .ok_or_else(|| syntax(kw))?
            .trim_start();
    }
    let if_not_exists = rest.starts_with("IF NOT EXISTS");
    if if_not_exists {
        rest = rest["IF NOT EXISTS".len()..].trim_start();
    }
    let mut name = Vec::new();
    loop {
        let (ident, after) = quoted_ident(rest)?;
        name.push(ident);
        rest = after;
        match rest.strip_prefix('.') {
            Some(after) => rest = after,
            None => break,
        }
    }
    let [c, s, v] = &name[..] else {
        return Err(syntax(&name.join(".")));
    };
    let mut location = None;
    let mut comment = None;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let slot = if let Some(after) = rest.strip_prefix("LOCATION") {
            rest = after;
            &mut location
        } else if let Some(after) = rest.strip_prefix("COMMENT") {
            rest = after;
            &mut comment
        } else {
            return Err(syntax(rest.split_whitespace().next().unwrap_or(rest)));
        };
        let (lit, after) = string_literal(rest.trim_start())?;
        *slot = Some(lit);
        rest = after;
    }
    if external != location.is_some() {
        return Err((
            "BAD_REQUEST".into(),
            "an EXTERNAL volume needs a LOCATION, a managed volume takes none".into(),
        ));
    }
    let ty = if external { "EXTERNAL" } else { "MANAGED" };
    match create(
        &st.world,
        &st.metastore,
        c,
        s,
        v,
        ty,
        location.as_deref(),
        comment.as_deref(),
    ) {
        Ok(_) => Ok(()),
        Err((StatusCode::CONFLICT, ..)) if if_not_exists => Ok(()),
        Err((StatusCode::CONFLICT, ..)) => Err((
            "BAD_REQUEST".into(),
            format!("[VOLUME_ALREADY_EXISTS] Cannot create volume `{c}`.`{s}`.`{v}`"),
        )),
        Err((_, code, msg)) => Err(("BAD_REQUEST".into(), format!("[{code}] {msg}"))),
    }
}

/// A backtick-quoted identifier at the start of `s` (backticks doubled inside), and the rest.
fn quoted_ident(s: &str) -> Result<(String, &str), (String, String)> {
    let body = s.strip_prefix('`').ok_or_else(|| syntax(s))?;
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if chars.peek().map(|(_, c)| *c) == Some('`') {
                chars.next();
                out.push('`');
            } else {
                return Ok((out, &body[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    Err(syntax("`"))
}

/// A single-quoted string literal at the start of `s` (backslash escapes), and the rest.
fn string_literal(s: &str) -> Result<(String, &str), (String, String)> {
    let body = s.strip_prefix('\'').ok_or_else(|| syntax(s))?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            '\'' => return Ok((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    Err(syntax("'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_names_parse_as_databricks_reads_them() {
        assert_eq!(
            string_literal(r"'it\'s a \\ path' COMMENT").unwrap(),
            (r"it's a \ path".to_owned(), " COMMENT")
        );
        assert_eq!(
            quoted_ident("`a``b`.`c`").unwrap(),
            ("a`b".to_owned(), ".`c`")
        );
        assert!(string_literal("'open").is_err());
        assert!(quoted_ident("bare").is_err());
        assert!(covers("file:///a/b/", "file:///a/b/c"));
        assert!(!covers("file:///a/b", "file:///a/bc"));
    }
}
