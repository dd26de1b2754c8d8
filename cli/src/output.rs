//! What the CLI prints: human tables on a terminal, JSON with `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use replicator_proto::{CloneMetrics, RunSummary, TableStatus};

/// Bytes in binary units (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
pub fn progress_bar(len: u64, template: &str, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

/// The six clone metrics, one per line.
pub fn metrics_text(m: &CloneMetrics) -> String {
    format!(
        "source_table_size    {}\nsource_num_of_files  {}\nnum_copied_files     {}\ncopied_files_size    {}\nnum_removed_files    {}\nremoved_files_size   {}",
        bytes(m.source_table_size),
        m.source_num_of_files,
        m.num_copied_files,
        bytes(m.copied_files_size),
        m.num_removed_files,
        bytes(m.removed_files_size),
    )
}

/// The end-of-run table.
pub fn summary_table(s: &RunSummary) -> String {
    let mut rows = vec![[
        "TABLE".to_owned(),
        "STATUS".to_owned(),
        "VERSION".to_owned(),
        "COPIED".to_owned(),
        "REMOVED".to_owned(),
        "ROWS (SRC/TGT)".to_owned(),
        "DETAIL".to_owned(),
    ]];
    for t in &s.tables {
        let status = match t.status {
            TableStatus::Succeeded => "ok",
            TableStatus::Failed => "FAILED",
            TableStatus::Mismatched => "MISMATCH",
        };
        let version = match (t.source_version, t.target_version) {
            (Some(s), Some(t)) => format!("{s} -> {t}"),
            (Some(s), None) => s.to_string(),
            _ => "-".into(),
        };
        let rows_ = match (t.source_rows, t.target_rows) {
            (Some(a), Some(b)) => format!("{a}/{b}"),
            _ => "-".into(),
        };
        rows.push([
            t.table.clone(),
            status.into(),
            version,
            format!("{} files, {}", t.copied_files, bytes(t.copied_bytes)),
            t.removed_files.to_string(),
            rows_,
            t.error
                .clone()
                .or_else(|| t.detail.clone())
                .unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        for (c, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", r[c], w = *w));
        }
        out.push_str(&r[6]);
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} tables: {} succeeded, {} failed, {} mismatched; copied {} files ({}) in {:.1}s\n",
        s.total,
        s.succeeded,
        s.failed,
        s.mismatched,
        s.files_copied,
        bytes(s.bytes_copied),
        s.duration_ms as f64 / 1000.0
    ));
    out
}
