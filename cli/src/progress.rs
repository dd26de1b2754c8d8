//! How far a run has got, counted one way for `run`'s progress bar, `watch` and `status`: a
//! task is finished when its status is terminal — a failed clone, a successful clone of a
//! run that does not validate, or any validation result.

use std::collections::HashSet;

use replicator_proto::{Operation, names};
use replicator_store::TaskStatus;
use uuid::Uuid;

/// Finished tasks of one run, from its events or its stored task statuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunProgress {
    reconciles: bool,
    /// Tasks planned, once known.
    pub total: Option<u64>,
    /// Tasks finished.
    pub done: u64,
    /// The tasks counted, so a task seen both in the store and in an event counts once.
    seen: HashSet<Uuid>,
}

impl RunProgress {
    /// A run of `operation` (validating runs finish a task at its validation).
    pub fn new(operation: Operation) -> Self {
        Self {
            reconciles: operation.reconciles(),
            total: None,
            done: 0,
            seen: HashSet::new(),
        }
    }

    /// Whether an event with routing key `key` finishes its task.
    pub fn finishes_task(&self, key: &str) -> bool {
        match key {
            names::events::CLONE_FAILED => true,
            names::events::CLONE_SUCCEEDED => !self.reconciles,
            // A catalog object's task ends at its result.
            k => k.starts_with("reconcile.") || k.starts_with("catalog."),
        }
    }

    /// Count an event of the run (about `task`, when it names one); returns whether it
    /// finished a task not counted before.
    pub fn on_event(&mut self, key: &str, task: Option<Uuid>) -> bool {
        let finished = self.finishes_task(key) && task.is_none_or(|t| self.seen.insert(t));
        if finished {
            self.done += 1;
        }
        finished
    }

    /// The task an event's payload names.
    pub fn task_of(payload: &[u8]) -> Option<Uuid> {
        serde_json::from_slice::<serde_json::Value>(payload)
            .ok()?
            .get("task_id")?
            .as_str()?
            .parse()
            .ok()
    }

    /// The progress recorded in the store: each task's status.
    pub fn from_statuses(
        operation: Operation,
        tasks: impl IntoIterator<Item = (Uuid, TaskStatus)>,
    ) -> Self {
        let mut p = Self::new(operation);
        let (mut total, mut done) = (0, 0);
        for (task, s) in tasks {
            total += 1;
            if s.is_terminal() && p.seen.insert(task) {
                done += 1;
            }
        }
        p.total = Some(total);
        p.done = done;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replication_only_run_finishes_a_task_at_its_clone() {
        let mut p = RunProgress::new(Operation::Replication);
        assert!(p.on_event("clone.succeeded", None));
        assert!(p.on_event("clone.failed", None));
        assert!(!p.on_event("run.planned", None));
        assert_eq!(p.done, 2);
    }

    #[test]
    fn a_validating_run_finishes_a_task_at_its_validation_or_a_failed_clone() {
        for op in [Operation::All, Operation::Reconciliation] {
            let mut p = RunProgress::new(op);
            assert!(!p.on_event("clone.succeeded", None));
            assert!(p.on_event("reconcile.matched", None));
            assert!(p.on_event("reconcile.mismatched", None));
            assert!(p.on_event("reconcile.failed", None));
            assert!(p.on_event("clone.failed", None));
            assert!(!p.on_event("run.completed", None));
            assert_eq!(p.done, 4);
        }
    }

    #[test]
    fn stored_statuses_count_terminal_tasks() {
        use TaskStatus::*;
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let statuses = [Succeeded, Cloned, Failed, Mismatched, Queued];
        let mut p = RunProgress::from_statuses(Operation::All, ids.iter().copied().zip(statuses));
        assert_eq!((p.total, p.done), (Some(5), 3));
        // An event for a task the store already showed finished is not counted again.
        assert!(!p.on_event("reconcile.matched", Some(ids[0])));
        assert!(p.on_event("reconcile.matched", Some(ids[1])));
        assert!(!p.on_event("reconcile.matched", Some(ids[1])));
        assert_eq!(p.done, 4);
    }
}
