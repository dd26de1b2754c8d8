//! The one worker skeleton: everything a task worker does around its work, written once.
//!
//! For each delivery, in order:
//!
//! 1. **lease** — when the work names a key (a clone's target), take the key's lease in the
//!    store for this delivery, in the statement that starts the first attempt; held by
//!    another delivery → the delivery is deferred, nothing started;
//! 2. **already done?** — the first attempt's row is written by a statement that also reads
//!    the task's status: a task whose stage already has its result recorded (a redelivered
//!    task) is not worked again: that attempt ends `skipped`, the work's
//!    [`Work::after_skip`] runs (the cloner re-queues a validation the first delivery may
//!    have died before queueing), and the delivery is acked;
//! 3. **attempts with retry** — every try is one attempt row (`succeeded`, `retrying` or
//!    `failed`); a failure that says another try may help is retried with the shared
//!    backoff, up to `retry.max_attempts`;
//! 4. **record and publish** — the work turns the outcome into its result message, records
//!    it (only the first result of a task stands) with the last attempt's end and the
//!    lease's release in the same transaction ([`StageEnd`]: three round trips to the store
//!    per task and stage, not a dozen), and publishes it;
//!    A failure the work calls "not yet" ([`Work::not_yet`]: a dependency still in flight)
//!    records no result: the delivery is deferred and comes back later;
//! 5. **settle** ([`settle`]) — the one rule for every stage:
//!    - recording or publishing failed → **nack** (redelivered; the result is recorded again);
//!    - the result was not the first (a redelivery raced another) → **ack**;
//!    - the work failed after its retries → **dead letter** with the reason, so `replay`
//!      can send it back once the cause is fixed;
//!    - otherwise (a clone done, a validation that ran — matched or not) → **ack**.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use replicator_bus::{BusRef, Delivery};
use replicator_common::metrics;
use replicator_common::retry::{RetryPolicy, Retryable};
use replicator_common::shutdown::CancellationToken;
use replicator_proto::Message;
use replicator_store::{
    AttemptEnd, AttemptOutcome, Recorded, Stage, StageEnd, Started, Store, TaskStatus,
};
use tokio::task::JoinHandle;
use uuid::Uuid;

mod lease;

use lease::Lease;

/// What a service supplies: its work on one task, and how its result is recorded.
#[async_trait]
pub trait Work: Send + Sync + 'static {
    /// The task message the service consumes.
    type Task: Message + Clone;
    /// What one successful attempt produced.
    type Output: Send;
    /// Why an attempt failed, and whether another may help.
    type Error: Retryable + std::fmt::Display + Send;
    /// The result message recorded and published.
    type Result: Send + Sync;

    /// The service's name in metrics and logs (`cloner`).
    const SERVICE: &'static str;
    /// The task stage this work records attempts and results under.
    const STAGE: Stage;

    /// The queue the service consumes.
    fn queue(&self) -> &'static str;
    /// The tracing span of one task.
    fn span(task: &Self::Task) -> tracing::Span;
    /// The task's ID and the attempt number its message carries.
    fn ids(task: &Self::Task) -> (Uuid, u32);
    /// The key only one delivery may work on at a time (a clone's target), if any.
    fn lease_key(&self, _task: &Self::Task) -> Option<String> {
        None
    }

    /// One attempt at the work.
    async fn attempt(&self, task: &Self::Task) -> Result<Self::Output, Self::Error>;

    /// The result message of the final outcome, after `retries` retries, `took` in all.
    fn result(
        &self,
        task: &Self::Task,
        outcome: Result<Self::Output, Self::Error>,
        retries: u32,
        took: Duration,
    ) -> Self::Result;

    /// The result's error message when the work failed (dead-lettered with it).
    fn failure(result: &Self::Result) -> Option<&str>;

    /// Record the result (the first one of a task stands) with `end` — the last attempt's
    /// outcome and the lease's release, in the result's transaction — and publish what
    /// follows it.
    async fn record(
        &self,
        task: &Self::Task,
        result: &Self::Result,
        end: &StageEnd,
        bus: &BusRef,
        store: &Store,
    ) -> anyhow::Result<Recorded>;

    /// Whether a failed attempt means "not yet" rather than "failed": a task that depends
    /// on another still in flight (a view whose table is still being cloned). Some reason →
    /// the delivery is deferred (delivered again later, not counted) and no result is
    /// recorded. The work decides how long it waits before a missing dependency is a
    /// failure.
    fn not_yet(&self, _task: &Self::Task, _error: &Self::Error) -> Option<String> {
        None
    }

    /// OpenLineage (docs/lineage.md): the task as a lineage run — its job name, input and
    /// output datasets, parent run. None: the task sends no events.
    fn lineage(&self, _task: &Self::Task) -> Option<replicator_lineage::TaskLineage> {
        None
    }

    /// OpenLineage: send the event that ends the task's lineage run (COMPLETE with its
    /// metrics or assertions, or FAIL with the reason), from its recorded result.
    async fn lineage_end(
        &self,
        _lineage: &replicator_lineage::TaskLineage,
        _result: &Self::Result,
        _emitter: &replicator_lineage::Emitter,
    ) {
    }

    /// After a redelivered task was skipped because its stage had its result already.
    async fn after_skip(
        &self,
        _task: &Self::Task,
        _status: TaskStatus,
        _bus: &BusRef,
        _store: &Store,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

/// How a worker runs: its identity, concurrency, retries and lease length.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// This worker's identity in leases and attempts.
    pub worker: String,
    /// Tasks handled at once.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// How long a lease lasts unless renewed (renewed every third of it while the work runs).
    pub lease_ttl: Duration,
    /// Where OpenLineage events go (never waits; disabled without a `lineage` section).
    pub lineage: replicator_lineage::Emitter,
}

/// What to do with a delivery once its result is recorded (or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    Ack,
    /// Redeliver (recording or publishing failed).
    Nack(String),
    /// Park in dead letters with the reason (`replay` sends it back).
    DeadLetter(String),
}

/// The one settle rule of every worker (see the crate docs).
pub fn settle(
    stage: Stage,
    recorded: Result<&Recorded, String>,
    failure: Option<&str>,
    retries: u32,
) -> Settle {
    let recorded = match recorded {
        Ok(r) => r,
        Err(e) => return Settle::Nack(e),
    };
    if !recorded.first {
        return Settle::Ack;
    }
    match failure {
        None => Settle::Ack,
        Some(err) => Settle::DeadLetter(format!(
            "{} failed after {retries} retries: {err}",
            stage_name(stage)
        )),
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Clone => "clone",
        Stage::Reconcile => "validation",
        Stage::Catalog => "catalog",
    }
}

/// Deliveries a worker of `concurrency` slots holds from the broker: one more per two slots,
/// so a slot that frees finds its next task here instead of waiting for the broker to send
/// one after the ack (a round trip per task; bench/RESULTS.md, "Scale"). Few enough that a
/// long task keeps little waiting behind it that another worker could take.
pub fn prefetch(concurrency: usize) -> usize {
    concurrency + concurrency.div_ceil(2)
}

/// Start consuming the work's queue; returns once the consumer is attached. The worker stops
/// taking tasks when `shutdown` fires and returns after in-flight tasks finish.
pub async fn spawn<W: Work>(
    work: Arc<W>,
    bus: BusRef,
    store: Store,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let concurrency = settings.concurrency;
    let consumer = bus.consume(work.queue(), prefetch(concurrency)).await?;
    let settings = Arc::new(settings);
    Ok(tokio::spawn(replicator_bus::worker::serve(
        consumer,
        concurrency,
        shutdown,
        W::span,
        move |task, delivery| {
            let (work, bus, store, settings) =
                (work.clone(), bus.clone(), store.clone(), settings.clone());
            async move { handle(work.as_ref(), task, delivery, &bus, &store, &settings).await }
        },
    )))
}

/// Work one delivery: lease, skip if done, attempts with retry, record, publish, settle.
pub async fn handle<W: Work>(
    work: &W,
    task: W::Task,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
    settings: &WorkerSettings,
) {
    let started = Instant::now();
    let run_id = task.header().run_id;
    let (task_id, _) = W::ids(&task);
    // The first attempt starts (with the key's lease, when the work names one); the same
    // statement says where the task stood, so a redelivery of a task whose stage has its
    // result costs no extra round trip.
    let (lease, first) = match work.lease_key(&task) {
        None => {
            let first = match store
                .attempt_started(run_id, task_id, W::STAGE, 1, &settings.worker)
                .await
            {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the attempt");
                    None
                }
            };
            (None, first)
        }
        Some(key) => match Lease::begin(
            &key,
            (run_id, task_id),
            W::STAGE,
            store,
            &settings.worker,
            settings.lease_ttl,
        )
        .await
        {
            Ok((lease, first)) => (Some(lease), first),
            Err(reason) => {
                tracing::info!(%reason, "task deferred");
                delivery.defer(&reason);
                return;
            }
        },
    };
    if let Some(s) = first
        && let Some(state) = s.prior.filter(|p| p.has_result(W::STAGE))
    {
        skip(work, &task, state, s, delivery, bus, store).await;
        metrics::task_done(W::SERVICE, true, started.elapsed());
        if let Some(lease) = lease {
            lease.release(store).await;
        }
        return;
    }
    let _in_flight = metrics::in_flight(W::SERVICE);
    // The lineage run's START carries the time the work started; it is sent once the
    // outcome is known not to be a deferral (a deferred task starts again later).
    let lineage = settings
        .lineage
        .is_enabled()
        .then(|| work.lineage(&task))
        .flatten();
    let start = lineage
        .as_ref()
        .map(|l| l.start(settings.lineage.namespace()));
    let attempts = AtomicU32::new(0);
    let first = Mutex::new(first);
    // The last attempt's end, written with the result (or when another attempt starts).
    // An attempt that will be retried ends at once: the backoff may be long.
    let ended: Mutex<Option<AttemptEnd>> = Mutex::new(None);
    let (outcome, retries) = settings
        .retry
        .retry(
            || async {
                let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                let before = ended.lock().expect("attempt end").take();
                if let Some(before) = before {
                    finish(store, &before).await;
                }
                let started: Option<Started> = if n == 1 {
                    first.lock().expect("first attempt").take()
                } else {
                    store
                        .attempt_started(run_id, task_id, W::STAGE, n, &settings.worker)
                        .await
                        .ok()
                };
                let r = work.attempt(&task).await;
                if let Some(s) = started {
                    let (o, e) = match &r {
                        Ok(_) => (AttemptOutcome::Succeeded, None),
                        Err(e) if work.not_yet(&task, e).is_some() => {
                            (AttemptOutcome::Deferred, Some(e.to_string()))
                        }
                        Err(e) if e.is_transient() => {
                            (AttemptOutcome::Retrying, Some(e.to_string()))
                        }
                        Err(e) => (AttemptOutcome::Failed, Some(e.to_string())),
                    };
                    let end = s.end(o, e.as_deref());
                    if o == AttemptOutcome::Retrying {
                        // Another try follows after a backoff: the log says so now.
                        finish(store, &end).await;
                    } else {
                        *ended.lock().expect("attempt end") = Some(end);
                    }
                }
                r
            },
            |e: &W::Error, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "{} attempt failed, retrying", stage_name(W::STAGE)),
        )
        .await;
    let ended = ended.into_inner().expect("attempt end");
    if let Err(e) = &outcome
        && let Some(reason) = work.not_yet(&task, e)
    {
        if let Some(end) = &ended {
            finish(store, end).await;
        }
        if let Some(lease) = lease {
            lease.release(store).await;
        }
        tracing::info!(%reason, "task deferred: not yet");
        delivery.defer(&reason);
        return;
    }
    if let Some(start) = start {
        settings.lineage.emit(start);
    }
    let result = work.result(&task, outcome, retries, started.elapsed());
    let end = StageEnd {
        attempt: ended,
        lease: lease.as_ref().map(|l| l.hand_over()),
    };
    let recorded = work.record(&task, &result, &end, bus, store).await;
    if let (Some(l), Ok(r)) = (&lineage, &recorded)
        && r.first
    {
        work.lineage_end(l, &result, &settings.lineage).await;
    }
    if recorded.is_err() {
        // The result's transaction may not have committed: end the attempt and release the
        // lease on their own (both are harmless if it did).
        if let Some(a) = &end.attempt {
            finish(store, a).await;
        }
        if let Some(lease) = lease {
            lease.release(store).await;
        }
    }
    let failure = W::failure(&result);
    metrics::task_done(W::SERVICE, failure.is_none(), started.elapsed());
    let recorded = recorded.map_err(|e| e.to_string());
    if let Ok(r) = &recorded
        && !r.first
    {
        tracing::info!(status = %r.status.map(|s| s.as_str()).unwrap_or(""), "the task's result was recorded by another delivery; this one is in the attempts only");
    }
    match settle(
        W::STAGE,
        recorded.as_ref().map_err(Clone::clone),
        failure,
        retries,
    ) {
        Settle::Ack => delivery.ack(),
        Settle::Nack(e) => {
            tracing::warn!(error = %e, "could not record or publish the result; the task will be redelivered");
            delivery.nack(&e);
        }
        Settle::DeadLetter(reason) => delivery.dead_letter(&reason),
    }
}

/// An attempt's end written on its own (not with a result).
async fn finish(store: &Store, end: &AttemptEnd) {
    if let Err(e) = store.attempt_finished(end).await {
        tracing::warn!(error = %e, "could not record the attempt");
    }
}

/// A delivery of a task whose stage has its result: its attempt ends as skipped, then the
/// delivery is acked (nacked if what follows the skip could not be published).
async fn skip<W: Work>(
    work: &W,
    task: &W::Task,
    state: TaskStatus,
    attempt: Started,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
) {
    tracing::info!(status = %state, "task delivered again after its result was recorded; the recorded result stands, this delivery is in the attempts only");
    let why = format!("task already {state}");
    finish(store, &attempt.end(AttemptOutcome::Skipped, Some(&why))).await;
    match work.after_skip(task, state, bus, store).await {
        Ok(()) => delivery.ack(),
        Err(e) => {
            tracing::warn!(error = %e, "could not publish what follows the task; it will be redelivered");
            delivery.nack(&e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicator_bus::{MemoryBus, typed};
    use replicator_proto::{
        CloneResult, CloneTask, EngineKind, ErrorKind, Header, Operation, Outcome,
        ReplicationRequest, TableFilter, TaskError,
    };
    use replicator_store::NewTask;

    /// Fails its first `fails` attempts with a transient error, then succeeds.
    struct Flaky {
        fails: AtomicU32,
    }

    #[derive(Debug)]
    struct Transient;
    impl std::fmt::Display for Transient {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the store blinked")
        }
    }
    impl Retryable for Transient {
        fn is_transient(&self) -> bool {
            true
        }
    }

    #[async_trait]
    impl Work for Flaky {
        type Task = CloneTask;
        type Output = ();
        type Error = Transient;
        type Result = CloneResult;
        const SERVICE: &'static str = "flaky";
        const STAGE: Stage = Stage::Clone;

        fn queue(&self) -> &'static str {
            "flaky"
        }
        fn span(_: &CloneTask) -> tracing::Span {
            tracing::Span::none()
        }
        fn ids(task: &CloneTask) -> (Uuid, u32) {
            (task.task_id, task.attempt)
        }
        fn lease_key(&self, task: &CloneTask) -> Option<String> {
            Some(task.target.clone())
        }
        async fn attempt(&self, _: &CloneTask) -> Result<(), Transient> {
            let left = self.fails.load(Ordering::SeqCst);
            if left > 0 {
                self.fails.store(left - 1, Ordering::SeqCst);
                return Err(Transient);
            }
            Ok(())
        }
        fn result(
            &self,
            task: &CloneTask,
            outcome: Result<(), Transient>,
            retries: u32,
            took: Duration,
        ) -> CloneResult {
            CloneResult {
                header: Header::new(task.header.run_id),
                task_id: task.task_id,
                attempt: task.attempt,
                table: task.table.clone(),
                source: task.source.clone(),
                target: task.target.clone(),
                outcome: if outcome.is_ok() {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                },
                source_version: Some(1),
                target_version: Some(1),
                committed: true,
                metrics: None,
                error: outcome.err().map(|e| TaskError {
                    kind: ErrorKind::Transient,
                    message: e.to_string(),
                }),
                retries,
                duration_ms: took.as_millis() as u64,
                statement_ids: Vec::new(),
                ingest: None,
                clone_path: None,
            }
        }
        fn failure(result: &CloneResult) -> Option<&str> {
            result.error.as_ref().map(|e| e.message.as_str())
        }
        async fn record(
            &self,
            _: &CloneTask,
            result: &CloneResult,
            end: &StageEnd,
            _: &BusRef,
            store: &Store,
        ) -> anyhow::Result<Recorded> {
            Ok(store.record_clone(result, false, end).await?)
        }
    }

    /// A task that fails once with a transient error: its first attempt's end is in the log
    /// during the backoff (not only once the task is done), the second ends with the result,
    /// and the lease taken with the first attempt is released with the result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_attempt_is_logged_before_its_backoff_and_the_last_with_the_result() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let run_id = Uuid::now_v7();
        let request = ReplicationRequest {
            ingest: Vec::new(),
            header: Header::new(run_id),
            operation: Operation::Replication,
            source_root: "/s".into(),
            target_root: "/t".into(),
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
            table: "a.x".into(),
            source: "/s/a/x".into(),
            target: "/t/a/x".into(),
            version: None,
            operation: Operation::Replication,
            engine: EngineKind::default(),
            replace: false,
            external_roots: Vec::new(),
            as_of: None,
        };
        let row = NewTask {
            task_id: task.task_id,
            kind: None,
            table: task.table.clone(),
            source: task.source.clone(),
            target: task.target.clone(),
            source_version: None,
        };
        store.create_run(&request, &[row]).await.unwrap();
        let bus: BusRef = Arc::new(MemoryBus::new(16, 5));
        let mut consumer = bus.consume("flaky", 1).await.unwrap();
        typed::publish(bus.as_ref(), "flaky", &task).await.unwrap();
        let delivery = consumer.next().await.unwrap();
        let settings = WorkerSettings {
            worker: "w1".into(),
            concurrency: 1,
            retry: RetryPolicy {
                max_attempts: 2,
                base_delay_ms: 400,
                max_delay_ms: 400,
            },
            lease_ttl: Duration::from_secs(30),
            lineage: replicator_lineage::Emitter::disabled(),
        };
        let handling = {
            let (store, bus, task) = (store.clone(), bus.clone(), task.clone());
            tokio::spawn(async move {
                let work = Flaky {
                    fails: AtomicU32::new(1),
                };
                handle(&work, task, delivery, &bus, &store, &settings).await;
            })
        };
        // During the backoff: one attempt, already ended as retrying; the lease still held.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempts = store.attempts(run_id).await.unwrap();
            if let [first] = attempts.as_slice()
                && first.outcome.is_some()
            {
                assert_eq!(first.outcome, Some(AttemptOutcome::Retrying));
                assert_eq!(first.error.as_deref(), Some("the store blinked"));
                break;
            }
            assert!(
                attempts.len() < 2,
                "the retried attempt's end was not logged before the next attempt: {attempts:?}"
            );
            assert!(Instant::now() < deadline, "no attempt ended");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(store.lease_holder(&task.target).await.unwrap().is_some());
        handling.await.unwrap();
        let attempts: Vec<_> = store
            .attempts(run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.attempt, a.outcome))
            .collect();
        assert_eq!(
            attempts,
            [
                (1, Some(AttemptOutcome::Retrying)),
                (2, Some(AttemptOutcome::Succeeded))
            ]
        );
        assert_eq!(
            store.task_status(task.task_id).await.unwrap(),
            Some(TaskStatus::Succeeded)
        );
        assert_eq!(store.lease_holder(&task.target).await.unwrap(), None);
    }

    fn recorded(first: bool) -> Recorded {
        Recorded {
            first,
            status: Some(TaskStatus::Cloned),
        }
    }

    #[test]
    fn a_result_that_could_not_be_recorded_is_redelivered() {
        assert_eq!(
            settle(Stage::Clone, Err("db down".into()), None, 0),
            Settle::Nack("db down".into())
        );
        assert_eq!(
            settle(Stage::Reconcile, Err("db down".into()), Some("x"), 2),
            Settle::Nack("db down".into())
        );
    }

    #[test]
    fn a_later_delivery_is_acked_whatever_its_outcome() {
        let r = recorded(false);
        assert_eq!(settle(Stage::Clone, Ok(&r), Some("boom"), 3), Settle::Ack);
        assert_eq!(settle(Stage::Reconcile, Ok(&r), None, 0), Settle::Ack);
    }

    #[test]
    fn a_first_failure_is_dead_lettered_with_its_reason_on_every_stage() {
        let r = recorded(true);
        assert_eq!(
            settle(Stage::Clone, Ok(&r), Some("missing file"), 2),
            Settle::DeadLetter("clone failed after 2 retries: missing file".into())
        );
        assert_eq!(
            settle(Stage::Reconcile, Ok(&r), Some("cannot read"), 0),
            Settle::DeadLetter("validation failed after 0 retries: cannot read".into())
        );
        assert_eq!(settle(Stage::Clone, Ok(&r), None, 0), Settle::Ack);
    }
}
