//! The SQL Statement Execution API (`/api/2.0/sql/statements`): submit with a server-side
//! `wait_timeout`, poll until a terminal state, cancel on the client's own timeout, read the
//! inline `JSON_ARRAY` result chunk by chunk.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::DatabricksError;

use super::{WorkspaceClient, parse};

/// A finished statement's rows (every value as text, `None` for NULL).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatementResult {
    pub statement_id: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl StatementResult {
    /// The value of `column` in row `row`.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }

    /// The first column of the first row as an integer (a `COUNT(*)`).
    pub fn single_u64(&self) -> Result<u64, DatabricksError> {
        let v = self.rows.first().and_then(|r| r.first()).cloned().flatten();
        v.as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| DatabricksError::Protocol {
                path: format!("statement {}", self.statement_id),
                detail: format!("expected one integer, got {:?}", self.rows),
            })
    }
}

#[derive(Deserialize)]
struct StatementResponse {
    statement_id: String,
    status: StatementStatus,
    #[serde(default)]
    manifest: Option<Manifest>,
    #[serde(default)]
    result: Option<ResultData>,
}

#[derive(Deserialize)]
struct StatementStatus {
    state: String,
    #[serde(default)]
    error: Option<ServiceError>,
}

#[derive(Deserialize)]
struct ServiceError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    schema: Option<ManifestSchema>,
}

#[derive(Deserialize)]
struct ManifestSchema {
    #[serde(default)]
    columns: Vec<ManifestColumn>,
}

#[derive(Deserialize)]
struct ManifestColumn {
    name: String,
}

#[derive(Deserialize)]
struct ResultData {
    #[serde(default)]
    data_array: Vec<Vec<Option<String>>>,
    #[serde(default)]
    next_chunk_internal_link: Option<String>,
}

impl WorkspaceClient {
    /// Run one SQL statement to completion and return its rows. Cancels the statement when
    /// it outlives `statement_timeout` or when polling fails for good.
    pub async fn execute(&self, sql: &str) -> Result<StatementResult, DatabricksError> {
        if let Some(journal) = &self.journal {
            journal.push(format!("SQL [{}] {sql}", self.host_name()));
            return Ok(StatementResult {
                statement_id: "dry-run".into(),
                ..Default::default()
            });
        }
        let started = Instant::now();
        let timeout = self.options.statement_timeout;
        let wait = if self.options.wait_timeout <= timeout {
            self.options.wait_timeout
        } else {
            Duration::ZERO
        };
        let body = json!({
            "statement": sql,
            "warehouse_id": self.warehouse_id,
            "wait_timeout": format!("{}s", wait.as_secs()),
            "on_wait_timeout": "CONTINUE",
            "disposition": "INLINE",
            "format": "JSON_ARRAY",
        });
        let url = self.url(&["api", "2.0", "sql", "statements"]);
        let mut resp: StatementResponse = parse(
            url.path(),
            self.call(Method::POST, url.clone(), &[], Some(body))
                .await?,
        )?;
        let id = resp.statement_id.clone();
        tracing::debug!(statement_id = %id, "statement submitted");
        loop {
            match resp.status.state.as_str() {
                "SUCCEEDED" => return self.collect(resp).await,
                "FAILED" | "CANCELED" | "CLOSED" => return Err(statement_error(id, resp.status)),
                "PENDING" | "RUNNING" => {}
                other => {
                    self.cancel(&id).await;
                    return Err(DatabricksError::Protocol {
                        path: url.path().to_owned(),
                        detail: format!("statement {id} in unknown state {other}"),
                    });
                }
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                self.cancel(&id).await;
                return Err(DatabricksError::Timeout {
                    statement_id: id,
                    state: resp.status.state,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            tokio::time::sleep(self.options.poll_interval.min(timeout - elapsed)).await;
            let poll = self.url(&["api", "2.0", "sql", "statements", &id]);
            resp = match self.call(Method::GET, poll.clone(), &[], None).await {
                Ok(v) => parse(poll.path(), v)?,
                Err(e) => {
                    // Do not leave work running that nobody will look at.
                    self.cancel(&id).await;
                    return Err(e);
                }
            };
        }
    }

    /// Ask the warehouse to cancel a statement (best effort: a failure is logged).
    pub async fn cancel(&self, statement_id: &str) {
        let url = self.url(&["api", "2.0", "sql", "statements", statement_id, "cancel"]);
        match self.call(Method::POST, url, &[], None).await {
            Ok(_) => tracing::warn!(%statement_id, "statement cancelled"),
            Err(e) => tracing::error!(%statement_id, error = %e, "could not cancel the statement"),
        }
    }

    async fn collect(&self, resp: StatementResponse) -> Result<StatementResult, DatabricksError> {
        let (mut result, mut next) = first_chunk(resp);
        while let Some(link) = next {
            let url = self.host.join(link.trim_start_matches('/')).map_err(|e| {
                DatabricksError::Protocol {
                    path: link.clone(),
                    detail: format!("bad chunk link: {e}"),
                }
            })?;
            let chunk: ResultData = parse(
                url.path(),
                self.call(Method::GET, url.clone(), &[], None).await?,
            )?;
            result.rows.extend(chunk.data_array);
            next = chunk.next_chunk_internal_link;
        }
        Ok(result)
    }
}

/// The error of a statement that reached FAILED, CANCELED or CLOSED (`UNKNOWN` when the
/// answer carries no error object).
fn statement_error(statement_id: String, status: StatementStatus) -> DatabricksError {
    let e = status.error.unwrap_or(ServiceError {
        error_code: None,
        message: None,
    });
    DatabricksError::Statement {
        statement_id,
        state: status.state,
        code: e.error_code.unwrap_or_else(|| "UNKNOWN".into()),
        message: e.message.unwrap_or_default(),
    }
}

/// The columns and first chunk of rows of a SUCCEEDED answer, and the link to the next chunk.
fn first_chunk(resp: StatementResponse) -> (StatementResult, Option<String>) {
    let columns = resp
        .manifest
        .and_then(|m| m.schema)
        .map(|s| s.columns.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut next = None;
    if let Some(r) = resp.result {
        rows.extend(r.data_array);
        next = r.next_chunk_internal_link;
    }
    let result = StatementResult {
        statement_id: resp.statement_id,
        columns,
        rows,
    };
    (result, next)
}

#[cfg(test)]
mod tests {
    use replicator_common::retry::Retryable;

    use super::*;

    fn response(v: serde_json::Value) -> StatementResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_succeeded_answer_gives_columns_rows_nulls_and_the_next_chunk() {
        let resp = response(json!({
            "statement_id": "01ef",
            "status": {"state": "SUCCEEDED"},
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": {"column_count": 2, "columns": [
                    {"name": "id", "type_name": "LONG", "position": 0},
                    {"name": "region", "type_name": "STRING", "position": 1},
                ]},
                "total_chunk_count": 2,
            },
            "result": {
                "chunk_index": 0,
                "data_array": [["1", "eu"], ["2", null]],
                "next_chunk_internal_link": "/api/2.0/sql/statements/01ef/result/chunks/1",
            },
        }));
        let (r, next) = first_chunk(resp);
        assert_eq!(r.statement_id, "01ef");
        assert_eq!(r.columns, ["id", "region"]);
        assert_eq!(r.get(0, "region"), Some("eu"));
        assert_eq!(r.get(1, "region"), None, "NULL");
        assert_eq!(r.get(1, "id"), Some("2"));
        assert_eq!(r.get(2, "id"), None, "no such row");
        assert_eq!(r.get(0, "missing"), None, "no such column");
        assert_eq!(
            next.as_deref(),
            Some("/api/2.0/sql/statements/01ef/result/chunks/1")
        );
    }

    #[test]
    fn an_answer_without_manifest_or_result_is_an_empty_result() {
        // What a DDL statement (`CREATE SCHEMA …`) may answer.
        let (r, next) = first_chunk(response(json!({
            "statement_id": "s", "status": {"state": "SUCCEEDED"},
        })));
        assert!(r.columns.is_empty() && r.rows.is_empty());
        assert_eq!(next, None);
    }

    #[test]
    fn a_count_is_one_integer() {
        let count = |rows: Vec<Vec<Option<String>>>| StatementResult {
            statement_id: "s".into(),
            columns: vec!["n".into()],
            rows,
        };
        assert_eq!(
            count(vec![vec![Some("42".into())]]).single_u64().unwrap(),
            42
        );
        for bad in [vec![], vec![vec![None]], vec![vec![Some("-1".into())]]] {
            let e = count(bad.clone()).single_u64().unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("unexpected response from statement s: expected one integer"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn a_failed_statement_carries_its_code_and_classification() {
        let failed = response(json!({
            "statement_id": "s1",
            "status": {"state": "FAILED", "error": {
                "error_code": "TEMPORARILY_UNAVAILABLE", "message": "warehouse restarting"}},
        }));
        let e = statement_error(failed.statement_id, failed.status);
        assert_eq!(
            e.to_string(),
            "statement s1 FAILED: TEMPORARILY_UNAVAILABLE: warehouse restarting"
        );
        assert!(e.is_transient());
        assert_eq!(e.statement_id(), Some("s1"));
        let bare = response(json!({"statement_id": "s2", "status": {"state": "CANCELED"}}));
        let e = statement_error(bare.statement_id, bare.status);
        assert_eq!(e.to_string(), "statement s2 CANCELED: UNKNOWN: ");
        assert!(!e.is_transient());
    }
}
