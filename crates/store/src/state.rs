//! The typed states the store records: a task's status, how an attempt ended, and the stage
//! an attempt belongs to. The database stores each as the lowercase word `as_str` returns;
//! a word read back that no variant has is an [`UnknownState`] error naming it.

use std::fmt;
use std::str::FromStr;

/// A word in the state database that no state of its kind has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an unknown {kind} `{value}`")]
pub struct UnknownState {
    /// What the word should have been: `task status`, `attempt outcome`.
    pub kind: &'static str,
    pub value: String,
}

/// Where a task stands. A task is planned `Queued`; a clone attempt moves it to `Cloning`;
/// its clone result to `Cloned` (a validation follows), `Succeeded` or `Failed`; a
/// validation attempt to `Reconciling`; its result to `Succeeded`, `Mismatched` or
/// `Failed`. `Succeeded`, `Failed` and `Mismatched` are terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Cloning,
    Cloned,
    Reconciling,
    Succeeded,
    Failed,
    Mismatched,
}

impl TaskStatus {
    /// Every status, in the order a task goes through them.
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Cloning,
        Self::Cloned,
        Self::Reconciling,
        Self::Succeeded,
        Self::Failed,
        Self::Mismatched,
    ];

    /// The statuses a task ends in.
    pub const TERMINAL: [Self; 3] = [Self::Succeeded, Self::Failed, Self::Mismatched];

    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Cloning => "cloning",
            Self::Cloned => "cloned",
            Self::Reconciling => "reconciling",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Mismatched => "mismatched",
        }
    }

    /// Whether the task is finished: no stage of it runs again.
    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// Whether a task in this status has the result of `stage` recorded: a clone result once
    /// past `Cloning`, a validation result once terminal. A delivery of such a task is not
    /// worked again.
    pub fn has_result(self, stage: Stage) -> bool {
        match stage {
            Stage::Clone => !matches!(self, Self::Queued | Self::Cloning),
            Stage::Reconcile | Stage::Catalog => self.is_terminal(),
        }
    }
}

impl FromStr for TaskStatus {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState {
                kind: "task status",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The terminal statuses as a SQL list, for `status IN …` and `status NOT IN …` guards
/// (a literal, so the statements stay static; a unit test checks it against
/// [`TaskStatus::TERMINAL`]).
macro_rules! terminal_sql {
    () => {
        "('succeeded','failed','mismatched')"
    };
}
pub(crate) use terminal_sql;

/// The statuses of a task whose clone result is not recorded yet, as a SQL list: a clone
/// attempt or result changes only such a task (checked against [`TaskStatus`] like
/// `terminal_sql!`).
macro_rules! clone_pending_sql {
    () => {
        "('queued','cloning')"
    };
}
pub(crate) use clone_pending_sql;

/// How one attempt of a stage ended. An attempt still running has no outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The stage's work finished (a validation that found differences included).
    Succeeded,
    /// It failed transiently and is tried again.
    Retrying,
    /// It failed for good.
    Failed,
    /// The task was finished already; nothing was done.
    Skipped,
    /// Not yet: what the task depends on is still in flight; the delivery comes back later
    /// (a view waiting for its table, the inventory check for the run's objects).
    Deferred,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [Self; 5] = [
        Self::Succeeded,
        Self::Retrying,
        Self::Failed,
        Self::Skipped,
        Self::Deferred,
    ];

    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Deferred => "deferred",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState {
                kind: "attempt outcome",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A stage of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Clone,
    Reconcile,
    /// A catalog object's task (docs/catalog.md).
    Catalog,
}

impl Stage {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Clone => "clone",
            Self::Reconcile => "reconcile",
            Self::Catalog => "catalog",
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_stage_has_its_result_once_recorded() {
        use TaskStatus::*;
        for s in [Queued, Cloning] {
            assert!(!s.has_result(Stage::Clone), "{s}");
        }
        for s in [Cloned, Reconciling, Succeeded, Failed, Mismatched] {
            assert!(s.has_result(Stage::Clone), "{s}");
        }
        for s in [Queued, Cloning, Cloned, Reconciling] {
            assert!(!s.has_result(Stage::Reconcile), "{s}");
        }
        for s in [Succeeded, Failed, Mismatched] {
            assert!(s.has_result(Stage::Reconcile), "{s}");
        }
    }

    use super::*;

    #[test]
    fn every_task_status_round_trips_through_its_word() {
        let words = [
            "queued",
            "cloning",
            "cloned",
            "reconciling",
            "succeeded",
            "failed",
            "mismatched",
        ];
        assert_eq!(TaskStatus::ALL.map(TaskStatus::as_str), words);
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str()),
                "JSON (`status --json`) shows the stored word"
            );
        }
        assert_eq!(format!("{:<8}|", TaskStatus::Queued), "queued  |", "pads");
    }

    #[test]
    fn terminal_statuses_are_the_three_results() {
        let terminal: Vec<_> = TaskStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, TaskStatus::TERMINAL);
        let sql = format!(
            "({})",
            TaskStatus::TERMINAL.map(|s| format!("'{s}'")).join(",")
        );
        assert_eq!(terminal_sql!(), sql);
        assert_eq!(
            clone_pending_sql!(),
            format!("('{}','{}')", TaskStatus::Queued, TaskStatus::Cloning)
        );
    }

    #[test]
    fn every_attempt_outcome_round_trips_through_its_word() {
        assert_eq!(
            AttemptOutcome::ALL.map(AttemptOutcome::as_str),
            ["succeeded", "retrying", "failed", "skipped", "deferred"]
        );
        for o in AttemptOutcome::ALL {
            assert_eq!(o.as_str().parse::<AttemptOutcome>(), Ok(o));
            assert_eq!(o.to_string(), o.as_str());
        }
    }

    #[test]
    fn an_unknown_word_is_an_error_naming_it() {
        let e = "paused".parse::<TaskStatus>().unwrap_err();
        assert_eq!(e.to_string(), "an unknown task status `paused`");
        let e = "Succeeded".parse::<AttemptOutcome>().unwrap_err();
        assert_eq!(e.to_string(), "an unknown attempt outcome `Succeeded`");
    }
}
