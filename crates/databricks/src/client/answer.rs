//! How an HTTP answer becomes a value or an error: a 2xx body as JSON, any other status as
//! the [`DatabricksError`] it stands for, `Retry-After` as a duration.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::DatabricksError;

/// The `Retry-After` header as a duration (delay-seconds form).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The JSON body of a 2xx answer (`Null` when empty).
pub(super) fn success_body(path: String, text: &str) -> Result<Value, DatabricksError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| DatabricksError::Protocol {
        path,
        detail: format!("body is not JSON: {e}"),
    })
}

/// The error an answer with a non-2xx `status` and body `text` stands for: 401 is
/// [`DatabricksError::Auth`]; a 404 without a "does not exist" `error_code` is
/// [`DatabricksError::NoEndpoint`]; anything else is [`DatabricksError::Http`] with the
/// body's `error_code` and `message`, or one line of a body that is not Databricks'.
pub(super) fn error_answer(
    host: &Url,
    method: &Method,
    path: String,
    status: u16,
    text: &str,
    retry_after: Option<Duration>,
) -> DatabricksError {
    let err: Value = serde_json::from_str(text).unwrap_or_default();
    let code = err["error_code"].as_str().unwrap_or("").to_owned();
    let message = err["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // Not a Databricks error body (a proxy's or gateway's page): one line of it.
            text.chars()
                .take(200)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .trim()
                .to_owned()
        });
    if status == 401 {
        return DatabricksError::Auth {
            host: host.to_string(),
            message: format!("{method} {path}: HTTP 401 {code}: {message}"),
        };
    }
    if status == 404 && !crate::error::means_not_found(&code) {
        return DatabricksError::NoEndpoint {
            method: method.to_string(),
            path,
            code: if code.is_empty() {
                "(no Databricks error body)".into()
            } else {
                code
            },
            message,
        };
    }
    DatabricksError::Http {
        method: method.to_string(),
        path,
        status,
        code,
        message,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use replicator_common::retry::Retryable;

    use super::*;

    fn answer(status: u16, text: &str) -> DatabricksError {
        let host = Url::parse("https://h.example/").unwrap();
        error_answer(&host, &Method::GET, "/api/x".into(), status, text, None)
    }

    #[test]
    fn a_databricks_error_body_gives_code_and_message() {
        let e = answer(
            409,
            r#"{"error_code":"RESOURCE_ALREADY_EXISTS","message":"Share 's' already exists"}"#,
        );
        assert!(e.is_already_exists(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "GET /api/x: HTTP 409 RESOURCE_ALREADY_EXISTS: Share 's' already exists"
        );
        let gone = answer(
            404,
            r#"{"error_code":"TABLE_DOES_NOT_EXIST","message":"no"}"#,
        );
        assert!(gone.is_not_found(), "{gone:?}");
    }

    #[test]
    fn a_404_about_the_path_is_no_endpoint_never_an_absent_object() {
        let e = answer(
            404,
            r#"{"error_code":"ENDPOINT_NOT_FOUND","message":"No API"}"#,
        );
        assert!(
            matches!(&e, DatabricksError::NoEndpoint { code, .. } if code == "ENDPOINT_NOT_FOUND"),
            "{e:?}"
        );
        assert!(!e.is_not_found());
        let bare = answer(
            404,
            "<html>\n<body><h1>404 Not Found</h1></body>\n</html>\n",
        );
        match &bare {
            DatabricksError::NoEndpoint { code, message, .. } => {
                assert_eq!(code, "(no Databricks error body)");
                // One line of the page, control characters blanked.
                assert_eq!(
                    message,
                    "<html> <body><h1>404 Not Found</h1></body> </html>"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_that_is_not_databricks_is_cut_to_one_short_line() {
        let page = format!("{}\n{}", "x".repeat(150), "y".repeat(150));
        let DatabricksError::Http { message, code, .. } = answer(502, &page) else {
            panic!("not an HTTP error");
        };
        assert_eq!(code, "");
        assert_eq!(message.chars().count(), 200);
        assert!(!message.contains('\n'));
    }

    #[test]
    fn a_refused_credential_is_an_auth_error_naming_the_host() {
        let e = answer(
            401,
            r#"{"error_code":"UNAUTHENTICATED","message":"Token expired"}"#,
        );
        assert_eq!(
            e.to_string(),
            "authentication failed at https://h.example/: GET /api/x: HTTP 401 UNAUTHENTICATED: Token expired"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn throttling_keeps_the_servers_retry_after() {
        let host = Url::parse("https://h.example/").unwrap();
        let e = error_answer(
            &host,
            &Method::GET,
            "/p".into(),
            429,
            "{}",
            Some(Duration::from_secs(3)),
        );
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        // The HTTP-date form is not read: the backoff applies.
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn success_bodies_are_json_or_empty() {
        assert_eq!(success_body("/p".into(), "  \n").unwrap(), Value::Null);
        assert_eq!(
            success_body("/p".into(), r#"{"a":1}"#).unwrap()["a"],
            Value::from(1)
        );
        let e = success_body("/p".into(), "<html>").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unexpected response from /p: body is not JSON"),
            "{e}"
        );
    }
}
