//! Consuming a work queue: the queue's consumer group reads the work topic and its retry
//! topic; retries are forwarded back when due, deliveries settle as acks, delayed retries,
//! deferrals or dead letters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message;

use super::KafkaBus;
use super::access::{backend, refusal};
use super::offsets::{OffsetTracker, Settle};
use super::wire::{
    DEFERRALS_HEADER, DELIVERIES_HEADER, DUE_HEADER, REASON_HEADER, header_i64, headers, now_ms,
};
use crate::{Acker, BusError, Consumer, Delivery, Nacked};

impl KafkaBus {
    /// Join the queue's consumer group on its work and retry topics.
    pub(super) async fn consumer(&self, queue: &str) -> Result<KafkaConsumer, BusError> {
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
        Ok(KafkaConsumer {
            bus: self.clone(),
            queue: queue.to_owned(),
            consumer,
            offsets: Arc::new(Mutex::new(OffsetTracker::default())),
        })
    }
}

pub(super) struct KafkaConsumer {
    bus: KafkaBus,
    queue: String,
    consumer: Arc<StreamConsumer>,
    offsets: Arc<Mutex<OffsetTracker>>,
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
        match crate::nacked(
            self.deliveries,
            self.bus.inner.settings.max_deliveries,
            reason,
        ) {
            Nacked::GiveUp { reason } => self.dead_letter(&reason),
            Nacked::Retry { tier } => self.later(self.deliveries, self.deferrals, tier, reason),
        }
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
