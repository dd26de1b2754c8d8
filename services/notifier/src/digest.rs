//! The one message a run produces: a digest of its outcome, rendered as plain text (email),
//! as a Slack message, or as a Microsoft Teams Adaptive Card.

use std::path::PathBuf;

use replicator_proto::{RunCompleted, TableStatus, TableSummary};
use serde_json::{Value, json};

/// How the failed tables of a run get another go, as a digest tells it: the notifier knows
/// the config file it was started with and whether it runs in a fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A fleet: `replicator replay RUN_ID --config FILE` sends the dead-lettered tasks back.
    /// FILE is the config the notifier was started with (any config of the fleet reaches the
    /// same broker and store); `None` when it was not started from a file.
    Replay { config: Option<PathBuf> },
    /// One process (`replicator run`): its dead letters end with it; running the config
    /// again retries what failed (only what changed is copied).
    RunAgain { config: Option<PathBuf> },
}

impl Default for Retry {
    fn default() -> Self {
        Self::Replay { config: None }
    }
}

/// A path as a shell word: quoted when it holds anything a shell would split or expand.
fn shell_word(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Differences listed under the inventory's line at most (the rest are counted).
const MAX_LISTED: usize = 50;

/// The facts every rendering shows.
#[derive(Clone, Debug)]
pub struct Digest<'a> {
    pub run: &'a RunCompleted,
    /// The tables this recipient is told about (all of them, or a group's).
    pub tables: Vec<&'a TableSummary>,
    /// For a group owner: the group's name.
    pub group: Option<&'a str>,
    /// How the failed tables get another go.
    pub retry: &'a Retry,
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{:.1}s", ms as f64 / 1000.0),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl<'a> Digest<'a> {
    /// The digest of the whole run.
    pub fn of(run: &'a RunCompleted, retry: &'a Retry) -> Self {
        Self {
            run,
            tables: run.summary.tables.iter().collect(),
            group: None,
            retry,
        }
    }

    /// The digest of the tables of one group (for its owners).
    pub fn of_group(
        run: &'a RunCompleted,
        group: &'a str,
        tables: Vec<&'a TableSummary>,
        retry: &'a Retry,
    ) -> Self {
        Self {
            run,
            tables,
            group: Some(group),
            retry,
        }
    }

    /// Tables that failed or did not match, with their reasons.
    pub fn failures(&self) -> Vec<&'a TableSummary> {
        self.tables
            .iter()
            .copied()
            .filter(|t| t.status != TableStatus::Succeeded)
            .collect()
    }

    pub fn succeeded(&self) -> bool {
        self.failures().is_empty()
    }

    fn counts(&self) -> (usize, usize, usize) {
        let count = |s: TableStatus| self.tables.iter().filter(|t| t.status == s).count();
        (
            count(TableStatus::Succeeded),
            count(TableStatus::Failed),
            count(TableStatus::Mismatched),
        )
    }

    /// The command that gives the failed tables another go, when it is known in full.
    pub fn retry_command(&self) -> Option<String> {
        match self.retry {
            Retry::Replay { config: Some(c) } => Some(format!(
                "replicator replay {} --config {}",
                self.run.header.run_id,
                shell_word(c)
            )),
            Retry::RunAgain { config: Some(c) } => {
                Some(format!("replicator run {}", shell_word(c)))
            }
            _ => None,
        }
    }

    /// What to do once the cause of the failures is fixed: a sentence ending in a colon,
    /// and the command it introduces (to be completed as the sentence says when the config
    /// file is not known).
    pub fn retry_advice(&self) -> (String, String) {
        let run = self.run.header.run_id;
        match (self.retry, self.retry_command()) {
            (Retry::Replay { .. }, Some(cmd)) => (
                "Once the cause is fixed, send the failed tasks back to work:".into(),
                cmd,
            ),
            (Retry::Replay { .. }, None) => (
                "Once the cause is fixed, send the failed tasks back to work, adding `--config` \
                 and the config file the fleet's services run with (the one `replicator serve` \
                 was started with):"
                    .into(),
                format!("replicator replay {run}"),
            ),
            (Retry::RunAgain { .. }, Some(cmd)) => (
                "Once the cause is fixed, run the config again (only what changed is copied):"
                    .into(),
                cmd,
            ),
            (Retry::RunAgain { .. }, None) => (
                "Once the cause is fixed, run the config again (only what changed is copied), \
                 adding the path of the config file this run used:"
                    .into(),
                "replicator run".into(),
            ),
        }
    }

    /// The advice and its command on one line (chat messages).
    fn retry_line(&self) -> String {
        let (advice, cmd) = self.retry_advice();
        format!("{advice} `{cmd}`")
    }

    pub fn subject(&self) -> String {
        let (ok, failed, mismatched) = self.counts();
        let scope = self.group.map(|g| format!(" [{g}]")).unwrap_or_default();
        let outcome = if self.succeeded() {
            "succeeded"
        } else {
            "FAILED"
        };
        format!(
            "[replicator]{scope} {} run {outcome}: {ok}/{} tables ok, {failed} failed, {mismatched} mismatched",
            self.run.operation,
            self.tables.len()
        )
    }

    /// Plain text, for email.
    pub fn text(&self) -> String {
        let s = &self.run.summary;
        let (ok, failed, mismatched) = self.counts();
        let mut out = format!(
            "Run {} ({}) {} in {}.\n",
            self.run.header.run_id,
            self.run.operation,
            if self.succeeded() {
                "succeeded"
            } else {
                "FAILED"
            },
            duration(s.duration_ms)
        );
        if let Some(g) = self.group {
            out.push_str(&format!(
                "You own the table group `{g}`; this digest covers its tables.\n"
            ));
        }
        out.push_str(&format!(
            "Tables: {} total, {ok} succeeded, {failed} failed, {mismatched} mismatched.\n",
            self.tables.len()
        ));
        let copied: u64 = self.tables.iter().map(|t| t.copied_bytes).sum();
        let files: u64 = self.tables.iter().map(|t| t.copied_files).sum();
        out.push_str(&format!("Copied: {files} files, {}.\n", bytes(copied)));
        // Ingested sources (docs/ingest.md): one line each, how the load went.
        let ingested: Vec<&&TableSummary> = self
            .tables
            .iter()
            .filter(|t| t.kind.is_none() && t.detail.is_some())
            .collect();
        if !ingested.is_empty() {
            out.push_str("\nIngested:\n");
            for t in ingested {
                out.push_str(&format!(
                    "  - {}: {}\n",
                    t.table,
                    t.detail.as_deref().unwrap_or_default()
                ));
            }
        }
        // Catalog objects (docs/catalog.md): one line each, what ran and what is reported.
        let objects: Vec<&&TableSummary> =
            self.tables.iter().filter(|t| t.kind.is_some()).collect();
        if !objects.is_empty() {
            out.push_str("\nCatalog objects:\n");
            for t in objects {
                let detail = t.detail.as_deref().unwrap_or(status_word(t.status));
                // The inventory check lists its differences under its line, one each.
                let mut lines = detail.lines();
                out.push_str(&format!(
                    "  - {}: {}\n",
                    t.table,
                    lines.next().unwrap_or("")
                ));
                let rest: Vec<&str> = lines.collect();
                for l in rest.iter().take(MAX_LISTED) {
                    out.push_str(&format!("      {l}\n"));
                }
                if rest.len() > MAX_LISTED {
                    out.push_str(&format!(
                        "      … and {} more (`replicator reconcile --catalog` lists them all)\n",
                        rest.len() - MAX_LISTED
                    ));
                }
            }
        }
        let failures = self.failures();
        if !failures.is_empty() {
            out.push_str("\nFailures:\n");
            for t in &failures {
                out.push_str(&format!(
                    "  - {} ({}): {}\n",
                    t.table,
                    status_word(t.status),
                    t.error.as_deref().unwrap_or("no reason recorded")
                ));
            }
            let (advice, cmd) = self.retry_advice();
            out.push_str(&format!("\n{advice}\n  {cmd}\n"));
        }
        out
    }

    /// A Slack incoming-webhook message.
    pub fn slack(&self) -> Value {
        let failures = self.failures();
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": self.subject()}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": self.summary_markdown()}}),
        ];
        if !failures.is_empty() {
            let lines: Vec<String> = failures
                .iter()
                .map(|t| {
                    format!(
                        "• `{}` ({}): {}",
                        t.table,
                        status_word(t.status),
                        t.error.as_deref().unwrap_or("no reason recorded")
                    )
                })
                .collect();
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Failures*\n{}", lines.join("\n"))}}));
            blocks.push(
                json!({"type": "section", "text": {"type": "mrkdwn", "text": self.retry_line()}}),
            );
        }
        json!({"text": self.subject(), "blocks": blocks})
    }

    /// A Microsoft Teams incoming-webhook message carrying an Adaptive Card.
    pub fn teams(&self) -> Value {
        let failures = self.failures();
        let mut body = vec![
            json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": self.subject()}),
            json!({"type": "TextBlock", "wrap": true, "text": self.summary_markdown()}),
        ];
        if !failures.is_empty() {
            body.push(json!({"type": "FactSet", "facts": failures.iter().map(|t| json!({
                "title": t.table,
                "value": format!("{}: {}", status_word(t.status), t.error.as_deref().unwrap_or("no reason recorded")),
            })).collect::<Vec<_>>()}));
            body.push(json!({"type": "TextBlock", "wrap": true, "text": self.retry_line()}));
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                }
            }]
        })
    }

    fn summary_markdown(&self) -> String {
        let (ok, failed, mismatched) = self.counts();
        let copied: u64 = self.tables.iter().map(|t| t.copied_bytes).sum();
        format!(
            "Run `{}`: {} tables, {ok} succeeded, {failed} failed, {mismatched} mismatched; copied {} in {}",
            self.run.header.run_id,
            self.tables.len(),
            bytes(copied),
            duration(self.run.summary.duration_ms)
        )
    }
}

fn status_word(s: TableStatus) -> &'static str {
    match s {
        TableStatus::Succeeded => "succeeded",
        TableStatus::Failed => "failed",
        TableStatus::Mismatched => "mismatched",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicator_proto::{Header, Operation, RunSummary};

    fn failed_run() -> RunCompleted {
        let table = TableSummary {
            task_id: uuid::Uuid::now_v7(),
            table: "sales.orders".into(),
            kind: None,
            detail: None,
            status: TableStatus::Failed,
            source_version: None,
            target_version: None,
            copied_files: 0,
            copied_bytes: 0,
            removed_files: 0,
            source_rows: None,
            target_rows: None,
            error: Some("file part-0001.parquet is missing".into()),
        };
        RunCompleted {
            header: Header::new(uuid::Uuid::now_v7()),
            operation: Operation::All,
            summary: RunSummary {
                total: 1,
                failed: 1,
                tables: vec![table],
                ..Default::default()
            },
        }
    }

    /// Every rendering tells the real way back: the config file the notifier runs with,
    /// never a placeholder; without a file, how to find it.
    #[test]
    fn the_replay_line_names_the_real_config() {
        let run = failed_run();
        let id = run.header.run_id;
        let fleet = Retry::Replay {
            config: Some("/etc/replicator/fleet.yaml".into()),
        };
        let d = Digest::of(&run, &fleet);
        let cmd = format!("replicator replay {id} --config /etc/replicator/fleet.yaml");
        assert_eq!(d.retry_command().as_deref(), Some(cmd.as_str()));
        for rendered in [d.text(), d.slack().to_string(), d.teams().to_string()] {
            assert!(rendered.contains(&cmd), "{rendered}");
            assert!(!rendered.contains("CONFIG"), "{rendered}");
        }

        let spaced = Retry::Replay {
            config: Some("/srv/dr configs/it's.yaml".into()),
        };
        assert_eq!(
            Digest::of(&run, &spaced).retry_command().unwrap(),
            format!("replicator replay {id} --config '/srv/dr configs/it'\\''s.yaml'")
        );

        let unknown = Retry::default();
        let d = Digest::of(&run, &unknown);
        assert_eq!(d.retry_command(), None);
        let text = d.text();
        assert!(
            text.contains(&format!(
                "adding `--config` and the config file the fleet's services run with (the one \
                 `replicator serve` was started with):\n  replicator replay {id}\n"
            )),
            "{text}"
        );
        assert!(!text.contains("CONFIG"), "{text}");

        let embedded = Retry::RunAgain {
            config: Some("/home/me/dr.yaml".into()),
        };
        let text = Digest::of(&run, &embedded).text();
        assert!(
            text.contains("\n  replicator run /home/me/dr.yaml\n"),
            "{text}"
        );
        assert!(!text.contains("replicator replay"), "{text}");
    }

    /// The inventory check lists its differences under its line, and a mismatched one is
    /// among the failures with its reason.
    #[test]
    fn the_inventory_lists_its_differences() {
        let mut run = failed_run();
        let mut check = run.summary.tables[0].clone();
        check.table = "inventory file:///a → file:///b".into();
        check.kind = Some(replicator_proto::ObjectKind::Inventory);
        check.status = TableStatus::Mismatched;
        check.error = Some(
            "the target's catalog differs from the source's: volume models: extra on the target (and 1 more)".into(),
        );
        check.detail = Some(
            "2 difference(s) between source and target\nvolume models: extra on the target\nview v: missing on the target"
                .into(),
        );
        run.summary.tables.push(check);
        let text = Digest::of(&run, &Retry::default()).text();
        assert!(
            text.contains(
                "  - inventory file:///a → file:///b: 2 difference(s) between source and target\n      volume models: extra on the target\n      view v: missing on the target\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "inventory file:///a → file:///b (mismatched): the target's catalog differs"
            ),
            "{text}"
        );
    }

    /// A catalog object gets its own line: what ran and what is only reported.
    #[test]
    fn catalog_objects_are_listed_with_their_account() {
        let mut run = failed_run();
        let mut view = run.summary.tables[0].clone();
        view.table = "view prod.sales.v_eu".into();
        view.kind = Some(replicator_proto::ObjectKind::View);
        view.status = TableStatus::Succeeded;
        view.error = None;
        view.detail = Some("applied, 1 statement(s)".into());
        run.summary.tables.push(view);
        let text = Digest::of(&run, &Retry::default()).text();
        assert!(
            text.contains("Catalog objects:\n  - view prod.sales.v_eu: applied, 1 statement(s)\n"),
            "{text}"
        );
    }

    /// An ingested source gets its own line: how it was loaded.
    #[test]
    fn ingested_sources_are_listed_with_their_account() {
        let mut run = failed_run();
        let mut load = run.summary.tables[0].clone();
        load.table = "sales/orders".into();
        load.status = TableStatus::Succeeded;
        load.error = None;
        load.detail = Some(
            "merge by key and row hash: 330 rows read, 50 inserted, 100 updated, 20 deleted".into(),
        );
        run.summary.tables.push(load);
        let text = Digest::of(&run, &Retry::default()).text();
        assert!(
            text.contains("Ingested:\n  - sales/orders: merge by key and row hash: 330 rows read, 50 inserted, 100 updated, 20 deleted\n"),
            "{text}"
        );
        assert!(!text.contains("Catalog objects"), "{text}");
    }
}
