//! The API key against a capturing server, with the logs captured. Alone in its test
//! binary: tracing's callsite interest and level hint are process-wide, and a test running
//! on another thread without a subscriber could otherwise hide this one's debug lines.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{PATIENCE, config, server, task};
use replicator_common::config::SecretRef;
use replicator_lineage::{Emitter, TaskMetrics};
use uuid::Uuid;

/// Log lines, captured.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn the_key_is_sent_as_a_bearer_token_and_shown_nowhere() {
    const KEY: &str = "ol-key-hunter2-do-not-print";
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This thread's default: the current-thread runtime runs the sender here too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = std::env::temp_dir().join(format!("replicator-lineage-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();

    // A retry (503), a refusal (401) and an acceptance: every log path is taken.
    let (url, capture) = server(&[503, 401]).await;
    let mut c = config(&url);
    c.api_key = Some(SecretRef {
        env: None,
        file: Some(key_file),
    });
    c.queue = 2;
    let lineage = Emitter::new(&c).unwrap();
    let t = task();
    lineage.task_started(&t);
    lineage.task_completed(&t, &TaskMetrics::default());
    lineage.task_failed(&t, "dropped: the queue holds two");
    assert!(lineage.flush(PATIENCE).await);
    assert_eq!(
        (lineage.sent(), lineage.failed(), lineage.dropped()),
        (1, 1, 1)
    );

    let seen = capture.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.headers["authorization"], format!("Bearer {KEY}"));
    }
    let logs = logs.text();
    // The give-up line names the event and the status.
    let given_up = logs
        .lines()
        .find(|l| l.contains("lineage event given up"))
        .unwrap_or_else(|| panic!("{logs}"));
    for part in [
        "WARN",
        "clone sales.orders",
        "START",
        &t.task_id.to_string(),
        "HTTP 401",
    ] {
        assert!(given_up.contains(part), "{part}: {given_up}");
    }
    assert!(logs.contains("lineage event dropped"), "{logs}");
    assert!(logs.contains("retrying"), "{logs}");
    // The key: in no log line, and not in the Debug of the emitter or its config.
    assert!(!logs.contains(KEY), "{logs}");
    assert!(!format!("{lineage:?}").contains(KEY));
    assert!(
        format!("{lineage:?}").contains("api_key: \"set\""),
        "{lineage:?}"
    );
    assert!(!format!("{c:?}").contains(KEY));
    std::fs::remove_dir_all(&dir).ok();
}
