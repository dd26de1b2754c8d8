//! What rides with a message: the headers the backend sets and reads, and the properties
//! of every publish.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

/// Header carrying how many times a message was delivered before this copy.
pub(super) const DELIVERIES_HEADER: &str = "x-replicator-deliveries";
/// Header counting deferrals (busy target), which do not count as deliveries.
pub(super) const DEFERRALS_HEADER: &str = "x-replicator-deferrals";
/// Header carrying the reason of the last nack (for the dead letter and for operators).
pub(super) const REASON_HEADER: &str = "x-replicator-reason";

pub(super) fn short(s: &str) -> ShortString {
    s.into()
}

pub(super) fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

pub(super) fn header_u32(props: &BasicProperties, name: &str) -> Option<u32> {
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

pub(super) fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// How many times this copy of a message has been delivered, this delivery included.
pub(super) fn deliveries_of(props: &BasicProperties, redelivered: bool) -> u32 {
    let before = header_u32(props, DELIVERIES_HEADER).unwrap_or(0);
    // Quorum queues count redeliveries after a crash themselves.
    let broker = header_u32(props, "x-delivery-count").unwrap_or(0);
    before + 1 + broker.max(u32::from(redelivered))
}

pub(super) fn persistent(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(short("application/json"))
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(short(k), v.clone());
        }
        persistent(t)
    }

    #[test]
    fn deliveries_count_this_one_the_recorded_ones_and_the_brokers() {
        // A first delivery.
        assert_eq!(deliveries_of(&props(&[]), false), 1);
        // Redelivered by the broker after a lost connection.
        assert_eq!(deliveries_of(&props(&[]), true), 2);
        // Re-published by a nack after two deliveries.
        let retried = props(&[(DELIVERIES_HEADER, AMQPValue::LongLongInt(2))]);
        assert_eq!(deliveries_of(&retried, false), 3);
        // A quorum queue counts crash redeliveries itself: not counted twice.
        let quorum = props(&[
            (DELIVERIES_HEADER, AMQPValue::LongLongInt(2)),
            ("x-delivery-count", AMQPValue::LongInt(2)),
        ]);
        assert_eq!(deliveries_of(&quorum, true), 5);
    }

    #[test]
    fn headers_read_back_as_written_and_nonsense_is_absent() {
        let p = props(&[
            (DEFERRALS_HEADER, AMQPValue::ShortUInt(4)),
            (REASON_HEADER, long_str("table busy")),
            ("negative", AMQPValue::LongLongInt(-1)),
        ]);
        assert_eq!(header_u32(&p, DEFERRALS_HEADER), Some(4));
        assert_eq!(header_str(&p, REASON_HEADER).as_deref(), Some("table busy"));
        assert_eq!(header_u32(&p, "negative"), None);
        assert_eq!(header_u32(&p, REASON_HEADER), None);
        assert_eq!(header_str(&p, "missing"), None);
        assert_eq!(
            header_u32(&BasicProperties::default(), DELIVERIES_HEADER),
            None
        );
        assert_eq!(p.delivery_mode(), &Some(2), "persistent");
    }
}
