//! The operator console (docs/console.md): one page (HTML, JS and CSS compiled into the
//! binary) over a JSON API on the state store and the bus — runs with their tasks live,
//! a task's reason, attempts and reconciliation findings, sync groups with their lag against
//! the RPO and next firing, dead letters, a table's history — and one action, replay, which
//! needs the operator token (`console.operator_token`) and the page's CSRF token.
//!
//! Served by `replicator serve console` (over the fleet's broker and store) and by
//! `replicator run --ui` (over the embedded run's memory bus and SQLite).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use replicator_bus::BusRef;
use replicator_common::Config;
use replicator_common::shutdown::CancellationToken;
use replicator_proto::names;
use replicator_store::Store;
use serde_json::{Value, json};
use uuid::Uuid;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// What the console serves from.
struct Inner {
    store: Store,
    bus: BusRef,
    engines: replicator_engine::Engines,
    config: Arc<Config>,
    /// The operator token actions must carry; none: actions are refused.
    token: Option<String>,
    /// The page's CSRF token: random per process, in a `<meta>` of the page, sent back in
    /// `X-CSRF-Token` by every action.
    csrf: String,
}

type Shared = Arc<Inner>;

/// A JSON error answer with a one-line message.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "message": message.into() }))).into_response()
}

fn store_error(e: impl std::fmt::Display) -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the state store: {e}"),
    )
}

/// Equal without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Start the console on `listen` (port 0 picks one); returns the bound address once
/// listening. It stops when `shutdown` fires.
pub async fn serve(
    config: &Config,
    store: Store,
    bus: BusRef,
    engines: replicator_engine::Engines,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let token = match config
        .console
        .as_ref()
        .and_then(|c| c.operator_token.as_ref())
    {
        Some(r) => Some(
            r.resolve()
                .map_err(|e| anyhow::anyhow!("console.operator_token: {e}"))?,
        ),
        None => None,
    };
    let csrf = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let inner = Arc::new(Inner {
        store,
        bus,
        engines,
        config: Arc::new(config.clone()),
        token,
        csrf,
    });
    let app = Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/replay", post(replay))
        .route("/api/groups", get(groups))
        .route("/api/groups/{name}/sync", post(sync_group))
        .route("/api/groups/{name}/failover", post(failover_dry_run))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/history", get(history))
        .with_state(inner);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("the console cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    tracing::info!(address = %bound, "console listening");
    Ok((bound, handle))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(s): State<Shared>) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The page runs only its own script, and only this origin is framed or called.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(INDEX.replace("{{CSRF}}", &s.csrf)),
    )
        .into_response()
}

async fn runs(State(s): State<Shared>) -> Response {
    match s.store.recent_runs(50).await {
        Ok(runs) => axum::Json(json!({ "runs": runs })).into_response(),
        Err(e) => store_error(e),
    }
}

async fn run(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(run_id) = id.parse::<Uuid>() else {
        return refuse(StatusCode::BAD_REQUEST, format!("`{id}` is not a run ID"));
    };
    let record = match s.store.run(run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, format!("run {run_id} not found")),
        Err(e) => return store_error(e),
    };
    let (tasks, summary, attempts, outcomes) = match tokio::try_join!(
        s.store.tasks(run_id),
        s.store.summarize(run_id),
        s.store.attempt_log(run_id),
        s.store.outcomes(run_id),
    ) {
        Ok(all) => all,
        Err(e) => return store_error(e),
    };
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let line = summary.tables.iter().find(|l| l.task_id == t.task_id);
            json!({
                "task_id": t.task_id,
                "table": t.table,
                "kind": line.and_then(|l| l.kind),
                "status": t.status.as_str(),
                "source": t.source,
                "target": t.target,
                "source_version": line.and_then(|l| l.source_version),
                "target_version": line.and_then(|l| l.target_version),
                "copied_files": line.map(|l| l.copied_files),
                "copied_bytes": line.map(|l| l.copied_bytes),
                "source_rows": line.and_then(|l| l.source_rows),
                "target_rows": line.and_then(|l| l.target_rows),
                "error": t.error,
                "detail": line.and_then(|l| l.detail.clone()),
            })
        })
        .collect();
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "task_id": a.task_id,
                "stage": a.stage,
                "worker": a.worker,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "outcome": a.outcome.map(|o| o.to_string()),
            })
        })
        .collect();
    let results: Vec<Value> = outcomes.into_iter().map(|(_, _, detail)| detail).collect();
    axum::Json(json!({
        "run": {
            "run_id": record.run_id,
            "operation": record.operation.to_string(),
            "status": record.status,
            "source_root": record.source_root,
            "target_root": record.target_root,
            "created_at": record.created_at,
            "completed_at": record.completed_at,
        },
        "tasks": tasks,
        "attempts": attempts,
        "results": results,
    }))
    .into_response()
}

async fn groups(State(s): State<Shared>) -> Response {
    let states = match s.store.sync_groups().await {
        Ok(g) => g,
        Err(e) => return store_error(e),
    };
    let now = chrono::Utc::now();
    let Some(sync) = &s.config.sync else {
        return axum::Json(json!({ "groups": [] })).into_response();
    };
    let groups: Vec<Value> = sync
        .groups
        .iter()
        .map(|g| {
            let state = states.iter().find(|st| st.name == g.name);
            let cut_at = state.and_then(|st| st.cut_at);
            let lag = cut_at.map(|c| (now - c).num_seconds().max(0));
            let rpo = g.rpo.map(|p| p.0);
            json!({
                "name": g.name,
                "status": state.map_or("never".to_owned(), |st| st.status.to_string()),
                "message": state.and_then(|st| st.message.clone()),
                "cut_at": cut_at,
                "cut_run_id": state.and_then(|st| st.cut_run_id),
                "lag_seconds": lag,
                "rpo": rpo.map(|r| format!("{} s", r.as_secs())).unwrap_or_else(|| "none".into()),
                "over_rpo": matches!((lag, rpo), (Some(l), Some(r)) if l as u64 > r.as_secs()),
                "schedule": sync.schedule_of(g).map(|sc| {
                    match sc.next_after(now) {
                        Some(next) => format!("{sc}; next {}", next.to_rfc3339()),
                        None => sc.to_string(),
                    }
                }).unwrap_or_else(|| "on demand".into()),
            })
        })
        .collect();
    axum::Json(json!({ "groups": groups })).into_response()
}

async fn dead_letters(State(s): State<Shared>) -> Response {
    let mut out = Vec::new();
    for queue in [
        names::CLONE_TASKS,
        names::RECONCILE_TASKS,
        names::CATALOG_TASKS,
    ] {
        let letters = match s.bus.dead_letters(queue).await {
            Ok(l) => l,
            Err(e) => {
                return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the bus: {e}"));
            }
        };
        for l in letters {
            let task: Value = serde_json::from_str(&l.payload).unwrap_or_default();
            out.push(json!({
                "queue": queue,
                "reason": l.reason,
                "deliveries": l.deliveries,
                "run_id": task.get("run_id"),
                "task_id": task.get("task_id"),
                "table": task.get("table").or_else(|| task.get("name")),
            }));
        }
    }
    axum::Json(json!({ "dead_letters": out })).into_response()
}

async fn history(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let target = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "target")
        .map(|(_, v)| v.into_owned());
    let Some(target) = target else {
        return refuse(StatusCode::BAD_REQUEST, "`target` is missing");
    };
    match s.store.target_history(&target, 100).await {
        Ok(tasks) => axum::Json(json!({ "tasks": tasks })).into_response(),
        Err(e) => store_error(e),
    }
}

/// Sync a group now (what `replicator sync trigger` does): the sync is planned and published
/// for the workers; once its run completes the group's cut is moved, as the planner's
/// scheduler would (in this process too, so it also works on the embedded default).
async fn sync_group(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, why)) = authorize(&s, &headers) {
        return refuse(status, why);
    }
    let Some(group) = s.config.sync.as_ref().and_then(|c| c.group(&name)).cloned() else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no sync group `{name}` in the config"),
        );
    };
    let Some(syncer) = replicator_planner::sync::Syncer::new(
        s.config.clone(),
        s.engines.clone(),
        s.bus.clone(),
        s.store.clone(),
        Arc::new(replicator_planner::sync::SystemClock),
    ) else {
        return refuse(StatusCode::NOT_FOUND, "the config has no `sync` section");
    };
    match syncer.fire(&group, chrono::Utc::now(), "console", 1).await {
        Ok(Some(fired)) => {
            let (store, run_id) = (s.store.clone(), fired.run_id);
            tokio::spawn(async move {
                // Finish the group's sync once its run completes (at most a day's watch).
                for _ in 0..86_400 {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if let Ok(Some(run)) = store.run(run_id).await
                        && run.completed_at.is_some()
                    {
                        if let Err(e) = syncer.finish_completed().await {
                            tracing::warn!(%run_id, error = %e, "could not finish the group's sync");
                        }
                        return;
                    }
                }
            });
            tracing::info!(group = %name, %run_id, "sync started from the console");
            axum::Json(json!({
                "run_id": run_id,
                "message": format!("sync of group {name} started: run {run_id}"),
            }))
            .into_response()
        }
        Ok(None) => refuse(
            StatusCode::CONFLICT,
            format!(
                "sync group {name} was not synced: it failed its checks, or a sync of it is already running (see its message)"
            ),
        ),
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("sync group {name}: {}", crate::commands::one_line(&e)),
        ),
    }
}

/// What a failover of the group would do (`replicator sync failover GROUP`, a dry run):
/// one line per table. Changes nothing; an action all the same (it reads every table).
async fn failover_dry_run(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, why)) = authorize(&s, &headers) {
        return refuse(status, why);
    }
    match crate::sync::failover_with(&s.config, &s.store, &s.engines, &name, false).await {
        Ok(lines) => axum::Json(json!({
            "lines": lines,
            "message": format!("failover of {name} (dry run): {}", lines.join("; ")),
        }))
        .into_response(),
        Err(e) => refuse(
            StatusCode::CONFLICT,
            format!("failover of {name}: {}", crate::commands::one_line(&e)),
        ),
    }
}

#[derive(serde::Deserialize, Default)]
struct ReplayBody {
    #[serde(default)]
    task_id: Option<Uuid>,
}

/// The checks every action passes: an operator token is configured and the request carries
/// it, with the page's CSRF token, from this origin.
fn authorize(s: &Inner, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(token) = &s.token else {
        return Err((
            StatusCode::FORBIDDEN,
            "actions are off: the console has no operator token (console.operator_token)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if given.is_empty() || !same(given, token) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "refused: this action needs the operator token",
        ));
    }
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same(csrf, &s.csrf) {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: the request does not come from the console's page (CSRF token)",
        ));
    }
    if let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) && origin.split_once("://").map(|(_, h)| h) != Some(host)
    {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: the request comes from another origin",
        ));
    }
    Ok(())
}

async fn replay(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<axum::Json<ReplayBody>>,
) -> Response {
    if let Err((status, why)) = authorize(&s, &headers) {
        return refuse(status, why);
    }
    let Ok(run_id) = id.parse::<Uuid>() else {
        return refuse(StatusCode::BAD_REQUEST, format!("`{id}` is not a run ID"));
    };
    let task = body.and_then(|b| b.0.task_id);
    match crate::fleet::replay_with(&s.bus, &s.store, run_id, task).await {
        Ok(0) => refuse(
            StatusCode::NOT_FOUND,
            format!("nothing to replay: run {run_id} has no dead-lettered task"),
        ),
        Ok(n) => {
            tracing::info!(%run_id, tasks = n, "replayed from the console");
            axum::Json(json!({ "replayed": n, "message": format!("replayed {n} task(s) of run {run_id}") }))
                .into_response()
        }
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("replay of run {run_id}: {}", crate::commands::one_line(&e)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn inner(token: Option<&str>) -> Inner {
        Inner {
            store: Store::open("sqlite::memory:").await.unwrap(),
            bus: Arc::new(replicator_bus::MemoryBus::new(4, 3)),
            engines: replicator_engine::Engines::default(),
            config: Arc::new(
                Config::from_yaml(
                    "source: { root: /s }\ntarget: { root: /t }\n",
                    std::iter::empty(),
                    &[],
                )
                .unwrap(),
            ),
            token: token.map(str::to_owned),
            csrf: "csrf-1".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn an_action_needs_the_token_the_csrf_token_and_the_same_origin() {
        let s = inner(Some("op")).await;
        let ok = [
            ("authorization", "Bearer op"),
            ("x-csrf-token", "csrf-1"),
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ];
        assert!(authorize(&s, &headers(&ok)).is_ok());
        let code = |h: &[(&'static str, &str)]| authorize(&s, &headers(h)).unwrap_err().0;
        assert_eq!(code(&ok[1..]), StatusCode::UNAUTHORIZED);
        assert_eq!(
            code(&[("authorization", "Bearer nope"), ok[1], ok[2], ok[3]]),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(code(&[ok[0], ok[2], ok[3]]), StatusCode::FORBIDDEN);
        assert_eq!(
            code(&[ok[0], ("x-csrf-token", "csrf-2"), ok[2], ok[3]]),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            code(&[ok[0], ok[1], ok[2], ("origin", "https://evil.example")]),
            StatusCode::FORBIDDEN
        );
        // Without a configured token nothing is allowed, whatever is sent.
        let read_only = inner(None).await;
        assert_eq!(
            authorize(&read_only, &headers(&ok)).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn equal_strings_are_equal_and_others_not() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd") && !same("abc", "ab") && !same("", "a"));
    }
}
