//! Message contracts on top of raw bus payloads.

use bytes::Bytes;
use replicator_proto::{Message, decode, encode};

use crate::{Bus, BusError, Delivery};

/// Publish a message on a work queue.
pub async fn publish<T: Message>(bus: &dyn Bus, queue: &str, msg: &T) -> Result<(), BusError> {
    bus.publish(queue, Bytes::from(encode(msg))).await
}

/// Publish a message on the events topic.
pub async fn publish_event<T: Message>(bus: &dyn Bus, key: &str, msg: &T) -> Result<(), BusError> {
    bus.publish_event(key, Bytes::from(encode(msg))).await
}

/// Decode a delivery. A payload that does not decode (malformed, or a newer schema version)
/// is dead-lettered with the reason and `None` is returned: the worker carries on.
pub fn accept<T: Message>(delivery: Delivery) -> Option<(T, Delivery)> {
    match decode::<T>(&delivery.payload) {
        Ok(msg) => Some((msg, delivery)),
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(queue = %delivery.queue, %reason, "refusing undecodable message");
            delivery.dead_letter(&reason);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBus;
    use replicator_proto::CloneTask;

    #[tokio::test]
    async fn malformed_and_future_messages_are_dead_lettered_with_reason() {
        let bus = MemoryBus::new(10, 3);
        bus.publish("q", Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        bus.publish("q", Bytes::from_static(b"{\"schema_version\": 42}"))
            .await
            .unwrap();
        let mut c = bus.consume("q", 1).await.unwrap();
        assert!(accept::<CloneTask>(c.next().await.unwrap()).is_none());
        assert!(accept::<CloneTask>(c.next().await.unwrap()).is_none());
        let dead = bus.dead_letters("q").await.unwrap();
        assert!(
            dead[0].reason.starts_with("malformed message"),
            "{}",
            dead[0].reason
        );
        assert!(
            dead[1].reason.contains("unsupported schema_version 42"),
            "{}",
            dead[1].reason
        );
        assert_eq!(dead[0].payload, "{not json");
    }
}
