//! Email digests over SMTP (lettre): STARTTLS, implicit TLS or plain, with authentication.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use replicator_common::config::{Smtp, SmtpSecurity};
use replicator_common::retry::Retryable;

/// Why an email was not sent.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid address `{0}`: {1}")]
    Address(String, String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("SMTP configuration: {0}")]
    Config(String),
    #[error("SMTP delivery to {host} failed: {message}")]
    Send {
        host: String,
        message: String,
        transient: bool,
    },
}

impl Retryable for EmailError {
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Send {
                transient: true,
                ..
            }
        )
    }
}

fn mailbox(a: &str) -> Result<Mailbox, EmailError> {
    a.parse().map_err(|e: lettre::address::AddressError| {
        EmailError::Address(a.to_owned(), e.to_string())
    })
}

/// A transport for `smtp`, reading its password and CA file now.
pub fn transport(smtp: &Smtp) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
    let tls = |host: &str| -> Result<TlsParameters, EmailError> {
        let mut b = TlsParameters::builder(host.to_owned());
        if let Some(path) = &smtp.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| EmailError::Config(format!("ca_file {}: {e}", path.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| EmailError::Config(format!("ca_file {}: {e}", path.display())))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(|e| EmailError::Config(e.to_string()))
    };
    let (port, mode) = match smtp.security {
        SmtpSecurity::Starttls => (587, Tls::Required(tls(&smtp.host)?)),
        SmtpSecurity::Tls => (465, Tls::Wrapper(tls(&smtp.host)?)),
        SmtpSecurity::None => (25, Tls::None),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port.unwrap_or(port))
        .tls(mode)
        .timeout(Some(Duration::from_millis(smtp.timeout_ms)));
    if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
        let pass = pass
            .resolve()
            .map_err(|e| EmailError::Config(e.to_string()))?;
        b = b.credentials(Credentials::new(user.clone(), pass));
    }
    Ok(b.build())
}

/// Send one plain-text message to `to` (each address an envelope recipient).
pub async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    host: &str,
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
    run_id: uuid::Uuid,
) -> Result<(), EmailError> {
    let mut m = Message::builder()
        .from(mailbox(from)?)
        .subject(subject)
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for a in to {
        m = m.to(mailbox(a)?);
    }
    let message = m
        .message_id(Some(format!(
            "<{run_id}.{}@replicator>",
            uuid::Uuid::new_v4().simple()
        )))
        .body(body.to_owned())
        .map_err(|e| EmailError::Build(e.to_string()))?;
    transport.send(message).await.map(|_| ()).map_err(|e| {
        // Permanent SMTP replies (5xx: unknown recipient, refused auth) are not retried.
        EmailError::Send {
            host: host.to_owned(),
            message: e.to_string(),
            transient: !e.is_permanent(),
        }
    })
}
