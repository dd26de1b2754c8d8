//! The native engine's checks of a replica against its source:
//!
//! - **row counts**: from the Delta log's statistics when every file has `numRecords`
//!   (deletion vectors subtracted; cost grows with files, not rows), otherwise by scanning;
//! - **schema**: columns, types, nullability and partition columns;
//! - **keys** (tables with a `primary_key` rule): keys missing in the target, extra in the
//!   target, and changed (same key, different hash over the other columns), with counts
//!   and samples, streamed with bounded memory ([`replicator_lake::compare`]);
//! - **partition checksums** (when on): row count and checksum per table partition, to
//!   localise a difference.

use replicator_common::config::TableChecks;
use replicator_lake::compare::{CompareOptions, Comparison, compare};
use replicator_lake::inspect::{CountMethod, SnapshotSummary, count_rows, schema_diff, table_info};
use replicator_lake::{LakeError, TableLocation};
use replicator_proto::{Check, KeyDiff, PartitionDiff};

/// What the checks found.
#[derive(Clone, Debug, PartialEq)]
pub struct Findings {
    pub source_version: u64,
    pub target_version: u64,
    pub source_rows: Option<u64>,
    pub target_rows: Option<u64>,
    pub checks: Vec<Check>,
    pub keys: Option<KeyDiff>,
    pub partitions: Vec<PartitionDiff>,
}

/// Compare `target` with `source` (at `source_version`, or latest).
pub async fn check_pair(
    source: &TableLocation,
    target: &TableLocation,
    source_version: Option<u64>,
    checks: &TableChecks,
) -> Result<Findings, LakeError> {
    let mut out = Findings {
        source_version: 0,
        target_version: 0,
        source_rows: None,
        target_rows: None,
        checks: Vec::new(),
        keys: None,
        partitions: Vec::new(),
    };
    let (src_info, tgt_info) =
        tokio::try_join!(table_info(source, source_version), table_info(target, None))?;
    // A key comparison reads every row anyway: a side without complete log statistics is
    // counted by it rather than by a scan of its own.
    let compare_on = !checks.primary_key.is_empty() || checks.partition_checksums;
    let stats = (src_info.stats_rows, tgt_info.stats_rows);
    let defer_counts = checks.row_counts && compare_on && (stats.0.is_none() || stats.1.is_none());
    if checks.row_counts && !defer_counts {
        let (s, sm) = counted(source, &src_info).await?;
        let (t, tm) = counted(target, &tgt_info).await?;
        out.push_counts((s, sm), (t, tm));
    }
    out.source_version = src_info.version;
    out.target_version = tgt_info.version;
    if checks.schema {
        let diff = schema_diff(&src_info, &tgt_info);
        out.checks.push(Check {
            name: "schema".into(),
            passed: diff.is_empty(),
            detail: if diff.is_empty() {
                "schemas and partition columns match".into()
            } else {
                diff.join("; ")
            },
        });
    }
    if checks.primary_key.is_empty() && !checks.partition_checksums {
        return Ok(out);
    }
    let options = CompareOptions {
        primary_key: checks.primary_key.clone(),
        partition_checksums: checks.partition_checksums,
        sample_size: checks.sample_size,
        memory_budget: checks.memory_mb << 20,
    };
    let found = compare(
        source,
        Some(out.source_version),
        target,
        Some(out.target_version),
        &options,
    )
    .await;
    let cmp = match found {
        Ok(c) => c,
        // The tables cannot be compared as configured (a key column is missing, say):
        // that is a finding about this pair, not a reason to retry.
        Err(LakeError::Invalid(reason)) => {
            if defer_counts {
                let (s, sm) = counted(source, &src_info).await?;
                let (t, tm) = counted(target, &tgt_info).await?;
                out.push_counts((s, sm), (t, tm));
            }
            out.checks.push(Check {
                name: if checks.primary_key.is_empty() {
                    "partition_checksums".into()
                } else {
                    "keys".into()
                },
                passed: false,
                detail: format!("cannot compare: {reason}"),
            });
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    if defer_counts {
        let side = |stats: Option<u64>, scanned: u64| match stats {
            Some(n) => (n, CountMethod::Stats),
            None => (scanned, CountMethod::Scan),
        };
        out.push_counts(
            side(stats.0, cmp.source_rows),
            side(stats.1, cmp.target_rows),
        );
    }
    out.source_rows.get_or_insert(cmp.source_rows);
    out.target_rows.get_or_insert(cmp.target_rows);
    if let Some(k) = &cmp.keys {
        out.checks.push(Check {
            name: "keys".into(),
            passed: k.is_clean(),
            detail: key_detail(k, &cmp),
        });
    }
    if let Some((compared, differing)) = cmp.partition_counts {
        out.checks.push(Check {
            name: "partition_checksums".into(),
            passed: differing == 0,
            detail: partition_detail(compared, differing, &cmp.partitions),
        });
    }
    out.keys = cmp.keys;
    out.partitions = cmp.partitions;
    Ok(out)
}

/// A table's row count: from its log statistics when complete, else by scanning.
async fn counted(
    loc: &TableLocation,
    info: &SnapshotSummary,
) -> Result<(u64, CountMethod), LakeError> {
    match info.stats_rows {
        Some(n) => Ok((n, CountMethod::Stats)),
        None => count_rows(loc, Some(info.version))
            .await
            .map(|(n, m, _)| (n, m)),
    }
}

impl Findings {
    /// Record the row counts and their check, first among the checks.
    fn push_counts(&mut self, (s, sm): (u64, CountMethod), (t, tm): (u64, CountMethod)) {
        self.source_rows = Some(s);
        self.target_rows = Some(t);
        self.checks.insert(
            0,
            Check {
                name: "row_count".into(),
                passed: s == t,
                detail: format!("source {s} rows ({sm}), target {t} rows ({tm})"),
            },
        );
    }
}

/// `by [id]: 3 missing (id=5, …), 1 extra (…), 2 changed (…); 4 columns compared`.
fn key_detail(k: &KeyDiff, cmp: &Comparison) -> String {
    let part = |n: u64, what: &str, sample: &[String]| {
        if n == 0 {
            format!("0 {what}")
        } else {
            let more = if (sample.len() as u64) < n {
                ", …"
            } else {
                ""
            };
            format!("{n} {what} ({}{more})", sample.join("; "))
        }
    };
    let mut s = format!(
        "by [{}], source {} rows, target {} rows: {}, {}, {}",
        k.primary_key.join(", "),
        cmp.source_rows,
        cmp.target_rows,
        part(k.missing, "missing", &k.missing_sample),
        part(k.extra, "extra", &k.extra_sample),
        part(k.changed, "changed", &k.changed_sample),
    );
    if k.duplicate_source + k.duplicate_target > 0 {
        s.push_str(&format!(
            "; duplicate keys: {} in the source, {} in the target",
            k.duplicate_source, k.duplicate_target
        ));
    }
    s.push_str(&format!(
        "; {} other columns compared",
        cmp.compared_columns.len()
    ));
    if !cmp.ignored_columns.is_empty() {
        s.push_str(&format!(
            ", not compared: {}",
            cmp.ignored_columns.join(", ")
        ));
    }
    s
}

/// `2 of 12 partitions differ: region=EU (source 10 rows, target 9), …`.
fn partition_detail(compared: u64, differing: u64, diffs: &[PartitionDiff]) -> String {
    if differing == 0 {
        return format!("{compared} partitions compared, all match");
    }
    let shown: Vec<String> = diffs
        .iter()
        .take(5)
        .map(|d| {
            let how = if d.source_rows == d.target_rows {
                "same row count, different checksum".to_owned()
            } else {
                format!("source {} rows, target {}", d.source_rows, d.target_rows)
            };
            format!("{} ({how})", d.partition)
        })
        .collect();
    let more = if differing as usize > shown.len() {
        ", …"
    } else {
        ""
    };
    format!(
        "{differing} of {compared} partitions differ: {}{more}",
        shown.join(", ")
    )
}
