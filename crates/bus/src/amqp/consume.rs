//! Consuming a work queue: deliveries with their count, and how each is settled (ack, a
//! delayed retry, a deferral, a dead letter) on the settling tracker that `close` waits for.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};

use super::AmqpBus;
use super::access::backend;
use super::wire::{
    DEFERRALS_HEADER, DELIVERIES_HEADER, REASON_HEADER, deliveries_of, header_u32, long_str, short,
};
use crate::{Acker, BusError, Consumer, Delivery, Nacked};

pub(super) struct AmqpConsumer {
    pub(super) bus: AmqpBus,
    pub(super) queue: String,
    pub(super) prefetch: u16,
    pub(super) stream: Option<lapin::Consumer>,
}

impl AmqpConsumer {
    pub(super) async fn subscribe(&mut self) -> Result<(), BusError> {
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
        match crate::nacked(
            self.deliveries,
            self.bus.inner.settings.max_deliveries,
            reason,
        ) {
            Nacked::GiveUp { reason } => self.dead_letter(&reason),
            Nacked::Retry { tier } => self.later(self.deliveries, tier, reason, false),
        }
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
