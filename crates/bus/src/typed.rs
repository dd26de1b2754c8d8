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

    fn task() -> CloneTask {
        CloneTask {
            ingest: None,
            header: replicator_proto::Header::new(uuid::Uuid::from_u128(9)),
            task_id: uuid::Uuid::now_v7(),
            attempt: 1,
            table: "sales.orders".into(),
            source: "file:///a".into(),
            target: "file:///b".into(),
            version: None,
            operation: replicator_proto::Operation::All,
            engine: replicator_proto::EngineKind::Native,
            replace: false,
            external_roots: Vec::new(),
            as_of: None,
        }
    }

    #[tokio::test]
    async fn a_decodable_message_is_handed_over_with_its_delivery() {
        let bus = MemoryBus::new(10, 3);
        let sent = task();
        publish(&bus, "q", &sent).await.unwrap();
        let mut c = bus.consume("q", 1).await.unwrap();
        let (got, delivery) = accept::<CloneTask>(c.next().await.unwrap()).expect("decodes");
        assert_eq!(got, sent);
        assert_eq!(delivery.deliveries, 1);
        delivery.ack();
        assert!(bus.dead_letters("q").await.unwrap().is_empty());
        assert_eq!(bus.depth("q"), 0);
    }

    #[tokio::test]
    async fn an_undecodable_message_is_announced_with_its_run() {
        let bus = MemoryBus::new(10, 3);
        let mut events = bus.subscribe("dead_letter").await.unwrap();
        // A task of run 9 with a field missing: its run can still account for it.
        let mut v = serde_json::to_value(task()).unwrap();
        v.as_object_mut().unwrap().remove("target");
        bus.publish("q", Bytes::from(v.to_string())).await.unwrap();
        let mut c = bus.consume("q", 1).await.unwrap();
        assert!(accept::<CloneTask>(c.next().await.unwrap()).is_none());
        let (_, body) = events.next().await.unwrap();
        let letter: replicator_proto::DeadLetter = replicator_proto::decode(&body).unwrap();
        assert_eq!(letter.header.run_id, uuid::Uuid::from_u128(9));
        assert!(
            letter.reason.contains("missing field `target`"),
            "{}",
            letter.reason
        );
        assert_eq!(letter.deliveries, 1, "dead-lettered at once, not retried");
    }

    #[tokio::test]
    async fn typed_events_reach_subscribers_as_sent() {
        let bus = MemoryBus::new(10, 3);
        let mut events = bus.subscribe("clone.*").await.unwrap();
        let sent = task();
        publish_event(&bus, "clone.succeeded", &sent).await.unwrap();
        let (key, body) = events.next().await.unwrap();
        assert_eq!(key, "clone.succeeded");
        assert_eq!(replicator_proto::decode::<CloneTask>(&body).unwrap(), sent);
    }
}
