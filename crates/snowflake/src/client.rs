//! The Snowflake SQL API v2 client.
//!
//! - `POST /api/v2/statements?requestId=<uuid>` with `{"statement", "timeout", "warehouse",
//!   "role"}`; a resubmission after a failed attempt keeps the request ID and adds
//!   `retry=true`, so Snowflake does not run a statement twice;
//! - 200 is a `ResultSet`: `resultSetMetaData.rowType` names the columns, `data` holds the
//!   rows as strings (`null` for SQL NULL); further partitions are fetched with
//!   `GET /api/v2/statements/{handle}?partition=N`;
//! - 202 is a `QueryStatus`: the handle is polled with `GET /api/v2/statements/{handle}`,
//!   with a growing interval, until an answer other than 202 or the overall timeout (then
//!   `POST …/{handle}/cancel`);
//! - 422 is a `QueryFailureStatus`: a statement error with Snowflake's `message`, `code` and
//!   `sqlState`;
//! - 429, 500, 502, 503, 504 and transport errors are retried with exponential backoff
//!   (jittered) and the server's `Retry-After`, for a bounded number of attempts;
//! - 401 with code 390144 (`JWT token is invalid`, which is also how Snowflake refuses an
//!   expired JWT) re-mints the JWT and repeats the request once.
//!
//! Every request carries `Authorization: Bearer <JWT>` and
//! `X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT`. Messages show the statement's redacted
//! rendering, shortened to one line; the JWT is never shown.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

use crate::SnowflakeError;
use crate::auth::JwtMinter;
use crate::ddl::Statement;
use crate::error::one_line;

/// Snowflake's code for a refused JWT (invalid or expired).
pub const JWT_INVALID: &str = "390144";

/// Tuning of the client; the defaults suit a real account, tests shrink the durations.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The API's base URL; `https://<account>.snowflakecomputing.com` when `None`.
    pub base_url: Option<String>,
    pub warehouse: Option<String>,
    pub role: Option<String>,
    /// How long one statement may take overall, polls included (also sent as `timeout`).
    pub statement_timeout: Duration,
    /// First interval between polls of a running statement; doubles up to `max_poll_interval`.
    pub poll_interval: Duration,
    pub max_poll_interval: Duration,
    /// Attempts of one request when throttled or unreachable, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Upper bound on one wait the server asks for with `Retry-After`.
    pub max_retry_after: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            base_url: None,
            warehouse: None,
            role: None,
            statement_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_millis(500),
            max_poll_interval: Duration::from_secs(10),
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// The rows of a finished statement.
#[derive(Clone, Debug, Default)]
pub struct StatementResult {
    pub handle: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl StatementResult {
    /// The index of a column, by name, ignoring case (`SHOW` columns are lower case).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The value of column `name` in row `row`.
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let i = self.column(name)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }
}

/// One Snowflake account, reached as one user with key-pair authentication.
#[derive(Debug)]
pub struct SqlClient {
    base: Url,
    http: reqwest::Client,
    minter: JwtMinter,
    options: ClientOptions,
}

impl SqlClient {
    /// A client for `account` (`myorg-myaccount`, or a locator such as `xy12345.us-east-1`).
    pub fn new(
        account: &str,
        minter: JwtMinter,
        options: ClientOptions,
    ) -> Result<Self, SnowflakeError> {
        if options.max_attempts == 0 {
            return Err(SnowflakeError::Config(
                "max_attempts must be at least 1".into(),
            ));
        }
        let base = match &options.base_url {
            Some(u) => u.clone(),
            None => {
                let host = account.trim().to_ascii_lowercase();
                if host.is_empty()
                    || !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    return Err(SnowflakeError::Config(format!(
                        "account identifier `{account}` is not a host name part"
                    )));
                }
                let host = host
                    .trim_end_matches(".snowflakecomputing.com")
                    .replace('_', "-");
                format!("https://{host}.snowflakecomputing.com")
            }
        };
        let mut base = Url::parse(&base)
            .map_err(|e| SnowflakeError::Config(format!("base URL `{base}`: {e}")))?;
        if !matches!(base.scheme(), "https" | "http") || base.cannot_be_a_base() {
            return Err(SnowflakeError::Config(format!(
                "base URL `{base}` must be an https:// URL"
            )));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .user_agent(concat!("replicator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SnowflakeError::Config(format!("http client: {e}")))?;
        Ok(Self {
            base,
            http,
            minter,
            options,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn minter(&self) -> &JwtMinter {
        &self.minter
    }

    /// Execute a typed statement; messages show its redacted rendering.
    pub async fn execute(&self, statement: &Statement) -> Result<StatementResult, SnowflakeError> {
        self.run(&statement.sql(), &statement.redacted()).await
    }

    /// Execute SQL that holds no secret (`SHOW …`): it is shown as it is in messages.
    pub async fn query(&self, sql: &str) -> Result<StatementResult, SnowflakeError> {
        self.run(sql, sql).await
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("base is a base URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    async fn run(&self, sql: &str, shown: &str) -> Result<StatementResult, SnowflakeError> {
        let shown = one_line(shown, 160);
        let started = Instant::now();
        let deadline = started + self.options.statement_timeout;
        let mut body = json!({
            "statement": sql,
            "timeout": self.options.statement_timeout.as_secs().max(1),
        });
        if let Some(w) = &self.options.warehouse {
            body["warehouse"] = json!(w);
        }
        if let Some(r) = &self.options.role {
            body["role"] = json!(r);
        }
        let request_id = Uuid::new_v4().to_string();
        let (mut status, mut answer) = self
            .send(
                Method::POST,
                self.url(&["api", "v2", "statements"]),
                &[("requestId", request_id)],
                Some(&body),
                true,
            )
            .await?;
        let mut delay = self.options.poll_interval;
        loop {
            let handle = answer["statementHandle"].as_str().unwrap_or("").to_owned();
            match status {
                200 => return self.result(handle, answer).await,
                202 => {
                    if handle.is_empty() {
                        return Err(protocol(
                            "/api/v2/statements",
                            "202 without a statementHandle",
                        ));
                    }
                    if Instant::now() + delay > deadline {
                        self.cancel(&handle).await;
                        return Err(SnowflakeError::Timeout {
                            statement: shown,
                            handle,
                            waited_ms: started.elapsed().as_millis() as u64,
                        });
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.options.max_poll_interval);
                    (status, answer) = self
                        .send(
                            Method::GET,
                            self.url(&["api", "v2", "statements", &handle]),
                            &[],
                            None,
                            false,
                        )
                        .await?;
                }
                422 => {
                    return Err(SnowflakeError::Statement {
                        statement: shown,
                        handle,
                        code: answer["code"].as_str().unwrap_or("").to_owned(),
                        sql_state: answer["sqlState"].as_str().unwrap_or("").to_owned(),
                        message: one_line(answer["message"].as_str().unwrap_or(""), 400),
                    });
                }
                408 => {
                    return Err(SnowflakeError::Timeout {
                        statement: shown,
                        handle,
                        waited_ms: started.elapsed().as_millis() as u64,
                    });
                }
                other => {
                    return Err(protocol(
                        "/api/v2/statements",
                        &format!("unexpected HTTP {other}"),
                    ));
                }
            }
        }
    }

    /// The rows of a `ResultSet`, all partitions.
    async fn result(
        &self,
        handle: String,
        answer: Value,
    ) -> Result<StatementResult, SnowflakeError> {
        let path = "/api/v2/statements";
        let meta = &answer["resultSetMetaData"];
        let columns = meta["rowType"]
            .as_array()
            .ok_or_else(|| protocol(path, "no resultSetMetaData.rowType"))?
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_owned())
            .collect();
        let mut rows = rows_of(&answer["data"]).map_err(|d| protocol(path, &d))?;
        let partitions = meta["partitionInfo"].as_array().map_or(1, Vec::len);
        for partition in 1..partitions {
            let (status, page) = self
                .send(
                    Method::GET,
                    self.url(&["api", "v2", "statements", &handle]),
                    &[("partition", partition.to_string())],
                    None,
                    false,
                )
                .await?;
            if status != 200 {
                return Err(protocol(
                    path,
                    &format!("partition {partition} of {handle}: HTTP {status}"),
                ));
            }
            rows.extend(rows_of(&page["data"]).map_err(|d| protocol(path, &d))?);
        }
        Ok(StatementResult {
            handle,
            columns,
            rows,
        })
    }

    /// Best effort: the statement is abandoned whatever the answer.
    async fn cancel(&self, handle: &str) {
        let url = self.url(&["api", "v2", "statements", handle, "cancel"]);
        if let Err(e) = self.send(Method::POST, url, &[], None, false).await {
            tracing::warn!(%handle, error = %e, "cancelling a statement failed");
        }
    }

    fn backoff(&self, retry: u32, retry_after: Option<std::time::Duration>) -> Duration {
        let exp = self
            .options
            .base_delay
            .saturating_mul(1u32 << retry.min(20))
            .min(self.options.max_delay);
        // Equal jitter: half fixed, half random.
        let r = (Uuid::new_v4().as_u128() % 1000) as u32;
        let jittered = exp / 2 + (exp / 2) * r / 1000;
        match retry_after {
            Some(ra) => ra.min(self.options.max_retry_after).max(jittered),
            None => jittered,
        }
    }

    /// One request with authentication and retries. Returns the status (200, 202, 408 or
    /// 422) and the JSON body.
    async fn send(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
        resubmittable: bool,
    ) -> Result<(u16, Value), SnowflakeError> {
        let path = url.path().to_owned();
        let mut token = self.minter.token();
        let mut reminted = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut q: Vec<(&str, String)> = query.to_vec();
            if resubmittable && attempt > 1 {
                q.push(("retry", "true".into()));
            }
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token)
                .header("X-Snowflake-Authorization-Token-Type", "KEYPAIR_JWT")
                .header(reqwest::header::ACCEPT, "application/json");
            if !q.is_empty() {
                req = req.query(&q);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let failure = match req.send().await {
                Err(e) => SnowflakeError::Transport {
                    method: method.to_string(),
                    path: path.clone(),
                    detail: one_line(&e.without_url().to_string(), 200),
                },
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry_after(resp.headers());
                    let text = resp.text().await.unwrap_or_default();
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let code = v["code"].as_str().unwrap_or("").to_owned();
                    let message = v["message"]
                        .as_str()
                        .map_or_else(|| one_line(&text, 200), |m| one_line(m, 300));
                    match status {
                        200 | 202 | 408 | 422 => {
                            if v.is_null() {
                                return Err(protocol(
                                    &path,
                                    &format!("HTTP {status} body is not JSON"),
                                ));
                            }
                            return Ok((status, v));
                        }
                        401 if code == JWT_INVALID && !reminted => {
                            tracing::info!(%path, "JWT refused, minting a new one");
                            token = self.minter.remint(&token);
                            reminted = true;
                            attempt -= 1;
                            continue;
                        }
                        401 | 403 => {
                            return Err(SnowflakeError::Auth {
                                host: self.base.to_string(),
                                user: self.minter.user().to_owned(),
                                status,
                                code,
                                message,
                            });
                        }
                        _ => SnowflakeError::Http {
                            method: method.to_string(),
                            path: path.clone(),
                            status,
                            code,
                            message,
                            retry_after,
                        },
                    }
                }
            };
            if !failure.is_transient() || attempt >= self.options.max_attempts {
                return Err(failure);
            }
            let delay = self.backoff(attempt - 1, failure.retry_after());
            tracing::warn!(error = %failure, delay_ms = delay.as_millis() as u64, attempt, "Snowflake request failed, retrying");
            tokio::time::sleep(delay).await;
            // The JWT may have aged while waiting.
            token = self.minter.token();
        }
    }
}

fn protocol(path: &str, detail: &str) -> SnowflakeError {
    SnowflakeError::Protocol {
        path: path.to_owned(),
        detail: detail.to_owned(),
    }
}

fn rows_of(data: &Value) -> Result<Vec<Vec<Option<String>>>, String> {
    let Some(rows) = data.as_array() else {
        return if data.is_null() {
            Ok(Vec::new())
        } else {
            Err("`data` is not an array".into())
        };
    };
    rows.iter()
        .map(|row| {
            row.as_array()
                .ok_or_else(|| "a row of `data` is not an array".to_owned())?
                .iter()
                .map(|cell| match cell {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s.clone())),
                    other => Err(format!("a cell of `data` is not a string: {other}")),
                })
                .collect()
        })
        .collect()
}

/// The `Retry-After` header in its delay-seconds form.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeyPair;
    use crate::auth::tests::test_key;

    fn client(account: &str, base_url: Option<&str>) -> Result<SqlClient, SnowflakeError> {
        let key = KeyPair::from_key(test_key().clone(), "mem").unwrap();
        let minter = JwtMinter::new(account, "u", key, Duration::from_secs(60)).unwrap();
        SqlClient::new(
            account,
            minter,
            ClientOptions {
                base_url: base_url.map(str::to_owned),
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_default_base_url_is_the_accounts_host() {
        assert_eq!(
            client("myorg-my_account", None)
                .unwrap()
                .base_url()
                .as_str(),
            "https://myorg-my-account.snowflakecomputing.com/"
        );
        assert_eq!(
            client("xy12345.us-east-1", None)
                .unwrap()
                .base_url()
                .as_str(),
            "https://xy12345.us-east-1.snowflakecomputing.com/"
        );
        assert!(client("bad/host", None).is_err());
        assert_eq!(
            client("a", Some("http://127.0.0.1:9"))
                .unwrap()
                .base_url()
                .as_str(),
            "http://127.0.0.1:9/"
        );
        let c = client("a", None).unwrap();
        assert_eq!(
            c.url(&["api", "v2", "statements", "01a-b/c"]).path(),
            "/api/v2/statements/01a-b%2Fc"
        );
        assert!(!format!("{c:?}").contains("BEGIN"));
    }

    #[test]
    fn rows_are_strings_or_null() {
        let rows = rows_of(&json!([["a", null], ["b", "c"]])).unwrap();
        assert_eq!(rows[0], vec![Some("a".to_owned()), None]);
        assert!(rows_of(&json!([[1]])).is_err());
        assert!(rows_of(&Value::Null).unwrap().is_empty());
    }

    #[tokio::test]
    async fn backoff_grows_is_bounded_and_honours_retry_after() {
        let c = client("a", None).unwrap();
        for retry in 0..30 {
            let d = c.backoff(retry, None);
            assert!(d <= c.options.max_delay, "{d:?}");
            assert!(d >= (c.options.base_delay * (1 << retry.min(6))).min(c.options.max_delay) / 2);
        }
        assert_eq!(
            c.backoff(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            c.backoff(0, Some(Duration::from_secs(7200))),
            c.options.max_retry_after
        );
    }
}
