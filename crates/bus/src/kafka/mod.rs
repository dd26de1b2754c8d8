//! Kafka backend (rdkafka / librdkafka).
//!
//! Topics (all names carry the configured prefix `{p}`):
//!
//! | topic | purpose |
//! |---|---|
//! | `{p}.{queue}` | work; messages keyed by table (the task's `target`), so every task of one table lands in one partition |
//! | `{p}.{queue}.retry` | nacked messages with the time they are due; consumers of the queue forward them back when due |
//! | `{p}.{queue}.dead` | dead letters (JSON [`DeadLetter`]s); the consumer group `{p}.{queue}.dead` marks how far `replay` has gone |
//! | `{p}.events` | events, keyed by run (one run's events stay in order), the routing key in a header; each subscription reads from the end with its own consumer |
//!
//! Workers of one queue share the consumer group `{p}.{queue}`. Offsets are stored only once
//! a delivery is settled (its result produced), and only up to the lowest offset still in
//! flight in each partition, so a crash or a rebalance re-delivers unfinished work (at least
//! once) and never skips it. librdkafka reconnects by itself; a produce waits for the
//! brokers' acknowledgement (`acks=all`).
//!
//! The backend in modules: `access` tells a refusal from an outage, `wire` holds the
//! headers and partition keys, `topics` creates or checks the topics and measures lag,
//! `consume` hands out deliveries and settles them, `offsets` decides which offset is safe
//! to store, `dead_letters` keeps and replays dead letters, `events` the subscriptions.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use replicator_proto::DeadLetter;
use tokio_util::task::TaskTracker;

use crate::{Bus, BusError, Consumer, Subscription};

mod access;
mod consume;
mod dead_letters;
mod events;
mod offsets;
mod topics;
mod wire;

use access::backend;
use wire::{ROUTING_KEY_HEADER, headers, key_of};

/// How long one broker request (metadata, watermarks, offsets, a produce) may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the Kafka backend.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// Bootstrap servers (`host:9092,host2:9092`).
    pub brokers: String,
    /// Prefix of every topic and consumer group.
    pub prefix: String,
    /// Partitions of the topics this backend creates (the most consumers a queue can use).
    pub partitions: i32,
    /// Replication factor of the topics it creates.
    pub replication: i32,
    /// Delay before the n-th redelivery of a nacked message; the last repeats.
    pub retry_delays: Vec<Duration>,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliveries: u32,
    /// Create missing topics with the admin API. Off where topics are provisioned by the
    /// platform (and in tests on librdkafka's mock cluster, whose admin API has no
    /// controller): then a missing topic is an error that names it.
    pub create_topics: bool,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            prefix: prefix.into(),
            partitions: 6,
            replication: 1,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            max_deliveries: 5,
            create_topics: true,
        }
    }
}

struct Inner {
    settings: KafkaSettings,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    created: tokio::sync::Mutex<HashSet<String>>,
    settling: TaskTracker,
    consumers: Mutex<Vec<Arc<StreamConsumer>>>,
}

/// A [`Bus`] on Kafka.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.inner.settings.brokers)
            .field("prefix", &self.inner.settings.prefix)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Connect to the brokers and create the events topic.
    pub async fn connect(settings: KafkaSettings) -> Result<Self, BusError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "120000")
            .create()
            .map_err(backend(&settings.brokers, "cannot create a Kafka producer"))?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .create()
            .map_err(backend(
                &settings.brokers,
                "cannot create a Kafka admin client",
            ))?;
        let bus = Self {
            inner: Arc::new(Inner {
                settings,
                producer,
                admin,
                created: tokio::sync::Mutex::new(HashSet::new()),
                settling: TaskTracker::new(),
                consumers: Mutex::new(Vec::new()),
            }),
        };
        bus.ensure_topics(&[bus.events_topic()]).await?;
        Ok(bus)
    }

    /// Remember a consumer, to commit and leave its group in `close`.
    fn keep_open(&self, consumer: StreamConsumer) -> Arc<StreamConsumer> {
        let consumer = Arc::new(consumer);
        self.inner
            .consumers
            .lock()
            .expect("consumers")
            .push(consumer.clone());
        consumer
    }

    /// The full topic name of a bus name.
    pub fn name(&self, name: &str) -> String {
        format!("{}.{name}", self.inner.settings.prefix)
    }

    fn events_topic(&self) -> String {
        self.name("events")
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.inner.settings.brokers);
        c
    }

    /// Produce one record and wait for the brokers' acknowledgement.
    async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(), BusError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        self.inner
            .producer
            .send(record, TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| {
                backend(
                    &self.inner.settings.brokers,
                    &format!("produce to {topic} failed"),
                )(e)
            })
    }

    /// Every topic name this backend uses for `queues` (for provisioning them up front).
    pub fn topic_names(prefix: &str, queues: &[&str]) -> Vec<String> {
        let mut names = vec![format!("{prefix}.events")];
        for q in queues {
            names.push(format!("{prefix}.{q}"));
            names.push(format!("{prefix}.{q}.retry"));
            names.push(format!("{prefix}.{q}.dead"));
        }
        names
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, queue: &str, payload: Bytes) -> Result<(), BusError> {
        self.ensure_queue(queue).await?;
        self.produce(
            &self.name(queue),
            &key_of(&payload),
            &payload,
            OwnedHeaders::new(),
        )
        .await
    }

    async fn consume(&self, queue: &str, _prefetch: usize) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(self.consumer(queue).await?))
    }

    async fn publish_event(&self, routing_key: &str, payload: Bytes) -> Result<(), BusError> {
        // Keyed by run, so one run's events stay in order; the routing key rides in a header.
        let run = crate::run_id_of(&payload)
            .map(|r| r.to_string())
            .unwrap_or_default();
        let h = headers(&[(ROUTING_KEY_HEADER, routing_key.to_owned())]);
        self.produce(&self.events_topic(), &run, &payload, h).await
    }

    async fn subscribe(&self, pattern: &str) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.subscription(pattern).await?))
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        Ok(self.read_dead(queue).await?.0)
    }

    async fn replay(
        &self,
        queue: &str,
        filter: &(dyn for<'d> Fn(&'d DeadLetter) -> bool + Send + Sync),
    ) -> Result<usize, BusError> {
        self.replay_dead(queue, filter).await
    }

    async fn depth(&self, queue: &str) -> Option<u64> {
        self.lag(queue).await.ok()
    }

    async fn close(&self) {
        self.inner.settling.close();
        self.inner.settling.wait().await;
        let consumers = std::mem::take(&mut *self.inner.consumers.lock().expect("consumers"));
        for c in consumers {
            // Flush what was stored; leave the group so partitions move on at once.
            let _ = c.commit_consumer_state(CommitMode::Sync);
            c.unsubscribe();
        }
        let _ = rdkafka::producer::Producer::flush(&self.inner.producer, TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::KafkaBus;

    #[test]
    fn every_queue_has_a_work_a_retry_and_a_dead_topic() {
        assert_eq!(
            KafkaBus::topic_names("p", &["tasks.clone"]),
            [
                "p.events",
                "p.tasks.clone",
                "p.tasks.clone.retry",
                "p.tasks.clone.dead"
            ]
        );
    }
}
