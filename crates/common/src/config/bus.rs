//! `bus`: the message bus the services talk over.

use serde::{Deserialize, Serialize};

use super::secret::has_inline_password;
use super::{ConfigError, StorageValue};

/// Which message bus carries the services' messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    /// In-process queues: every service in one process (`replicator run`).
    #[default]
    Memory,
    /// RabbitMQ: a fleet of processes (`replicator serve`).
    Rabbitmq,
    /// Kafka: a fleet of processes (`replicator serve`).
    Kafka,
}

impl BusBackend {
    /// The config spelling: `memory`, `rabbitmq` or `kafka`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Rabbitmq => "rabbitmq",
            Self::Kafka => "kafka",
        }
    }
}

impl std::fmt::Display for BusBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn backend<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BusBackend, D::Error> {
    super::one_of(d, |v| {
        format!("unknown backend `{v}` (expected `memory`, `rabbitmq` or `kafka`)")
    })
}

/// Message bus settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `memory` (embedded, one process: the default), `rabbitmq` or `kafka` (a fleet of
    /// processes).
    #[serde(deserialize_with = "backend")]
    pub backend: BusBackend,
    /// Broker address. RabbitMQ: an `amqp://host:port/vhost` URL (default
    /// `amqp://127.0.0.1:5672/%2f`); Kafka: bootstrap servers (`host:9092,host2:9092`). A
    /// URL carrying a password must be a reference: `url: { env: AMQP_URL }`.
    pub url: Option<StorageValue>,
    /// Prefix of every queue, exchange and topic name, so several fleets share a broker.
    pub prefix: String,
    /// RabbitMQ: declare the work queues as quorum queues.
    pub quorum: bool,
    /// Delays before a nacked message is delivered again, in milliseconds; the last repeats.
    pub retry_delays_ms: Vec<u64>,
    /// Messages a queue holds before publishers wait (memory bus).
    pub queue_capacity: usize,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliveries: u32,
    /// Kafka: partitions of the topics replicator creates (the most workers one queue can
    /// use at once).
    pub partitions: i32,
    /// Kafka: create missing topics through the admin API; `false` where topics are
    /// provisioned separately (a missing topic is then an error naming it).
    pub create_topics: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            backend: BusBackend::Memory,
            url: None,
            prefix: "replicator".into(),
            quorum: false,
            retry_delays_ms: vec![1_000, 5_000, 30_000],
            queue_capacity: 1024,
            max_deliveries: 5,
            partitions: 6,
            create_topics: true,
        }
    }
}

impl BusConfig {
    /// The broker address with any secret read from its reference.
    pub fn resolved_url(&self) -> Result<String, ConfigError> {
        match &self.url {
            Some(StorageValue::Plain(u)) => Ok(u.clone()),
            Some(StorageValue::Secret(s)) => s.resolve(),
            None if self.backend == BusBackend::Kafka => Ok("127.0.0.1:9092".into()),
            None => Ok("amqp://127.0.0.1:5672/%2f".into()),
        }
    }

    /// Counts are at least 1, a password in the URL is a reference, the prefix is a
    /// plain name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_capacity == 0 {
            return Err(ConfigError::key("queue_capacity", "must be at least 1"));
        }
        if self.max_deliveries == 0 {
            return Err(ConfigError::key("max_deliveries", "must be at least 1"));
        }
        match &self.url {
            Some(StorageValue::Plain(u)) if has_inline_password(u) => {
                return Err(ConfigError::key(
                    "url",
                    "carries a password: reference it ({ env: VAR } or { file: PATH }), never inline it",
                ));
            }
            Some(StorageValue::Secret(s)) => s.validate().map_err(|e| e.within("url"))?,
            _ => {}
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::key(
                "prefix",
                "must be non-empty ASCII letters, digits, `-`, `_` or `.`",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{MINIMAL, none};
    use crate::config::{Config, SecretRef};

    fn refused(bus: &str) -> String {
        Config::from_yaml(&format!("{MINIMAL}bus: {bus}\n"), none(), &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_backend_is_one_of_three_words() {
        for (word, backend) in [
            ("memory", BusBackend::Memory),
            ("rabbitmq", BusBackend::Rabbitmq),
            ("kafka", BusBackend::Kafka),
        ] {
            let c = Config::from_yaml(MINIMAL, none(), &[format!("bus.backend={word}")]).unwrap();
            assert_eq!(c.bus.backend, backend);
            assert_eq!(backend.to_string(), word);
            assert_eq!(serde_yaml::to_string(&backend).unwrap().trim(), word);
        }
        assert_eq!(
            Config::from_yaml(MINIMAL, none(), &[]).unwrap().bus.backend,
            BusBackend::Memory
        );
        for bad in ["{ backend: nats }", "{ backend: Kafka }"] {
            let err = refused(bad);
            assert!(
                err.starts_with("config key `bus.backend`: unknown backend `")
                    && err.ends_with("(expected `memory`, `rabbitmq` or `kafka`)"),
                "{err}"
            );
        }
        let err = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__BUS__BACKEND".to_owned(), "nats".to_owned())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config key `bus.backend`: unknown backend `nats` (expected `memory`, `rabbitmq` or `kafka`)"
        );
        // Not a word at all: the type error, still naming the key.
        assert!(refused("{ backend: [kafka] }").contains("`bus.backend`"));
    }

    #[test]
    fn the_default_url_follows_the_backend() {
        let mut b = BusConfig::default();
        assert_eq!(b.resolved_url().unwrap(), "amqp://127.0.0.1:5672/%2f");
        b.backend = BusBackend::Kafka;
        assert_eq!(b.resolved_url().unwrap(), "127.0.0.1:9092");
    }

    #[test]
    fn each_rule_names_its_key() {
        assert!(BusConfig::default().validate().is_ok());
        for (bad, message) in [
            (
                "{ queue_capacity: 0 }",
                "`bus.queue_capacity`: must be at least 1",
            ),
            (
                "{ max_deliveries: 0 }",
                "`bus.max_deliveries`: must be at least 1",
            ),
            ("{ prefix: \"\" }", "`bus.prefix`: must be non-empty"),
            ("{ prefix: \"a/b\" }", "`bus.prefix`: must be non-empty"),
            (
                "{ url: \"amqp://u:p@h/%2f\" }",
                "`bus.url`: carries a password",
            ),
            (
                "{ url: {} }",
                "`bus.url`: needs exactly one of `env` or `file`",
            ),
        ] {
            let err = refused(bad);
            assert!(err.contains(message), "{bad}: {err}");
        }
        let mut b = BusConfig {
            prefix: "team-a_dr.1".into(),
            ..BusConfig::default()
        };
        assert!(b.validate().is_ok());
        b.url = Some(StorageValue::Secret(SecretRef {
            env: Some("AMQP_URL".into()),
            file: None,
        }));
        assert!(b.validate().is_ok());
    }

    #[test]
    fn broker_and_database_passwords_are_never_inline() {
        let ok = Config::from_yaml(
            &format!("{MINIMAL}bus: {{ backend: rabbitmq, url: \"amqp://10.0.0.1:5672/%2f\" }}\nstate: {{ url: \"postgres://replicator@db/replicator\" }}\n"),
            none(),
            &[],
        )
        .unwrap();
        assert_eq!(ok.bus.resolved_url().unwrap(), "amqp://10.0.0.1:5672/%2f");
        let err = Config::from_yaml(
            &format!("{MINIMAL}bus: {{ backend: rabbitmq, url: \"amqp://u:hunter2@h/%2f\" }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bus.url") && !err.contains("hunter2"), "{err}");
        let err = Config::from_yaml(
            &format!("{MINIMAL}state: {{ url: \"postgres://u:hunter2@db/x\" }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("state.url") && err.contains("PGPASSWORD"),
            "{err}"
        );
        // A reference is read at connect time.
        let c = Config::from_yaml(
            &format!(
                "{MINIMAL}bus: {{ backend: kafka, url: {{ env: REPLICATOR_TEST_UNSET_VAR }} }}\n"
            ),
            none(),
            &[],
        )
        .unwrap();
        let err = c.bus.resolved_url().unwrap_err().to_string();
        assert!(err.contains("REPLICATOR_TEST_UNSET_VAR"), "{err}");
        for (bad, key) in [
            ("bus: { backend: nats }", "bus.backend"),
            ("bus: { prefix: \"a b\" }", "bus.prefix"),
            ("state: { url: \"mysql://db\" }", "state.url"),
        ] {
            let err = Config::from_yaml(&format!("{MINIMAL}{bad}\n"), none(), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }
}
