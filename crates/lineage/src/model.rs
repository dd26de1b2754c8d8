//! The part of the OpenLineage model replicator sends: a `RunEvent` with its run, job,
//! input and output datasets, and the facets of docs/lineage.md.
//!
//! Spec: <https://openlineage.io/spec/2-0-2/OpenLineage.json>. Every facet carries
//! `_producer` and `_schemaURL` ([`Facet`]); the schema URLs are the facet versions the
//! OpenLineage clients of 2025–2026 write (listed, with their sources, in docs/lineage.md).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `producer` of every event and the `_producer` of every facet: replicator's
/// repository at this version.
pub const PRODUCER: &str = concat!(
    "https://github.com/replicator-rs/replicator/tree/",
    env!("CARGO_PKG_VERSION")
);

/// The `schemaURL` of a `RunEvent`.
pub const RUN_EVENT_SCHEMA_URL: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// What a facet's `_schemaURL` is.
pub trait FacetSchema {
    /// The JSON pointer URL of the facet's schema definition.
    const SCHEMA_URL: &'static str;
}

/// A run's state transition. START and one of COMPLETE, FAIL or ABORT per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Start,
    Complete,
    Fail,
    Abort,
}

impl EventType {
    /// The spec's spelling (`START`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Complete => "COMPLETE",
            Self::Fail => "FAIL",
            Self::Abort => "ABORT",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One OpenLineage `RunEvent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    pub event_type: EventType,
    /// RFC 3339, UTC, milliseconds.
    #[serde(with = "rfc3339_millis")]
    pub event_time: DateTime<Utc>,
    pub run: Run,
    pub job: Job,
    pub inputs: Vec<InputDataset>,
    pub outputs: Vec<OutputDataset>,
    pub producer: String,
    #[serde(rename = "schemaURL")]
    pub schema_url: String,
}

impl RunEvent {
    /// An event of `event_type` now, for `run` of `job`, without datasets.
    pub fn new(event_type: EventType, run: Run, job: Job) -> Self {
        Self {
            event_type,
            event_time: Utc::now(),
            run,
            job,
            inputs: Vec::new(),
            outputs: Vec::new(),
            producer: PRODUCER.to_owned(),
            schema_url: RUN_EVENT_SCHEMA_URL.to_owned(),
        }
    }
}

/// `eventTime` as `2026-11-30T00:15:50.123Z`.
mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The run: its ID and run facets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: Uuid,
    #[serde(default)]
    pub facets: RunFacets,
}

/// The run facets replicator sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFacets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Facet<ParentRun>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<Facet<ErrorMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicator: Option<Facet<ReplicatorRun>>,
}

/// The job: namespace and name (no job facets are sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub facets: BTreeMap<String, serde_json::Value>,
}

impl Job {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            facets: BTreeMap::new(),
        }
    }
}

/// A dataset the run read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputDataset {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub facets: DatasetFacets,
    #[serde(default)]
    pub input_facets: InputFacets,
}

/// A dataset the run wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputDataset {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub facets: DatasetFacets,
    #[serde(default)]
    pub output_facets: OutputFacets,
}

/// The dataset facets replicator sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetFacets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Facet<Schema>>,
}

/// The input dataset facets replicator sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputFacets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_quality_metrics: Option<Facet<DataQualityMetrics>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_quality_assertions: Option<Facet<DataQualityAssertions>>,
}

/// The output dataset facets replicator sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFacets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_statistics: Option<Facet<OutputStatistics>>,
}

/// A facet: `_producer`, `_schemaURL` and its own fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Facet<T> {
    #[serde(rename = "_producer")]
    pub producer: String,
    #[serde(rename = "_schemaURL")]
    pub schema_url: String,
    #[serde(flatten)]
    pub body: T,
}

impl<T: FacetSchema> Facet<T> {
    /// `body` with replicator as its producer and its kind's schema URL.
    pub fn new(body: T) -> Self {
        Self {
            producer: PRODUCER.to_owned(),
            schema_url: T::SCHEMA_URL.to_owned(),
            body,
        }
    }
}

/// A run and job reference (`parent.run`, `parent.job`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRef {
    pub run_id: Uuid,
}

/// A job reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRef {
    pub namespace: String,
    pub name: String,
}

/// `parent`: the run that spawned this one (a task's replication run), and the root of
/// the chain (the same run: replication runs have no parent of their own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParentRun {
    pub run: RunRef,
    pub job: JobRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<ParentRoot>,
}

/// `parent.root`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParentRoot {
    pub run: RunRef,
    pub job: JobRef,
}

impl FacetSchema for ParentRun {
    const SCHEMA_URL: &'static str =
        "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
}

/// `errorMessage`: why a run failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessage {
    pub message: String,
    pub programming_language: String,
}

impl FacetSchema for ErrorMessage {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
}

/// `replicator`: replicator's own run facet (schema: `crates/lineage/schema/
/// ReplicatorRunFacet.json`, described in docs/lineage.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicatorRun {
    /// The task's attempt, from 1.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_copied: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

impl FacetSchema for ReplicatorRun {
    const SCHEMA_URL: &'static str = concat!(
        "https://raw.githubusercontent.com/replicator-rs/replicator/",
        env!("CARGO_PKG_VERSION"),
        "/crates/lineage/schema/ReplicatorRunFacet.json#/$defs/ReplicatorRunFacet"
    );
}

/// `schema`: the dataset's columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<SchemaField>,
}

/// One column of [`Schema`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl FacetSchema for Schema {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
}

/// `dataQualityMetrics` (an input facet): what was counted on a dataset read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataQualityMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
    /// Required by the spec: empty when no column was measured.
    #[serde(default)]
    pub column_metrics: BTreeMap<String, ColumnMetrics>,
}

/// Metrics of one column.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl FacetSchema for DataQualityMetrics {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-3/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet";
}

/// `dataQualityAssertions` (an input facet): the checks made on a dataset read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataQualityAssertions {
    pub assertions: Vec<Assertion>,
}

/// One check and whether it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    /// What was checked (`row_count_matches`).
    pub assertion: String,
    pub success: bool,
    /// The column checked; none for the whole dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

impl FacetSchema for DataQualityAssertions {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-1-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet";
}

/// `outputStatistics` (an output facet): what was written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputStatistics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    /// Bytes written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
}

impl FacetSchema for OutputStatistics {
    const SCHEMA_URL: &'static str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_serializes_as_the_spec_names_it() {
        let mut run = Run {
            run_id: Uuid::nil(),
            facets: RunFacets::default(),
        };
        run.facets.error_message = Some(Facet::new(ErrorMessage {
            message: "boom".into(),
            programming_language: "rust".into(),
        }));
        let mut e = RunEvent::new(EventType::Fail, run, Job::new("replicator", "clone a.b"));
        e.event_time = DateTime::parse_from_rfc3339("2026-11-30T00:15:50.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        e.inputs.push(InputDataset {
            namespace: "file".into(),
            name: "/lake/a/b".into(),
            facets: DatasetFacets {
                schema: Some(Facet::new(Schema {
                    fields: vec![SchemaField {
                        name: "id".into(),
                        data_type: "long".into(),
                    }],
                })),
            },
            input_facets: InputFacets {
                data_quality_metrics: Some(Facet::new(DataQualityMetrics {
                    row_count: Some(3),
                    ..Default::default()
                })),
                data_quality_assertions: None,
            },
        });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["eventType"], "FAIL");
        assert_eq!(v["eventTime"], "2026-11-30T00:15:50.123Z");
        assert_eq!(v["run"]["runId"], Uuid::nil().to_string());
        assert_eq!(v["schemaURL"], RUN_EVENT_SCHEMA_URL);
        assert_eq!(v["producer"], PRODUCER);
        let err = &v["run"]["facets"]["errorMessage"];
        assert_eq!(err["programmingLanguage"], "rust");
        assert_eq!(err["_producer"], PRODUCER);
        assert_eq!(err["_schemaURL"], ErrorMessage::SCHEMA_URL);
        assert!(v["run"]["facets"].get("parent").is_none());
        let input = &v["inputs"][0];
        assert_eq!(input["facets"]["schema"]["fields"][0]["type"], "long");
        let m = &input["inputFacets"]["dataQualityMetrics"];
        assert_eq!(m["rowCount"], 3);
        assert_eq!(m["columnMetrics"], serde_json::json!({}));
        assert!(m.get("bytes").is_none());
        assert_eq!(v["outputs"], serde_json::json!([]));
        // And back.
        let back: RunEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back.inputs, e.inputs);
        assert_eq!(back.run, e.run);
    }

    #[test]
    fn the_producer_names_this_version() {
        assert!(PRODUCER.ends_with(env!("CARGO_PKG_VERSION")), "{PRODUCER}");
        assert!(ReplicatorRun::SCHEMA_URL.contains(env!("CARGO_PKG_VERSION")));
    }

    /// The custom facet's schema URL points at a file of this crate, which describes
    /// every field the facet has.
    #[test]
    fn the_replicator_facet_schema_is_in_the_repository() {
        let text = include_str!("../schema/ReplicatorRunFacet.json");
        let schema: serde_json::Value = serde_json::from_str(text).unwrap();
        let (file_url, pointer) = ReplicatorRun::SCHEMA_URL.split_once('#').unwrap();
        assert_eq!(schema["$id"], file_url);
        assert!(file_url.ends_with("crates/lineage/schema/ReplicatorRunFacet.json"));
        let def = schema
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer}"));
        let props = &def["allOf"][1]["properties"];
        let full = ReplicatorRun {
            attempt: 1,
            bytes_copied: Some(1),
            files_copied: Some(1),
            rows: Some(1),
        };
        let v = serde_json::to_value(full).unwrap();
        for k in v.as_object().unwrap().keys() {
            assert!(props.get(k).is_some(), "{k} is not in the schema");
        }
    }
}
