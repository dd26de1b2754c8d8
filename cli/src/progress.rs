//! How far a run has got, counted one way for `run`'s progress bar, `watch` and `status`: a
//! task is finished when its status is terminal — a failed clone, a successful clone of a
//! run that does not validate, or any validation result.

use replicator_proto::{Operation, names};
use replicator_store::TaskStatus;

/// Finished tasks of one run, from its events or its stored task statuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunProgress {
    reconciles: bool,
    /// Tasks planned, once known.
    pub total: Option<u64>,
    /// Tasks finished.
    pub done: u64,
}

impl RunProgress {
    /// A run of `operation` (validating runs finish a task at its validation).
    pub fn new(operation: Operation) -> Self {
        Self {
            reconciles: operation.reconciles(),
            total: None,
            done: 0,
        }
    }

    /// Whether an event with routing key `key` finishes its task.
    pub fn finishes_task(&self, key: &str) -> bool {
        match key {
            names::events::CLONE_FAILED => true,
            names::events::CLONE_SUCCEEDED => !self.reconciles,
            k => k.starts_with("reconcile."),
        }
    }

    /// Count an event of the run; returns whether it finished a task.
    pub fn on_event(&mut self, key: &str) -> bool {
        let finished = self.finishes_task(key);
        if finished {
            self.done += 1;
        }
        finished
    }

    /// The progress recorded in the store: tasks by status.
    pub fn from_statuses(
        operation: Operation,
        statuses: impl IntoIterator<Item = TaskStatus>,
    ) -> Self {
        let mut p = Self::new(operation);
        let (mut total, mut done) = (0, 0);
        for s in statuses {
            total += 1;
            if s.is_terminal() {
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
        assert!(p.on_event("clone.succeeded"));
        assert!(p.on_event("clone.failed"));
        assert!(!p.on_event("run.planned"));
        assert_eq!(p.done, 2);
    }

    #[test]
    fn a_validating_run_finishes_a_task_at_its_validation_or_a_failed_clone() {
        for op in [Operation::All, Operation::Reconciliation] {
            let mut p = RunProgress::new(op);
            assert!(!p.on_event("clone.succeeded"));
            assert!(p.on_event("reconcile.matched"));
            assert!(p.on_event("reconcile.mismatched"));
            assert!(p.on_event("reconcile.failed"));
            assert!(p.on_event("clone.failed"));
            assert!(!p.on_event("run.completed"));
            assert_eq!(p.done, 4);
        }
    }

    #[test]
    fn stored_statuses_count_terminal_tasks() {
        use TaskStatus::*;
        let p = RunProgress::from_statuses(
            Operation::All,
            [Succeeded, Cloned, Failed, Mismatched, Queued],
        );
        assert_eq!((p.total, p.done), (Some(5), 3));
    }
}
