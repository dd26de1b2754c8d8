//! Subscriptions to the events topic: each is its own exclusive, auto-deleted queue bound
//! to `{p}.events` with the pattern.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::AmqpBus;
use super::access::backend;
use super::wire::short;
use crate::{BusError, Subscription};

pub(super) struct AmqpSubscription {
    pub(super) bus: AmqpBus,
    pub(super) pattern: String,
    pub(super) stream: Option<lapin::Consumer>,
}

impl AmqpSubscription {
    pub(super) async fn subscribe(&mut self) -> Result<(), BusError> {
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
