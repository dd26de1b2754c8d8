//! Unity Catalog: metastore summary, catalogs, schemas and tables (listings paged with
//! `max_results` and `page_token`, optionally with empty pages in between; gets by name).

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use replicator_lake::{TableLocation, inspect};
use serde_json::{Value, json};

use super::catalog_objects as objects;
use super::server::{error, ok};
use super::sharing::sharing_get;
use super::state::{Catalog, Inner, Table};

/// One page of `items` for `page_token`, honouring `max_results` and the injected paging.
pub(super) fn page(
    st: &Inner,
    field: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
) -> Response {
    let (empty_pages, forced) = {
        let f = st.faults.lock().unwrap();
        (f.empty_pages, f.page_size)
    };
    let asked: usize = q
        .get("max_results")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let size = if forced > 0 {
        forced
    } else if asked > 0 {
        asked
    } else {
        1000
    };
    let token = q.get("page_token").cloned().unwrap_or_default();
    let (empty, offset) = match token.as_str() {
        "" if empty_pages => (true, 0),
        "" => (false, 0),
        t => match (t.strip_prefix('e'), t.strip_prefix('o')) {
            (Some(n), _) => (true, n.parse().unwrap_or(0)),
            (_, Some(n)) => (false, n.parse().unwrap_or(0)),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "bad page_token",
                );
            }
        },
    };
    if empty {
        return ok(json!({ field: [], "next_page_token": format!("o{offset}") }));
    }
    let end = (offset + size).min(items.len());
    let mut body = json!({ field: items[offset.min(end)..end] });
    if end < items.len() {
        body["next_page_token"] = json!(if empty_pages {
            format!("e{end}")
        } else {
            format!("o{end}")
        });
    }
    ok(body)
}

fn type_text(ty: &Value) -> String {
    match ty.as_str() {
        Some("long") => "bigint".into(),
        Some("integer") => "int".into(),
        Some(s) => s.to_owned(),
        None => ty["type"].as_str().unwrap_or("struct").to_owned(),
    }
}

async fn table_json(catalog: &str, schema: &str, name: &str, t: &Table) -> Value {
    let info = match TableLocation::parse(&t.location.to_string_lossy()) {
        Ok(loc) => inspect::table_info(&loc, None).await.ok(),
        Err(_) => None,
    };
    let columns: Vec<Value> = info
        .iter()
        .flat_map(|info| info.columns.iter().enumerate())
        .map(|(i, (n, ty, nullable))| json!({"name": n, "type_text": type_text(ty), "type_name": type_text(ty).to_uppercase(), "nullable": nullable, "position": i}))
        .collect();
    let mut v = json!({
        "name": name,
        "catalog_name": catalog,
        "schema_name": schema,
        "full_name": format!("{catalog}.{schema}.{name}"),
        "table_type": t.table_type,
        "data_source_format": "DELTA",
        "storage_location": super::credentials::storage_url(t),
        "properties": t.properties,
        "columns": columns,
    });
    if let Some(p) = t.properties.get("pipelines.pipelineId") {
        v["pipeline_id"] = json!(p);
    }
    // A UniForm table (`delta.universalFormat.enabledFormats` lists `iceberg`): the Tables
    // API's `delta_uniform_iceberg` names the Iceberg metadata of the table's latest Delta
    // version, where UniForm writes it (`<table>/metadata/<version>-<uuid>.metadata.json`).
    // The emulator writes no Iceberg metadata; the location follows the real table's version.
    let uniform = t
        .properties
        .get("delta.universalFormat.enabledFormats")
        .is_some_and(|f| f.split(',').any(|x| x.trim() == "iceberg"));
    if uniform && let Some(info) = &info {
        v["delta_uniform_iceberg"] = json!({
            "metadata_location": format!(
                "file://{}/metadata/{:05}-00000000-0000-4000-8000-{:012}.metadata.json",
                t.location.display(),
                info.version,
                info.version
            ),
            "converted_delta_version": info.version,
            "converted_delta_timestamp": "2026-11-29T00:00:00Z",
        });
    }
    v
}

fn catalog_json(name: &str, c: &Catalog) -> Value {
    match &c.share {
        Some((p, s)) => {
            json!({"name": name, "catalog_type": "DELTASHARING_CATALOG", "provider_name": p, "share_name": s})
        }
        None => json!({"name": name, "catalog_type": "MANAGED_CATALOG"}),
    }
}
/// 404 for an object that does not exist: `CATALOG_DOES_NOT_EXIST`, `SCHEMA_DOES_NOT_EXIST`,
/// `TABLE_DOES_NOT_EXIST`, else `RESOURCE_DOES_NOT_EXIST`.
pub(super) fn missing(what: &str, name: &str) -> Response {
    let code = match what {
        "Catalog" | "Schema" | "Table" => format!("{}_DOES_NOT_EXIST", what.to_uppercase()),
        _ => "RESOURCE_DOES_NOT_EXIST".to_owned(),
    };
    error(
        StatusCode::NOT_FOUND,
        &code,
        format!("{what} '{name}' does not exist."),
    )
}

pub(super) async fn uc_get(st: &Inner, rest: &[&str], q: &HashMap<String, String>) -> Response {
    let me = st.metastore.clone();
    // Snapshot what is needed, then release the lock before reading Delta logs.
    let m = st.world.metastores.lock().unwrap()[&me].clone();
    match rest {
        ["metastore_summary"] => ok(
            json!({"metastore_id": me.rsplit(':').next(), "global_metastore_id": me, "name": m.name}),
        ),
        ["catalogs"] => page(
            st,
            "catalogs",
            m.catalogs
                .iter()
                .map(|(n, c)| {
                    let mut v = catalog_json(n, c);
                    objects::decorate_catalog(&m, n, &mut v);
                    v
                })
                .collect(),
            q,
        ),
        ["catalogs", name] => match m.catalogs.get(*name) {
            Some(c) => {
                let mut v = catalog_json(name, c);
                objects::decorate_catalog(&m, name, &mut v);
                ok(v)
            }
            None => missing("Catalog", name),
        },
        ["schemas"] => {
            let c = q.get("catalog_name").cloned().unwrap_or_default();
            let Some(cat) = m.catalogs.get(&c) else {
                return missing("Catalog", &c);
            };
            let mut items: Vec<Value> =
                vec![json!({"name": "information_schema", "catalog_name": c})];
            items.extend(cat.schemas.keys().map(|s| {
                let full = format!("{c}.{s}");
                let mut v = json!({"name": s, "catalog_name": c, "full_name": full});
                objects::decorate_schema(&m, &full, &mut v);
                v
            }));
            page(st, "schemas", items, q)
        }
        ["schemas", full] => {
            let found = full.split_once('.').and_then(|(c, s)| {
                m.catalogs
                    .get(c)
                    .filter(|c| c.share.is_none())
                    .and_then(|cat| cat.schemas.get(s))
                    .map(|_| (c, s))
            });
            match found {
                Some((c, s)) => {
                    let mut v = json!({"name": s, "catalog_name": c, "full_name": full});
                    objects::decorate_schema(&m, full, &mut v);
                    ok(v)
                }
                None => missing("Schema", full),
            }
        }
        ["tables"] => {
            let (c, s) = (
                q.get("catalog_name").cloned().unwrap_or_default(),
                q.get("schema_name").cloned().unwrap_or_default(),
            );
            let Some(tables) = m.catalogs.get(&c).and_then(|cat| cat.schemas.get(&s)) else {
                return missing("Schema", &format!("{c}.{s}"));
            };
            let mut items = Vec::new();
            for (n, t) in tables {
                let mut v = table_json(&c, &s, n, t).await;
                v["table_id"] = json!(super::credentials::table_id(&st.metastore, &c, &s, n));
                objects::decorate_table(&m, &format!("{c}.{s}.{n}"), &mut v, false);
                items.push(v);
            }
            page(st, "tables", items, q)
        }
        ["tables", full] => {
            let parts: Vec<&str> = full.splitn(3, '.').collect();
            let [c, s, t] = parts[..] else {
                return missing("Table", full);
            };
            match m
                .catalogs
                .get(c)
                .and_then(|cat| cat.schemas.get(s))
                .and_then(|sc| sc.get(t))
            {
                Some(tb) => {
                    let mut v = table_json(c, s, t, tb).await;
                    v["table_id"] = json!(super::credentials::table_id(&st.metastore, c, s, t));
                    objects::decorate_table(&m, full, &mut v, true);
                    ok(v)
                }
                None => missing("Table", full),
            }
        }
        ["permissions", ty, full] => objects::permissions(st, &m, ty, full, q),
        ["entity-tag-assignments", ty, name, "tags"] => objects::tags(st, &m, ty, name, q),
        ["functions", name] => objects::function(&m, name),
        _ => sharing_get(st, &m, rest, q),
    }
}
