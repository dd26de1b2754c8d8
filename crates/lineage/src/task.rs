//! The events replicator sends, one builder call each: a task's START, COMPLETE and FAIL
//! (clone, ingest, mirror, reconciliation), a reconciliation's checks, and the replication
//! run itself, which every task names as its parent.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::model::{
    Assertion, DataQualityAssertions, DataQualityMetrics, DatasetFacets, ErrorMessage, EventType,
    Facet, InputDataset, InputFacets, Job, JobRef, OutputDataset, OutputFacets, OutputStatistics,
    ParentRoot, ParentRun, ReplicatorRun, Run, RunEvent, RunFacets, RunRef, Schema, SchemaField,
};
use crate::naming::{Dataset, dataset_with_account};

/// The job name of the replication run, the parent of every task.
pub const REPLICATION_JOB: &str = "replication";

/// Longest error message sent, in characters (the rest is cut with a count).
const MAX_MESSAGE_CHARS: usize = 4096;

/// One task of a replication run, as lineage sees it. START, COMPLETE and FAIL of one
/// attempt share `task_id` as their run ID.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskLineage {
    /// The replication run (the parent run).
    pub run_id: Uuid,
    /// The task's own run ID.
    pub task_id: Uuid,
    /// `clone sales.orders`, `ingest postgres public.orders`, `mirror snowflake`,
    /// `reconcile sales.orders`.
    pub job_name: String,
    /// Locations read (named by [`crate::dataset`]).
    pub inputs: Vec<String>,
    /// Locations written.
    pub outputs: Vec<String>,
    /// Columns (name, type) of the data moved: on the outputs, or on the inputs of a task
    /// that writes nothing (a reconciliation).
    pub schema: Option<Vec<(String, String)>>,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The parent job's name (default [`REPLICATION_JOB`]).
    pub parent_job: String,
    /// The Azure storage account of locations that do not name one (`az://container/…`).
    pub azure_account: Option<String>,
}

/// What a finished task moved; every part optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Rows read from the inputs.
    pub rows_read: Option<u64>,
    /// Rows written to the outputs.
    pub rows_written: Option<u64>,
    pub bytes_copied: Option<u64>,
    pub files_copied: Option<u64>,
}

/// What a reconciliation found: row counts of both sides and its checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub source_rows: Option<u64>,
    pub target_rows: Option<u64>,
    /// `row_count_matches`, `schema_matches`, `keys_match`, … (see [`Check`]).
    pub checks: Vec<Check>,
}

/// One check of a reconciliation and whether it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub success: bool,
    /// The column checked, if it is about one.
    pub column: Option<String>,
}

impl Check {
    /// A check named `name`.
    pub fn new(name: impl Into<String>, success: bool) -> Self {
        Self {
            name: name.into(),
            success,
            column: None,
        }
    }

    /// `row_count_matches`.
    pub fn row_count_matches(success: bool) -> Self {
        Self::new("row_count_matches", success)
    }

    /// `schema_matches`.
    pub fn schema_matches(success: bool) -> Self {
        Self::new("schema_matches", success)
    }

    /// `keys_match`.
    pub fn keys_match(success: bool) -> Self {
        Self::new("keys_match", success)
    }

    /// The same check, about `column`.
    pub fn on_column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }
}

impl TaskLineage {
    /// Task `task_id` of run `run_id`, named `job_name`, first attempt, no datasets yet.
    pub fn new(run_id: Uuid, task_id: Uuid, job_name: impl Into<String>) -> Self {
        Self {
            run_id,
            task_id,
            job_name: job_name.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            schema: None,
            attempt: 1,
            parent_job: REPLICATION_JOB.into(),
            azure_account: None,
        }
    }

    /// With `location` read.
    pub fn input(mut self, location: impl Into<String>) -> Self {
        self.inputs.push(location.into());
        self
    }

    /// With `location` written.
    pub fn output(mut self, location: impl Into<String>) -> Self {
        self.outputs.push(location.into());
        self
    }

    /// With these columns (name, type). No columns (the schema could not be read): no
    /// schema facet.
    pub fn schema<N: Into<String>, T: Into<String>>(
        mut self,
        columns: impl IntoIterator<Item = (N, T)>,
    ) -> Self {
        let columns: Vec<(String, String)> = columns
            .into_iter()
            .map(|(n, t)| (n.into(), t.into()))
            .collect();
        self.schema = (!columns.is_empty()).then_some(columns);
        self
    }

    /// As attempt `attempt` (from 1).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// With the Azure storage account of locations that name none (`az://container/…`).
    pub fn azure_account(mut self, account: impl Into<String>) -> Self {
        self.azure_account = Some(account.into());
        self
    }

    /// START of the task.
    pub fn start(&self, namespace: &str) -> RunEvent {
        self.event(namespace, EventType::Start, None)
    }

    /// COMPLETE of the task, with what it moved: `dataQualityMetrics` on the inputs (rows
    /// read, bytes, files), `outputStatistics` on the outputs (rows written, bytes, files)
    /// and the `replicator` facet.
    pub fn complete(&self, namespace: &str, metrics: &TaskMetrics) -> RunEvent {
        let mut e = self.event(namespace, EventType::Complete, None);
        for input in &mut e.inputs {
            input.input_facets.data_quality_metrics = Some(Facet::new(DataQualityMetrics {
                row_count: metrics.rows_read,
                bytes: metrics.bytes_copied,
                file_count: metrics.files_copied,
                column_metrics: BTreeMap::new(),
            }));
        }
        for output in &mut e.outputs {
            output.output_facets.output_statistics = Some(Facet::new(OutputStatistics {
                row_count: metrics.rows_written,
                size: metrics.bytes_copied,
                file_count: metrics.files_copied,
            }));
        }
        if let Some(r) = &mut e.run.facets.replicator {
            r.body.bytes_copied = metrics.bytes_copied;
            r.body.files_copied = metrics.files_copied;
            r.body.rows = metrics.rows_written.or(metrics.rows_read);
        }
        e
    }

    /// FAIL of the task, with `message` (one line, at most 4096 characters) as its
    /// `errorMessage` facet.
    pub fn fail(&self, namespace: &str, message: &str) -> RunEvent {
        self.event(namespace, EventType::Fail, Some(message))
    }

    /// COMPLETE of a reconciliation: each input carries its row count
    /// (`dataQualityMetrics`: the first input the source's, the second the target's), and
    /// the last input (the replica checked) the checks (`dataQualityAssertions`). A check
    /// that did not hold is data, not a failure of the task: the event stays COMPLETE.
    pub fn reconciled(&self, namespace: &str, result: &Reconciliation) -> RunEvent {
        let mut e = self.event(namespace, EventType::Complete, None);
        let rows = [result.source_rows, result.target_rows];
        for (i, input) in e.inputs.iter_mut().enumerate() {
            input.input_facets.data_quality_metrics = Some(Facet::new(DataQualityMetrics {
                row_count: rows.get(i).copied().flatten(),
                ..Default::default()
            }));
        }
        if let Some(last) = e.inputs.last_mut() {
            last.input_facets.data_quality_assertions = Some(Facet::new(DataQualityAssertions {
                assertions: result
                    .checks
                    .iter()
                    .map(|c| Assertion {
                        assertion: c.name.clone(),
                        success: c.success,
                        column: c.column.clone(),
                    })
                    .collect(),
            }));
        }
        e
    }

    fn dataset(&self, location: &str) -> Dataset {
        dataset_with_account(location, self.azure_account.as_deref())
    }

    fn event(&self, namespace: &str, event_type: EventType, error: Option<&str>) -> RunEvent {
        let parent = JobRef {
            namespace: namespace.to_owned(),
            name: self.parent_job.clone(),
        };
        let run = Run {
            run_id: self.task_id,
            facets: RunFacets {
                parent: Some(Facet::new(ParentRun {
                    run: RunRef {
                        run_id: self.run_id,
                    },
                    job: parent.clone(),
                    root: Some(ParentRoot {
                        run: RunRef {
                            run_id: self.run_id,
                        },
                        job: parent,
                    }),
                })),
                error_message: error.map(error_facet),
                replicator: Some(Facet::new(ReplicatorRun {
                    attempt: self.attempt,
                    ..Default::default()
                })),
            },
        };
        let mut e = RunEvent::new(event_type, run, Job::new(namespace, &self.job_name));
        let schema = self.schema.as_ref().map(|cols| {
            Facet::new(Schema {
                fields: cols
                    .iter()
                    .map(|(name, data_type)| SchemaField {
                        name: name.clone(),
                        data_type: data_type.clone(),
                    })
                    .collect(),
            })
        });
        let schema_on_inputs = self.outputs.is_empty();
        e.inputs = self
            .inputs
            .iter()
            .map(|l| {
                let d = self.dataset(l);
                InputDataset {
                    namespace: d.namespace,
                    name: d.name,
                    facets: DatasetFacets {
                        schema: schema.clone().filter(|_| schema_on_inputs),
                    },
                    input_facets: InputFacets::default(),
                }
            })
            .collect();
        e.outputs = self
            .outputs
            .iter()
            .map(|l| {
                let d = self.dataset(l);
                OutputDataset {
                    namespace: d.namespace,
                    name: d.name,
                    facets: DatasetFacets {
                        schema: schema.clone(),
                    },
                    output_facets: OutputFacets::default(),
                }
            })
            .collect();
        e
    }
}

/// The replication run itself: the parent every task names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLineage {
    pub run_id: Uuid,
    /// Default [`REPLICATION_JOB`].
    pub job_name: String,
}

impl RunLineage {
    /// Run `run_id` of the [`REPLICATION_JOB`] job.
    pub fn new(run_id: Uuid) -> Self {
        Self {
            run_id,
            job_name: REPLICATION_JOB.into(),
        }
    }

    /// START of the run.
    pub fn start(&self, namespace: &str) -> RunEvent {
        self.event(namespace, EventType::Start, None)
    }

    /// COMPLETE of the run.
    pub fn complete(&self, namespace: &str) -> RunEvent {
        self.event(namespace, EventType::Complete, None)
    }

    /// FAIL of the run, with `message`.
    pub fn fail(&self, namespace: &str, message: &str) -> RunEvent {
        self.event(namespace, EventType::Fail, Some(message))
    }

    fn event(&self, namespace: &str, event_type: EventType, error: Option<&str>) -> RunEvent {
        let run = Run {
            run_id: self.run_id,
            facets: RunFacets {
                error_message: error.map(error_facet),
                ..Default::default()
            },
        };
        RunEvent::new(event_type, run, Job::new(namespace, &self.job_name))
    }
}

impl crate::Emitter {
    /// Send the START of `task` (never waits; see [`crate::Emitter::emit`]).
    pub fn task_started(&self, task: &TaskLineage) {
        self.emit(task.start(self.namespace()));
    }

    /// Send the COMPLETE of `task` with what it moved.
    pub fn task_completed(&self, task: &TaskLineage, metrics: &TaskMetrics) {
        self.emit(task.complete(self.namespace(), metrics));
    }

    /// Send the FAIL of `task` with its error.
    pub fn task_failed(&self, task: &TaskLineage, message: &str) {
        self.emit(task.fail(self.namespace(), message));
    }

    /// Send the COMPLETE of reconciliation `task` with its counts and checks.
    pub fn task_reconciled(&self, task: &TaskLineage, result: &Reconciliation) {
        self.emit(task.reconciled(self.namespace(), result));
    }

    /// Send the START of the replication run.
    pub fn run_started(&self, run: &RunLineage) {
        self.emit(run.start(self.namespace()));
    }

    /// Send the COMPLETE of the replication run.
    pub fn run_completed(&self, run: &RunLineage) {
        self.emit(run.complete(self.namespace()));
    }

    /// Send the FAIL of the replication run.
    pub fn run_failed(&self, run: &RunLineage, message: &str) {
        self.emit(run.fail(self.namespace(), message));
    }
}

/// `errorMessage`: the message on one line, bounded.
fn error_facet(message: &str) -> Facet<ErrorMessage> {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let total = one_line.chars().count();
    let message = if total > MAX_MESSAGE_CHARS {
        let cut: String = one_line.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}… ({} more characters)", total - MAX_MESSAGE_CHARS)
    } else {
        one_line
    };
    Facet::new(ErrorMessage {
        message,
        programming_language: "rust".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FacetSchema;

    fn clone_task() -> TaskLineage {
        TaskLineage::new(Uuid::from_u128(1), Uuid::from_u128(2), "clone sales.orders")
            .input("s3://src/sales/orders")
            .output("/lake/target/sales/orders")
            .schema([("id", "long"), ("amount", "decimal(10,2)")])
            .attempt(2)
    }

    #[test]
    fn start_and_complete_share_the_task_run_and_name_the_parent() {
        let t = clone_task();
        let start = serde_json::to_value(t.start("replicator")).unwrap();
        let done = serde_json::to_value(t.complete(
            "replicator",
            &TaskMetrics {
                rows_read: Some(10),
                rows_written: Some(10),
                bytes_copied: Some(2048),
                files_copied: Some(3),
            },
        ))
        .unwrap();
        assert_eq!(start["eventType"], "START");
        assert_eq!(done["eventType"], "COMPLETE");
        assert_eq!(start["run"]["runId"], done["run"]["runId"]);
        assert_eq!(start["run"]["runId"], Uuid::from_u128(2).to_string());
        for e in [&start, &done] {
            let parent = &e["run"]["facets"]["parent"];
            assert_eq!(parent["run"]["runId"], Uuid::from_u128(1).to_string());
            assert_eq!(parent["job"]["name"], REPLICATION_JOB);
            assert_eq!(parent["job"]["namespace"], "replicator");
            assert_eq!(
                parent["root"]["run"]["runId"],
                Uuid::from_u128(1).to_string()
            );
            assert_eq!(parent["_schemaURL"], ParentRun::SCHEMA_URL);
            assert_eq!(e["job"]["name"], "clone sales.orders");
            assert_eq!(e["inputs"][0]["namespace"], "s3://src");
            assert_eq!(e["inputs"][0]["name"], "sales/orders");
            assert_eq!(e["outputs"][0]["namespace"], "file");
            assert_eq!(e["outputs"][0]["name"], "/lake/target/sales/orders");
            // The schema is on the output only.
            assert_eq!(
                e["outputs"][0]["facets"]["schema"]["fields"][1]["type"],
                "decimal(10,2)"
            );
            assert!(e["inputs"][0]["facets"].get("schema").is_none());
            assert_eq!(e["run"]["facets"]["replicator"]["attempt"], 2);
        }
        assert!(
            start["inputs"][0]["inputFacets"]
                .get("dataQualityMetrics")
                .is_none()
        );
        let r = &done["run"]["facets"]["replicator"];
        assert_eq!(
            (r["bytesCopied"].as_u64(), r["filesCopied"].as_u64()),
            (Some(2048), Some(3))
        );
        let m = &done["inputs"][0]["inputFacets"]["dataQualityMetrics"];
        assert_eq!(
            (m["rowCount"].as_u64(), m["bytes"].as_u64()),
            (Some(10), Some(2048))
        );
        let s = &done["outputs"][0]["outputFacets"]["outputStatistics"];
        assert_eq!(
            (
                s["rowCount"].as_u64(),
                s["size"].as_u64(),
                s["fileCount"].as_u64()
            ),
            (Some(10), Some(2048), Some(3))
        );
    }

    #[test]
    fn a_failure_carries_its_message_on_one_bounded_line() {
        let e = clone_task().fail("replicator", "object store: 503\nretry later");
        assert_eq!(e.event_type, EventType::Fail);
        let f = e.run.facets.error_message.unwrap();
        assert_eq!(f.body.message, "object store: 503 retry later");
        assert_eq!(f.body.programming_language, "rust");
        let long = clone_task().fail("replicator", &"x".repeat(5000));
        let m = long.run.facets.error_message.unwrap().body.message;
        assert!(m.ends_with("… (904 more characters)"), "{}", &m[4000..]);
    }

    #[test]
    fn no_columns_give_no_schema_facet() {
        let t = TaskLineage::new(Uuid::from_u128(1), Uuid::from_u128(2), "clone a.b")
            .output("/lake/target/a/b")
            .schema(Vec::<(String, String)>::new());
        let v = serde_json::to_value(t.start("replicator")).unwrap();
        assert!(v["outputs"][0]["facets"].get("schema").is_none(), "{v}");
    }

    #[test]
    fn a_reconciliation_reports_counts_and_checks() {
        let t = TaskLineage::new(
            Uuid::from_u128(1),
            Uuid::from_u128(3),
            "reconcile sales.orders",
        )
        .input("/lake/source/sales/orders")
        .input("/lake/target/sales/orders")
        .schema([("id", "long")]);
        let e = t.reconciled(
            "replicator",
            &Reconciliation {
                source_rows: Some(100),
                target_rows: Some(99),
                checks: vec![
                    Check::row_count_matches(false),
                    Check::schema_matches(true),
                    Check::keys_match(true).on_column("id"),
                ],
            },
        );
        assert_eq!(e.event_type, EventType::Complete);
        assert!(e.outputs.is_empty());
        let v = serde_json::to_value(&e).unwrap();
        let (src, dst) = (&v["inputs"][0], &v["inputs"][1]);
        assert_eq!(src["inputFacets"]["dataQualityMetrics"]["rowCount"], 100);
        assert_eq!(dst["inputFacets"]["dataQualityMetrics"]["rowCount"], 99);
        assert!(src["inputFacets"].get("dataQualityAssertions").is_none());
        let a = &dst["inputFacets"]["dataQualityAssertions"];
        assert_eq!(a["_schemaURL"], DataQualityAssertions::SCHEMA_URL);
        assert_eq!(
            a["assertions"],
            serde_json::json!([
                { "assertion": "row_count_matches", "success": false },
                { "assertion": "schema_matches", "success": true },
                { "assertion": "keys_match", "success": true, "column": "id" },
            ])
        );
        // No outputs: the schema is on the inputs.
        assert_eq!(src["facets"]["schema"]["fields"][0]["name"], "id");
    }

    #[test]
    fn the_replication_run_is_a_job_of_its_own() {
        let r = RunLineage::new(Uuid::from_u128(1));
        let e = r.start("dr");
        assert_eq!(
            (e.job.namespace.as_str(), e.job.name.as_str()),
            ("dr", REPLICATION_JOB)
        );
        assert_eq!(e.run.run_id, Uuid::from_u128(1));
        assert!(e.run.facets.parent.is_none());
        assert_eq!(r.complete("dr").event_type, EventType::Complete);
        let f = r.fail("dr", "3 tables failed");
        assert_eq!(
            f.run.facets.error_message.unwrap().body.message,
            "3 tables failed"
        );
    }

    #[test]
    fn the_azure_account_fills_in_locations_without_one() {
        let t = TaskLineage::new(Uuid::nil(), Uuid::nil(), "clone a.b")
            .output("az://lake/a/b")
            .azure_account("acct");
        let e = t.start("replicator");
        assert_eq!(
            e.outputs[0].namespace,
            "abfss://lake@acct.dfs.core.windows.net"
        );
    }
}
