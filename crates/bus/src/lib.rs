//! The message bus every service talks through.
//!
//! Two kinds of channel:
//! - **work queues** (`tasks.clone`, …): each message goes to one consumer, which must
//!   [`Delivery::ack`] it once its result is published, or [`Delivery::nack`] it to have it
//!   redelivered. A message delivered `max_deliveries` times, or explicitly
//!   [`Delivery::dead_letter`]ed, moves to the queue's dead letters with the reason, from
//!   where [`Bus::replay`] puts it back. Delivery is **at least once**: a delivery dropped
//!   without an answer (a crashed handler) is redelivered, so handlers must be idempotent.
//! - the **events topic**: every subscriber whose pattern matches a routing key gets its own
//!   copy (`*` matches one dot-separated word, `#` any number, as in AMQP).
//!
//! [`typed`] adds the message contracts on top: a payload that fails to decode is
//! dead-lettered with the parse error and the worker carries on.
//!
//! Backends: [`memory::MemoryBus`] (the embedded default, one process), [`amqp::AmqpBus`]
//! (RabbitMQ) and [`kafka::KafkaBus`] (Kafka), the last two for a fleet of processes.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub mod amqp;
pub mod kafka;
pub mod memory;
pub mod typed;
pub mod worker;

pub use amqp::{AmqpBus, AmqpSettings};
pub use kafka::{KafkaBus, KafkaSettings};
pub use memory::MemoryBus;

/// Errors from a bus backend.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus is closed")]
    Closed,
    #[error("bus backend error: {0}")]
    Backend(String),
    /// The broker refused the credentials or a permission: permanent, never retried. The
    /// message names the broker (never a password) and what to check.
    #[error("{0}")]
    Denied(String),
}

impl BusError {
    /// Whether retrying cannot help (the broker refused access).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Denied(_))
    }
}

/// A shared bus handle.
pub type BusRef = Arc<dyn Bus>;

/// The seam between services and a message broker.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Put a message on a work queue (waits while the queue is full).
    async fn publish(&self, queue: &str, payload: Bytes) -> Result<(), BusError>;
    /// Start consuming a work queue, with up to `prefetch` deliveries unsettled at once
    /// (the worker's concurrency).
    async fn consume(&self, queue: &str, prefetch: usize) -> Result<Box<dyn Consumer>, BusError>;
    /// Publish an event on the topic.
    async fn publish_event(&self, routing_key: &str, payload: Bytes) -> Result<(), BusError>;
    /// Subscribe to events whose routing key matches `pattern`.
    async fn subscribe(&self, pattern: &str) -> Result<Box<dyn Subscription>, BusError>;
    /// Dead letters of a queue, oldest first, without removing them.
    async fn dead_letters(
        &self,
        queue: &str,
    ) -> Result<Vec<replicator_proto::DeadLetter>, BusError>;
    /// Move the dead letters of `queue` accepted by `filter` back onto the queue; returns how
    /// many moved.
    async fn replay(
        &self,
        queue: &str,
        filter: &(dyn for<'d> Fn(&'d replicator_proto::DeadLetter) -> bool + Send + Sync),
    ) -> Result<usize, BusError>;
    /// Messages waiting in a work queue, when the backend can tell.
    async fn depth(&self, _queue: &str) -> Option<u64> {
        None
    }
    /// Settle what is in flight and disconnect; consumers and subscriptions end.
    async fn close(&self) {}
}

/// The `run_id` of a message, read without decoding its type (undecodable messages, events
/// of any kind).
pub fn run_id_of(payload: &[u8]) -> Option<uuid::Uuid> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .get("run_id")?
        .as_str()?
        .parse()
        .ok()
}

/// The dead letter of `payload` taken from `queue`; its run ID is read from the payload
/// when it has one (so the run can account for it), else nil.
pub fn dead_letter(
    queue: &str,
    reason: &str,
    deliveries: u32,
    payload: &[u8],
) -> replicator_proto::DeadLetter {
    replicator_proto::DeadLetter {
        header: replicator_proto::Header::new(run_id_of(payload).unwrap_or(uuid::Uuid::nil())),
        queue: queue.to_owned(),
        reason: reason.to_owned(),
        deliveries,
        payload: String::from_utf8_lossy(payload).into_owned(),
    }
}

/// What a nack does with a delivery, the same in every backend.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Nacked {
    /// Deliver it again after the delay of retry `tier` (0 after a first delivery; a
    /// backend repeats its last delay past the end of its list).
    Retry { tier: usize },
    /// It was the last delivery `max_deliveries` allows: dead-letter it with `reason`.
    GiveUp { reason: String },
}

/// The rule of a nack on delivery number `deliveries` (1 for the first).
pub(crate) fn nacked(deliveries: u32, max_deliveries: u32, reason: &str) -> Nacked {
    if deliveries >= max_deliveries {
        Nacked::GiveUp {
            reason: format!("gave up after {deliveries} deliveries: {reason}"),
        }
    } else {
        Nacked::Retry {
            tier: deliveries.saturating_sub(1) as usize,
        }
    }
}

/// A stream of deliveries from one work queue.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` once the bus is closed and the queue drained.
    async fn next(&mut self) -> Option<Delivery>;
}

/// A stream of events.
#[async_trait]
pub trait Subscription: Send {
    /// The next event (routing key, payload); `None` once the bus is closed.
    async fn next(&mut self) -> Option<(String, Bytes)>;
}

/// How a backend settles a delivery.
pub trait Acker: Send + Sync {
    fn ack(&self);
    fn nack(&self, reason: &str);
    fn dead_letter(&self, reason: &str);
    /// Deliver again later without counting this delivery (the message could not be worked
    /// on yet, through no fault of its own). Backends without delays treat it as a nack.
    fn defer(&self, reason: &str) {
        self.nack(reason);
    }
}

/// One message taken from a work queue. Dropping it unanswered counts as a nack.
pub struct Delivery {
    pub payload: Bytes,
    /// 1 on first delivery, then counts redeliveries.
    pub deliveries: u32,
    pub queue: String,
    acker: Option<Box<dyn Acker>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("deliveries", &self.deliveries)
            .field("bytes", &self.payload.len())
            .finish()
    }
}

impl Delivery {
    pub fn new(queue: String, payload: Bytes, deliveries: u32, acker: Box<dyn Acker>) -> Self {
        Self {
            payload,
            deliveries,
            queue,
            acker: Some(acker),
        }
    }
    /// Done: the message will not be delivered again.
    pub fn ack(mut self) {
        if let Some(a) = self.acker.take() {
            a.ack();
        }
    }
    /// Not done: deliver again (or dead-letter once `max_deliveries` is reached).
    pub fn nack(mut self, reason: &str) {
        if let Some(a) = self.acker.take() {
            a.nack(reason);
        }
    }
    /// Not yet: deliver again after a delay, without counting towards `max_deliveries`
    /// (a busy table, not a failing one).
    pub fn defer(mut self, reason: &str) {
        if let Some(a) = self.acker.take() {
            a.defer(reason);
        }
    }
    /// Give up on this message now, keeping it with `reason` for `replay`.
    pub fn dead_letter(mut self, reason: &str) {
        if let Some(a) = self.acker.take() {
            a.dead_letter(reason);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(a) = self.acker.take() {
            a.nack("delivery dropped without ack (handler crashed or was cancelled)");
        }
    }
}

/// AMQP-style topic matching: `*` is one word, `#` is zero or more words.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

/// Which broker to connect to and how (built from the `bus` section of the config).
#[derive(Clone, Debug)]
pub struct BusSettings {
    /// `memory`, `rabbitmq` or `kafka`.
    pub backend: String,
    /// Broker address: an `amqp://` URL, or Kafka bootstrap servers.
    pub url: String,
    /// Prefix of every queue, exchange and topic name.
    pub prefix: String,
    /// RabbitMQ: declare quorum queues.
    pub quorum: bool,
    /// Delays before redelivering a nacked message; the last repeats.
    pub retry_delays: Vec<std::time::Duration>,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliveries: u32,
    /// Kafka: partitions of the topics it creates.
    pub partitions: i32,
    /// Kafka: create missing topics (else they must exist).
    pub create_topics: bool,
}

/// Connect to the configured broker (the one registry of backends).
///
/// `memory` lives inside one process, so it cannot connect separate service processes:
/// asking for it here (the path used by standalone services) is an error that says so.
pub async fn connect(settings: &BusSettings) -> Result<BusRef, BusError> {
    match settings.backend.as_str() {
        "memory" => Err(BusError::Backend(
            "the memory bus lives inside one process: run every service together with \
             `replicator run CONFIG`, or configure a broker backend (`bus.backend: rabbitmq`) \
             for separate processes"
                .into(),
        )),
        "rabbitmq" => {
            let mut amqp = AmqpSettings::new(settings.url.clone(), settings.prefix.clone());
            amqp.quorum = settings.quorum;
            amqp.retry_delays = settings.retry_delays.clone();
            amqp.max_deliveries = settings.max_deliveries;
            Ok(Arc::new(AmqpBus::connect(amqp).await?))
        }
        "kafka" => {
            let mut kafka = KafkaSettings::new(settings.url.clone(), settings.prefix.clone());
            kafka.retry_delays = settings.retry_delays.clone();
            kafka.max_deliveries = settings.max_deliveries;
            kafka.partitions = settings.partitions;
            kafka.create_topics = settings.create_topics;
            Ok(Arc::new(KafkaBus::connect(kafka).await?))
        }
        other => Err(BusError::Backend(format!("unknown bus backend `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records how a delivery was settled.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Acker for Recorder {
        fn ack(&self) {
            self.0.lock().unwrap().push("ack".into());
        }
        fn nack(&self, reason: &str) {
            self.0.lock().unwrap().push(format!("nack: {reason}"));
        }
        fn dead_letter(&self, reason: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("dead_letter: {reason}"));
        }
    }

    fn delivery(acker: &Recorder) -> Delivery {
        Delivery::new("q".into(), Bytes::new(), 1, Box::new(acker.clone()))
    }

    #[test]
    fn a_delivery_is_settled_exactly_once() {
        let r = Recorder::default();
        delivery(&r).ack();
        delivery(&r).nack("flaky");
        delivery(&r).dead_letter("broken");
        // Without a delay of its own, a backend defers as a nack.
        delivery(&r).defer("busy");
        assert_eq!(
            *r.0.lock().unwrap(),
            ["ack", "nack: flaky", "dead_letter: broken", "nack: busy"]
        );
    }

    #[test]
    fn a_delivery_dropped_unanswered_is_nacked() {
        let r = Recorder::default();
        drop(delivery(&r));
        assert_eq!(
            *r.0.lock().unwrap(),
            ["nack: delivery dropped without ack (handler crashed or was cancelled)"]
        );
    }

    #[test]
    fn a_dead_letter_keeps_the_payload_and_finds_its_run() {
        let run = uuid::Uuid::from_u128(42);
        let payload = format!("{{\"run_id\":\"{run}\",\"schema_version\":99}}");
        let d = dead_letter("tasks.clone", "unsupported", 3, payload.as_bytes());
        assert_eq!(d.header.run_id, run);
        assert_eq!(
            (d.queue.as_str(), d.reason.as_str(), d.deliveries),
            ("tasks.clone", "unsupported", 3)
        );
        assert_eq!(d.payload, payload);
        // Not JSON, or no run: the nil run, the bytes kept as they were (lossily).
        let d = dead_letter("q", "malformed", 1, b"{not json\xff");
        assert_eq!(d.header.run_id, uuid::Uuid::nil());
        assert_eq!(d.payload, "{not json\u{fffd}");
        assert_eq!(run_id_of(b"{\"run_id\": 7}"), None);
    }

    #[test]
    fn a_nack_retries_with_growing_delays_until_the_last_delivery() {
        assert_eq!(nacked(1, 3, "flaky"), Nacked::Retry { tier: 0 });
        assert_eq!(nacked(2, 3, "flaky"), Nacked::Retry { tier: 1 });
        assert_eq!(
            nacked(3, 3, "flaky"),
            Nacked::GiveUp {
                reason: "gave up after 3 deliveries: flaky".into()
            }
        );
        // Delivered more often than allowed (the limit was lowered meanwhile): give up too.
        assert!(matches!(nacked(7, 3, "x"), Nacked::GiveUp { .. }));
        assert!(matches!(nacked(1, 1, "x"), Nacked::GiveUp { .. }));
    }

    #[test]
    fn bus_errors_say_whether_retrying_helps() {
        assert!(BusError::Denied("no".into()).is_permanent());
        assert!(!BusError::Backend("down".into()).is_permanent());
        assert!(!BusError::Closed.is_permanent());
    }

    #[tokio::test]
    async fn the_memory_bus_is_not_for_separate_processes() {
        let settings = BusSettings {
            backend: "memory".into(),
            url: String::new(),
            prefix: "p".into(),
            quorum: false,
            retry_delays: Vec::new(),
            max_deliveries: 3,
            partitions: 1,
            create_topics: false,
        };
        let Err(e) = connect(&settings).await else {
            panic!("connected to a memory bus")
        };
        assert!(e.to_string().contains("replicator run CONFIG"), "{e}");
        let other = BusSettings {
            backend: "zeromq".into(),
            ..settings
        };
        let Err(e) = connect(&other).await else {
            panic!("connected to an unknown backend")
        };
        assert_eq!(
            e.to_string(),
            "bus backend error: unknown bus backend `zeromq`"
        );
    }

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("#", "clone.succeeded"));
        assert!(topic_matches("clone.*", "clone.failed"));
        assert!(!topic_matches("clone.*", "reconcile.failed"));
        assert!(topic_matches("*.failed", "reconcile.failed"));
        assert!(topic_matches("run.#", "run"));
        assert!(!topic_matches("clone", "clone.failed"));
    }
}
