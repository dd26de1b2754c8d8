//! Deep validation on a period, the cheap check in between.
//!
//! A deep validation runs every configured check on both tables (row counts, schema, keys,
//! checksums): it builds both snapshots, and with keys it reads every row. A replica that
//! matched and whose logs have not moved since needs none of that again: the reconciler
//! compares where both logs stand now — the version of each side's commit and the
//! fingerprint of its commit file ([`replicator_lake::unchanged::log_point`]: a log
//! listing and one small read per side) — with where they stood at the last deep validation
//! that matched (`validations` in the store). Equal on both sides means both snapshots are
//! the ones that were validated, so the result is `matched` with that validation's row
//! counts, marked `depth: cheap`.
//!
//! A pair is validated deeply when it has no matching deep validation on record, when either
//! log moved, when its checks changed, and at least every `reconciliation.deep_every` (`0`:
//! every run). So that an estate validated in one run does not come due all in one run
//! again, each pair comes due a little early, by a fixed fraction of the period (under a
//! quarter) drawn from its target's name.

use std::time::Duration;

use replicator_common::config::TableChecks;
use replicator_lake::unchanged::{LogPoint, log_point};
use replicator_lake::{LakeError, StorageRoots};
use replicator_proto::{Check, ReconcileTask, ValidationDepth};
use replicator_store::DeepValidation;

use super::check::check_pair;
use crate::{CheckContext, Checked, Failure};

/// Validate `task`: the cheap check when it proves the pair unchanged since a recent deep
/// validation, the configured checks otherwise.
pub(crate) async fn check(
    storage: &StorageRoots,
    task: &ReconcileTask,
    ctx: &CheckContext<'_>,
) -> Result<Checked, Failure> {
    let store = ctx.store;
    // With a zero period every validation is deep, and still recorded: the record always
    // reflects the pair's last deep validation, whatever the period was then.
    let period = ctx.checks.deep_every.0;
    let table_checks = ctx.checks.for_table(&task.table);
    let checks = checks_key(&table_checks);
    let last = match store.deep_validation(&task.source, &task.target).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last deep validation; validating deeply");
            None
        }
    };
    // Where both logs stand now: proves the pair unchanged, or is recorded with the deep
    // validation that follows.
    let now = match pair_points(storage, task, last.as_ref()).await {
        Ok(points) => points,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read where the logs stand; validating deeply");
            None
        }
    };
    if let (Some(last), Some((source, target))) = (&last, &now)
        && last.checks == checks
        && !period.is_zero()
        && !due(last, period, &task.target)
        && (last.source_version, &last.source_commit) == (source.version, &source.commit)
        && (last.target_version, &last.target_commit) == (target.version, &target.commit)
    {
        return Ok(unchanged(last));
    }
    let found = async {
        let source = storage.resolve(&task.source)?;
        let target = storage.resolve(&task.target)?;
        check_pair(&source, &target, task.source_version, &table_checks).await
    }
    .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            if last.is_some()
                && let Err(e) = store
                    .forget_deep_validation(&task.source, &task.target)
                    .await
            {
                tracing::warn!(error = %e, "cannot record the deep validation");
            }
            return Err(e.into());
        }
    };
    let matched = found.checks.iter().all(|c| c.passed);
    let result = match &now {
        Some((source, target))
            if matched
                && found.source_version == source.version
                && found.target_version == target.version =>
        {
            store
                .save_deep_validation(&DeepValidation {
                    source: task.source.clone(),
                    target: task.target.clone(),
                    checks,
                    source_version: source.version,
                    source_commit: source.commit.clone(),
                    target_version: target.version,
                    target_commit: target.commit.clone(),
                    source_rows: found.source_rows,
                    target_rows: found.target_rows,
                    validated_at: chrono::Utc::now(),
                    run_id: task.header.run_id,
                })
                .await
        }
        // A log moved while the checks ran: nothing to prove a later run unchanged with.
        _ if matched => Ok(()),
        _ if last.is_some() => {
            store
                .forget_deep_validation(&task.source, &task.target)
                .await
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        // The next validation of this pair is deep again; this one stands.
        tracing::warn!(error = %e, "cannot record the deep validation");
    }
    Ok(Checked {
        source_version: Some(found.source_version),
        target_version: Some(found.target_version),
        source_rows: found.source_rows,
        target_rows: found.target_rows,
        checks: found.checks,
        keys: found.keys,
        partitions: found.partitions,
        depth: ValidationDepth::Deep,
        statement_ids: Vec::new(),
    })
}

/// Where the source (at the task's version, or latest) and the target (latest) stand.
async fn pair_points(
    storage: &StorageRoots,
    task: &ReconcileTask,
    last: Option<&DeepValidation>,
) -> Result<Option<(LogPoint, LogPoint)>, LakeError> {
    let source = storage.resolve(&task.source)?;
    let target = storage.resolve(&task.target)?;
    let (s, t) = tokio::try_join!(
        log_point(&source, task.source_version, last.map(|l| l.source_version)),
        log_point(&target, None, last.map(|l| l.target_version)),
    )?;
    Ok(s.zip(t))
}

/// Whether the pair's deep validation is due again: `period` after the last one, less the
/// pair's stagger (a fixed fraction of the period under a quarter, drawn from its target).
fn due(last: &DeepValidation, period: Duration, target: &str) -> bool {
    let stagger = period.mul_f64(f64::from(fnv1a(target.as_bytes()) % 1000) / 4000.0);
    let age = chrono::Utc::now() - last.validated_at;
    age.to_std().is_ok_and(|age| age >= period - stagger)
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The checks that decide a validation's outcome, as recorded with it.
fn checks_key(c: &TableChecks) -> String {
    format!(
        "row_counts={} schema={} partition_checksums={} primary_key=[{}]",
        c.row_counts,
        c.schema,
        c.partition_checksums,
        c.primary_key.join(",")
    )
}

/// The cheap check's result: matched, with the row counts of the deep validation it relies on.
fn unchanged(last: &DeepValidation) -> Checked {
    Checked {
        source_version: Some(last.source_version),
        target_version: Some(last.target_version),
        source_rows: last.source_rows,
        target_rows: last.target_rows,
        checks: vec![Check {
            name: "unchanged".into(),
            passed: true,
            detail: format!(
                "source v{} and target v{} unchanged since the deep validation of {} (run {}), whose results stand",
                last.source_version,
                last.target_version,
                last.validated_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                last.run_id
            ),
        }],
        keys: None,
        partitions: Vec::new(),
        depth: ValidationDepth::Cheap,
        statement_ids: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validation(age: Duration) -> DeepValidation {
        DeepValidation {
            source: "/s/t".into(),
            target: "/d/t".into(),
            checks: String::new(),
            source_version: 1,
            source_commit: String::new(),
            target_version: 0,
            target_commit: String::new(),
            source_rows: None,
            target_rows: None,
            validated_at: chrono::Utc::now() - age,
            run_id: Default::default(),
        }
    }

    #[test]
    fn a_deep_validation_comes_due_within_the_last_quarter_of_its_period() {
        let day = Duration::from_secs(86_400);
        let targets: Vec<String> = (0..200).map(|i| format!("/dr/s{i}/t{i}")).collect();
        for t in &targets {
            assert!(!due(&validation(Duration::from_secs(3600)), day, t));
            assert!(!due(&validation(day.mul_f64(0.74)), day, t), "{t}");
            assert!(due(&validation(day), day, t), "{t}");
        }
        // Staggered: an estate validated at once does not come due at once.
        let due_at_80 = targets
            .iter()
            .filter(|t| due(&validation(day.mul_f64(0.875)), day, t))
            .count();
        assert!(due_at_80 > 20 && due_at_80 < 180, "{due_at_80} of 200");
    }
}
