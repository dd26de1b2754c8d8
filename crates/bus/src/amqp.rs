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

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use deadpool_lapin::{Pool, PoolConfig, Runtime};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ConnectionProperties, ExchangeKind};
use replicator_proto::DeadLetter;
use tokio_util::task::TaskTracker;

use crate::{Acker, Bus, BusError, Consumer, Delivery, Subscription};

/// Header carrying how many times a message was delivered before this copy.
const DELIVERIES_HEADER: &str = "x-replicator-deliveries";
/// Header counting deferrals (busy target), which do not count as deliveries.
const DEFERRALS_HEADER: &str = "x-replicator-deferrals";
/// Header carrying the reason of the last nack (for the dead letter and for operators).
const REASON_HEADER: &str = "x-replicator-reason";

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

/// An error that may be the broker refusing access: its reason then.
trait Refusal: std::fmt::Display {
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
const CONNECTING: &str = "cannot connect to RabbitMQ";

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
fn backend<'a, E: Refusal>(url: &'a str, what: &'a str) -> impl FnOnce(E) -> BusError + 'a {
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

fn short(s: &str) -> ShortString {
    s.into()
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn header_u32(props: &BasicProperties, name: &str) -> Option<u32> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::ShortShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::ShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::LongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(*v),
        AMQPValue::LongLongInt(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// How many times this copy of a message has been delivered, this delivery included.
fn deliveries_of(props: &BasicProperties, redelivered: bool) -> u32 {
    let before = header_u32(props, DELIVERIES_HEADER).unwrap_or(0);
    // Quorum queues count redeliveries after a crash themselves.
    let broker = header_u32(props, "x-delivery-count").unwrap_or(0);
    before + 1 + broker.max(u32::from(redelivered))
}

fn persistent(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(short("application/json"))
        .with_headers(headers)
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

    /// The retry queue of `queue` for `delay`, named by its delay so processes configured
    /// with different delays share a broker without conflicting declarations.
    fn retry_queue(&self, queue: &str, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.name(queue), delay.as_millis())
    }

    fn events_exchange(&self) -> String {
        self.name("events")
    }

    fn dlx(&self) -> String {
        self.name("dlx")
    }

    /// A fresh channel, reconnecting with exponential backoff while the broker is away.
    async fn channel(&self) -> Result<Channel, BusError> {
        let inner = self.inner.clone();
        let open = || {
            let inner = inner.clone();
            async move {
                let conn = inner
                    .pool
                    .get()
                    .await
                    .map_err(backend(&inner.settings.url, CONNECTING))?;
                conn.create_channel().await.map_err(backend(
                    &inner.settings.url,
                    "cannot open a RabbitMQ channel",
                ))
            }
        };
        open.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_total_delay(Some(self.inner.settings.reconnect_timeout))
                .without_max_times()
                .with_jitter(),
        )
        // A refusal (wrong credentials, no access to the virtual host) is not an outage.
        .when(|e| !e.is_permanent())
        .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, "RabbitMQ unavailable"))
        .await
    }

    async fn declare_exchanges(&self, ch: &Channel) -> Result<(), BusError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            short(&self.events_exchange()),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(backend(
            &self.inner.settings.url,
            "cannot declare the events exchange",
        ))?;
        ch.exchange_declare(
            short(&self.dlx()),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(backend(
            &self.inner.settings.url,
            "cannot declare the dead-letter exchange",
        ))?;
        Ok(())
    }

    /// Declare a work queue with its retry and dead-letter queues (once per process).
    async fn declare_queue(&self, ch: &Channel, queue: &str) -> Result<(), BusError> {
        if self
            .inner
            .declared
            .lock()
            .expect("declared")
            .contains(queue)
        {
            return Ok(());
        }
        let work = self.name(queue);
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        if self.inner.settings.quorum {
            args.insert(short("x-queue-type"), long_str("quorum"));
        }
        let mut work_args = args.clone();
        work_args.insert(short("x-dead-letter-exchange"), long_str(&self.dlx()));
        work_args.insert(short("x-dead-letter-routing-key"), long_str(queue));
        ch.queue_declare(short(&work), durable, work_args)
            .await
            .map_err(backend(
                &self.inner.settings.url,
                &format!("cannot declare queue {work}"),
            ))?;
        let dead = format!("{work}.dead");
        ch.queue_declare(short(&dead), durable, args.clone())
            .await
            .map_err(backend(
                &self.inner.settings.url,
                &format!("cannot declare queue {dead}"),
            ))?;
        ch.queue_bind(
            short(&dead),
            short(&self.dlx()),
            short(queue),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend(
            &self.inner.settings.url,
            &format!("cannot bind {dead}"),
        ))?;
        for delay in &self.inner.settings.retry_delays {
            let retry = self.retry_queue(queue, *delay);
            let mut retry_args = args.clone();
            retry_args.insert(
                short("x-message-ttl"),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            retry_args.insert(short("x-dead-letter-exchange"), long_str(""));
            retry_args.insert(short("x-dead-letter-routing-key"), long_str(&work));
            ch.queue_declare(short(&retry), durable, retry_args)
                .await
                .map_err(backend(
                    &self.inner.settings.url,
                    &format!("cannot declare queue {retry}"),
                ))?;
        }
        self.inner
            .declared
            .lock()
            .expect("declared")
            .insert(queue.to_owned());
        Ok(())
    }

    /// Publish with a broker confirm, reconnecting and retrying while the broker is away.
    async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        headers: FieldTable,
        declare: Option<&str>,
    ) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + self.inner.settings.reconnect_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = async {
                let ch = self.publisher().await?;
                if let Some(q) = declare {
                    self.declare_queue(&ch, q).await?;
                }
                let confirm = ch
                    .basic_publish(
                        short(exchange),
                        short(routing_key),
                        BasicPublishOptions::default(),
                        payload,
                        persistent(headers.clone()),
                    )
                    .await
                    .map_err(backend(&self.inner.settings.url, "publish failed"))?
                    .await
                    .map_err(backend(&self.inner.settings.url, "publish not confirmed"))?;
                if confirm.is_nack() {
                    return Err(BusError::Backend(format!(
                        "the broker refused a message for {routing_key}"
                    )));
                }
                Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if !e.is_permanent() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, routing_key, "publish failed; reconnecting");
                    *self.inner.publisher.lock().await = None;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn publisher(&self) -> Result<Channel, BusError> {
        let mut slot = self.inner.publisher.lock().await;
        if let Some(ch) = slot.as_ref()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(backend(
                &self.inner.settings.url,
                "cannot enable publisher confirms",
            ))?;
        *slot = Some(ch.clone());
        Ok(ch)
    }

    /// Delete every queue this process declared, and the exchanges: tears a prefix's
    /// topology down (tests; decommissioning a fleet). Messages in them are lost.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let ch = self.channel().await?;
        let queues: Vec<String> = self
            .inner
            .declared
            .lock()
            .expect("declared")
            .drain()
            .collect();
        for q in queues {
            let work = self.name(&q);
            let mut names = vec![work.clone(), format!("{work}.dead")];
            names.extend(
                self.inner
                    .settings
                    .retry_delays
                    .iter()
                    .map(|d| self.retry_queue(&q, *d)),
            );
            for name in names {
                ch.queue_delete(short(&name), Default::default())
                    .await
                    .map_err(backend(
                        &self.inner.settings.url,
                        &format!("cannot delete queue {name}"),
                    ))?;
            }
        }
        for ex in [self.events_exchange(), self.dlx()] {
            ch.exchange_delete(short(&ex), Default::default())
                .await
                .map_err(backend(
                    &self.inner.settings.url,
                    &format!("cannot delete exchange {ex}"),
                ))?;
        }
        let _ = ch.close(200, short("deleted")).await;
        Ok(())
    }

    /// Messages ready in a work queue (for metrics and autoscaling).
    pub async fn depth(&self, queue: &str) -> Result<u64, BusError> {
        let ch = self.channel().await?;
        self.declare_queue(&ch, queue).await?;
        let q = ch
            .queue_declare(
                short(&self.name(queue)),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend(&self.inner.settings.url, "cannot inspect queue"))?;
        let _ = ch.close(200, short("done")).await;
        Ok(u64::from(q.message_count()))
    }

    fn dead_letter_from(&self, queue: &str, payload: &[u8], props: &BasicProperties) -> DeadLetter {
        serde_json::from_slice::<DeadLetter>(payload).unwrap_or_else(|_| {
            // Dead-lettered by the broker itself (not through `Delivery::dead_letter`).
            crate::dead_letter(
                queue,
                header_str(props, REASON_HEADER)
                    .as_deref()
                    .unwrap_or("rejected by the broker (delivery limit or rejection)"),
                header_u32(props, DELIVERIES_HEADER).unwrap_or(0),
                payload,
            )
        })
    }

    /// Record a dead letter and announce it on the events topic.
    async fn bury(&self, queue: &str, letter: &DeadLetter) -> Result<(), BusError> {
        let body = replicator_proto::encode(letter);
        self.publish_raw(
            &self.dlx(),
            queue,
            &body,
            FieldTable::default(),
            Some(queue),
        )
        .await?;
        self.publish_event(
            replicator_proto::names::events::DEAD_LETTER,
            Bytes::from(body),
        )
        .await
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
        let ch = self.channel().await?;
        self.declare_queue(&ch, queue).await?;
        let dead = format!("{}.dead", self.name(queue));
        let mut out = Vec::new();
        // Read without acking; closing the channel puts every message back in order.
        while let Some(m) = ch
            .basic_get(short(&dead), BasicGetOptions { no_ack: false })
            .await
            .map_err(backend(
                &self.inner.settings.url,
                "cannot read dead letters",
            ))?
        {
            out.push(self.dead_letter_from(queue, &m.delivery.data, &m.delivery.properties));
        }
        let _ = ch.close(200, short("read")).await;
        Ok(out)
    }

    async fn replay(
        &self,
        queue: &str,
        filter: &(dyn for<'d> Fn(&'d DeadLetter) -> bool + Send + Sync),
    ) -> Result<usize, BusError> {
        let ch = self.channel().await?;
        self.declare_queue(&ch, queue).await?;
        let dead = format!("{}.dead", self.name(queue));
        let mut moved = 0;
        while let Some(m) = ch
            .basic_get(short(&dead), BasicGetOptions { no_ack: false })
            .await
            .map_err(backend(
                &self.inner.settings.url,
                "cannot read dead letters",
            ))?
        {
            let letter = self.dead_letter_from(queue, &m.delivery.data, &m.delivery.properties);
            if filter(&letter) {
                // Confirmed on the work queue before it leaves the dead letters.
                self.publish(queue, Bytes::from(letter.payload.into_bytes()))
                    .await?;
                m.delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(backend(
                        &self.inner.settings.url,
                        "cannot ack a replayed dead letter",
                    ))?;
                moved += 1;
            }
        }
        // The ones not chosen go back when the channel closes.
        let _ = ch.close(200, short("replayed")).await;
        Ok(moved)
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

struct AmqpConsumer {
    bus: AmqpBus,
    queue: String,
    prefetch: u16,
    stream: Option<lapin::Consumer>,
}

impl AmqpConsumer {
    async fn subscribe(&mut self) -> Result<(), BusError> {
        let ch = self.bus.channel().await?;
        self.bus.declare_queue(&ch, &self.queue).await?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(backend(&self.bus.inner.settings.url, "cannot set prefetch"))?;
        let consumer = ch
            .basic_consume(
                short(&self.bus.name(&self.queue)),
                short(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend(&self.bus.inner.settings.url, "cannot consume"))?;
        self.bus.keep_open(ch);
        self.stream = Some(consumer);
        Ok(())
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.bus.inner.settling.is_closed() {
                return None;
            }
            if self.stream.is_none()
                && let Err(e) = self.subscribe().await
            {
                tracing::error!(queue = %self.queue, error = %e, "giving up on RabbitMQ");
                return None;
            }
            let stream = self.stream.as_mut().expect("subscribed");
            match stream.next().await {
                Some(Ok(d)) => {
                    let deliveries = deliveries_of(&d.properties, d.redelivered);
                    let payload = Bytes::from(d.data);
                    let acker = AmqpAcker {
                        bus: self.bus.clone(),
                        queue: self.queue.clone(),
                        lapin: d.acker,
                        payload: payload.clone(),
                        props: d.properties,
                        deliveries,
                    };
                    return Some(Delivery::new(
                        self.queue.clone(),
                        payload,
                        deliveries,
                        Box::new(acker),
                    ));
                }
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.queue, error = %e, "consumer lost its connection; reconnecting");
                    self.stream = None;
                }
                None => {
                    tracing::warn!(queue = %self.queue, "consumer cancelled by the broker; re-subscribing");
                    self.stream = None;
                }
            }
        }
    }
}

struct AmqpAcker {
    bus: AmqpBus,
    queue: String,
    lapin: lapin::Acker,
    payload: Bytes,
    props: BasicProperties,
    deliveries: u32,
}

impl AmqpAcker {
    fn settle<F>(&self, what: &'static str, f: F)
    where
        F: std::future::Future<Output = Result<(), BusError>> + Send + 'static,
    {
        let queue = self.queue.clone();
        self.bus.inner.settling.spawn(async move {
            if let Err(e) = f.await {
                // The broker redelivers what was not settled: at least once.
                tracing::warn!(%queue, error = %e, "could not {what} a delivery; it will be redelivered");
            }
        });
    }
}

impl AmqpAcker {
    /// Re-publish to the retry queue of `tier` (its delay; the last tier repeats) with
    /// `deliveries` recorded, then ack this delivery.
    fn later(&self, deliveries: u32, tier: usize, reason: &str, deferred: bool) {
        let (bus, queue, lapin, payload) = (
            self.bus.clone(),
            self.queue.clone(),
            self.lapin.clone(),
            self.payload.clone(),
        );
        let deferrals = header_u32(&self.props, DEFERRALS_HEADER).unwrap_or(0);
        let reason = reason.to_owned();
        self.settle("retry", async move {
            let delays = bus.inner.settings.retry_delays.len();
            let mut headers = FieldTable::default();
            headers.insert(
                short(DELIVERIES_HEADER),
                AMQPValue::LongLongInt(i64::from(deliveries)),
            );
            headers.insert(
                short(DEFERRALS_HEADER),
                AMQPValue::LongLongInt(i64::from(deferrals + u32::from(deferred))),
            );
            headers.insert(short(REASON_HEADER), long_str(&reason));
            let to = if delays == 0 {
                bus.name(&queue)
            } else {
                bus.retry_queue(
                    &queue,
                    bus.inner.settings.retry_delays[tier.min(delays - 1)],
                )
            };
            bus.publish_raw("", &to, &payload, headers, Some(&queue))
                .await?;
            lapin
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| BusError::Backend(format!("ack: {e}")))
        });
    }
}

impl Acker for AmqpAcker {
    fn ack(&self) {
        let lapin = self.lapin.clone();
        self.settle("ack", async move {
            lapin
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| BusError::Backend(format!("ack: {e}")))
        });
    }

    fn nack(&self, reason: &str) {
        if self.deliveries >= self.bus.inner.settings.max_deliveries {
            let reason = format!("gave up after {} deliveries: {reason}", self.deliveries);
            return self.dead_letter(&reason);
        }
        self.later(self.deliveries, self.deliveries as usize - 1, reason, false);
    }

    fn defer(&self, reason: &str) {
        // Not counted: the copy carries the count this delivery arrived with.
        let deferrals = header_u32(&self.props, DEFERRALS_HEADER).unwrap_or(0);
        self.later(
            self.deliveries.saturating_sub(1),
            deferrals as usize,
            reason,
            true,
        );
    }

    fn dead_letter(&self, reason: &str) {
        let letter = crate::dead_letter(&self.queue, reason, self.deliveries, &self.payload);
        tracing::warn!(queue = %self.queue, deliveries = self.deliveries, reason, "message dead-lettered");
        let (bus, queue, lapin) = (self.bus.clone(), self.queue.clone(), self.lapin.clone());
        self.settle("dead-letter", async move {
            bus.bury(&queue, &letter).await?;
            lapin
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| BusError::Backend(format!("ack: {e}")))
        });
    }
}

struct AmqpSubscription {
    bus: AmqpBus,
    pattern: String,
    stream: Option<lapin::Consumer>,
}

impl AmqpSubscription {
    async fn subscribe(&mut self) -> Result<(), BusError> {
        let ch = self.bus.channel().await?;
        let q = ch
            .queue_declare(
                short(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend(
                &self.bus.inner.settings.url,
                "cannot declare a subscription queue",
            ))?;
        ch.queue_bind(
            q.name().clone(),
            short(&self.bus.events_exchange()),
            short(&self.pattern),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend(
            &self.bus.inner.settings.url,
            "cannot bind a subscription",
        ))?;
        let consumer = ch
            .basic_consume(
                q.name().clone(),
                short(""),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend(&self.bus.inner.settings.url, "cannot subscribe"))?;
        self.bus.keep_open(ch);
        self.stream = Some(consumer);
        Ok(())
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Option<(String, Bytes)> {
        loop {
            if self.bus.inner.settling.is_closed() {
                return None;
            }
            if self.stream.is_none()
                && let Err(e) = self.subscribe().await
            {
                tracing::error!(pattern = %self.pattern, error = %e, "giving up on RabbitMQ");
                return None;
            }
            let stream = self.stream.as_mut().expect("subscribed");
            match stream.next().await {
                Some(Ok(d)) => {
                    return Some((d.routing_key.as_str().to_owned(), Bytes::from(d.data)));
                }
                Some(Err(e)) => {
                    // Events published while reconnecting are missed; consumers of events
                    // (the notifier) also reconcile from the store, so none is needed for
                    // correctness.
                    tracing::warn!(pattern = %self.pattern, error = %e, "subscription lost its connection; reconnecting");
                    self.stream = None;
                }
                None => self.stream = None,
            }
        }
    }
}
