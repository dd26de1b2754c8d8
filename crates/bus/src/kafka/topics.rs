//! The topics of a queue and of the events: created (or checked) once per process, and the
//! lag of a queue's consumer group.

use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use super::access::backend;
use super::{KafkaBus, TIMEOUT};
use crate::BusError;

impl KafkaBus {
    /// Create topics that do not exist yet (once per process).
    pub(super) async fn ensure_topics(&self, names: &[String]) -> Result<(), BusError> {
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

    pub(super) async fn ensure_queue(&self, queue: &str) -> Result<(), BusError> {
        let main = self.name(queue);
        self.ensure_topics(&[
            main.clone(),
            format!("{main}.retry"),
            format!("{main}.dead"),
        ])
        .await
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
