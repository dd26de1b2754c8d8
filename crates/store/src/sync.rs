//! Sync groups: where each group stands (its last consistent cut, the sync in progress),
//! every firing (one per group, instant and attempt, fleet-wide), and failovers.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::{Store, StoreError};

/// One table of a consistent cut: what the secondary holds for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutTable {
    pub table: String,
    pub source: String,
    pub target: String,
    pub source_version: Option<u64>,
    pub target_version: Option<u64>,
}

/// Where a group's sync stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncStatus {
    /// Never synced.
    Never,
    InProgress,
    Success,
    Failed,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::InProgress => "in-progress",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "never" => Self::Never,
            "in-progress" => Self::InProgress,
            "success" => Self::Success,
            "failed" => Self::Failed,
            other => {
                return Err(StoreError::State(crate::UnknownState {
                    kind: "sync status",
                    value: other.to_owned(),
                }));
            }
        })
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group's recorded state.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupState {
    pub name: String,
    pub status: SyncStatus,
    pub message: Option<String>,
    /// The last consistent cut: its instant, run and tables.
    pub cut_at: Option<DateTime<Utc>>,
    pub cut_run_id: Option<Uuid>,
    pub cut_tables: Vec<CutTable>,
    /// The sync in progress, or the last one tried.
    pub attempt_at: Option<DateTime<Utc>>,
    pub attempt_run_id: Option<Uuid>,
    pub attempt_trigger: Option<String>,
    /// Tables the sync in progress carries from the previous cut (unchanged on both sides).
    pub attempt_carry: Vec<CutTable>,
    /// Failed syncs since the last cut.
    pub failures: u32,
    /// When the lag alert for the current cut was sent.
    pub rpo_alerted_at: Option<DateTime<Utc>>,
    /// When the group was first seen: its schedule's ticks count from then.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One firing of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    pub group: String,
    /// The cut instant.
    pub tick: DateTime<Utc>,
    pub attempt: u32,
    pub fired_by: String,
    pub run_id: Uuid,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(|v| Utc.timestamp_millis_opt(v).single())
}

fn uuid(v: Option<String>) -> Option<Uuid> {
    v.and_then(|s| s.parse().ok())
}

const GROUP_COLUMNS: &str = "name, status, message, cut_at, cut_run_id, cut_tables, attempt_at, attempt_run_id, attempt_trigger, failures, rpo_alerted_at, created_at, updated_at, attempt_carry";

fn tables_from(json: Option<String>) -> Vec<CutTable> {
    json.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn group_from(r: &sqlx::any::AnyRow) -> Result<GroupState, StoreError> {
    Ok(GroupState {
        name: r.get(0),
        status: SyncStatus::parse(&r.get::<String, _>(1))?,
        message: r.get(2),
        cut_at: from_ms(r.get(3)),
        cut_run_id: uuid(r.get(4)),
        cut_tables: tables_from(r.get(5)),
        attempt_at: from_ms(r.get(6)),
        attempt_run_id: uuid(r.get(7)),
        attempt_trigger: r.get(8),
        attempt_carry: tables_from(r.get(13)),
        failures: r.get::<i64, _>(9) as u32,
        rpo_alerted_at: from_ms(r.get(10)),
        created_at: from_ms(r.get(11)).unwrap_or_default(),
        updated_at: from_ms(r.get(12)).unwrap_or_default(),
    })
}

impl Store {
    /// Claim a firing of `group` at `tick` (attempt `attempt`): true for the one caller that
    /// recorded it, false when another planner already did.
    pub async fn claim_fire(&self, fire: &Fire) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO sync_fires (group_name, tick, attempt, fired_by, run_id, fired_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&fire.group)
        .bind(ms(fire.tick))
        .bind(i64::from(fire.attempt))
        .bind(&fire.fired_by)
        .bind(fire.run_id.to_string())
        .bind(Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The latest firing of `group` (by instant, then attempt).
    pub async fn last_fire(&self, group: &str) -> Result<Option<Fire>, StoreError> {
        let row = sqlx::query(
            "SELECT group_name, tick, attempt, fired_by, run_id FROM sync_fires
             WHERE group_name = $1 ORDER BY tick DESC, attempt DESC LIMIT 1",
        )
        .bind(group)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Fire {
            group: r.get(0),
            tick: from_ms(Some(r.get(1))).unwrap_or_default(),
            attempt: r.get::<i64, _>(2) as u32,
            fired_by: r.get(3),
            run_id: uuid(Some(r.get(4))).unwrap_or_default(),
        }))
    }

    /// Record a group the config names, first seen at `at` (status `never` until its first
    /// sync); a group already recorded is left as it is.
    pub async fn ensure_group(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sync_groups (name, status, failures, created_at, updated_at)
             VALUES ($1, 'never', 0, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(ms(at))
        .bind(Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A sync of `group` as of `at` started as run `run_id`, carrying `carried` from the
    /// previous cut (tables it does not clone again).
    pub async fn group_sync_started(
        &self,
        group: &str,
        at: DateTime<Utc>,
        run_id: Uuid,
        fired_by: &str,
        carried: &[CutTable],
    ) -> Result<(), StoreError> {
        self.ensure_group(group, at).await?;
        sqlx::query(
            "UPDATE sync_groups SET status = 'in-progress', attempt_at = $1, attempt_run_id = $2,
               attempt_trigger = $3, attempt_carry = $4, updated_at = $5 WHERE name = $6",
        )
        .bind(ms(at))
        .bind(run_id.to_string())
        .bind(fired_by)
        .bind(serde_json::to_string(carried).unwrap_or_default())
        .bind(Utc::now().timestamp_millis())
        .bind(group)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The sync of run `run_id` ended. Success moves the group's cut to the sync's instant
    /// with `tables`; failure keeps the previous cut and records `message`. Returns false
    /// (changing nothing) when the group's current sync is another run.
    pub async fn group_sync_finished(
        &self,
        group: &str,
        run_id: Uuid,
        success: bool,
        tables: &[CutTable],
        message: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now().timestamp_millis();
        let done = if success {
            sqlx::query(
                "UPDATE sync_groups SET status = 'success', message = NULL, cut_at = attempt_at,
                   cut_run_id = attempt_run_id, cut_tables = $1, failures = 0, rpo_alerted_at = NULL,
                   updated_at = $2
                 WHERE name = $3 AND attempt_run_id = $4 AND status = 'in-progress'",
            )
            .bind(serde_json::to_string(tables).unwrap_or_default())
            .bind(now)
            .bind(group)
            .bind(run_id.to_string())
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query(
                "UPDATE sync_groups SET status = 'failed', message = $1, failures = failures + 1,
                   updated_at = $2
                 WHERE name = $3 AND attempt_run_id = $4 AND status = 'in-progress'",
            )
            .bind(message)
            .bind(now)
            .bind(group)
            .bind(run_id.to_string())
            .execute(&self.pool)
            .await?
        };
        Ok(done.rows_affected() == 1)
    }

    /// Mark a group failed without a sync (it failed its checks, or the secondary region is
    /// not available): its cut is kept. A sync in progress is left to finish: its own result
    /// decides.
    pub async fn group_refused(&self, group: &str, message: &str) -> Result<(), StoreError> {
        self.ensure_group(group, Utc::now()).await?;
        sqlx::query(
            "UPDATE sync_groups SET status = 'failed', message = $1, updated_at = $2
             WHERE name = $3 AND status <> 'in-progress'",
        )
        .bind(message)
        .bind(Utc::now().timestamp_millis())
        .bind(group)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Note that the lag alert for the group's current cut was sent.
    pub async fn group_alerted(&self, group: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE sync_groups SET rpo_alerted_at = $1 WHERE name = $2")
            .bind(ms(at))
            .bind(group)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One group's state.
    pub async fn sync_group(&self, name: &str) -> Result<Option<GroupState>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM sync_groups WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from).transpose()
    }

    /// Every group's state, by name.
    pub async fn sync_groups(&self) -> Result<Vec<GroupState>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM sync_groups ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from).collect()
    }

    /// Record a failover or failback.
    pub async fn record_failover(
        &self,
        group: &str,
        direction: &str,
        cut_at: Option<DateTime<Utc>>,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sync_failovers (group_name, direction, cut_at, executed_at, detail)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(group)
        .bind(direction)
        .bind(cut_at.map(ms))
        .bind(Utc::now().timestamp_millis())
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Store {
        Store::open("sqlite::memory:").await.unwrap()
    }

    fn fire(tick: i64, attempt: u32) -> Fire {
        Fire {
            group: "g".into(),
            tick: Utc.timestamp_millis_opt(tick).unwrap(),
            attempt,
            fired_by: "schedule".into(),
            run_id: Uuid::now_v7(),
        }
    }

    #[tokio::test]
    async fn a_firing_is_claimed_once() {
        let s = store().await;
        assert!(s.claim_fire(&fire(1000, 1)).await.unwrap());
        assert!(
            !s.claim_fire(&fire(1000, 1)).await.unwrap(),
            "second planner"
        );
        assert!(s.claim_fire(&fire(1000, 2)).await.unwrap(), "a retry");
        assert!(s.claim_fire(&fire(2000, 1)).await.unwrap());
        let last = s.last_fire("g").await.unwrap().unwrap();
        assert_eq!((last.tick.timestamp_millis(), last.attempt), (2000, 1));
        assert_eq!(s.last_fire("other").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_cut_moves_only_on_success_and_a_failure_keeps_it() {
        let s = store().await;
        let t1 = Utc.timestamp_millis_opt(1_000).unwrap();
        let t2 = Utc.timestamp_millis_opt(2_000).unwrap();
        let (r1, r2) = (Uuid::now_v7(), Uuid::now_v7());
        let tables = vec![CutTable {
            table: "s.t".into(),
            source: "/s/t".into(),
            target: "/d/t".into(),
            source_version: Some(3),
            target_version: Some(1),
        }];
        s.group_sync_started("g", t1, r1, "schedule", &[])
            .await
            .unwrap();
        assert_eq!(
            s.sync_group("g").await.unwrap().unwrap().status,
            SyncStatus::InProgress
        );
        assert!(
            s.group_sync_finished("g", r1, true, &tables, None)
                .await
                .unwrap()
        );
        s.group_sync_started("g", t2, r2, "schedule", &tables)
            .await
            .unwrap();
        assert_eq!(
            s.sync_group("g").await.unwrap().unwrap().attempt_carry,
            tables,
            "what a sync carries is kept with it"
        );
        assert!(
            !s.group_sync_finished("g", r1, false, &[], Some("late"))
                .await
                .unwrap(),
            "another run's result changes nothing"
        );
        assert!(
            s.group_sync_finished("g", r2, false, &[], Some("table s.t failed"))
                .await
                .unwrap()
        );
        let g = s.sync_group("g").await.unwrap().unwrap();
        assert_eq!(g.status, SyncStatus::Failed);
        assert_eq!(g.cut_at, Some(t1), "the previous cut stands");
        // A refusal while a sync runs leaves the sync to finish.
        let r3 = Uuid::now_v7();
        s.group_sync_started("g", t2, r3, "retry", &[])
            .await
            .unwrap();
        s.group_refused("g", "secondary region not available")
            .await
            .unwrap();
        assert_eq!(
            s.sync_group("g").await.unwrap().unwrap().status,
            SyncStatus::InProgress
        );
        assert!(
            s.group_sync_finished("g", r3, true, &tables, None)
                .await
                .unwrap()
        );
        assert_eq!(g.cut_run_id, Some(r1));
        assert_eq!(g.cut_tables, tables);
        assert_eq!(g.attempt_at, Some(t2));
        assert_eq!(g.failures, 1);
        assert_eq!(g.message.as_deref(), Some("table s.t failed"));
    }
}
