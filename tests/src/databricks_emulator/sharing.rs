//! Delta Sharing: recipients, shares (`include_shared_data`, `PATCH` updates), share
//! permissions, and providers (derived from the recipients other metastores created for
//! this one).

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::server::{error, ok};
use super::state::{Inner, Metastore, Share, SharedObj};
use super::unity_catalog::{missing, page};

fn share_json(name: &str, s: &Share) -> Value {
    json!({
        "name": name,
        "objects": s.objects.iter().map(|o| {
            let mut v = json!({"name": o.name, "data_object_type": o.kind, "status": "ACTIVE"});
            if o.kind == "TABLE" {
                v["history_data_sharing_status"] =
                    json!(if o.history { "ENABLED" } else { "DISABLED" });
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// GET of a Delta Sharing object of the metastore `m`.
pub(super) fn sharing_get(
    st: &Inner,
    m: &Metastore,
    rest: &[&str],
    q: &HashMap<String, String>,
) -> Response {
    let me = st.metastore.clone();
    match rest {
        ["shares", name] => match m.shares.get(*name) {
            Some(s) => ok(share_json(name, s)),
            None => missing("Share", name),
        },
        ["shares", name, "permissions"] => match m.shares.get(*name) {
            Some(s) => ok(
                json!({"privilege_assignments": s.grants.iter().map(|(p, privs)| json!({"principal": p, "privileges": privs})).collect::<Vec<_>>()}),
            ),
            None => missing("Share", name),
        },
        ["recipients", name] => match m.recipients.get(*name) {
            Some(g) => ok(
                json!({"name": name, "authentication_type": "DATABRICKS", "data_recipient_global_metastore_id": g}),
            ),
            None => missing("Recipient", name),
        },
        ["providers"] => {
            let ms = st.world.metastores.lock().unwrap();
            let items: Vec<Value> = ms
                .iter()
                .filter(|(id, pm)| **id != me && pm.recipients.values().any(|g| *g == me))
                .map(|(id, pm)| json!({"name": pm.provider_name, "authentication_type": "DATABRICKS", "data_provider_global_metastore_id": id}))
                .collect();
            drop(ms);
            page(st, "providers", items, q)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint GET {}", rest.join("/")),
        ),
    }
}

pub(super) fn uc_change(st: &Inner, method: &str, rest: &[&str], body: &Value) -> Response {
    let me = st.metastore.clone();
    let mut ms = st.world.metastores.lock().unwrap();
    let m = ms.get_mut(&me).unwrap();
    let exists = |what: &str, name: &str| {
        error(
            StatusCode::CONFLICT,
            "RESOURCE_ALREADY_EXISTS",
            format!("{what} '{name}' already exists"),
        )
    };
    match (method, rest) {
        ("POST", ["recipients"]) => {
            let (Some(name), Some(gid)) = (
                body["name"].as_str(),
                body["data_recipient_global_metastore_id"].as_str(),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "name and data_recipient_global_metastore_id are required",
                );
            };
            if body["authentication_type"].as_str() != Some("DATABRICKS") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "authentication_type must be DATABRICKS",
                );
            }
            if m.recipients.contains_key(name) {
                return exists("Recipient", name);
            }
            m.recipients.insert(name.to_owned(), gid.to_owned());
            ok(
                json!({"name": name, "authentication_type": "DATABRICKS", "data_recipient_global_metastore_id": gid}),
            )
        }
        ("POST", ["shares"]) => {
            let Some(name) = body["name"].as_str() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "name is required",
                );
            };
            if m.shares.contains_key(name) {
                return exists("Share", name);
            }
            m.shares.insert(name.to_owned(), Share::default());
            ok(json!({"name": name}))
        }
        ("PATCH", ["shares", name]) => {
            let catalogs = m.catalogs.clone();
            let Some(share) = m.shares.get_mut(*name) else {
                return missing("Share", name);
            };
            for u in body["updates"].as_array().into_iter().flatten() {
                let obj = &u["data_object"];
                let (Some(oname), Some(otype)) =
                    (obj["name"].as_str(), obj["data_object_type"].as_str())
                else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "data_object needs name and data_object_type",
                    );
                };
                // Shares API: `data_object_type` TABLE or SCHEMA (the two emulated), a table
                // named `catalog.schema.table`; `history_data_sharing_status` DISABLED unless
                // given (https://docs.databricks.com/api/workspace/shares/update).
                if u["action"].as_str() != Some("ADD") || !matches!(otype, "SCHEMA" | "TABLE") {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "only ADD of SCHEMA and TABLE objects is emulated",
                    );
                }
                let parts: Vec<&str> = oname.split('.').collect();
                let found = match (otype, parts.as_slice()) {
                    ("SCHEMA", [c, s]) => {
                        catalogs.get(*c).is_some_and(|c| c.schemas.contains_key(*s))
                    }
                    ("TABLE", [c, s, t]) => catalogs
                        .get(*c)
                        .and_then(|c| c.schemas.get(*s))
                        .is_some_and(|s| s.contains_key(*t)),
                    _ => false,
                };
                if !found {
                    return missing(if otype == "TABLE" { "Table" } else { "Schema" }, oname);
                }
                if share.objects.iter().any(|o| o.name == oname) {
                    return exists("Shared object", oname);
                }
                let history = match obj["history_data_sharing_status"].as_str() {
                    None | Some("DISABLED") => false,
                    Some("ENABLED") => true,
                    Some(other) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_PARAMETER_VALUE",
                            format!(
                                "history_data_sharing_status must be ENABLED or DISABLED, not {other}"
                            ),
                        );
                    }
                };
                share.objects.push(SharedObj {
                    name: oname.to_owned(),
                    kind: otype.to_owned(),
                    history,
                });
            }
            ok(share_json(name, share))
        }
        ("PATCH", ["shares", name, "permissions"]) => {
            let recipients = m.recipients.clone();
            let Some(share) = m.shares.get_mut(*name) else {
                return missing("Share", name);
            };
            for c in body["changes"].as_array().into_iter().flatten() {
                let Some(p) = c["principal"].as_str() else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "principal is required",
                    );
                };
                if !recipients.contains_key(p) {
                    return missing("Recipient", p);
                }
                let privs = share.grants.entry(p.to_owned()).or_default();
                for a in c["add"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    privs.insert(a.to_owned());
                }
                for r in c["remove"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    privs.remove(r);
                }
            }
            ok(
                json!({"privilege_assignments": share.grants.iter().map(|(p, privs)| json!({"principal": p, "privileges": privs})).collect::<Vec<_>>()}),
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint {method} {}", rest.join("/")),
        ),
    }
}
