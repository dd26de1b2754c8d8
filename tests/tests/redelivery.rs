//! A task delivered twice — the broker redelivers an unacked task after a dropped connection,
//! possibly to the very worker still cloning it — is cloned by one delivery at a time and
//! recorded once: the first result stands, the other delivery is kept as attempts only.

use std::sync::Arc;
use std::time::Duration;

use replicator_bus::{Bus, BusRef, MemoryBus, typed};
use replicator_cloner::{ClonerConfig, ProgressSink};
use replicator_common::retry::RetryPolicy;
use replicator_common::shutdown::CancellationToken;
use replicator_lake::{TableLocation, sample};
use replicator_proto::{
    CloneTask, EngineKind, Header, Operation, ReplicationRequest, TableFilter, names,
};
use replicator_reconciler::ReconcilerConfig;
use replicator_store::{AttemptLog, AttemptOutcome, NewTask, Store};
use uuid::Uuid;

struct Harness {
    _dir: tempfile::TempDir,
    bus: MemoryBus,
    store: Store,
    task: CloneTask,
    /// Data files of the source table.
    files: u64,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source/sales/orders");
        let target = dir.path().join("target/sales/orders");
        let loc = TableLocation::parse(source.to_str().unwrap()).unwrap();
        sample::create(&loc, &sample::orders(0, 100, "eu"), &[])
            .await
            .unwrap();
        sample::append(&loc, &sample::orders(100, 100, "us"))
            .await
            .unwrap();
        sample::append(&loc, &sample::orders(200, 100, "eu"))
            .await
            .unwrap();
        let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display()))
            .await
            .unwrap();
        let run_id = Uuid::now_v7();
        let request = ReplicationRequest {
            ingest: Vec::new(),
            header: Header::new(run_id),
            operation: Operation::All,
            source_root: dir.path().join("source").display().to_string(),
            target_root: dir.path().join("target").display().to_string(),
            tables: TableFilter::default(),
            version: None,
            requested_by: None,
            engine: EngineKind::default(),
            replace: false,
            external_roots: Vec::new(),
            as_of: None,
            group: None,
            catalog: false,
            mirror: false,
        };
        let task = CloneTask {
            ingest: None,
            header: Header::new(run_id),
            task_id: Uuid::now_v7(),
            attempt: 1,
            table: "sales.orders".into(),
            source: source.display().to_string(),
            target: target.display().to_string(),
            version: None,
            operation: Operation::All,
            engine: EngineKind::default(),
            replace: false,
            external_roots: Vec::new(),
            as_of: None,
        };
        let new = NewTask {
            task_id: task.task_id,
            kind: None,
            table: task.table.clone(),
            source: task.source.clone(),
            target: task.target.clone(),
            source_version: None,
        };
        store.create_run(&request, &[new]).await.unwrap();
        Harness {
            _dir: dir,
            bus: MemoryBus::new(16, 3),
            store,
            task,
            files: 3,
        }
    }

    fn bus(&self) -> BusRef {
        Arc::new(self.bus.clone())
    }

    /// The task's message as the broker delivers it (every copy identical).
    async fn deliver(&self) {
        typed::publish(&self.bus, names::CLONE_TASKS, &self.task)
            .await
            .unwrap();
    }

    /// A cloner of two slots named `cloner-1`; a first clone that copies files holds
    /// still for a moment before copying, so a second delivery arrives while it runs.
    async fn cloner(&self, shutdown: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let slow: ProgressSink = Arc::new(|_, p| {
            if p.files_total > 0 && p.files_done == 0 {
                std::thread::sleep(Duration::from_millis(400));
            }
        });
        let config = ClonerConfig {
            concurrency: 2,
            copy_parallelism: 4,
            retry: RetryPolicy::for_test(),
            worker: "cloner-1".into(),
            lease_ttl: Duration::from_secs(30),
        };
        replicator_cloner::spawn(
            self.bus(),
            self.store.clone(),
            Default::default(),
            config,
            Some(slow),
            shutdown.clone(),
        )
        .await
        .unwrap()
    }

    async fn reconciler(&self, shutdown: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let config = ReconcilerConfig {
            concurrency: 1,
            checks: Default::default(),
            retry: RetryPolicy::for_test(),
            worker: "reconciler-1".into(),
        };
        replicator_reconciler::spawn(
            self.bus(),
            self.store.clone(),
            Default::default(),
            config,
            shutdown.clone(),
        )
        .await
        .unwrap()
    }

    async fn attempts(&self, stage: &str) -> Vec<AttemptLog> {
        self.store
            .attempt_log(self.task.header.run_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.stage == stage)
            .collect()
    }

    /// Wait until `n` attempts of `stage` finished and the queue is empty.
    async fn settled(&self, stage: &str, queue: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let attempts = self.attempts(stage).await;
            let done = attempts.iter().filter(|a| a.finished_at.is_some()).count();
            if done >= n && self.bus.depth(queue) == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{done} of {n} {stage} attempts finished: {attempts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (stage, outcome) of every result recorded for the run.
    async fn results(&self) -> Vec<(String, String)> {
        self.store
            .outcomes(self.task.header.run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|(s, o, _)| (s, o))
            .collect()
    }

    async fn copied_files(&self) -> u64 {
        let summary = self.store.summarize(self.task.header.run_id).await.unwrap();
        summary.tables[0].copied_files
    }

    async fn status(&self) -> String {
        self.store
            .task_status(self.task.task_id)
            .await
            .unwrap()
            .unwrap()
            .to_string()
    }

    async fn dead_letters(&self) -> usize {
        let mut n = 0;
        for q in [names::CLONE_TASKS, names::RECONCILE_TASKS] {
            n += self.bus.dead_letters(q).await.unwrap().len();
        }
        n
    }
}

/// No two clone attempts of one target overlap in time, whoever ran them.
fn assert_one_at_a_time(attempts: &[AttemptLog]) {
    for (i, a) in attempts.iter().enumerate() {
        for b in &attempts[i + 1..] {
            let (first, second) = if a.started_at <= b.started_at {
                (a, b)
            } else {
                (b, a)
            };
            let end = first.finished_at.expect("finished");
            assert!(
                end <= second.started_at,
                "clone attempts overlap: {first:?} and {second:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_delivered_twice_at_once_is_cloned_one_delivery_at_a_time_and_recorded_once() {
    let h = Harness::new().await;
    h.deliver().await;
    h.deliver().await;
    let shutdown = CancellationToken::new();
    let cloner = h.cloner(&shutdown).await;
    // Both deliveries are taken at once by one worker; the second waits for the first.
    h.settled("clone", names::CLONE_TASKS, 2).await;
    shutdown.cancel();
    cloner.await.unwrap();
    let clones = h.attempts("clone").await;
    assert!(clones.len() >= 2, "{clones:?}");
    assert_one_at_a_time(&clones);
    assert_eq!(h.status().await, "cloned");
    assert_eq!(h.copied_files().await, h.files, "the first result stands");
    assert_eq!(h.results().await, [("clone".into(), "succeeded".into())]);
    assert_eq!(h.dead_letters().await, 0);

    // Validation: one result, whatever the second delivery queued.
    let shutdown = CancellationToken::new();
    let reconciler = h.reconciler(&shutdown).await;
    h.settled("reconcile", names::RECONCILE_TASKS, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.settled("reconcile", names::RECONCILE_TASKS, 1).await;
    shutdown.cancel();
    reconciler.await.unwrap();
    assert_eq!(h.status().await, "succeeded");
    assert_eq!(
        h.results().await,
        [
            ("clone".into(), "succeeded".into()),
            ("reconcile".into(), "matched".into())
        ]
    );
    let validations = h.attempts("reconcile").await;
    assert_eq!(
        validations
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
            .count(),
        1,
        "validated once: {validations:?}"
    );
    assert_eq!(h.copied_files().await, h.files);
    assert_eq!(h.dead_letters().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_delivered_again_after_it_finished_changes_nothing() {
    let h = Harness::new().await;
    let shutdown = CancellationToken::new();
    let cloner = h.cloner(&shutdown).await;
    let reconciler = h.reconciler(&shutdown).await;
    h.deliver().await;
    h.settled("reconcile", names::RECONCILE_TASKS, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.status().await != "succeeded" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            h.status().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let results = h.results().await;
    assert_eq!(results.len(), 2, "{results:?}");

    // The broker delivers the finished task again: a no-op clone, recorded as an attempt.
    let mut events = h.bus.subscribe("#").await.unwrap();
    h.deliver().await;
    h.settled("clone", names::CLONE_TASKS, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    cloner.await.unwrap();
    reconciler.await.unwrap();
    assert_eq!(h.status().await, "succeeded", "not moved back to `cloned`");
    assert_eq!(
        h.copied_files().await,
        h.files,
        "not overwritten by the no-op"
    );
    assert_eq!(h.results().await, results, "no second result");
    assert_eq!(
        h.attempts("reconcile").await.len(),
        1,
        "no second validation queued"
    );
    assert_eq!(h.bus.depth(names::RECONCILE_TASKS), 0);
    assert_eq!(h.dead_letters().await, 0);
    assert_eq!(
        h.attempts("clone").await.len(),
        2,
        "both deliveries audited"
    );
    // No second `clone.*` event: `watch` and the notifier see the task finish once.
    h.bus.close();
    while let Some((key, _)) = events.next().await {
        assert!(!key.starts_with("clone."), "{key}");
    }
}

/// The first delivery recorded `cloned` and died before it queued the validation; the
/// redelivery then fails (the source is gone for now). The validation is queued all the same,
/// so the task does not wait at `cloned` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_redelivery_of_a_cloned_task_still_queues_its_validation() {
    let h = Harness::new().await;
    let first = replicator_proto::CloneResult {
        ingest: None,
        clone_path: None,
        header: Header::new(h.task.header.run_id),
        task_id: h.task.task_id,
        attempt: 1,
        table: h.task.table.clone(),
        source: h.task.source.clone(),
        target: h.task.target.clone(),
        outcome: replicator_proto::Outcome::Succeeded,
        source_version: Some(1),
        target_version: Some(0),
        committed: true,
        metrics: None,
        error: None,
        retries: 0,
        duration_ms: 1,
        statement_ids: Vec::new(),
    };
    h.store
        .record_clone(&first, true, &Default::default())
        .await
        .unwrap();
    assert_eq!(h.status().await, "cloned");
    // The redelivery cannot read its source.
    std::fs::rename(&h.task.source, format!("{}.away", h.task.source)).unwrap();
    let shutdown = CancellationToken::new();
    let cloner = h.cloner(&shutdown).await;
    h.deliver().await;
    h.settled("clone", names::CLONE_TASKS, 1).await;
    shutdown.cancel();
    cloner.await.unwrap();
    assert_eq!(h.status().await, "cloned", "the first result stands");
    assert_eq!(
        h.bus.depth(names::RECONCILE_TASKS),
        1,
        "the validation the first delivery never queued"
    );
}

/// The first delivery's validation is lost, the source moves on, and the broker redelivers
/// the clone task: the skipped redelivery queues the validation of the version that was
/// cloned (not of the source's latest), so a correct replica is reported matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skipped_redelivery_queues_the_validation_of_the_cloned_version() {
    use replicator_proto::ReconcileTask;
    let h = Harness::new().await;
    let shutdown = CancellationToken::new();
    let cloner = h.cloner(&shutdown).await;
    h.deliver().await;
    h.settled("clone", names::CLONE_TASKS, 1).await;
    assert_eq!(h.status().await, "cloned");
    let mut c = h.bus.consume(names::RECONCILE_TASKS, 1).await.unwrap();
    let (first, d) = typed::accept::<ReconcileTask>(c.next().await.unwrap()).unwrap();
    d.ack();
    let src = TableLocation::parse(&h.task.source).unwrap();
    sample::append(&src, &sample::orders(300, 100, "us"))
        .await
        .unwrap();
    h.deliver().await;
    h.settled("clone", names::CLONE_TASKS, 2).await;
    shutdown.cancel();
    cloner.await.unwrap();
    let (second, d) = typed::accept::<ReconcileTask>(c.next().await.unwrap()).unwrap();
    d.ack();
    drop(c);
    assert_eq!(
        second.source_version, first.source_version,
        "the cloned version"
    );
    typed::publish(&h.bus, names::RECONCILE_TASKS, &second)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let reconciler = h.reconciler(&shutdown).await;
    h.settled("reconcile", names::RECONCILE_TASKS, 1).await;
    shutdown.cancel();
    reconciler.await.unwrap();
    assert_eq!(
        h.results().await.last().unwrap(),
        &("reconcile".to_string(), "matched".to_string()),
        "a correct replica of what was cloned"
    );
}
