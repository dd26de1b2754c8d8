//! Subscriptions to the events topic: each reads every partition from its end as of
//! `subscribe` with its own consumer, and keeps the events whose routing key matches.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::access::{backend, refusal};
use super::wire::{ROUTING_KEY_HEADER, header_str};
use super::{KafkaBus, TIMEOUT};
use crate::{BusError, Subscription, topic_matches};

impl KafkaBus {
    /// A subscription to the events whose routing key matches `pattern`.
    pub(super) async fn subscription(&self, pattern: &str) -> Result<KafkaSubscription, BusError> {
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
        Ok(KafkaSubscription {
            bus: self.clone(),
            pattern: pattern.to_owned(),
            consumer,
        })
    }
}

pub(super) struct KafkaSubscription {
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
