//! The one message a run produces: a digest of its outcome, rendered as plain text (email),
//! as a Slack message, or as a Microsoft Teams Adaptive Card.

use replicator_proto::{RunCompleted, TableStatus, TableSummary};
use serde_json::{Value, json};

/// The facts every rendering shows.
#[derive(Clone, Debug)]
pub struct Digest<'a> {
    pub run: &'a RunCompleted,
    /// The tables this recipient is told about (all of them, or a group's).
    pub tables: Vec<&'a TableSummary>,
    /// For a group owner: the group's name.
    pub group: Option<&'a str>,
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
    pub fn of(run: &'a RunCompleted) -> Self {
        Self {
            run,
            tables: run.summary.tables.iter().collect(),
            group: None,
        }
    }

    /// The digest of the tables of one group (for its owners).
    pub fn of_group(run: &'a RunCompleted, group: &'a str, tables: Vec<&'a TableSummary>) -> Self {
        Self {
            run,
            tables,
            group: Some(group),
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

    /// The command that sends the failed tasks back to work.
    pub fn replay_command(&self) -> String {
        format!(
            "replicator replay {} --config CONFIG",
            self.run.header.run_id
        )
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
            out.push_str(&format!(
                "\nOnce the cause is fixed, send the failed tasks back to work:\n  {}\n",
                self.replay_command()
            ));
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
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("Replay once fixed: `{}`", self.replay_command())}}));
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
            body.push(json!({"type": "TextBlock", "wrap": true, "text": format!("Replay once fixed: `{}`", self.replay_command())}));
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
