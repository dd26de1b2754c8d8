//! The SQL Statement Execution API: submit (with `wait_timeout` and `on_wait_timeout`),
//! poll, result chunks, cancel.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use super::server::{error, ok};
use super::state::{Inner, Stmt, StmtState, state_name};
use super::warehouse::execute;

/// Chunk `index` of a result split into chunks of `chunk_rows` (0: one chunk).
fn chunk(id: &str, rows: &[Vec<Option<String>>], chunk_rows: usize, index: usize) -> Value {
    let size = if chunk_rows == 0 {
        rows.len().max(1)
    } else {
        chunk_rows
    };
    let start = (index * size).min(rows.len());
    let end = (start + size).min(rows.len());
    let mut v = json!({
        "chunk_index": index,
        "row_offset": start,
        "row_count": end - start,
        "data_array": rows[start..end],
    });
    if end < rows.len() {
        v["next_chunk_index"] = json!(index + 1);
        v["next_chunk_internal_link"] = json!(format!(
            "/api/2.0/sql/statements/{id}/result/chunks/{}",
            index + 1
        ));
    }
    v
}

fn statement_json(id: &str, state: &StmtState, chunk_rows: usize) -> Value {
    match state {
        StmtState::Succeeded(cols, rows) => json!({
            "statement_id": id,
            "status": {"state": "SUCCEEDED"},
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": {
                    "column_count": cols.len(),
                    "columns": cols.iter().enumerate().map(|(i, c)| json!({
                        "name": c, "type_name": if c == "ok" || c == "n" || c.contains("size") || c.contains("files") { "LONG" } else { "STRING" },
                        "type_text": "BIGINT", "position": i,
                    })).collect::<Vec<_>>(),
                },
                "total_chunk_count": if chunk_rows == 0 { 1 } else { rows.len().div_ceil(chunk_rows).max(1) },
                "total_row_count": rows.len(),
                "truncated": false,
            },
            "result": chunk(id, rows, chunk_rows, 0),
        }),
        StmtState::Failed(code, message) => json!({
            "statement_id": id,
            "status": {"state": "FAILED", "error": {"error_code": code, "message": message}},
        }),
        other => json!({"statement_id": id, "status": {"state": state_name(other)}}),
    }
}

fn parse_wait(v: &Value) -> Result<u64, String> {
    let s = match v {
        Value::Null => return Ok(10),
        Value::String(s) => s,
        _ => return Err("wait_timeout must be a string".into()),
    };
    let n: u64 = s
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("wait_timeout `{s}` is not `<n>s`"))?;
    if n == 0 || (5..=50).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "wait_timeout must be 0s or between 5s and 50s, got {s}"
        ))
    }
}

pub(super) async fn submit(st: &Arc<Inner>, body: &Value) -> Response {
    let Some(sql) = body["statement"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "statement is required",
        );
    };
    if body["warehouse_id"].as_str() != Some(&st.warehouse_id) {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("warehouse {} not found", body["warehouse_id"]),
        );
    }
    let wait = match parse_wait(&body["wait_timeout"]) {
        Ok(w) => w,
        Err(m) => return error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", m),
    };
    if body["format"].as_str().unwrap_or("JSON_ARRAY") != "JSON_ARRAY"
        || body["disposition"].as_str().unwrap_or("INLINE") != "INLINE"
    {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "only INLINE JSON_ARRAY results are emulated",
        );
    }
    let on_wait = body["on_wait_timeout"]
        .as_str()
        .unwrap_or("CONTINUE")
        .to_owned();
    let id = Uuid::new_v4().to_string();
    st.sql.lock().unwrap().push((id.clone(), sql.to_owned()));
    let (fail, hang) = {
        let mut f = st.faults.lock().unwrap();
        let hang = f.hang.iter().any(|h| sql.contains(h.as_str()));
        let fail = f
            .fail
            .iter_mut()
            .find(|(s, _, n)| *n > 0 && sql.contains(s.as_str()))
            .map(|(_, code, n)| {
                *n -= 1;
                code.clone()
            });
        (fail, hang)
    };
    let (tx, rx) = watch::channel(false);
    st.statements.lock().unwrap().insert(
        id.clone(),
        Stmt {
            state: StmtState::Pending,
            polls: 0,
            task: None,
            hold: None,
        },
    );
    if !hang {
        let (st2, id2, sql) = (st.clone(), id.clone(), sql.to_owned());
        let task = tokio::spawn(async move {
            if let Some(s) = st2.statements.lock().unwrap().get_mut(&id2)
                && s.state == StmtState::Pending
            {
                s.state = StmtState::Running;
            }
            let outcome = match fail {
                Some(code) => StmtState::Failed(
                    code,
                    "[INJECTED_FAILURE] the warehouse failed this statement".into(),
                ),
                None => match execute(&st2, &sql).await {
                    Ok((cols, rows)) => StmtState::Succeeded(cols, rows),
                    Err((code, msg)) => StmtState::Failed(code, msg),
                },
            };
            if let Some(s) = st2.statements.lock().unwrap().get_mut(&id2)
                && !s.state.terminal()
            {
                s.state = outcome;
            }
            tx.send(true).ok();
        });
        if let Some(s) = st.statements.lock().unwrap().get_mut(&id) {
            s.task = Some(task);
        }
    } else if let Some(s) = st.statements.lock().unwrap().get_mut(&id) {
        s.state = StmtState::Running;
        s.hold = Some(tx);
    }
    if wait > 0 {
        let mut rx = rx;
        let finished = tokio::time::timeout(Duration::from_secs(wait), rx.wait_for(|d| *d))
            .await
            .is_ok();
        if !finished && on_wait == "CANCEL" {
            return cancel(st, &id);
        }
    }
    let state = st.statements.lock().unwrap()[&id].state.clone();
    let chunk_rows = st.faults.lock().unwrap().chunk_rows;
    // A statement that did not finish within the wait answers with its current state.
    ok(statement_json(
        &id,
        if wait == 0 && state.terminal() {
            &StmtState::Pending
        } else {
            &state
        },
        chunk_rows,
    ))
}

pub(super) fn poll(st: &Inner, id: &str) -> Response {
    let (min_polls, chunk_rows) = {
        let f = st.faults.lock().unwrap();
        (f.min_polls, f.chunk_rows)
    };
    let mut stmts = st.statements.lock().unwrap();
    let Some(s) = stmts.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("statement {id} not found"),
        );
    };
    s.polls += 1;
    if s.state.terminal() && s.polls <= min_polls {
        return ok(statement_json(id, &StmtState::Running, chunk_rows));
    }
    ok(statement_json(id, &s.state, chunk_rows))
}

pub(super) fn result_chunk(st: &Inner, id: &str, index: &str) -> Response {
    let chunk_rows = st.faults.lock().unwrap().chunk_rows;
    let stmts = st.statements.lock().unwrap();
    match (stmts.get(id).map(|s| &s.state), index.parse::<usize>()) {
        (Some(StmtState::Succeeded(_, rows)), Ok(i)) => ok(chunk(id, rows, chunk_rows, i)),
        _ => error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("no result chunk {index} of statement {id}"),
        ),
    }
}

pub(super) fn cancel(st: &Inner, id: &str) -> Response {
    st.cancels.lock().unwrap().push(id.to_owned());
    let mut stmts = st.statements.lock().unwrap();
    let Some(s) = stmts.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("statement {id} not found"),
        );
    };
    if !s.state.terminal() {
        s.state = StmtState::Canceled;
        if let Some(t) = s.task.take() {
            t.abort();
        }
    }
    ok(json!({}))
}
