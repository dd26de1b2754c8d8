//! The Jobs API 2.2, as far as sync-group triggers read it: `GET /api/2.2/jobs/list` and
//! `GET /api/2.2/jobs/runs/list`, over jobs and runs the test adds.
//!
//! Wire format from the Jobs API reference
//! (<https://docs.databricks.com/api/workspace/jobs/list>,
//! <https://docs.databricks.com/api/workspace/jobs/listruns>; the same fields as the SDKs'
//! generated `ListJobsRequest`/`ListJobsResponse`, `ListRunsRequest`/`ListRunsResponse`,
//! `BaseJob`, `BaseRun`, `RunState`, `RunStatus`, `TerminationDetails`):
//!
//! - `jobs/list`: `name` filters on the exact name, case-insensitively; `limit` 1 to 100,
//!   default 20; the answer is `{jobs?, has_more, next_page_token?}` (`jobs` is left out
//!   when there are none), each job `{job_id, creator_user_name, created_time, settings:
//!   {name, …}}`;
//! - `jobs/runs/list`: `job_id`, `active_only` and `completed_only` (not both: 400
//!   `INVALID_PARAMETER_VALUE`), `start_time_from`/`start_time_to` (epoch ms, on the start
//!   time, inclusive), `limit` 1 to 25, default 20; runs "from most recently started to
//!   least"; an active run is `QUEUED`, `PENDING`, `RUNNING` or `TERMINATING`; the answer is
//!   `{runs?, has_more, next_page_token?}`; each run has `job_id`, `run_id`, `start_time`,
//!   `end_time` (0 while running), `state` (`life_cycle_state`, `result_state` once
//!   terminated) and `status` (`state`, `termination_details: {code, type, message}`).
//!
//! Pages are cut at `limit`, or at the injected `Faults::page_size`.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::server::{error, ok};
use super::state::{Inner, JobRun, RunFields, RunResult};

fn bad(message: impl Into<String>) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETER_VALUE",
        message.into(),
    )
}

/// `limit` within `1..=max`, `default` when absent; `Err` is the message of a 400.
fn limit(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, String> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<usize>() {
            // "If a request specifies a limit of 0, the service instead uses the maximum limit."
            Ok(0) => Ok(max),
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("limit must be between 1 and {max}, not {l}")),
        },
    }
}

fn flag(q: &HashMap<String, String>, name: &str) -> Result<bool, String> {
    match q.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(format!("{name} must be true or false, not {v}")),
    }
}

fn millis(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, String> {
    q.get(name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| format!("{name}: not epoch milliseconds: {v}"))
        })
        .transpose()
}

/// One page of `items` under `field`, at `page_token`.
fn page(
    st: &Inner,
    field: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
    size: usize,
) -> Response {
    let forced = st.faults.lock().unwrap().page_size;
    let size = if forced > 0 { forced } else { size };
    let offset = match q.get("page_token").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => match t.strip_prefix("p").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n <= items.len() => n,
            _ => return bad(format!("invalid page_token {t:?}")),
        },
    };
    let end = (offset + size).min(items.len());
    let more = end < items.len();
    let mut body = json!({ "has_more": more });
    if end > offset {
        body[field] = json!(items[offset..end]);
    }
    if more {
        body["next_page_token"] = json!(format!("p{end}"));
    }
    if offset > 0 {
        body["prev_page_token"] = json!(format!("p{}", offset.saturating_sub(size)));
    }
    ok(body)
}

pub(super) fn jobs_get(st: &Inner, rest: &[&str], q: &HashMap<String, String>) -> Response {
    match rest {
        ["list"] => list_jobs(st, q),
        ["runs", "list"] => list_runs(st, q),
        _ => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint GET /api/2.2/jobs/{}", rest.join("/")),
        ),
    }
}

fn list_jobs(st: &Inner, q: &HashMap<String, String>) -> Response {
    let size = match limit(q, 20, 100) {
        Ok(n) => n,
        Err(m) => return bad(m),
    };
    let jobs = st.jobs.lock().unwrap();
    let items = jobs
        .jobs
        .iter()
        .filter(|j| {
            q.get("name")
                .is_none_or(|n| n.eq_ignore_ascii_case(&j.name))
        })
        .map(|j| {
            json!({
                "job_id": j.job_id,
                "creator_user_name": "owner@example.com",
                "created_time": 1_700_000_000_000_i64 + j.job_id,
                "settings": {"name": j.name, "max_concurrent_runs": 1, "format": "MULTI_TASK"},
            })
        })
        .collect();
    page(st, "jobs", items, q, size)
}

fn list_runs(st: &Inner, q: &HashMap<String, String>) -> Response {
    let parsed = (|| {
        let size = limit(q, 20, 25)?;
        let active_only = flag(q, "active_only")?;
        let completed_only = flag(q, "completed_only")?;
        if active_only && completed_only {
            return Err("active_only and completed_only cannot both be true".to_owned());
        }
        let from = millis(q, "start_time_from")?;
        let to = millis(q, "start_time_to")?;
        let job_id = q
            .get("job_id")
            .map(|j| {
                j.parse::<i64>()
                    .map_err(|_| format!("job_id: not a number: {j}"))
            })
            .transpose()?;
        Ok((size, active_only, completed_only, from, to, job_id))
    })();
    let (size, active_only, completed_only, from, to, job_id) = match parsed {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    let fields = st.faults.lock().unwrap().run_fields;
    let jobs = st.jobs.lock().unwrap();
    if let Some(id) = job_id
        && !jobs.jobs.iter().any(|j| j.job_id == id)
    {
        return bad(format!("Job {id} does not exist."));
    }
    let mut runs: Vec<(i64, &JobRun)> = jobs
        .jobs
        .iter()
        .filter(|j| job_id.is_none_or(|id| id == j.job_id))
        .flat_map(|j| j.runs.iter().map(move |r| (j.job_id, r)))
        .filter(|(_, r)| !active_only || r.result.active())
        .filter(|(_, r)| !completed_only || !r.result.active())
        .filter(|(_, r)| from.is_none_or(|f| r.start_ms >= f))
        .filter(|(_, r)| to.is_none_or(|t| r.start_ms <= t))
        .collect();
    runs.sort_by_key(|(_, r)| std::cmp::Reverse((r.start_ms, r.run_id)));
    let items = runs
        .into_iter()
        .map(|(job_id, r)| run_json(job_id, r, fields))
        .collect();
    page(st, "runs", items, q, size)
}

fn run_json(job_id: i64, r: &JobRun, fields: RunFields) -> Value {
    let (lc, result, v2, code, kind) = match r.result {
        RunResult::Success => (
            "TERMINATED",
            Some("SUCCESS"),
            "TERMINATED",
            Some("SUCCESS"),
            Some("SUCCESS"),
        ),
        RunResult::Failed => (
            "TERMINATED",
            Some("FAILED"),
            "TERMINATED",
            Some("RUN_EXECUTION_ERROR"),
            Some("CLIENT_ERROR"),
        ),
        RunResult::Canceled => (
            "TERMINATED",
            Some("CANCELED"),
            "TERMINATED",
            Some("USER_CANCELED"),
            None,
        ),
        RunResult::Running => ("RUNNING", None, "RUNNING", None, None),
        RunResult::Queued => ("QUEUED", None, "QUEUED", None, None),
    };
    let mut v = json!({
        "job_id": job_id,
        "run_id": r.run_id,
        "number_in_job": r.run_id,
        "run_name": format!("run {}", r.run_id),
        "run_type": "JOB_RUN",
        "start_time": r.start_ms,
        "end_time": if r.result.active() { 0 } else { r.end_ms },
    });
    if fields != RunFields::StatusOnly {
        let mut state = json!({"life_cycle_state": lc, "state_message": "", "user_cancelled_or_timedout": r.result == RunResult::Canceled});
        if let Some(result) = result {
            state["result_state"] = json!(result);
        }
        v["state"] = state;
    }
    if fields != RunFields::StateOnly {
        let mut status = json!({"state": v2});
        if let Some(code) = code {
            let mut details = json!({"code": code, "message": ""});
            if let Some(kind) = kind {
                details["type"] = json!(kind);
            }
            status["termination_details"] = details;
        }
        v["status"] = status;
    }
    v
}
