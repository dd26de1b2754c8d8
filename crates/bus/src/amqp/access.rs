//! Telling the broker refusing access (permanent) from an outage (retried).

use crate::BusError;

/// An error that may be the broker refusing access: its reason then.
pub(super) trait Refusal: std::fmt::Display {
    fn refusal(&self) -> Option<String> {
        None
    }
}

impl Refusal for lapin::Error {
    /// ACCESS_REFUSED (403: a wrong user or password, or no permission on an object) and
    /// NOT_ALLOWED (530: no access to the virtual host) are permanent: retrying cannot help.
    fn refusal(&self) -> Option<String> {
        use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
        match self.kind() {
            lapin::ErrorKind::ProtocolError(e) => match e.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                    Some(e.get_message().as_str().to_owned())
                }
                _ => None,
            },
            lapin::ErrorKind::AuthProviderError(e) => Some(e.clone()),
            _ => None,
        }
    }
}

impl Refusal for deadpool_lapin::PoolError {
    fn refusal(&self) -> Option<String> {
        match self {
            deadpool_lapin::PoolError::Backend(e) => e.refusal(),
            _ => None,
        }
    }
}

impl Refusal for deadpool_lapin::CreatePoolError {}

/// Where connecting failed: the hint of a refusal there is the credentials.
pub(super) const CONNECTING: &str = "cannot connect to RabbitMQ";

/// An AMQP URL as it may be shown: the user, never the password; no query string.
fn endpoint(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(unparsable bus.url)".into(),
    }
}

/// `what: error` as a backend error, or, when the broker refused access, a permanent
/// [`BusError::Denied`] naming the broker (`url`, password left out) and the reason.
pub(super) fn backend<'a, E: Refusal>(
    url: &'a str,
    what: &'a str,
) -> impl FnOnce(E) -> BusError + 'a {
    move |e| match e.refusal() {
        Some(reason) => {
            let hint = if what == CONNECTING {
                "check the user, password and virtual host in bus.url"
            } else {
                "check the user's permissions on the virtual host"
            };
            BusError::Denied(format!(
                "RabbitMQ at {} refused access: {reason} ({hint})",
                endpoint(url)
            ))
        }
        None => BusError::Backend(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error the broker raised refusing access (or not).
    struct Refused(Option<&'static str>);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset")
        }
    }

    impl Refusal for Refused {
        fn refusal(&self) -> Option<String> {
            self.0.map(str::to_owned)
        }
    }

    const URL: &str = "amqp://svc:s3cret@rabbit:5672/prod?heartbeat=10";

    #[test]
    fn the_endpoint_shows_the_user_never_the_password() {
        assert_eq!(endpoint(URL), "amqp://svc@rabbit:5672/prod");
        assert_eq!(endpoint("not a url"), "(unparsable bus.url)");
    }

    #[test]
    fn a_refusal_is_permanent_and_names_what_to_check() {
        let e = backend(URL, CONNECTING)(Refused(Some("ACCESS_REFUSED - Login was refused")));
        assert!(e.is_permanent());
        assert_eq!(
            e.to_string(),
            "RabbitMQ at amqp://svc@rabbit:5672/prod refused access: ACCESS_REFUSED - Login was \
             refused (check the user, password and virtual host in bus.url)"
        );
        let e = backend(URL, "cannot declare queue q")(Refused(Some("ACCESS_REFUSED")));
        assert!(
            e.to_string()
                .ends_with("(check the user's permissions on the virtual host)"),
            "{e}"
        );
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn anything_else_is_an_outage_to_retry() {
        let e = backend(URL, CONNECTING)(Refused(None));
        assert!(!e.is_permanent());
        assert_eq!(
            e.to_string(),
            "bus backend error: cannot connect to RabbitMQ: connection reset"
        );
    }
}
