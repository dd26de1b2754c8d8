//! The header every message carries, the schema version, and decoding that refuses
//! versions newer than this build.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// The schema version this build writes and the newest it accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// Fields every message carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Header {
    /// Version of the message contract; consumers refuse versions newer than their own.
    pub schema_version: u32,
    /// Unique ID of this message (UUIDv7, so IDs sort by creation time).
    pub message_id: Uuid,
    /// The replication run this message belongs to.
    pub run_id: Uuid,
    /// When the message was created.
    pub created_at: DateTime<Utc>,
}

impl Header {
    /// A fresh header for a message of `run_id`.
    pub fn new(run_id: Uuid) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            message_id: Uuid::now_v7(),
            run_id,
            created_at: Utc::now(),
        }
    }
}

/// Every message type, for schema generation.
pub trait Message: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// Name of the schema file (`clone_task` → `proto/schemas/clone_task.json`).
    const NAME: &'static str;
    fn header(&self) -> &Header;
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported schema_version {found} (this worker understands up to {supported})")]
    UnsupportedVersion { found: u64, supported: u32 },
}

/// Parse a message, refusing schema versions newer than this build.
pub fn decode<T: Message>(payload: &[u8]) -> Result<T, DecodeError> {
    #[derive(Deserialize)]
    struct Probe {
        schema_version: Option<u64>,
    }
    let probe: Probe = serde_json::from_slice(payload)?;
    match probe.schema_version {
        Some(v) if v > u64::from(SCHEMA_VERSION) || v == 0 => {
            return Err(DecodeError::UnsupportedVersion {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        _ => {}
    }
    Ok(serde_json::from_slice(payload)?)
}

/// Serialize a message.
pub fn encode<T: Message>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("messages always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CloneTask, EngineKind, Operation};

    fn task() -> CloneTask {
        CloneTask {
            ingest: None,
            header: Header::new(Uuid::now_v7()),
            task_id: Uuid::now_v7(),
            attempt: 1,
            table: "sales.orders".into(),
            source: "file:///a".into(),
            target: "file:///b".into(),
            version: None,
            operation: Operation::All,
            engine: EngineKind::Native,
            replace: false,
            external_roots: Vec::new(),
            as_of: None,
        }
    }

    #[test]
    fn round_trips_and_ignores_unknown_fields() {
        let t = task();
        let mut v = serde_json::to_value(&t).unwrap();
        v["some_future_field"] = serde_json::json!(42);
        let back: CloneTask = decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn refuses_newer_schema_versions() {
        let mut v = serde_json::to_value(task()).unwrap();
        v["schema_version"] = serde_json::json!(99);
        let err = decode::<CloneTask>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("unsupported schema_version 99"),
            "{err}"
        );
    }

    #[test]
    fn malformed_payload_names_the_problem() {
        let err = decode::<CloneTask>(b"{\"schema_version\":1}").unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = decode::<CloneTask>(b"not json").unwrap_err();
        assert!(err.to_string().starts_with("malformed message"), "{err}");
    }
}
