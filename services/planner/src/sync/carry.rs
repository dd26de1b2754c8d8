//! Unchanged tables are carried into a group's next cut instead of being cloned again: a
//! table whose source is still at the version the group's last cut cloned, and whose target
//! is still at the version that cut left it at, holds at the new instant exactly what it held
//! at the last one (docs/sync.md, "Unchanged tables are carried").

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use replicator_engine::Engine;
use replicator_store::CutTable;

use super::Syncer;
use crate::RunPlan;

/// Tables checked at once (two reads of each table's log).
const CHECKS_AT_ONCE: usize = 16;

impl Syncer {
    /// Split a sync's plan as of `at` into the tables to clone and those carried from the
    /// group's last cut. A table that cannot be checked (its log unreadable, its target
    /// gone) is cloned: carrying is an optimisation, never a guess.
    pub(super) async fn carry_unchanged(
        &self,
        group: &str,
        mut planned: RunPlan,
        at: DateTime<Utc>,
    ) -> anyhow::Result<(RunPlan, Vec<CutTable>)> {
        let Some(state) = self.store.sync_group(group).await? else {
            return Ok((planned, Vec::new()));
        };
        let Some(cut_at) = state.cut_at.filter(|c| *c <= at) else {
            return Ok((planned, Vec::new()));
        };
        let engine = self.engine()?;
        let previous: Vec<Option<&CutTable>> = planned
            .items
            .iter()
            .map(|item| {
                state.cut_tables.iter().find(|t| {
                    t.table == item.table
                        && t.source == item.source
                        && t.target == item.target
                        && t.target_version.is_some()
                })
            })
            .collect();
        // The futures are made up front (a stream's closure making them trips the compiler's
        // `Send` check of the spawned scheduler).
        let checks: Vec<_> = previous
            .iter()
            .map(|prev| {
                let prev = prev.cloned();
                async move {
                    match prev {
                        Some(t) => unchanged_since(engine, &t, cut_at).await,
                        None => false,
                    }
                }
            })
            .collect();
        let unchanged: Vec<bool> = stream::iter(checks)
            .buffered(CHECKS_AT_ONCE)
            .collect()
            .await;
        let mut carried = Vec::new();
        let mut clone = Vec::new();
        for ((item, prev), same) in planned.items.into_iter().zip(previous).zip(unchanged) {
            match prev {
                Some(t) if same => carried.push(t.clone()),
                _ => clone.push(item),
            }
        }
        if !carried.is_empty() {
            tracing::info!(
                group,
                carried = carried.len(),
                cloned = clone.len(),
                "unchanged tables carried from the last cut"
            );
        }
        planned.items = clone;
        Ok((planned, carried))
    }
}

/// The source is still at the cut's version (or, where the cut recorded none — the
/// Databricks engine reports only the target's — has no commit after `cut_at`), and the
/// target is at the version the cut left it at.
async fn unchanged_since(engine: &dyn Engine, t: &CutTable, cut_at: DateTime<Utc>) -> bool {
    let source_same = match t.source_version {
        Some(v) => engine.table_version(&t.source).await.map(|now| now == v),
        None => engine
            .newest_commit_after(&t.source, cut_at)
            .await
            .map(|newer| newer.is_none()),
    };
    let target_same = match source_same {
        Ok(true) => engine
            .table_version(&t.target)
            .await
            .map(|v| Some(v) == t.target_version),
        Ok(false) => return false,
        Err(e) => Err(e),
    };
    target_same.unwrap_or_else(|e| {
        tracing::debug!(table = %t.table, error = %e, "not checked; cloning it");
        false
    })
}
