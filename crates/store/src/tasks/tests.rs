//! Unit tests of recording results: the first result of a stage stands.

use super::*;
use crate::NewTask;
use crate::testing::{
    clone_result, new_run, reconcile_result, request, set_status, set_status_word, sqlite_file,
};
use replicator_proto::{CloneMetrics, Header};

/// A failed clone is the task's result: a later successful delivery changes neither
/// its status nor its metrics, but the target's last source version follows what the
/// target now holds.
#[tokio::test]
async fn a_first_failed_clone_stands_against_a_later_success() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let (run_id, tasks) = new_run(&store, &["a.x"]).await;
    let failed = clone_result(run_id, &tasks[0], Outcome::Failed, 0);
    let succeeded = clone_result(run_id, &tasks[0], Outcome::Succeeded, 3);
    assert_eq!(
        store
            .record_clone(&failed, true, &Default::default())
            .await
            .unwrap(),
        Recorded {
            first: true,
            status: Some(TaskStatus::Failed)
        }
    );
    assert_eq!(
        store
            .record_clone(&succeeded, true, &Default::default())
            .await
            .unwrap(),
        Recorded {
            first: false,
            status: Some(TaskStatus::Failed)
        }
    );
    let summary = store.summarize(run_id).await.unwrap();
    assert_eq!((summary.failed, summary.files_copied), (1, 0));
    assert_eq!(summary.tables[0].error.as_deref(), Some("boom"));
    let outcomes = store.outcomes(run_id).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(
        (outcomes[0].0.as_str(), outcomes[0].1.as_str()),
        ("clone", "failed")
    );
    assert_eq!(
        store
            .last_source_version(&tasks[0].source, &tasks[0].target)
            .await
            .unwrap(),
        Some(4)
    );
}

/// A validation moves a cloned task to a terminal status once; a second validation and
/// a later attempt of either stage leave it there.
#[tokio::test]
async fn a_first_validation_stands() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let (run_id, tasks) = new_run(&store, &["a.x"]).await;
    let id = tasks[0].task_id;
    let status = || async { store.task_status(id).await.unwrap() };
    store
        .attempt_started(run_id, id, Stage::Clone, 1, "w1")
        .await
        .unwrap();
    assert_eq!(status().await, Some(TaskStatus::Cloning));
    let cloned = clone_result(run_id, &tasks[0], Outcome::Succeeded, 1);
    assert!(
        store
            .record_clone(&cloned, true, &Default::default())
            .await
            .unwrap()
            .first
    );
    assert_eq!(status().await, Some(TaskStatus::Cloned));
    store
        .attempt_started(run_id, id, Stage::Reconcile, 1, "r1")
        .await
        .unwrap();
    assert_eq!(status().await, Some(TaskStatus::Reconciling));
    let mismatched = reconcile_result(run_id, &tasks[0], Validation::Mismatched);
    assert_eq!(
        store
            .record_reconcile(&mismatched, &Default::default())
            .await
            .unwrap(),
        Recorded {
            first: true,
            status: Some(TaskStatus::Mismatched)
        }
    );
    let matched = reconcile_result(run_id, &tasks[0], Validation::Matched);
    assert_eq!(
        store
            .record_reconcile(&matched, &Default::default())
            .await
            .unwrap(),
        Recorded {
            first: false,
            status: Some(TaskStatus::Mismatched)
        }
    );
    for stage in [Stage::Clone, Stage::Reconcile] {
        store
            .attempt_started(run_id, id, stage, 2, "w2")
            .await
            .unwrap();
        assert_eq!(status().await, Some(TaskStatus::Mismatched), "{stage:?}");
    }
    assert!(!store.fail_task(id, "dead-lettered").await.unwrap());
    let outcomes: Vec<String> = store
        .outcomes(run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|(s, o, _)| format!("{s}:{o}"))
        .collect();
    assert_eq!(outcomes, ["clone:succeeded", "reconcile:mismatched"]);
}

/// Results of a task the store does not have record nothing and say so.
#[tokio::test]
async fn results_of_an_unknown_task_record_nothing() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let (run_id, _) = new_run(&store, &["a.x"]).await;
    let ghost = NewTask {
        task_id: Uuid::now_v7(),
        kind: None,
        table: "g.h".into(),
        source: "/s/g.h".into(),
        target: "/t/g.h".into(),
        source_version: None,
    };
    let none = Recorded {
        first: false,
        status: None,
    };
    let clone = clone_result(run_id, &ghost, Outcome::Succeeded, 1);
    assert_eq!(
        store
            .record_clone(&clone, true, &Default::default())
            .await
            .unwrap(),
        none
    );
    let validation = reconcile_result(run_id, &ghost, Validation::Matched);
    assert_eq!(
        store
            .record_reconcile(&validation, &Default::default())
            .await
            .unwrap(),
        none
    );
    assert_eq!(store.task_status(ghost.task_id).await.unwrap(), None);
    assert!(store.outcomes(run_id).await.unwrap().is_empty());
}

/// A dead-lettered task fails unless it is finished; only a failed task is requeued.
#[tokio::test]
async fn fail_and_requeue_follow_the_status() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let (run_id, tasks) = new_run(&store, &["a.x", "b.y"]).await;
    let (a, b) = (tasks[0].task_id, tasks[1].task_id);
    assert!(!store.requeue_task(a).await.unwrap(), "queued, not failed");
    assert!(store.fail_task(a, "dead-lettered").await.unwrap());
    assert_eq!(
        store.task_status(a).await.unwrap(),
        Some(TaskStatus::Failed)
    );
    set_status(&store, b, TaskStatus::Succeeded).await;
    assert!(!store.fail_task(b, "dead-lettered").await.unwrap());
    let records = store.tasks(run_id).await.unwrap();
    assert_eq!(
        records
            .iter()
            .map(|t| (t.status, t.error.as_deref()))
            .collect::<Vec<_>>(),
        [
            (TaskStatus::Failed, Some("dead-lettered")),
            (TaskStatus::Succeeded, None)
        ]
    );
    assert!(store.requeue_task(a).await.unwrap());
    assert_eq!(
        store.task_status(a).await.unwrap(),
        Some(TaskStatus::Queued)
    );
}

/// A status word this version does not know is an error that names it, never a panic
/// and never a guess.
#[tokio::test]
async fn an_unknown_status_in_the_database_is_an_error_naming_it() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let (run_id, tasks) = new_run(&store, &["a.x"]).await;
    set_status_word(&store, tasks[0].task_id, "paused").await;
    let expected = "the state database holds an unknown task status `paused`";
    let e = store.task_status(tasks[0].task_id).await.unwrap_err();
    assert!(matches!(e, StoreError::State(_)), "{e:?}");
    assert_eq!(e.to_string(), expected);
    assert_eq!(store.tasks(run_id).await.unwrap_err().to_string(), expected);
    assert_eq!(
        store.summarize(run_id).await.unwrap_err().to_string(),
        expected
    );
}

#[tokio::test]
async fn results_are_recorded_once_on_sqlite() {
    let (url, _dir) = sqlite_file();
    results_are_recorded_once(&url).await;
}

/// A task's result is recorded once: a later clone result (a redelivered task's no-op)
/// changes neither its status nor its metrics nor its results, and a clone attempt
/// does not reopen a task whose clone is recorded.
pub(crate) async fn results_are_recorded_once(url: &str) {
    let store = Store::open(url).await.unwrap();
    let req = request();
    let run_id = req.header.run_id;
    let task = NewTask {
        task_id: Uuid::now_v7(),
        kind: None,
        table: "a.x".into(),
        source: "/s/a.x".into(),
        target: "/t/a.x".into(),
        source_version: None,
    };
    store
        .create_run(&req, std::slice::from_ref(&task))
        .await
        .unwrap();
    let clone = |files: u64| CloneResult {
        ingest: None,
        clone_path: None,
        header: Header::new(run_id),
        task_id: task.task_id,
        attempt: 1,
        table: "a.x".into(),
        source: "/s/a.x".into(),
        target: "/t/a.x".into(),
        outcome: Outcome::Succeeded,
        source_version: Some(4),
        target_version: Some(0),
        committed: files > 0,
        metrics: Some(CloneMetrics {
            num_copied_files: files,
            copied_files_size: files * 100,
            ..Default::default()
        }),
        error: None,
        retries: 0,
        duration_ms: 5,
        statement_ids: Vec::new(),
    };
    store
        .attempt_started(run_id, task.task_id, Stage::Clone, 1, "w1")
        .await
        .unwrap();
    let first = store
        .record_clone(&clone(6), true, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        first,
        Recorded {
            first: true,
            status: Some(TaskStatus::Cloned)
        }
    );
    // The same task delivered again: its attempt does not reopen the task, its no-op
    // result is not recorded.
    store
        .attempt_started(run_id, task.task_id, Stage::Clone, 1, "w1")
        .await
        .unwrap();
    assert_eq!(
        store
            .task_status(task.task_id)
            .await
            .unwrap()
            .map(TaskStatus::as_str),
        Some("cloned")
    );
    let again = store
        .record_clone(&clone(0), true, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        again,
        Recorded {
            first: false,
            status: Some(TaskStatus::Cloned)
        }
    );
    let reconciled = ReconcileResult {
        header: Header::new(run_id),
        task_id: task.task_id,
        attempt: 1,
        table: "a.x".into(),
        outcome: Validation::Matched,
        source_version: Some(4),
        target_version: Some(0),
        source_rows: Some(10),
        target_rows: Some(10),
        checks: Vec::new(),
        keys: None,
        partitions: Vec::new(),
        error: None,
        duration_ms: 1,
        statement_ids: Vec::new(),
        rolled_back_to: None,
        depth: Default::default(),
    };
    assert!(
        store
            .record_reconcile(&reconciled, &Default::default())
            .await
            .unwrap()
            .first
    );
    // After the task succeeded: neither a clone nor a validation changes it.
    store
        .attempt_started(run_id, task.task_id, Stage::Clone, 1, "w2")
        .await
        .unwrap();
    let late = store
        .record_clone(&clone(0), true, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        late,
        Recorded {
            first: false,
            status: Some(TaskStatus::Succeeded)
        }
    );
    let failed = ReconcileResult {
        outcome: Validation::Failed,
        error: Some(replicator_proto::TaskError {
            kind: replicator_proto::ErrorKind::Transient,
            message: "late".into(),
        }),
        ..reconciled
    };
    assert!(
        !store
            .record_reconcile(&failed, &Default::default())
            .await
            .unwrap()
            .first
    );
    let summary = store.summarize(run_id).await.unwrap();
    assert_eq!(
        (
            summary.succeeded,
            summary.files_copied,
            summary.bytes_copied
        ),
        (1, 6, 600),
        "the first result stands: {summary:?}"
    );
    let outcomes = store.outcomes(run_id).await.unwrap();
    let stages: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|(s, o, _)| (s.as_str(), o.as_str()))
        .collect();
    assert_eq!(stages, [("clone", "succeeded"), ("reconcile", "matched")]);
    // Every delivery's attempt is in the audit.
    assert_eq!(store.attempts(run_id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_stage_ends_with_its_result_on_sqlite() {
    let (url, _dir) = sqlite_file();
    a_stage_ends_with_its_result(&url).await;
    a_lease_starts_the_first_attempt(&url).await;
}

/// Taking a key's lease starts the first attempt with it; a lease held by another delivery
/// starts nothing; an unknown task gets the lease but no attempt.
pub(crate) async fn a_lease_starts_the_first_attempt(url: &str) {
    use crate::LeaseToken;
    let store = Store::open(url).await.unwrap();
    let (run_id, tasks) = new_run(&store, &["a.x"]).await;
    let (id, target) = (tasks[0].task_id, tasks[0].target.clone());
    let ttl = std::time::Duration::from_secs(60);
    let (w1, w2) = (LeaseToken::new("w1"), LeaseToken::new("w2"));
    let started = store
        .start_leased(&target, &w1, ttl, run_id, id, Stage::Clone, "w1")
        .await
        .unwrap()
        .expect("lease taken")
        .expect("attempt started");
    assert_eq!(started.prior, Some(TaskStatus::Queued));
    assert_eq!(
        store.task_status(id).await.unwrap(),
        Some(TaskStatus::Cloning)
    );
    assert_eq!(
        store.lease_holder(&target).await.unwrap().map(|h| h.1),
        Some(Some(w1.id))
    );
    // Another delivery: refused, and neither an attempt nor a status change.
    assert_eq!(
        store
            .start_leased(&target, &w2, ttl, run_id, id, Stage::Clone, "w2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.attempts(run_id).await.unwrap().len(), 1);
    store.release_lease(&target, &w1).await.unwrap();
    let again = store
        .start_leased(&target, &w2, ttl, run_id, id, Stage::Clone, "w2")
        .await
        .unwrap()
        .expect("free again")
        .expect("attempt started");
    assert_eq!(again.prior, Some(TaskStatus::Cloning));
    let unknown = store
        .start_leased(
            "/t/none",
            &w1,
            ttl,
            run_id,
            Uuid::now_v7(),
            Stage::Clone,
            "w1",
        )
        .await
        .unwrap();
    assert_eq!(unknown, Some(None));
}

/// An attempt's start says where the task stood (a redelivery finds its stage's result);
/// the last attempt's end and the lease's release commit with the result — also when the
/// result is not the first — and a retried attempt's end is written on its own.
pub(crate) async fn a_stage_ends_with_its_result(url: &str) {
    use crate::{AttemptOutcome, LeaseToken, StageEnd};
    let store = Store::open(url).await.unwrap();
    let (run_id, tasks) = new_run(&store, &["a.x"]).await;
    let (id, target) = (tasks[0].task_id, tasks[0].target.clone());
    let token = LeaseToken::new("w1");
    let ttl = std::time::Duration::from_secs(60);
    assert!(store.acquire_lease(&target, &token, id, ttl).await.unwrap());
    let first = store
        .attempt_started(run_id, id, Stage::Clone, 1, "w1")
        .await
        .unwrap();
    assert_eq!(first.prior, Some(TaskStatus::Queued));
    assert_eq!(
        store.task_status(id).await.unwrap(),
        Some(TaskStatus::Cloning)
    );
    store
        .attempt_finished(&first.end(AttemptOutcome::Retrying, Some("timeout")))
        .await
        .unwrap();
    let second = store
        .attempt_started(run_id, id, Stage::Clone, 2, "w1")
        .await
        .unwrap();
    assert_eq!(second.prior, Some(TaskStatus::Cloning));
    let end = StageEnd {
        attempt: Some(second.end(AttemptOutcome::Succeeded, None)),
        lease: Some((target.clone(), token.clone())),
    };
    let cloned = clone_result(run_id, &tasks[0], Outcome::Succeeded, 2);
    assert_eq!(
        store.record_clone(&cloned, true, &end).await.unwrap(),
        Recorded {
            first: true,
            status: Some(TaskStatus::Cloned)
        }
    );
    assert_eq!(store.lease_holder(&target).await.unwrap(), None, "released");
    let outcomes: Vec<_> = store
        .attempts(run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.attempt, a.outcome, a.error))
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                1,
                Some(AttemptOutcome::Retrying),
                Some("timeout".to_owned())
            ),
            (2, Some(AttemptOutcome::Succeeded), None)
        ]
    );
    // A redelivery: its start finds the clone's result; its late result is not the first
    // but still ends its attempt and releases its lease.
    let token2 = LeaseToken::new("w2");
    assert!(
        store
            .acquire_lease(&target, &token2, id, ttl)
            .await
            .unwrap()
    );
    let again = store
        .attempt_started(run_id, id, Stage::Clone, 1, "w2")
        .await
        .unwrap();
    assert_eq!(again.prior, Some(TaskStatus::Cloned));
    assert!(again.prior.unwrap().has_result(Stage::Clone));
    let end = StageEnd {
        attempt: Some(again.end(AttemptOutcome::Succeeded, None)),
        lease: Some((target.clone(), token2)),
    };
    let late = store.record_clone(&cloned, true, &end).await.unwrap();
    assert!(!late.first);
    assert_eq!(store.lease_holder(&target).await.unwrap(), None);
    // The validation stage: its start finds `cloned`, its result ends its attempt.
    let check = store
        .attempt_started(run_id, id, Stage::Reconcile, 1, "r1")
        .await
        .unwrap();
    assert_eq!(check.prior, Some(TaskStatus::Cloned));
    let end = StageEnd {
        attempt: Some(check.end(AttemptOutcome::Succeeded, None)),
        lease: None,
    };
    let matched = reconcile_result(run_id, &tasks[0], Validation::Matched);
    assert!(store.record_reconcile(&matched, &end).await.unwrap().first);
    let attempts = store.attempts(run_id).await.unwrap();
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|a| a.outcome.is_some()), "{attempts:?}");
    // An unknown task has no attempts (the worker then works without an attempt row).
    assert!(
        store
            .attempt_started(run_id, Uuid::now_v7(), Stage::Clone, 1, "w1")
            .await
            .is_err()
    );
}
