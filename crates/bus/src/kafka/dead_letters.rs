//! Dead letters: kept in `{p}.{queue}.dead`, announced on the events topic; the consumer
//! group `{p}.{queue}.dead` marks how far `replay` has gone.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use replicator_proto::DeadLetter;

use super::access::backend;
use super::wire::{REASON_HEADER, header_str, key_of};
use super::{KafkaBus, TIMEOUT};
use crate::{Bus, BusError};

impl KafkaBus {
    /// Record a dead letter and announce it on the events topic.
    pub(super) async fn bury(&self, queue: &str, letter: &DeadLetter) -> Result<(), BusError> {
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
    pub(super) async fn read_dead(
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

    /// Move the dead letters accepted by `filter` back onto the queue; the others are
    /// appended again past the point this replay commits.
    pub(super) async fn replay_dead(
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
}
