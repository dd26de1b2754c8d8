//! What rides with a record: the headers the backend sets and reads, and its partition key.

use rdkafka::message::{Header, Headers, OwnedHeaders};

pub(super) const DELIVERIES_HEADER: &str = "x-replicator-deliveries";
pub(super) const DEFERRALS_HEADER: &str = "x-replicator-deferrals";
pub(super) const DUE_HEADER: &str = "x-replicator-due-ms";
pub(super) const REASON_HEADER: &str = "x-replicator-reason";
pub(super) const ROUTING_KEY_HEADER: &str = "x-replicator-routing-key";

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn header_i64<H: Headers>(headers: Option<&H>, name: &str) -> Option<i64> {
    let h = headers?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

pub(super) fn header_str<H: Headers>(headers: Option<&H>, name: &str) -> Option<String> {
    let h = headers?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| Some(String::from_utf8_lossy(h.value?).into_owned()))
}

pub(super) fn headers(pairs: &[(&str, String)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_str()),
        })
    })
}

/// The partition key of a message: its table (`target`), so one table's tasks stay in one
/// partition and in order; else its run.
pub(super) fn key_of(payload: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    ["target", "run_id", "message_id"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_as_written() {
        let h = headers(&[
            (DELIVERIES_HEADER, "3".to_owned()),
            (REASON_HEADER, "table busy".to_owned()),
        ]);
        assert_eq!(header_i64(Some(&h), DELIVERIES_HEADER), Some(3));
        assert_eq!(
            header_str(Some(&h), REASON_HEADER).as_deref(),
            Some("table busy")
        );
        assert_eq!(header_i64(Some(&h), REASON_HEADER), None, "not a number");
        assert_eq!(header_i64(Some(&h), DUE_HEADER), None);
        assert_eq!(header_str::<OwnedHeaders>(None, REASON_HEADER), None);
    }

    #[test]
    fn one_table_keys_one_partition_else_the_run() {
        let task = br#"{"run_id":"r1","message_id":"m1","target":"s3://dst/sales/orders"}"#;
        assert_eq!(key_of(task), "s3://dst/sales/orders");
        assert_eq!(key_of(br#"{"run_id":"r1","message_id":"m1"}"#), "r1");
        assert_eq!(key_of(br#"{"message_id":"m1"}"#), "m1");
        assert_eq!(key_of(b"{not json"), "");
    }
}
