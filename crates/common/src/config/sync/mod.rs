//! `sync`: disaster-recovery sync groups (docs/sync.md): sets of tables kept in step with
//! the primary region as one unit, on a cron schedule or after a workflow.
//!
//! Two levels of checks, as the DR sync job the section comes from has them:
//! - [`SyncConfig::validate`] (run by [`crate::Config::validate`]) refuses only what is
//!   wrong with the section itself: the default schedule, `min_interval`, the notification
//!   addresses, the locations. Such a config does not load.
//! - [`SyncConfig::check_groups`] reports what is wrong with each group (duplicate or empty
//!   name, no tables, no schedule or one more frequent than `min_interval`, an owner that
//!   is not an address, a zero `rpo`). Such a group is reported and skipped
//!   ([`SyncConfig::valid_groups`]); the other groups run, and it is checked again on the
//!   next run.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Period};

/// The `sync` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Where the primary region's metadata table lives (default: `source.root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Where the secondary region's metadata table lives (default: `target.root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
    /// Cron (5 fields, UTC) for groups without their own `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_schedule: Option<String>,
    /// No group may be scheduled more often than this (default 30 minutes).
    #[serde(default = "thirty_minutes")]
    pub min_interval: Period,
    /// Retries of a failed cut, for groups without their own `retries` (default 3).
    #[serde(default = "three")]
    pub max_retries: u32,
    #[serde(default)]
    pub notify: SyncNotify,
    /// How often the planner looks at the groups: due ticks, workflow runs, new commits,
    /// finished syncs (default 5 s).
    #[serde(default = "five_seconds")]
    pub poll: Period,
    #[serde(default)]
    pub groups: Vec<SyncGroup>,
}

fn five_seconds() -> Period {
    Period(Duration::from_secs(5))
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            primary: None,
            secondary: None,
            default_schedule: None,
            min_interval: thirty_minutes(),
            max_retries: three(),
            notify: SyncNotify::default(),
            poll: five_seconds(),
            groups: Vec::new(),
        }
    }
}

fn thirty_minutes() -> Period {
    Period(Duration::from_secs(30 * 60))
}

fn three() -> u32 {
    3
}

/// Who hears about a group's sync: every group's outcome goes to these addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncNotify {
    /// Addresses told when a group reaches a new cut.
    #[serde(deserialize_with = "one_or_many")]
    pub success: Vec<String>,
    /// Addresses told when a group's sync fails.
    #[serde(deserialize_with = "one_or_many")]
    pub failure: Vec<String>,
}

/// One sync group: tables cloned as of one instant, as one unit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroup {
    /// Unique among the groups; names the group in the metadata tables and the CLI.
    #[serde(default)]
    pub name: String,
    /// Owners' email addresses (a single address is accepted as a one-item list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub owner: Vec<String>,
    /// Table names or globs over them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub tables: Vec<String>,
    /// A workflow (job) whose successful run triggers a sync as of its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Cron (5 fields, UTC); `sync.default_schedule` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Alert the owners when the group's lag passes this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Period>,
    /// Retries of a failed cut; `sync.max_retries` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Also sync when any of the group's source tables has a new commit since its last cut
    /// (native engine; the planner reads the logs' tails every `sync.poll`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_commit: bool,
}

/// A list of strings, or one string as a one-item list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::One(s)) => vec![s],
        Some(Raw::Many(v)) => v,
    })
}

/// Whether `s` looks like an email address: `local@domain`, a dot in the domain, no
/// spaces.
pub(crate) fn looks_like_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

impl SyncConfig {
    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&SyncGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The group's schedule (its own, else `default_schedule`), parsed; `None` when it has
    /// none or it does not parse ([`SyncConfig::check_groups`] reports which).
    pub fn schedule_of(&self, g: &SyncGroup) -> Option<Schedule> {
        g.schedule
            .as_deref()
            .or(self.default_schedule.as_deref())
            .and_then(|s| Schedule::parse(s).ok())
    }

    /// The group's retries of a failed cut (its own, else `max_retries`).
    pub fn retries_of(&self, g: &SyncGroup) -> u32 {
        g.retries.unwrap_or(self.max_retries)
    }

    /// Where the primary region's metadata table lives: `primary`, else `source.root`.
    pub fn primary_root(&self, config: &Config) -> String {
        self.primary
            .clone()
            .unwrap_or_else(|| config.source.root.clone())
    }

    /// Where the secondary region's metadata table lives: `secondary`, else `target.root`.
    pub fn secondary_root(&self, config: &Config) -> String {
        self.secondary
            .clone()
            .unwrap_or_else(|| config.target.root.clone())
    }

    /// The section's own rules (keys relative to `sync`): what makes the whole config
    /// unusable. Problems of one group are not refused here: see
    /// [`SyncConfig::check_groups`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_interval.is_zero() {
            return Err(ConfigError::key(
                "min_interval",
                "must be more than 0 (cron fires at most once a minute: `1m` sets no limit)",
            ));
        }
        if let Some(text) = &self.default_schedule {
            let s = Schedule::parse(text).map_err(|e| ConfigError::key("default_schedule", e))?;
            self.frequent_enough(&s)
                .map_err(|e| ConfigError::key("default_schedule", e))?;
        }
        for (key, root) in [("primary", &self.primary), ("secondary", &self.secondary)] {
            if root.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(ConfigError::key(
                    key,
                    "must not be empty (leave it out for the default)",
                ));
            }
        }
        for (key, list) in [
            ("notify.success", &self.notify.success),
            ("notify.failure", &self.notify.failure),
        ] {
            if let Some(bad) = list.iter().find(|a| !looks_like_email(a)) {
                return Err(ConfigError::key(
                    key,
                    format!("`{bad}` is not an email address"),
                ));
            }
        }
        Ok(())
    }

    /// Refuse a schedule that fires more often than `min_interval`.
    fn frequent_enough(&self, s: &Schedule) -> Result<(), String> {
        let gap = s.min_gap();
        if gap < self.min_interval.0 {
            return Err(format!(
                "`{s}` fires every {} at times, more often than sync.min_interval ({})",
                Period(gap),
                self.min_interval
            ));
        }
        Ok(())
    }

    /// Every problem of every group: `(group, reason)`, where `group` is the group's name
    /// (or `groups[i]` when it has none) and `reason` starts with the key it is about
    /// (`sync.groups[1].tables: …`). A group with a problem is skipped by
    /// [`SyncConfig::valid_groups`]. Groups sharing a name are all reported and skipped:
    /// which one is meant cannot be told.
    pub fn check_groups(&self) -> Vec<(String, String)> {
        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, g) in self.groups.iter().enumerate() {
            by_name.entry(g.name.trim()).or_default().push(i);
        }
        let mut out = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            let label = if g.name.trim().is_empty() {
                format!("groups[{i}]")
            } else {
                g.name.clone()
            };
            for (key, reason) in self.group_problems(i, g, &by_name) {
                out.push((label.clone(), format!("sync.groups[{i}]{key}: {reason}")));
            }
        }
        out
    }

    /// The groups without problems, in config order: the ones that run.
    pub fn valid_groups(&self) -> Vec<&SyncGroup> {
        let bad: std::collections::BTreeSet<usize> = {
            let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, g) in self.groups.iter().enumerate() {
                by_name.entry(g.name.trim()).or_default().push(i);
            }
            self.groups
                .iter()
                .enumerate()
                .filter(|(i, g)| !self.group_problems(*i, g, &by_name).is_empty())
                .map(|(i, _)| i)
                .collect()
        };
        self.groups
            .iter()
            .enumerate()
            .filter(|(i, _)| !bad.contains(i))
            .map(|(_, g)| g)
            .collect()
    }

    /// The problems of group `i`: `(key suffix, reason)`.
    fn group_problems(
        &self,
        i: usize,
        g: &SyncGroup,
        by_name: &BTreeMap<&str, Vec<usize>>,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let name = g.name.trim();
        if name.is_empty() {
            out.push((".name".into(), "must not be empty".into()));
        } else if let Some(all) = by_name.get(name).filter(|all| all.len() > 1) {
            let others: Vec<String> = all
                .iter()
                .filter(|j| **j != i)
                .map(|j| format!("sync.groups[{j}]"))
                .collect();
            out.push((
                ".name".into(),
                format!(
                    "`{name}` is also the name of {}: group names must be unique",
                    others.join(", ")
                ),
            ));
        }
        if g.tables.is_empty() {
            out.push((".tables".into(), "list at least one table".into()));
        }
        for t in &g.tables {
            if t.trim().is_empty() {
                out.push((".tables".into(), "a table name must not be empty".into()));
            } else if let Err(e) = globset::Glob::new(t) {
                out.push((".tables".into(), format!("bad glob `{t}`: {e}")));
            }
        }
        match (&g.schedule, &self.default_schedule) {
            (Some(own), _) => match Schedule::parse(own) {
                Ok(s) => {
                    if let Err(e) = self.frequent_enough(&s) {
                        out.push((".schedule".into(), e));
                    }
                }
                Err(e) => out.push((".schedule".into(), e)),
            },
            // The default schedule's own problems refuse the whole config.
            (None, Some(_)) => {}
            (None, None) => out.push((
                ".schedule".into(),
                "needs a schedule: its own `schedule` or sync.default_schedule".into(),
            )),
        }
        if let Some(bad) = g.owner.iter().find(|a| !looks_like_email(a)) {
            out.push((".owner".into(), format!("`{bad}` is not an email address")));
        }
        if g.workflow.as_deref().is_some_and(|w| w.trim().is_empty()) {
            out.push((
                ".workflow".into(),
                "must not be empty (leave it out for none)".into(),
            ));
        }
        if g.rpo.is_some_and(|r| r.is_zero()) {
            out.push((".rpo".into(), "must be more than 0".into()));
        }
        out
    }
}

/// A cron schedule: 5 fields (minute, hour, day of month, month, day of week), in UTC.
/// Aliases (`@hourly`, `@daily`, …) and names (`MON`, `JAN`) are accepted.
#[derive(Clone, Debug)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// How far back [`Schedule::latest_at_or_before`] looks.
const LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::days(366);

impl Schedule {
    /// Parse a 5-field cron expression.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let trimmed = text.trim();
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build();
        let cron = parser
            .parse(trimmed)
            .map_err(|e| format!("`{trimmed}` is not a 5-field cron schedule: {e}"))?;
        // A pattern that can never fire (`0 0 30 2 *`) is refused here, not when it is due.
        let probe = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single();
        let fires = probe
            .and_then(|t| cron.find_next_occurrence(&t, true).ok())
            .is_some_and(|n| n - probe.unwrap_or(n) <= chrono::TimeDelta::days(4 * 366 + 1));
        if !fires {
            return Err(format!("`{trimmed}` never fires"));
        }
        Ok(Schedule {
            text: trimmed.to_owned(),
            cron,
        })
    }

    /// The most recent tick at or before `t` (within about a year), if any.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tick = self.cron.find_previous_occurrence(&t, true).ok()?;
        (tick <= t && t - tick <= LOOK_BACK).then_some(tick)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut tick = self.cron.find_next_occurrence(&t, false).ok()?;
        // Ticks are whole minutes; `t` may carry a fraction of a second past one.
        while tick <= t {
            tick = self.cron.find_next_occurrence(&tick, false).ok()?;
        }
        Some(tick)
    }

    /// The smallest gap between two consecutive ticks over a representative window (two
    /// years from 2024-01-01, a leap year, and a week), for the `min_interval` rule. A
    /// schedule that fires once in the window has a gap of the window's length.
    pub fn min_gap(&self) -> Duration {
        // In UTC the minute and hour fields give every firing day the same ticks, so the
        // gaps within a day are those of the first firing day, and the others are between
        // the last tick of one firing day and the first of the next: two look-ups a day.
        const MINUTE: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
        const DAY: chrono::TimeDelta = chrono::TimeDelta::days(1);
        let Some(start) = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single() else {
            return Duration::ZERO;
        };
        let end = start + chrono::TimeDelta::days(366 + 365 + 7);
        let mut smallest = end - start;
        let mut within_measured = false;
        let mut previous_last: Option<DateTime<Utc>> = None;
        let mut day = start;
        while day < end && smallest > MINUTE {
            let Ok(first) = self.cron.find_next_occurrence(&day, true) else {
                break;
            };
            if first >= end {
                break;
            }
            let day_end = first
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|d| d.and_utc() + DAY)
                .unwrap_or(end);
            if let Some(last) = previous_last {
                smallest = smallest.min(first - last);
            }
            if !within_measured {
                within_measured = true;
                let mut prev = first;
                for tick in self.cron.iter_after(first) {
                    if tick >= day_end {
                        break;
                    }
                    smallest = smallest.min(tick - prev);
                    prev = tick;
                }
            }
            let last = self
                .cron
                .find_previous_occurrence(&(day_end - chrono::TimeDelta::seconds(1)), true)
                .unwrap_or(first);
            previous_last = Some(last);
            day = day_end;
        }
        smallest.to_std().unwrap_or(Duration::ZERO)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Schedule::parse(s)
    }
}

#[cfg(test)]
mod tests;
