//! RabbitMQ backend (AMQP 0-9-1 with lapin, connections pooled by deadpool-lapin).
//!
//! Topology, declared idempotently by every process on first use of a name (all names carry
//! the configured prefix, so several fleets or parallel tests share one broker):
//!
//! | object | kind | purpose |
//! |---|---|---|
//! | `{p}.{queue}` | durable queue (classic or quorum) | work; dead-letters to `{p}.dlx` |
//! | `{p}.{queue}.retry.{ms}ms` | durable queue, `x-message-ttl` = ms | delayed retry, one per configured delay; expires back into `{p}.{queue}` |
//! | `{p}.{queue}.dead` | durable queue bound to `{p}.dlx` | dead letters, kept for `replay` |
//! | `{p}.dlx` | direct exchange | broker-side dead-lettering (e.g. a quorum delivery limit) |
//! | `{p}.events` | topic exchange | events; each subscription is its own exclusive queue |
//!
//! Every publish waits for the broker's confirm. Deliveries are acked manually (the services
//! ack only after publishing their result); the consumer's prefetch is the worker's
//! concurrency. A nack re-publishes the message to the retry queue of its attempt (growing
//! delays) and acks the original; after `max_deliveries` it is dead-lettered with the reason.
//! A lost connection is re-established with exponential backoff: publishers retry the
//! publish, consumers re-subscribe; deliveries unacked on the lost connection are redelivered
//! by the broker (at least once). A refusal — ACCESS_REFUSED (wrong user or password, or
//! no permission on an object) or NOT_ALLOWED (no access to the virtual host) — is not an
//! outage: it fails at once with [`BusError::Denied`], naming the broker without password.
//!
//! The backend in modules: `access` tells a refusal from an outage, `wire` holds the
//! message headers, `topology` the connection, channels and declarations, `publish` the
//! confirmed publish, `consume` the deliveries and how they settle, `dead_letters` the
//! dead letters and replay, `events` the subscriptions to the events topic.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_lapin::{Pool, PoolConfig, Runtime};
use lapin::types::FieldTable;
use lapin::{Channel, ConnectionProperties};
use replicator_proto::DeadLetter;
use tokio_util::task::TaskTracker;

use crate::{Bus, BusError, Consumer, Subscription};

mod access;
mod consume;
mod dead_letters;
mod events;
mod publish;
mod topology;
mod wire;

use access::backend;
use consume::AmqpConsumer;
use events::AmqpSubscription;
use wire::short;

/// Settings of the RabbitMQ backend.
#[derive(Clone, Debug)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:5672/vhost` (`amqps://` for TLS).
    pub url: String,
    /// Prefix of every queue and exchange name.
    pub prefix: String,
    /// Declare work queues as quorum queues (replicated; needs a RabbitMQ cluster to matter).
    pub quorum: bool,
    /// Delay before the n-th redelivery of a nacked message; the last repeats.
    pub retry_delays: Vec<Duration>,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliveries: u32,
    /// Connections in the pool.
    pub connections: usize,
    /// Give up reconnecting after this long (a worker then exits non-zero and is restarted
    /// by its supervisor).
    pub reconnect_timeout: Duration,
}

impl AmqpSettings {
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            quorum: false,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            max_deliveries: 5,
            connections: 2,
            reconnect_timeout: Duration::from_secs(120),
        }
    }
}

struct Inner {
    settings: AmqpSettings,
    pool: Pool,
    /// The confirm-mode channel every publish goes through (lapin pipelines concurrent
    /// publishes on it); replaced when its connection is lost.
    publisher: tokio::sync::Mutex<Option<Channel>>,
    declared: Mutex<HashSet<String>>,
    /// Acks and nacks run as tasks (settling is synchronous for handlers); `close` waits for
    /// them so nothing is left unsettled on a clean exit.
    settling: TaskTracker,
    /// Channels of consumers, closed by `close`.
    consumer_channels: Mutex<Vec<Channel>>,
}

/// A [`Bus`] on RabbitMQ.
#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBus")
            .field("prefix", &self.inner.settings.prefix)
            .field("quorum", &self.inner.settings.quorum)
            .finish_non_exhaustive()
    }
}

impl AmqpBus {
    /// Connect (retrying with backoff up to `reconnect_timeout`) and declare the events
    /// exchange and the dead-letter exchange.
    pub async fn connect(settings: AmqpSettings) -> Result<Self, BusError> {
        // Shown by `rabbitmqctl list_connections client_properties` and the management UI.
        let name = format!(
            "replicator/{} {} pid {}",
            env!("CARGO_PKG_VERSION"),
            settings.prefix,
            std::process::id()
        );
        let cfg = deadpool_lapin::Config {
            url: Some(settings.url.clone()),
            pool: Some(PoolConfig::new(settings.connections.max(1))),
        };
        let pool = cfg
            .create_pool(
                move || ConnectionProperties::default().with_connection_name(name.as_str().into()),
                Runtime::Tokio1,
            )
            .map_err(backend(&settings.url, "cannot create the RabbitMQ pool"))?;
        let bus = Self {
            inner: Arc::new(Inner {
                settings,
                pool,
                publisher: tokio::sync::Mutex::new(None),
                declared: Mutex::new(HashSet::new()),
                settling: TaskTracker::new(),
                consumer_channels: Mutex::new(Vec::new()),
            }),
        };
        let ch = bus.channel().await?;
        bus.declare_exchanges(&ch).await?;
        let _ = ch.close(200, short("declared")).await;
        Ok(bus)
    }

    /// Remember a consumer's channel, to close it in `close` after in-flight deliveries
    /// are settled on it.
    fn keep_open(&self, ch: Channel) {
        self.inner
            .consumer_channels
            .lock()
            .expect("channels")
            .push(ch);
    }

    /// The full broker name of a bus name.
    pub fn name(&self, name: &str) -> String {
        format!("{}.{name}", self.inner.settings.prefix)
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, queue: &str, payload: Bytes) -> Result<(), BusError> {
        self.publish_raw(
            "",
            &self.name(queue),
            &payload,
            FieldTable::default(),
            Some(queue),
        )
        .await
    }

    async fn consume(&self, queue: &str, prefetch: usize) -> Result<Box<dyn Consumer>, BusError> {
        let mut c = AmqpConsumer {
            bus: self.clone(),
            queue: queue.to_owned(),
            prefetch: prefetch.clamp(1, u16::MAX as usize) as u16,
            stream: None,
        };
        c.subscribe().await?;
        Ok(Box::new(c))
    }

    async fn publish_event(&self, routing_key: &str, payload: Bytes) -> Result<(), BusError> {
        self.publish_raw(
            &self.events_exchange(),
            routing_key,
            &payload,
            FieldTable::default(),
            None,
        )
        .await
    }

    async fn subscribe(&self, pattern: &str) -> Result<Box<dyn Subscription>, BusError> {
        let mut s = AmqpSubscription {
            bus: self.clone(),
            pattern: pattern.to_owned(),
            stream: None,
        };
        s.subscribe().await?;
        Ok(Box::new(s))
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        self.read_dead_letters(queue).await
    }

    async fn replay(
        &self,
        queue: &str,
        filter: &(dyn for<'d> Fn(&'d DeadLetter) -> bool + Send + Sync),
    ) -> Result<usize, BusError> {
        self.replay_dead_letters(queue, filter).await
    }

    async fn depth(&self, queue: &str) -> Option<u64> {
        AmqpBus::depth(self, queue).await.ok()
    }

    async fn close(&self) {
        self.inner.settling.close();
        self.inner.settling.wait().await;
        let channels = std::mem::take(&mut *self.inner.consumer_channels.lock().expect("channels"));
        for ch in channels {
            let _ = ch.close(200, short("shutdown")).await;
        }
        if let Some(ch) = self.inner.publisher.lock().await.take() {
            let _ = ch.close(200, short("shutdown")).await;
        }
        self.inner.pool.close();
    }
}
