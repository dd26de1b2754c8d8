//! Run digests reach people: email through a real SMTP server (aiosmtpd, started here) with
//! STARTTLS and authentication, to the right recipients (failure list, group owners, not the
//! success list); signed webhooks in the JSON, Slack and Teams formats, verified by the
//! receiver; a receiver that fails twice gets the message once; a notification that finally
//! fails is recorded and does not fail anything.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use replicator_common::config::{
    Email, Group, SecretRef, Smtp, SmtpSecurity, StorageValue, Webhook, WebhookFormat, When,
};
use replicator_common::retry::RetryPolicy;
use replicator_notifier::{NotifierConfig, notify};
use replicator_proto::{Header, Operation, RunCompleted, RunSummary, TableStatus, TableSummary};
use replicator_store::Store;
use uuid::Uuid;

fn table(name: &str, status: TableStatus, error: Option<&str>) -> TableSummary {
    TableSummary {
        task_id: Uuid::now_v7(),
        table: name.into(),
        kind: None,
        detail: None,
        status,
        source_version: Some(3),
        target_version: Some(1),
        copied_files: 2,
        copied_bytes: 2048,
        removed_files: 0,
        source_rows: Some(10),
        target_rows: Some(10),
        error: error.map(str::to_owned),
    }
}

fn run(tables: Vec<TableSummary>) -> RunCompleted {
    let mut s = RunSummary::default();
    for t in &tables {
        s.total += 1;
        match t.status {
            TableStatus::Succeeded => s.succeeded += 1,
            TableStatus::Failed => s.failed += 1,
            TableStatus::Mismatched => s.mismatched += 1,
        }
        s.bytes_copied += t.copied_bytes;
        s.files_copied += t.copied_files;
    }
    s.duration_ms = 4200;
    s.tables = tables;
    RunCompleted {
        header: Header::new(Uuid::now_v7()),
        operation: Operation::All,
        summary: s,
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay_ms: 10,
        max_delay_ms: 20,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct SmtpSink {
    child: Child,
    out: std::path::PathBuf,
    port: u16,
}

impl SmtpSink {
    /// Start aiosmtpd on a free port; `tls` = (cert, key) offers and requires STARTTLS.
    fn start(dir: &std::path::Path, auth: Option<&str>, tls: Option<(&str, &str)>) -> Self {
        let port = free_port();
        let out = dir.join(format!("mail-{port}.jsonl"));
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/smtp_sink.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(a) = auth {
            cmd.args(["--auth", a]);
        }
        if let Some((c, k)) = tls {
            cmd.args(["--tls-cert", c, "--tls-key", k]);
        }
        let mut child = cmd
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test-tools.sh installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "smtp_sink did not start");
        Self { child, out, port }
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA and a server certificate for `localhost` it signed: (CA cert, server cert,
/// server key) paths. (rustls refuses a self-signed CA certificate used as the server's.)
fn private_ca(dir: &std::path::Path) -> (String, String, String) {
    let p = |n: &str| dir.join(n).display().to_string();
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.pem"),
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_digests_go_to_failure_recipients_and_group_owners_over_starttls_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let sink = SmtpSink::start(dir.path(), Some("replicator:s3cret"), Some((&cert, &key)));
    let password = dir.path().join("smtp-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display()))
        .await
        .unwrap();
    let config = NotifierConfig {
        email: Some(Email {
            smtp: Smtp {
                host: "localhost".into(),
                port: Some(sink.port),
                security: SmtpSecurity::Starttls,
                username: Some("replicator".into()),
                password: Some(SecretRef {
                    env: None,
                    file: Some(password),
                }),
                ca_file: Some(ca.into()),
                timeout_ms: 10_000,
            },
            from: "Replicator <replicator@example.com>".into(),
            success_to: vec!["happy@example.com".into()],
            failure_to: vec!["oncall@example.com".into(), "dr-team@example.com".into()],
        }),
        groups: vec![
            Group {
                name: "sales".into(),
                tables: vec!["sales.*".into()],
                owners: vec!["sales-owner@example.com".into()],
            },
            Group {
                name: "finance".into(),
                tables: vec!["finance.*".into()],
                owners: vec!["finance-owner@example.com".into()],
            },
        ],
        retry: fast_retry(),
        ..Default::default()
    };
    let msg = run(vec![
        table(
            "sales.orders",
            TableStatus::Failed,
            Some("file part-0001.parquet is missing"),
        ),
        table("sales.customers", TableStatus::Succeeded, None),
        table("finance.ledger", TableStatus::Succeeded, None),
        table(
            "ops.events",
            TableStatus::Mismatched,
            Some("row_count: source 10, target 9"),
        ),
    ]);
    notify(&msg, &config, &reqwest::Client::new(), &store).await;

    let mail = sink.messages();
    assert_eq!(mail.len(), 2, "{mail:#?}");
    let to = |m: &serde_json::Value| {
        let mut v: Vec<String> = m["rcpt_tos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    // One digest for the failure list (never the success list), one for the sales owner
    // (finance had no failure, so its owner hears nothing).
    let full = mail
        .iter()
        .find(|m| to(m) == ["dr-team@example.com", "oncall@example.com"])
        .expect("the failure digest");
    let sales = mail
        .iter()
        .find(|m| to(m) == ["sales-owner@example.com"])
        .expect("the sales owner's digest");
    for m in [full, sales] {
        assert_eq!(m["tls"], true, "STARTTLS was used");
        assert_eq!(m["auth_user"], "replicator");
        assert_eq!(m["mail_from"], "replicator@example.com");
    }
    let body = full["data"].as_str().unwrap();
    let run_id = msg.header.run_id.to_string();
    for needle in [
        "FAILED",
        "4 total, 2 succeeded, 1 failed, 1 mismatched",
        "sales.orders (failed): file part-0001.parquet is missing",
        "ops.events (mismatched): row_count: source 10, target 9",
        &format!("replicator replay {run_id}"),
        "Copied: 8 files, 8.0 KiB",
    ] {
        assert!(body.contains(needle), "missing `{needle}` in:\n{body}");
    }
    let sales_body = sales["data"].as_str().unwrap();
    assert!(
        sales_body.contains("[sales]") && sales_body.contains("sales.orders"),
        "{sales_body}"
    );
    assert!(
        !sales_body.contains("ops.events"),
        "only the group's tables: {sales_body}"
    );

    let records = store.notifications(msg.header.run_id).await.unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records.iter().all(|r| r.delivered && r.channel == "email"),
        "{records:?}"
    );

    // A run where everything succeeded goes to the success list only.
    let ok = run(vec![table("sales.orders", TableStatus::Succeeded, None)]);
    notify(&ok, &config, &reqwest::Client::new(), &store).await;
    let mail = sink.messages();
    assert_eq!(mail.len(), 3);
    assert_eq!(to(&mail[2]), ["happy@example.com"]);
    assert!(mail[2]["data"].as_str().unwrap().contains("succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_refuses_the_login_is_recorded_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dir.path(), Some("replicator:right"), None);
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "wrong").unwrap();
    let store = Store::open("sqlite::memory:").await.unwrap();
    let config = NotifierConfig {
        email: Some(Email {
            smtp: Smtp {
                host: "127.0.0.1".into(),
                port: Some(sink.port),
                security: SmtpSecurity::None,
                username: Some("replicator".into()),
                password: Some(SecretRef {
                    env: None,
                    file: Some(wrong),
                }),
                ca_file: None,
                timeout_ms: 5_000,
            },
            from: "replicator@example.com".into(),
            success_to: vec![],
            failure_to: vec!["oncall@example.com".into()],
        }),
        retry: fast_retry(),
        ..Default::default()
    };
    let msg = run(vec![table("a.b", TableStatus::Failed, Some("boom"))]);
    notify(&msg, &config, &reqwest::Client::new(), &store).await;
    assert!(sink.messages().is_empty());
    let records = store.notifications(msg.header.run_id).await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(!records[0].delivered);
    let error = records[0].error.as_deref().unwrap();
    assert!(error.contains("535"), "{error}");
    assert_eq!(records[0].attempts, 1, "a permanent refusal is not retried");
    assert!(
        !error.contains("wrong"),
        "the password never reaches a record: {error}"
    );
}

/// What the webhook receiver saw: (format path, headers, body), and how to answer.
#[derive(Default)]
struct Receiver {
    seen: Vec<(String, HeaderMap, Vec<u8>)>,
    fail_first: usize,
}

/// The documented verification: HMAC-SHA256 over "{timestamp}.{body}", hex, prefixed `v1=`,
/// and the timestamp no older than five minutes.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    use hmac::Mac;
    let ts: i64 = headers
        .get("x-replicator-timestamp")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or("no timestamp")?;
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return Err("stale timestamp (replay?)".into());
    }
    let sig = headers
        .get("x-replicator-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("v1="))
        .ok_or("no signature")?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(sig).map_err(|e| e.to_string())?)
        .map_err(|_| "bad signature".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_in_three_formats_retry_until_accepted_once() {
    let state = Arc::new(Mutex::new(Receiver {
        fail_first: 2,
        ..Default::default()
    }));
    let app = axum::Router::new().route(
        "/{format}",
        axum::routing::post({
            let state = state.clone();
            move |axum::extract::Path(format): axum::extract::Path<String>,
                  headers: HeaderMap,
                  body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    if verify("hook-secret", &headers, &body).is_err() {
                        return StatusCode::UNAUTHORIZED;
                    }
                    let mut s = state.lock().unwrap();
                    if format == "json" && s.fail_first > 0 {
                        s.fail_first -= 1;
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    s.seen.push((format, headers, body.to_vec()));
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "hook-secret").unwrap();
    let hook = |format: WebhookFormat, path: &str, secret: &std::path::Path| Webhook {
        url: format!("http://{addr}/{path}?token=not-logged").into(),
        format,
        on: vec![When::Failure],
        bearer_token: None,
        signing_secret: Some(SecretRef {
            env: None,
            file: Some(secret.to_owned()),
        }),
        timeout_ms: 5_000,
    };
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not the secret").unwrap();
    let slack_url = dir.path().join("slack-url");
    std::fs::write(&slack_url, format!("http://{addr}/slack\n")).unwrap();
    let success_only = Webhook {
        on: vec![When::Success],
        ..hook(WebhookFormat::Json, "json", &secret)
    };
    let config = NotifierConfig {
        webhooks: vec![
            hook(WebhookFormat::Json, "json", &secret),
            // A Slack URL is a credential: read from a file, never recorded.
            Webhook {
                url: StorageValue::Secret(SecretRef {
                    env: None,
                    file: Some(slack_url.clone()),
                }),
                ..hook(WebhookFormat::Slack, "slack", &secret)
            },
            hook(WebhookFormat::Teams, "teams", &secret),
            hook(WebhookFormat::Json, "unsigned-wrong", &wrong),
            success_only,
        ],
        retry: fast_retry(),
        ..Default::default()
    };
    let store = Store::open("sqlite::memory:").await.unwrap();
    let msg = run(vec![
        table(
            "sales.orders",
            TableStatus::Failed,
            Some("file x is missing"),
        ),
        table("sales.customers", TableStatus::Succeeded, None),
    ]);
    notify(&msg, &config, &reqwest::Client::new(), &store).await;

    let seen = std::mem::take(&mut state.lock().unwrap().seen);
    let formats: Vec<&str> = seen.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(
        formats.iter().filter(|f| **f == "json").count(),
        1,
        "{formats:?}"
    );
    assert!(
        formats.contains(&"slack") && formats.contains(&"teams"),
        "{formats:?}"
    );
    assert_eq!(
        seen.len(),
        3,
        "the wrongly signed and the success-only hooks got nothing accepted"
    );
    for (format, headers, body) in &seen {
        assert_eq!(
            headers["x-replicator-run-id"].to_str().unwrap(),
            msg.header.run_id.to_string()
        );
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        match format.as_str() {
            "json" => assert_eq!(v["summary"]["failed"], 1, "{v}"),
            "slack" => {
                assert!(v["text"].as_str().unwrap().contains("FAILED"), "{v}");
                assert!(v["blocks"].to_string().contains("file x is missing"), "{v}");
            }
            "teams" => {
                assert_eq!(
                    v["attachments"][0]["contentType"],
                    "application/vnd.microsoft.card.adaptive"
                );
                assert!(v.to_string().contains("sales.orders"), "{v}");
            }
            other => panic!("{other}"),
        }
    }
    // Every delivery is recorded, the failed one too, with no token from the URL.
    let records = store.notifications(msg.header.run_id).await.unwrap();
    assert_eq!(records.len(), 4, "{records:?}");
    let json = records
        .iter()
        .find(|r| r.target.ends_with("/json"))
        .unwrap();
    assert!(json.delivered && json.attempts == 3, "{json:?}");
    let wrong = records
        .iter()
        .find(|r| r.target.contains("unsigned-wrong"))
        .unwrap();
    assert!(
        !wrong.delivered && wrong.error.as_deref().unwrap().contains("401"),
        "{wrong:?}"
    );
    // A refusal is permanent: one attempt, and the record says what to check.
    assert_eq!(wrong.attempts, 1, "{wrong:?}");
    assert!(
        wrong
            .error
            .as_deref()
            .unwrap()
            .contains("refused the credentials"),
        "{wrong:?}"
    );
    assert!(
        records.iter().all(|r| !r.target.contains("not-logged")),
        "{records:?}"
    );
    let slack = records
        .iter()
        .find(|r| r.target.starts_with("(URL from file"))
        .unwrap_or_else(|| panic!("{records:?}"));
    assert!(
        slack.delivered && !slack.target.contains(&addr.to_string()),
        "{slack:?}"
    );

    // The receiver rejects a replayed (old) request even with a valid signature.
    let old = chrono::Utc::now().timestamp() - 600;
    let body = b"{}";
    let mut headers = HeaderMap::new();
    headers.insert("x-replicator-timestamp", old.to_string().parse().unwrap());
    headers.insert(
        "x-replicator-signature",
        replicator_notifier::signature(b"hook-secret", old, body)
            .parse()
            .unwrap(),
    );
    assert!(
        verify("hook-secret", &headers, body)
            .unwrap_err()
            .contains("stale")
    );
}
