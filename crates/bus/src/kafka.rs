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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use replicator_proto::DeadLetter;
use tokio_util::task::TaskTracker;

use crate::{Acker, Bus, BusError, Consumer, Delivery, Subscription, topic_matches};

const DELIVERIES_HEADER: &str = "x-replicator-deliveries";
const DEFERRALS_HEADER: &str = "x-replicator-deferrals";
const DUE_HEADER: &str = "x-replicator-due-ms";
const REASON_HEADER: &str = "x-replicator-reason";
const ROUTING_KEY_HEADER: &str = "x-replicator-routing-key";
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

/// The reason when `e` is the cluster refusing access (authentication, or an ACL on a
/// topic, group or the cluster): permanent, retrying cannot help.
fn refusal(e: &KafkaError) -> Option<String> {
    use rdkafka::types::RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code()?;
    matches!(
        code,
        C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed
    )
    .then(|| code.to_string())
}

/// `what: error` as a backend error, or, when the cluster refused access, a permanent
/// [`BusError::Denied`] naming the brokers and the reason.
fn backend<'a>(brokers: &'a str, what: &'a str) -> impl FnOnce(KafkaError) -> BusError + 'a {
    move |e| match refusal(&e) {
        Some(reason) => BusError::Denied(format!(
            "Kafka at {brokers} refused access ({what}): {reason} (check the ACLs of this client)"
        )),
        None => BusError::Backend(format!("{what}: {e}")),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn header_i64<H: Headers>(headers: Option<&H>, name: &str) -> Option<i64> {
    let h = headers?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

fn header_str<H: Headers>(headers: Option<&H>, name: &str) -> Option<String> {
    let h = headers?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| Some(String::from_utf8_lossy(h.value?).into_owned()))
}

fn headers(pairs: &[(&str, String)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_str()),
        })
    })
}

/// The partition key of a message: its table (`target`), so one table's tasks stay in one
/// partition and in order; else its run.
fn key_of(payload: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    ["target", "run_id", "message_id"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_owned))
        .unwrap_or_default()
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

    /// Create topics that do not exist yet (once per process).
    async fn ensure_topics(&self, names: &[String]) -> Result<(), BusError> {
        let mut created = self.inner.created.lock().await;
        let missing: Vec<&String> = names.iter().filter(|n| !created.contains(*n)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let s = &self.inner.settings;
        if !s.create_topics {
            let client = rdkafka::producer::Producer::client(&self.inner.producer);
            for name in &missing {
                let meta =
                    tokio::task::block_in_place(|| client.fetch_metadata(Some(name), TIMEOUT))
                        .map_err(backend(
                            &self.inner.settings.brokers,
                            "cannot read topic metadata",
                        ))?;
                let ok = meta.topics().iter().any(|t| {
                    t.name() == name.as_str() && t.error().is_none() && !t.partitions().is_empty()
                });
                if !ok {
                    return Err(BusError::Backend(format!(
                        "Kafka topic {name} does not exist: create it, or let replicator create topics (bus.create_topics: true)"
                    )));
                }
            }
            created.extend(missing.into_iter().cloned());
            return Ok(());
        }
        let topics: Vec<NewTopic> = missing
            .iter()
            .map(|n| NewTopic::new(n, s.partitions, TopicReplication::Fixed(s.replication)))
            .collect();
        let results = self
            .inner
            .admin
            .create_topics(&topics, &AdminOptions::new().request_timeout(Some(TIMEOUT)))
            .await
            .map_err(|e| {
                BusError::Backend(format!(
                    "cannot create topics ({e}); if the cluster's admin API is unavailable, create them beforehand and set bus.create_topics: false"
                ))
            })?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Backend(format!(
                        "cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        created.extend(missing.into_iter().cloned());
        Ok(())
    }

    async fn ensure_queue(&self, queue: &str) -> Result<(), BusError> {
        let main = self.name(queue);
        self.ensure_topics(&[
            main.clone(),
            format!("{main}.retry"),
            format!("{main}.dead"),
        ])
        .await
    }

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

    /// Record a dead letter and announce it on the events topic.
    async fn bury(&self, queue: &str, letter: &DeadLetter) -> Result<(), BusError> {
        let body = replicator_proto::encode(letter);
        let dead = format!("{}.dead", self.name(queue));
        self.produce(
            &dead,
            &key_of(letter.payload.as_bytes()),
            &body,
            OwnedHeaders::new(),
        )
        .await?;
        self.publish_event(
            replicator_proto::names::events::DEAD_LETTER,
            Bytes::from(body),
        )
        .await
    }

    /// Read the live dead letters of `queue` (from the replay group's committed offset to
    /// the end as of now): the letters, the consumer that read them, and the end offsets.
    async fn read_dead(
        &self,
        queue: &str,
    ) -> Result<(Vec<DeadLetter>, BaseConsumer, TopicPartitionList), BusError> {
        self.ensure_queue(queue).await?;
        let topic = format!("{}.dead", self.name(queue));
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", &topic)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(backend(
                &self.inner.settings.brokers,
                "cannot create a Kafka consumer",
            ))?;
        let (letters, ends) = tokio::task::block_in_place(|| {
            let meta = consumer
                .fetch_metadata(Some(&topic), TIMEOUT)
                .map_err(backend(
                    &self.inner.settings.brokers,
                    "cannot read topic metadata",
                ))?;
            let partitions: Vec<i32> = meta
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            let mut wanted = TopicPartitionList::new();
            for p in &partitions {
                wanted.add_partition(&topic, *p);
            }
            let committed = consumer
                .committed_offsets(wanted, TIMEOUT)
                .map_err(backend(
                    &self.inner.settings.brokers,
                    "cannot read committed offsets",
                ))?;
            let mut assign = TopicPartitionList::new();
            let mut ends = TopicPartitionList::new();
            let mut remaining = HashMap::new();
            for p in &partitions {
                let (low, high) =
                    consumer
                        .fetch_watermarks(&topic, *p, TIMEOUT)
                        .map_err(backend(
                            &self.inner.settings.brokers,
                            "cannot read watermarks",
                        ))?;
                let start = committed
                    .find_partition(&topic, *p)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(low)
                    .max(low);
                ends.add_partition_offset(&topic, *p, Offset::Offset(high))
                    .map_err(backend(&self.inner.settings.brokers, "offsets"))?;
                if start < high {
                    assign
                        .add_partition_offset(&topic, *p, Offset::Offset(start))
                        .map_err(backend(&self.inner.settings.brokers, "offsets"))?;
                    remaining.insert(*p, high);
                }
            }
            let mut letters = Vec::new();
            if !remaining.is_empty() {
                consumer
                    .assign(&assign)
                    .map_err(backend(&self.inner.settings.brokers, "cannot assign"))?;
                let deadline = std::time::Instant::now() + TIMEOUT * 3;
                while !remaining.is_empty() && std::time::Instant::now() < deadline {
                    let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                        continue;
                    };
                    let m = m.map_err(backend(
                        &self.inner.settings.brokers,
                        "cannot read dead letters",
                    ))?;
                    let Some(&end) = remaining.get(&m.partition()) else {
                        continue;
                    };
                    if m.offset() < end {
                        let payload = m.payload().unwrap_or_default();
                        letters.push(serde_json::from_slice(payload).unwrap_or_else(|_| {
                            crate::dead_letter(
                                queue,
                                &header_str(m.headers(), REASON_HEADER)
                                    .unwrap_or_else(|| "unreadable dead letter".into()),
                                0,
                                payload,
                            )
                        }));
                    }
                    if m.offset() + 1 >= end {
                        remaining.remove(&m.partition());
                    }
                }
                if !remaining.is_empty() {
                    return Err(BusError::Backend(format!(
                        "timed out reading the dead letters of {queue}"
                    )));
                }
            }
            Ok::<_, BusError>((letters, ends))
        })?;
        Ok((letters, consumer, ends))
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

    /// Consumer lag of the queue's group (messages not yet settled).
    pub async fn lag(&self, queue: &str) -> Result<u64, BusError> {
        self.ensure_queue(queue).await?;
        let topic = self.name(queue);
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", &topic)
            .create()
            .map_err(backend(
                &self.inner.settings.brokers,
                "cannot create a Kafka consumer",
            ))?;
        tokio::task::block_in_place(|| {
            let mut lag = 0u64;
            let mut wanted = TopicPartitionList::new();
            for p in 0..self.inner.settings.partitions {
                wanted.add_partition(&topic, p);
            }
            let committed = consumer
                .committed_offsets(wanted, TIMEOUT)
                .map_err(backend(
                    &self.inner.settings.brokers,
                    "cannot read committed offsets",
                ))?;
            for e in committed.elements() {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, e.partition(), TIMEOUT)
                    .map_err(backend(
                        &self.inner.settings.brokers,
                        "cannot read watermarks",
                    ))?;
                let at = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(low);
                lag += (high - at).max(0) as u64;
            }
            Ok(lag)
        })
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
        self.ensure_queue(queue).await?;
        let main = self.name(queue);
        let retry = format!("{main}.retry");
        let consumer: StreamConsumer = self
            .client_config()
            .set("group.id", &main)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A crashed worker's partitions move to the others after this long.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .map_err(backend(
                &self.inner.settings.brokers,
                "cannot create a Kafka consumer",
            ))?;
        consumer
            .subscribe(&[&main, &retry])
            .map_err(backend(&self.inner.settings.brokers, "cannot subscribe"))?;
        let consumer = self.keep_open(consumer);
        Ok(Box::new(KafkaConsumer {
            bus: self.clone(),
            queue: queue.to_owned(),
            consumer,
            offsets: Arc::new(Mutex::new(OffsetTracker::default())),
        }))
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
        let topic = self.events_topic();
        let consumer: StreamConsumer = self
            .client_config()
            .set(
                "group.id",
                format!("{topic}.sub.{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .map_err(backend(
                &self.inner.settings.brokers,
                "cannot create a Kafka consumer",
            ))?;
        // Assigned at the current end of every partition before returning, so every event
        // published after `subscribe` returns is seen.
        let assign = tokio::task::block_in_place(|| {
            let meta = consumer
                .fetch_metadata(Some(&topic), TIMEOUT)
                .map_err(backend(
                    &self.inner.settings.brokers,
                    "cannot read topic metadata",
                ))?;
            let mut tpl = TopicPartitionList::new();
            for p in meta.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) =
                    consumer
                        .fetch_watermarks(&topic, p.id(), TIMEOUT)
                        .map_err(backend(
                            &self.inner.settings.brokers,
                            "cannot read watermarks",
                        ))?;
                tpl.add_partition_offset(&topic, p.id(), Offset::Offset(high))
                    .map_err(backend(&self.inner.settings.brokers, "offsets"))?;
            }
            Ok::<_, BusError>(tpl)
        })?;
        consumer
            .assign(&assign)
            .map_err(backend(&self.inner.settings.brokers, "cannot assign"))?;
        let consumer = self.keep_open(consumer);
        Ok(Box::new(KafkaSubscription {
            bus: self.clone(),
            pattern: pattern.to_owned(),
            consumer,
        }))
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        Ok(self.read_dead(queue).await?.0)
    }

    async fn replay(
        &self,
        queue: &str,
        filter: &(dyn for<'d> Fn(&'d DeadLetter) -> bool + Send + Sync),
    ) -> Result<usize, BusError> {
        let (letters, consumer, ends) = self.read_dead(queue).await?;
        let dead = format!("{}.dead", self.name(queue));
        let mut moved = 0;
        for letter in letters {
            if filter(&letter) {
                self.publish(queue, Bytes::from(letter.payload.into_bytes()))
                    .await?;
                moved += 1;
            } else {
                // Kept: appended again past the point this replay commits.
                let body = replicator_proto::encode(&letter);
                self.produce(
                    &dead,
                    &key_of(letter.payload.as_bytes()),
                    &body,
                    OwnedHeaders::new(),
                )
                .await?;
            }
        }
        consumer.commit(&ends, CommitMode::Sync).map_err(backend(
            &self.inner.settings.brokers,
            "cannot record the replay",
        ))?;
        Ok(moved)
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

/// Per partition: offsets handed out and not settled yet, and the highest settled one.
#[derive(Default)]
struct OffsetTracker {
    partitions: HashMap<(String, i32), (BTreeSet<i64>, i64)>,
}

impl OffsetTracker {
    fn started(&mut self, topic: &str, partition: i32, offset: i64) {
        let e = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| (BTreeSet::new(), -1));
        e.0.insert(offset);
    }

    /// Settle `offset`; returns the offset safe to commit (the next to read), if it moved.
    fn settled(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let e = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        e.0.remove(&offset);
        e.1 = e.1.max(offset);
        Some(match e.0.first() {
            Some(lowest) => *lowest,
            None => e.1 + 1,
        })
    }
}

struct KafkaConsumer {
    bus: KafkaBus,
    queue: String,
    consumer: Arc<StreamConsumer>,
    offsets: Arc<Mutex<OffsetTracker>>,
}

/// Settles one offset of one partition (shared by the acker and the retry forwarder).
#[derive(Clone)]
struct Settle {
    consumer: Arc<StreamConsumer>,
    offsets: Arc<Mutex<OffsetTracker>>,
    topic: String,
    partition: i32,
    offset: i64,
}

impl Settle {
    fn done(&self) {
        let next =
            self.offsets
                .lock()
                .expect("offsets")
                .settled(&self.topic, self.partition, self.offset);
        if let Some(next) = next {
            let mut tpl = TopicPartitionList::new();
            if tpl
                .add_partition_offset(&self.topic, self.partition, Offset::Offset(next))
                .is_ok()
                && let Err(e) = self.consumer.store_offsets(&tpl)
            {
                // The partition moved to another consumer: it resumes from the last
                // committed offset (at least once).
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "offset not stored");
            }
        }
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.bus.inner.settling.is_closed() {
                return None;
            }
            let m = match self.consumer.recv().await {
                Ok(m) => m,
                Err(e) if refusal(&e).is_some() => {
                    let e = backend(&self.bus.inner.settings.brokers, "consume")(e);
                    tracing::error!(queue = %self.queue, error = %e, "giving up on Kafka");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "Kafka consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (topic, partition, offset) = (m.topic().to_owned(), m.partition(), m.offset());
            let payload = Bytes::copy_from_slice(m.payload().unwrap_or_default());
            let before = header_i64(m.headers(), DELIVERIES_HEADER).unwrap_or(0);
            let deferrals = header_i64(m.headers(), DEFERRALS_HEADER).unwrap_or(0);
            let due = header_i64(m.headers(), DUE_HEADER).unwrap_or(0);
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            drop(m);
            self.offsets
                .lock()
                .expect("offsets")
                .started(&topic, partition, offset);
            let settle = Settle {
                consumer: self.consumer.clone(),
                offsets: self.offsets.clone(),
                topic: topic.clone(),
                partition,
                offset,
            };
            if topic.ends_with(".retry") {
                // Due later: forward it to the work topic then, keeping its counts.
                let bus = self.bus.clone();
                let main = bus.name(&self.queue);
                self.bus.inner.settling.spawn(async move {
                    let wait = (due - now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let h = headers(&[
                        (DELIVERIES_HEADER, before.to_string()),
                        (DEFERRALS_HEADER, deferrals.to_string()),
                    ]);
                    match bus.produce(&main, &key, &payload, h).await {
                        Ok(()) => settle.done(),
                        Err(e) => tracing::warn!(error = %e, "could not forward a retry; it will be read again"),
                    }
                });
                continue;
            }
            let deliveries = before as u32 + 1;
            let acker = KafkaAcker {
                bus: self.bus.clone(),
                queue: self.queue.clone(),
                settle,
                payload: payload.clone(),
                key,
                deliveries,
                deferrals: deferrals as u32,
            };
            return Some(Delivery::new(
                self.queue.clone(),
                payload,
                deliveries,
                Box::new(acker),
            ));
        }
    }
}

struct KafkaAcker {
    bus: KafkaBus,
    queue: String,
    settle: Settle,
    payload: Bytes,
    key: String,
    deliveries: u32,
    deferrals: u32,
}

impl KafkaAcker {
    fn later(&self, deliveries: u32, deferrals: u32, tier: usize, reason: &str) {
        let (bus, queue, settle) = (self.bus.clone(), self.queue.clone(), self.settle.clone());
        let (payload, key, reason) = (self.payload.clone(), self.key.clone(), reason.to_owned());
        self.bus.inner.settling.spawn(async move {
            let delays = &bus.inner.settings.retry_delays;
            let delay = delays
                .get(tier.min(delays.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default();
            let h = headers(&[
                (DELIVERIES_HEADER, deliveries.to_string()),
                (DEFERRALS_HEADER, deferrals.to_string()),
                (DUE_HEADER, (now_ms() + delay.as_millis() as i64).to_string()),
                (REASON_HEADER, reason),
            ]);
            let retry = format!("{}.retry", bus.name(&queue));
            match bus.produce(&retry, &key, &payload, h).await {
                Ok(()) => settle.done(),
                Err(e) => tracing::warn!(%queue, error = %e, "could not schedule a retry; the message will be redelivered"),
            }
        });
    }
}

impl Acker for KafkaAcker {
    fn ack(&self) {
        self.settle.done();
    }

    fn nack(&self, reason: &str) {
        if self.deliveries >= self.bus.inner.settings.max_deliveries {
            let reason = format!("gave up after {} deliveries: {reason}", self.deliveries);
            return self.dead_letter(&reason);
        }
        self.later(
            self.deliveries,
            self.deferrals,
            self.deliveries as usize - 1,
            reason,
        );
    }

    fn defer(&self, reason: &str) {
        self.later(
            self.deliveries - 1,
            self.deferrals + 1,
            self.deferrals as usize,
            reason,
        );
    }

    fn dead_letter(&self, reason: &str) {
        let letter = crate::dead_letter(&self.queue, reason, self.deliveries, &self.payload);
        tracing::warn!(queue = %self.queue, deliveries = self.deliveries, reason, "message dead-lettered");
        let (bus, queue, settle) = (self.bus.clone(), self.queue.clone(), self.settle.clone());
        self.bus.inner.settling.spawn(async move {
            match bus.bury(&queue, &letter).await {
                Ok(()) => settle.done(),
                Err(e) => tracing::warn!(%queue, error = %e, "could not dead-letter a message; it will be redelivered"),
            }
        });
    }
}

struct KafkaSubscription {
    bus: KafkaBus,
    pattern: String,
    consumer: Arc<StreamConsumer>,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Option<(String, Bytes)> {
        loop {
            if self.bus.inner.settling.is_closed() {
                return None;
            }
            match self.consumer.recv().await {
                Ok(m) => {
                    let key = header_str(m.headers(), ROUTING_KEY_HEADER).unwrap_or_default();
                    if topic_matches(&self.pattern, &key) {
                        return Some((
                            key,
                            Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                        ));
                    }
                }
                Err(e) if refusal(&e).is_some() => {
                    let e = backend(&self.bus.inner.settings.brokers, "subscribe")(e);
                    tracing::error!(pattern = %self.pattern, error = %e, "giving up on Kafka");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(pattern = %self.pattern, error = %e, "Kafka subscription error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
