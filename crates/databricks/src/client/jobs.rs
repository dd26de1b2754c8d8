//! The Jobs API (`/api/2.2/jobs/…`): jobs looked up by name and their runs, as the API
//! describes them.
//!
//! Wire format, from the Jobs API reference as the Databricks SDKs generate it from the
//! OpenAPI spec (`databricks-sdk-go` `service/jobs/model.go`: `ListJobsRequest`,
//! `ListJobsResponse`, `BaseJob`, `ListRunsRequest`, `ListRunsResponse`, `BaseRun`,
//! `RunState`, `RunStatus`, `TerminationDetails`) and the REST reference pages
//! <https://docs.databricks.com/api/workspace/jobs/list> and
//! <https://docs.databricks.com/api/workspace/jobs/listruns>:
//!
//! - `GET /api/2.2/jobs/list?name=…&limit=…&page_token=…`: `name` filters on the exact job
//!   name, case-insensitively; `limit` is 1 to 100 (default 20); the answer has `jobs` (left
//!   out when there are none; each with `job_id` and `settings.name`), `has_more` and
//!   `next_page_token`;
//! - `GET /api/2.2/jobs/runs/list?job_id=…&active_only|completed_only=true&start_time_from=…`:
//!   `start_time_from` is epoch milliseconds (runs that *started* at or after it);
//!   `active_only` and `completed_only` cannot both be true; `limit` is "greater than 0 and
//!   less than 25" (default 20); the answer has `runs` "from most recently started to least" (left out when there
//!   are none), `has_more` and `next_page_token`. `offset` is deprecated since June 2023;
//!   pages follow `page_token`;
//! - a run has `job_id`, `run_id`, `start_time` and `end_time` in epoch milliseconds
//!   (`end_time` is 0 while the run is still going), and its state in two shapes:
//!   `state` (`life_cycle_state`, `result_state`; the 2.1 shape, "deprecated, please use
//!   the `status` field" in 2.2) and `status` (`state` — `QUEUED`, `PENDING`, `RUNNING`,
//!   `TERMINATING`, `TERMINATED`, `BLOCKED` — and, once terminating or terminated,
//!   `termination_details.code`: `SUCCESS`, `USER_CANCELED`, `CANCELED`, `SKIPPED`,
//!   `RUN_EXECUTION_ERROR`, …). Both are read; see [`RunInfo::outcome`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DatabricksError;

use super::WorkspaceClient;

/// Page size of `jobs/list` (the API allows 1 to 100).
const JOBS_PAGE: u32 = 100;

/// A job as `jobs/list` describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub job_id: i64,
    #[serde(default)]
    pub settings: Option<JobSettings>,
}

/// The part of a job's settings this client reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSettings {
    #[serde(default)]
    pub name: Option<String>,
}

impl JobInfo {
    pub fn name(&self) -> Option<&str> {
        self.settings.as_ref().and_then(|s| s.name.as_deref())
    }
}

/// `state` of a run: the Jobs API 2.1 shape (deprecated in 2.2, still sent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    #[serde(default)]
    pub life_cycle_state: Option<String>,
    /// Only set in a terminal life-cycle state.
    #[serde(default)]
    pub result_state: Option<String>,
    #[serde(default)]
    pub state_message: Option<String>,
}

/// `status.termination_details` of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TerminationDetails {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// `status` of a run: the Jobs API 2.2 shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub termination_details: Option<TerminationDetails>,
}

/// A run as `jobs/runs/list` describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    #[serde(default)]
    pub job_id: i64,
    pub run_id: i64,
    /// Epoch milliseconds.
    #[serde(default)]
    pub start_time: i64,
    /// Epoch milliseconds; 0 while the run is going.
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub state: Option<RunState>,
    #[serde(default)]
    pub status: Option<RunStatus>,
}

/// What a run came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Queued, pending, running, blocked, waiting for a retry or terminating.
    Active,
    /// Terminated with `SUCCESS`.
    Succeeded,
    /// Terminated otherwise (failed, cancelled, timed out, skipped, internal error, success
    /// with failures): the code or state that says so.
    Failed(String),
}

/// Life-cycle states that are not over (`RunLifeCycleState` and `RunLifecycleStateV2State`).
const ACTIVE: &[&str] = &[
    "QUEUED",
    "PENDING",
    "RUNNING",
    "TERMINATING",
    "BLOCKED",
    "WAITING_FOR_RETRY",
];

impl RunInfo {
    /// What the run came to, from `status` (2.2) and `state` (2.1), whichever the answer
    /// carries. When it carries both they must agree for a success: a run counts as
    /// succeeded only if no field says otherwise (`SUCCESS_WITH_FAILURES`, "leaf tasks were
    /// successful" but some failed, is a failure here: the data it wrote may be partial).
    /// A run either field calls active is active. A run with neither is a failure.
    pub fn outcome(&self) -> RunOutcome {
        let v2 = self.status.as_ref().and_then(|s| {
            let state = s.state.as_deref()?;
            Some(if ACTIVE.contains(&state) {
                RunOutcome::Active
            } else {
                let code = s
                    .termination_details
                    .as_ref()
                    .and_then(|d| d.code.as_deref());
                match code {
                    Some("SUCCESS") if state == "TERMINATED" => RunOutcome::Succeeded,
                    Some(code) => RunOutcome::Failed(code.to_owned()),
                    None => RunOutcome::Failed(format!("{state} without a termination code")),
                }
            })
        });
        let v1 = self.state.as_ref().and_then(|s| {
            let lc = s.life_cycle_state.as_deref()?;
            Some(if ACTIVE.contains(&lc) {
                RunOutcome::Active
            } else {
                match (lc, s.result_state.as_deref()) {
                    ("TERMINATED", Some("SUCCESS")) => RunOutcome::Succeeded,
                    (_, Some(result)) => RunOutcome::Failed(result.to_owned()),
                    (lc, None) => RunOutcome::Failed(lc.to_owned()),
                }
            })
        });
        match (v2, v1) {
            (Some(a), Some(b)) if a == b => a,
            (Some(RunOutcome::Active), _) | (_, Some(RunOutcome::Active)) => RunOutcome::Active,
            (Some(f @ RunOutcome::Failed(_)), _) | (_, Some(f @ RunOutcome::Failed(_))) => f,
            (Some(a), None) | (None, Some(a)) => a,
            (Some(_), Some(_)) | (None, None) => {
                RunOutcome::Failed("no state in the answer".into())
            }
        }
    }

    pub fn start(&self) -> Option<DateTime<Utc>> {
        (self.start_time > 0)
            .then(|| DateTime::from_timestamp_millis(self.start_time))
            .flatten()
    }

    /// When the run ended; `None` while it is going.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        (self.end_time > 0)
            .then(|| DateTime::from_timestamp_millis(self.end_time))
            .flatten()
    }
}

/// Which runs of a job to list.
#[derive(Clone, Debug, Default)]
pub struct RunsQuery {
    pub job_id: i64,
    pub active_only: bool,
    pub completed_only: bool,
    /// Runs that started at or after this instant.
    pub start_time_from: Option<DateTime<Utc>>,
}

impl WorkspaceClient {
    /// Jobs whose name is `name` (the API matches it exactly, ignoring case; so does this
    /// client, as a guard).
    pub async fn list_jobs(&self, name: &str) -> Result<Vec<JobInfo>, DatabricksError> {
        let jobs: Vec<JobInfo> = self
            .list_paged(
                &["api", "2.2", "jobs", "list"],
                vec![("name", name.to_owned()), ("limit", JOBS_PAGE.to_string())],
                "jobs",
            )
            .await?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .collect())
    }

    /// Runs of a job, most recently started first, every page.
    pub async fn list_runs(&self, q: &RunsQuery) -> Result<Vec<RunInfo>, DatabricksError> {
        if q.active_only && q.completed_only {
            return Err(DatabricksError::Config(
                "jobs/runs/list: active_only and completed_only cannot both be true".into(),
            ));
        }
        // No `limit`: the default page (20). The reference says a limit must be "less than
        // 25" where older pages said "less or equal to 25".
        let mut query = vec![("job_id", q.job_id.to_string())];
        if q.active_only {
            query.push(("active_only", "true".into()));
        }
        if q.completed_only {
            query.push(("completed_only", "true".into()));
        }
        if let Some(from) = q.start_time_from {
            query.push(("start_time_from", from.timestamp_millis().to_string()));
        }
        self.list_paged(&["api", "2.2", "jobs", "runs", "list"], query, "runs")
            .await
    }

    /// Every item of a Jobs API listing: pages follow `next_page_token` while the answer
    /// has one (`has_more` says the same; a token is what the next request needs).
    async fn list_paged<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: Vec<(&str, String)>,
        field: &str,
    ) -> Result<Vec<T>, DatabricksError> {
        let url = self.url(segments);
        let path = url.path().to_owned();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = HashSet::new();
        loop {
            let mut q = query.clone();
            if let Some(t) = &token {
                q.push(("page_token", t.clone()));
            }
            let page = self.call(Method::GET, url.clone(), &q, None).await?;
            out.extend(page_items::<T>(&path, &page, field)?);
            match page["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                None => return Ok(out),
                Some(t) if !seen.insert(t.to_owned()) => {
                    return Err(DatabricksError::Protocol {
                        path,
                        detail: format!("page token {t:?} repeated; the listing does not end"),
                    });
                }
                Some(t) => token = Some(t.to_owned()),
            }
        }
    }
}

/// The items of one page (`field` is left out when there are none).
fn page_items<T: serde::de::DeserializeOwned>(
    path: &str,
    page: &Value,
    field: &str,
) -> Result<Vec<T>, DatabricksError> {
    match page.get(field).filter(|v| !v.is_null()) {
        None => Ok(Vec::new()),
        Some(items) => {
            serde_json::from_value(items.clone()).map_err(|e| DatabricksError::Protocol {
                path: path.to_owned(),
                detail: format!("`{field}`: {e}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> RunInfo {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_job_page_as_the_api_sends_it() {
        let page = json!({
            "jobs": [{"job_id": 11, "creator_user_name": "a@b.c", "settings": {"name": "core_product_job", "max_concurrent_runs": 1}, "created_time": 1}],
            "has_more": true,
            "next_page_token": "t1",
        });
        let jobs: Vec<JobInfo> = page_items("/p", &page, "jobs").unwrap();
        assert_eq!(jobs[0].job_id, 11);
        assert_eq!(jobs[0].name(), Some("core_product_job"));
        // No jobs: the field is left out.
        let none: Vec<JobInfo> = page_items("/p", &json!({"has_more": false}), "jobs").unwrap();
        assert!(none.is_empty());
        assert!(page_items::<JobInfo>("/p", &json!({"jobs": [{"settings": {}}]}), "jobs").is_err());
    }

    #[test]
    fn the_2_2_status_shape() {
        let ok = run(json!({
            "job_id": 11, "run_id": 7, "start_time": 1_700_000_000_000_i64, "end_time": 1_700_000_060_000_i64,
            "status": {"state": "TERMINATED", "termination_details": {"code": "SUCCESS", "type": "SUCCESS", "message": ""}},
        }));
        assert_eq!(ok.outcome(), RunOutcome::Succeeded);
        assert_eq!(ok.end().unwrap().timestamp_millis(), 1_700_000_060_000);
        let failed = run(json!({
            "job_id": 11, "run_id": 8, "start_time": 1, "end_time": 2,
            "status": {"state": "TERMINATED", "termination_details": {"code": "RUN_EXECUTION_ERROR", "type": "CLIENT_ERROR"}},
        }));
        assert_eq!(
            failed.outcome(),
            RunOutcome::Failed("RUN_EXECUTION_ERROR".into())
        );
        let cancelled = run(json!({
            "run_id": 9, "status": {"state": "TERMINATED", "termination_details": {"code": "USER_CANCELED"}},
        }));
        assert_eq!(
            cancelled.outcome(),
            RunOutcome::Failed("USER_CANCELED".into())
        );
        let running = run(
            json!({"run_id": 10, "start_time": 5, "end_time": 0, "status": {"state": "RUNNING"}}),
        );
        assert_eq!(running.outcome(), RunOutcome::Active);
        assert_eq!(running.end(), None);
        let queued = run(
            json!({"run_id": 10, "status": {"state": "QUEUED", "queue_details": {"code": "MAX_CONCURRENT_RUNS_REACHED"}}}),
        );
        assert_eq!(queued.outcome(), RunOutcome::Active);
    }

    #[test]
    fn the_2_1_state_shape() {
        let ok = run(json!({
            "job_id": 11, "run_id": 7, "start_time": 1, "end_time": 2,
            "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""},
        }));
        assert_eq!(ok.outcome(), RunOutcome::Succeeded);
        for (lc, result, want) in [
            ("TERMINATED", Some("FAILED"), "FAILED"),
            ("TERMINATED", Some("CANCELED"), "CANCELED"),
            ("TERMINATED", Some("TIMEDOUT"), "TIMEDOUT"),
            (
                "TERMINATED",
                Some("SUCCESS_WITH_FAILURES"),
                "SUCCESS_WITH_FAILURES",
            ),
            ("INTERNAL_ERROR", None, "INTERNAL_ERROR"),
            ("SKIPPED", None, "SKIPPED"),
        ] {
            let r = run(
                json!({"run_id": 1, "state": {"life_cycle_state": lc, "result_state": result}}),
            );
            assert_eq!(
                r.outcome(),
                RunOutcome::Failed(want.into()),
                "{lc} {result:?}"
            );
        }
        for lc in [
            "PENDING",
            "RUNNING",
            "TERMINATING",
            "QUEUED",
            "BLOCKED",
            "WAITING_FOR_RETRY",
        ] {
            let r = run(json!({"run_id": 1, "state": {"life_cycle_state": lc}}));
            assert_eq!(r.outcome(), RunOutcome::Active, "{lc}");
        }
    }

    #[test]
    fn both_shapes_must_agree_for_a_success() {
        let both = |code: &str, result: &str| {
            run(json!({"run_id": 1,
                "state": {"life_cycle_state": "TERMINATED", "result_state": result},
                "status": {"state": "TERMINATED", "termination_details": {"code": code}}}))
            .outcome()
        };
        assert_eq!(both("SUCCESS", "SUCCESS"), RunOutcome::Succeeded);
        assert_eq!(
            both("SUCCESS", "FAILED"),
            RunOutcome::Failed("FAILED".into())
        );
        assert_eq!(
            both("RUN_EXECUTION_ERROR", "SUCCESS"),
            RunOutcome::Failed("RUN_EXECUTION_ERROR".into())
        );
        let neither = run(json!({"run_id": 1, "start_time": 1}));
        assert!(matches!(neither.outcome(), RunOutcome::Failed(_)));
    }
}
