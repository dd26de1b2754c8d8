//! Workflow triggers of sync groups (docs/sync.md): a group whose `workflow` names a job is
//! synced as of the end of that job's newest successful run in the SOURCE workspace; while
//! the target is passive, a run of the same-named job there is reported (the seed: "keep
//! checking if any workflow is running in secondary region while dr is in passive mode").
//!
//! Jobs are found by name (`/api/2.2/jobs/list?name=`) and their runs listed through
//! `/api/2.2/jobs/runs/list` (see [`crate::client::RunInfo::outcome`] for how the 2.1 `state`
//! and 2.2 `status` fields are read). Job names are not unique in a workspace: every job
//! with the name counts.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::DatabricksError;
use crate::client::{RunInfo, RunOutcome, RunsQuery, WorkspaceClient};

use super::WorkspacePair;

/// A successful run of a workflow: the sync it triggers is as of `end_time`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkflowRun {
    pub job_id: i64,
    pub run_id: i64,
    pub end_time: DateTime<Utc>,
}

/// A run that has not finished (queued, pending, running, blocked, terminating).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActiveRun {
    pub job_id: i64,
    pub run_id: i64,
    pub start_time: Option<DateTime<Utc>>,
}

/// The host a message names (`https://adb-1.azuredatabricks.net`).
fn host(client: &WorkspaceClient) -> String {
    client.host().as_str().trim_end_matches('/').to_owned()
}

/// The newest successful run among `runs` that ended after `since` (any, with `None`).
pub fn newest_success(
    runs: impl IntoIterator<Item = RunInfo>,
    since: Option<DateTime<Utc>>,
) -> Option<WorkflowRun> {
    runs.into_iter()
        .filter(|r| r.outcome() == RunOutcome::Succeeded)
        .filter_map(|r| {
            let end = r.end()?;
            Some(WorkflowRun {
                job_id: r.job_id,
                run_id: r.run_id,
                end_time: end,
            })
        })
        .filter(|r| since.is_none_or(|s| r.end_time > s))
        .max_by_key(|r| (r.end_time, r.run_id))
}

impl WorkspacePair {
    /// IDs of the SOURCE workspace's jobs named `workflow`; none is an error naming it.
    pub async fn find_workflow(&self, workflow: &str) -> Result<Vec<i64>, DatabricksError> {
        let jobs = self.source.list_jobs(workflow).await?;
        if jobs.is_empty() {
            return Err(DatabricksError::WorkflowNotFound {
                workflow: workflow.to_owned(),
                host: host(&self.source),
            });
        }
        Ok(jobs.into_iter().map(|j| j.job_id).collect())
    }

    /// The newest successful run of `workflow` in the SOURCE workspace that ended after
    /// `since`; with `since = None`, its last successful run. Failed, cancelled, skipped and
    /// timed-out runs never count, nor do runs still going. A workflow that names no job is
    /// [`DatabricksError::WorkflowNotFound`] (permanent).
    pub async fn last_successful_run(
        &self,
        workflow: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Option<WorkflowRun>, DatabricksError> {
        let mut runs = Vec::new();
        for job_id in self.find_workflow(workflow).await? {
            // A run that ended after `since` may have started before it: `start_time_from`
            // cannot narrow the listing.
            runs.extend(
                self.source
                    .list_runs(&RunsQuery {
                        job_id,
                        completed_only: true,
                        ..Default::default()
                    })
                    .await?,
            );
        }
        Ok(newest_success(runs, since))
    }

    /// Runs of a job named `workflow` active in the TARGET workspace now. A target without
    /// such a job has none.
    pub async fn active_runs_in_secondary(
        &self,
        workflow: &str,
    ) -> Result<Vec<ActiveRun>, DatabricksError> {
        let mut out = Vec::new();
        for job in self.target.list_jobs(workflow).await? {
            let runs = self
                .target
                .list_runs(&RunsQuery {
                    job_id: job.job_id,
                    active_only: true,
                    ..Default::default()
                })
                .await?;
            out.extend(
                runs.into_iter()
                    .filter(|r| r.outcome() == RunOutcome::Active)
                    .map(|r| ActiveRun {
                        job_id: r.job_id,
                        run_id: r.run_id,
                        start_time: r.start(),
                    }),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(run_id: i64, end_ms: i64, code: &str) -> RunInfo {
        serde_json::from_value(json!({
            "job_id": 1, "run_id": run_id, "start_time": end_ms - 10, "end_time": end_ms,
            "status": {"state": "TERMINATED", "termination_details": {"code": code}},
        }))
        .unwrap()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn the_newest_success_after_since() {
        let runs = || {
            vec![
                run(1, 1_000, "SUCCESS"),
                run(2, 3_000, "SUCCESS"),
                run(3, 5_000, "RUN_EXECUTION_ERROR"),
                run(4, 4_000, "USER_CANCELED"),
            ]
        };
        assert_eq!(newest_success(runs(), None).unwrap().run_id, 2);
        assert_eq!(
            newest_success(runs(), Some(at(2_000))).unwrap().end_time,
            at(3_000)
        );
        // Ended exactly at `since`: already covered by the cut at `since`.
        assert_eq!(newest_success(runs(), Some(at(3_000))), None);
        assert_eq!(newest_success(vec![run(3, 5_000, "FAILED")], None), None);
    }
}
