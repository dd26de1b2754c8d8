//! `notifications`: where run digests go (webhooks, email, owners of groups of tables).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, SecretRef, StorageValue};

/// Where run summaries go: one digest per run, never one message per table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub webhooks: Vec<Webhook>,
    /// Email over SMTP.
    pub email: Option<Email>,
    /// Owners of groups of tables: they get the failure digest of a run in which one of
    /// their tables failed or did not match (as the DR sync job's sync groups do).
    pub groups: Vec<Group>,
}

/// Which run outcomes a recipient hears about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Every table succeeded.
    Success,
    /// A table failed or did not match.
    Failure,
}

fn both_outcomes() -> Vec<When> {
    vec![When::Success, When::Failure]
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The `RunCompleted` message as JSON.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` plus blocks).
    Slack,
    /// A Microsoft Teams incoming-webhook message (an Adaptive Card).
    Teams,
}

/// A webhook that receives the run digest (`POST`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The endpoint: inline, or a secret reference (`{ env: SLACK_WEBHOOK_URL }`): Slack and
    /// Teams incoming-webhook URLs are credentials themselves.
    pub url: StorageValue,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Which outcomes to send.
    #[serde(default = "both_outcomes")]
    pub on: Vec<When>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<SecretRef>,
    /// Signs each request: `X-Replicator-Signature: v1=HEX(HMAC-SHA256(secret,
    /// "{timestamp}.{body}"))` with `X-Replicator-Timestamp: {unix seconds}`.
    #[serde(default)]
    pub signing_secret: Option<SecretRef>,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
}

/// Email digests over SMTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub smtp: Smtp,
    /// The sender (`Replicator <replicator@example.com>`).
    pub from: String,
    /// Recipients of the digest of a run in which every table succeeded.
    #[serde(default)]
    pub success_to: Vec<String>,
    /// Recipients of the digest of a run in which a table failed or did not match.
    #[serde(default)]
    pub failure_to: Vec<String>,
}

/// How to reach the SMTP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// A PEM file of extra CA certificates to trust (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
}

/// Transport security of the SMTP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption (a local relay only).
    None,
}

/// A group of tables and who owns them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Glob patterns over table names.
    pub tables: Vec<String>,
    /// Email addresses of the owners.
    pub owners: Vec<String>,
}

fn default_webhook_timeout() -> u64 {
    10_000
}

impl Notifications {
    /// Each webhook, the email settings and each group; owners need email.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, w) in self.webhooks.iter().enumerate() {
            w.validate()
                .map_err(|e| e.within(&format!("[{i}]")).within("webhooks"))?;
        }
        if let Some(e) = &self.email {
            e.validate().map_err(|e| e.within("email"))?;
        }
        for (i, g) in self.groups.iter().enumerate() {
            let within = |e: ConfigError| e.within(&format!("[{i}]")).within("groups");
            g.validate().map_err(within)?;
            if !g.owners.is_empty() && self.email.is_none() {
                return Err(within(ConfigError::key(
                    "owners",
                    "owners are emailed: configure notifications.email",
                )));
            }
        }
        Ok(())
    }
}

impl Webhook {
    /// An http(s) URL (never echoed: a Slack or Teams webhook URL is a credential), and
    /// references that name one source each.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.url {
            StorageValue::Plain(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                return Err(ConfigError::key(
                    "url",
                    "must be an http:// or https:// URL",
                ));
            }
            StorageValue::Secret(s) => s.validate().map_err(|e| e.within("url"))?,
            StorageValue::Plain(_) => {}
        }
        for (name, secret) in [
            ("bearer_token", &self.bearer_token),
            ("signing_secret", &self.signing_secret),
        ] {
            if let Some(s) = secret {
                s.validate().map_err(|e| e.within(name))?;
            }
        }
        Ok(())
    }
}

impl Smtp {
    /// A host, and a login given whole or not at all.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::key("host", "must not be empty"));
        }
        if let Some(s) = &self.password {
            s.validate().map_err(|e| e.within("password"))?;
        }
        if self.password.is_some() != self.username.is_some() {
            return Err(ConfigError::key(
                "",
                "give both `username` and `password`, or neither",
            ));
        }
        Ok(())
    }
}

impl Email {
    /// The server settings, and addresses that look like addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.smtp.validate().map_err(|e| e.within("smtp"))?;
        for (name, list) in [
            ("from", std::slice::from_ref(&self.from)),
            ("success_to", &self.success_to[..]),
            ("failure_to", &self.failure_to[..]),
        ] {
            if let Some(bad) = list.iter().find(|a| !a.contains('@')) {
                return Err(ConfigError::key(
                    name,
                    format!("`{bad}` is not an email address"),
                ));
            }
        }
        Ok(())
    }
}

impl Group {
    /// Globs that parse and owners that look like email addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for p in &self.tables {
            globset::Glob::new(p)
                .map_err(|e| ConfigError::key("tables", format!("bad glob `{p}`: {e}")))?;
        }
        if let Some(bad) = self.owners.iter().find(|a| !a.contains('@')) {
            return Err(ConfigError::key(
                "owners",
                format!("`{bad}` is not an email address"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};

    fn load(notifications: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(
            &format!("{MINIMAL}notifications: {notifications}\n"),
            none(),
            &[],
        )
    }

    fn refused(notifications: &str) -> String {
        load(notifications).unwrap_err().to_string()
    }

    const SMTP: &str = "smtp: { host: mail, username: u, password: { env: P } }";

    #[test]
    fn webhook_urls_may_be_secret_references() {
        let c = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: {{ env: REPLICATOR_TEST_HOOK_URL_UNSET }}, format: slack }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap();
        let url = &c.notifications.webhooks[0].url;
        assert!(matches!(url, StorageValue::Secret(_)));
        let err = url.resolve().unwrap_err().to_string();
        assert!(err.contains("REPLICATOR_TEST_HOOK_URL_UNSET"), "{err}");
        // An inline URL that is not http(s) is refused without being shown.
        let err = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: \"hooks.slack.com/services/T0/B0/s3cr3t\" }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("notifications.webhooks[0].url") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    #[test]
    fn webhook_defaults_and_spellings() {
        let c = load("{ webhooks: [ { url: \"https://a\" }, { url: \"http://b\", format: teams, on: [failure] } ] }").unwrap();
        let [a, b] = &c.notifications.webhooks[..] else {
            panic!("two webhooks")
        };
        assert_eq!(a.format, WebhookFormat::Json);
        assert_eq!(a.on, vec![When::Success, When::Failure]);
        assert_eq!(a.timeout_ms, 10_000);
        assert_eq!(
            (b.format, &b.on[..]),
            (WebhookFormat::Teams, &[When::Failure][..])
        );
        for bad in [
            "{ webhooks: [ { url: \"https://a\", format: xml } ] }",
            "{ webhooks: [ { url: \"https://a\", on: [always] } ] }",
        ] {
            let err = refused(bad);
            assert!(err.contains("`notifications.webhooks[0]."), "{err}");
            assert!(err.contains("unknown variant"), "{err}");
        }
    }

    #[test]
    fn webhook_rules_name_their_keys() {
        for (bad, message) in [
            (
                "{ webhooks: [ { url: \"https://a\" }, { url: \"ftp://b\" } ] }",
                "`notifications.webhooks[1].url`: must be an http:// or https:// URL",
            ),
            (
                "{ webhooks: [ { url: { env: A, file: /b } } ] }",
                "`notifications.webhooks[0].url`: needs exactly one",
            ),
            (
                "{ webhooks: [ { url: \"https://a\", bearer_token: {} } ] }",
                "`notifications.webhooks[0].bearer_token`: needs exactly one",
            ),
            (
                "{ webhooks: [ { url: \"https://a\", signing_secret: { env: A, file: /b } } ] }",
                "`notifications.webhooks[0].signing_secret`: needs exactly one",
            ),
        ] {
            let err = refused(bad);
            assert!(err.contains(message), "{bad}: {err}");
        }
    }

    #[test]
    fn email_rules_name_their_keys() {
        let c = load(&format!(
            "{{ email: {{ {SMTP}, from: \"R <r@x>\", failure_to: [ops@x] }} }}"
        ))
        .unwrap();
        let e = c.notifications.email.unwrap();
        assert_eq!(e.smtp.security, SmtpSecurity::Starttls);
        assert_eq!(e.smtp.port, None);
        for (bad, message) in [
            (
                "{ email: { smtp: { host: \" \" }, from: a@x } }".to_owned(),
                "`notifications.email.smtp.host`: must not be empty",
            ),
            (
                "{ email: { smtp: { host: h, username: u }, from: a@x } }".to_owned(),
                "`notifications.email.smtp`: give both `username` and `password`",
            ),
            (
                "{ email: { smtp: { host: h, password: { env: P } }, from: a@x } }".to_owned(),
                "`notifications.email.smtp`: give both `username` and `password`",
            ),
            (
                "{ email: { smtp: { host: h, username: u, password: {} }, from: a@x } }".to_owned(),
                "`notifications.email.smtp.password`: needs exactly one",
            ),
            (
                format!("{{ email: {{ {SMTP}, from: nobody }} }}"),
                "`notifications.email.from`: `nobody` is not an email address",
            ),
            (
                format!("{{ email: {{ {SMTP}, from: a@x, success_to: [b@x, c] }} }}"),
                "`notifications.email.success_to`: `c` is not an email address",
            ),
            (
                format!("{{ email: {{ {SMTP}, from: a@x, failure_to: [d] }} }}"),
                "`notifications.email.failure_to`: `d` is not an email address",
            ),
            (
                "{ email: { smtp: { host: h, security: ssl }, from: a@x } }".to_owned(),
                "`notifications.email.smtp.security`: unknown variant `ssl`",
            ),
        ] {
            let err = refused(&bad);
            assert!(err.contains(message), "{bad}: {err}");
        }
        // Overrides reach into the section.
        let c = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ email: {{ {SMTP}, from: a@x }} }}\n"),
            vec![(
                "REPLICATOR__NOTIFICATIONS__EMAIL__SMTP__PORT".to_owned(),
                "2525".to_owned(),
            )],
            &["notifications.email.smtp.security=tls".into()],
        )
        .unwrap();
        let smtp = c.notifications.email.unwrap().smtp;
        assert_eq!((smtp.port, smtp.security), (Some(2525), SmtpSecurity::Tls));
    }

    #[test]
    fn group_rules_name_their_keys() {
        let email = format!("email: {{ {SMTP}, from: a@x }}");
        assert!(
            load(&format!(
                "{{ {email}, groups: [ {{ name: g, tables: [\"sales.*\"], owners: [o@x] }} ] }}"
            ))
            .is_ok()
        );
        for (bad, message) in [
            (
                format!("{{ {email}, groups: [ {{ name: g, tables: [\"a.[\"], owners: [] }} ] }}"),
                "`notifications.groups[0].tables`: bad glob `a.[`",
            ),
            (
                format!("{{ {email}, groups: [ {{ name: g, tables: [], owners: [o@x, me] }} ] }}"),
                "`notifications.groups[0].owners`: `me` is not an email address",
            ),
            (
                "{ groups: [ { name: g, tables: [], owners: [] }, { name: h, tables: [], owners: [o@x] } ] }".to_owned(),
                "`notifications.groups[1].owners`: owners are emailed: configure notifications.email",
            ),
        ] {
            let err = refused(&bad);
            assert!(err.contains(message), "{bad}: {err}");
        }
    }
}
