//! Which Delta table features a deep clone can carry, feature by feature.
//!
//! A clone writes no data, no statistics and no checkpoint: it copies data and
//! deletion-vector files byte for byte and replays the source's `protocol`, `metaData`,
//! `domainMetadata` and `add` actions (stats, partition values, row-tracking fields and
//! deletion vectors included) in one commit. So a **writer** feature is honoured when its
//! requirements concern data, statistics or metadata that the source's writer already
//! produced and the clone carries verbatim, or concern work a clone never does (cleaning up
//! the log, writing checkpoints). A **reader** feature only has to be readable in the
//! source's log, which the kernel checks when it loads the snapshot. A feature is refused
//! when the target would claim something a plain copy cannot make true (a catalog that
//! commits for it, a redirect to elsewhere) or when it is unknown. `docs/table-features.md`
//! has the same table with the protocol's reasons.

use serde_json::Value;

use crate::LakeError;

/// What a clone does with a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The clone honours it by copying files and actions verbatim.
    Clone,
    /// The clone cannot honour it; the reason, in words.
    Refuse(&'static str),
}

/// Every table feature name the protocol (and its accepted RFCs and preview names) defines,
/// with the clone's verdict. Names match `readerFeatures`/`writerFeatures` exactly.
pub(crate) const FEATURES: &[(&str, Verdict)] = &[
    // Writer-only features.
    ("appendOnly", Verdict::Clone),
    ("invariants", Verdict::Clone),
    ("checkConstraints", Verdict::Clone),
    ("generatedColumns", Verdict::Clone),
    ("allowColumnDefaults", Verdict::Clone),
    ("changeDataFeed", Verdict::Clone),
    ("identityColumns", Verdict::Clone),
    ("rowTracking", Verdict::Clone),
    ("domainMetadata", Verdict::Clone),
    ("icebergCompatV1", Verdict::Clone),
    ("icebergCompatV2", Verdict::Clone),
    ("icebergCompatV3", Verdict::Clone),
    ("icebergWriterCompatV1", Verdict::Clone),
    ("clustering", Verdict::Clone),
    // The preview name of `clustering` written by early Databricks runtimes.
    ("liquid", Verdict::Clone),
    ("inCommitTimestamp", Verdict::Clone),
    ("materializePartitionColumns", Verdict::Clone),
    ("collations", Verdict::Clone),
    ("collations-preview", Verdict::Clone),
    ("checkpointProtection", Verdict::Clone),
    // Reader-and-writer features.
    ("columnMapping", Verdict::Clone),
    ("deletionVectors", Verdict::Clone),
    ("timestampNtz", Verdict::Clone),
    // A non-canonical name some writers put in the feature lists for `timestampNtz`.
    ("timestampWithoutTimezone", Verdict::Clone),
    ("v2Checkpoint", Verdict::Clone),
    ("vacuumProtocolCheck", Verdict::Clone),
    ("typeWidening", Verdict::Clone),
    ("typeWidening-preview", Verdict::Clone),
    ("variantType", Verdict::Clone),
    ("variantType-preview", Verdict::Clone),
    ("variantShredding", Verdict::Clone),
    ("variantShredding-preview", Verdict::Clone),
    ("geospatial", Verdict::Clone),
    (
        "catalogManaged",
        Verdict::Refuse(
            "its commits are ratified by a catalog, so the published log may lack the latest ones and the target would name a catalog that does not manage it",
        ),
    ),
    (
        "catalogOwned-preview",
        Verdict::Refuse(
            "its commits are ratified by a catalog, so the published log may lack the latest ones and the target would name a catalog that does not manage it",
        ),
    ),
    (
        "redirectReaderWriter-preview",
        Verdict::Refuse(
            "the table redirects readers and writers to another location, which a copy would not follow",
        ),
    ),
    (
        "redirectWriterOnly-preview",
        Verdict::Refuse(
            "the table redirects writers to another location, which a copy would not follow",
        ),
    ),
    (
        "adaptiveMetadata-preview",
        Verdict::Refuse(
            "its file list lives in an Iceberg metadata tree outside the Delta log, which the clone does not read",
        ),
    ),
];

/// The clone's verdict on `name`; `None` for a name the protocol does not define.
pub(crate) fn verdict(name: &str) -> Option<Verdict> {
    FEATURES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Refuse, by name, a protocol that asks for something a verbatim clone cannot honour.
pub(crate) fn check_protocol(protocol: &Value) -> Result<(), LakeError> {
    let reader = protocol["minReaderVersion"].as_u64().unwrap_or(1);
    let writer = protocol["minWriterVersion"].as_u64().unwrap_or(2);
    if reader > 3 {
        return Err(LakeError::UnsupportedFeature {
            feature: format!("minReaderVersion {reader}"),
            reason: "reader versions above 3 are not defined by the Delta protocol this engine implements".into(),
        });
    }
    if writer > 7 {
        return Err(LakeError::UnsupportedFeature {
            feature: format!("minWriterVersion {writer}"),
            reason: "writer versions above 7 are not defined by the Delta protocol this engine implements".into(),
        });
    }
    for key in ["readerFeatures", "writerFeatures"] {
        for f in protocol[key].as_array().into_iter().flatten() {
            let name = f.as_str().unwrap_or_default();
            match verdict(name) {
                Some(Verdict::Clone) => {}
                Some(Verdict::Refuse(why)) => {
                    return Err(LakeError::UnsupportedFeature {
                        feature: name.to_owned(),
                        reason: why.into(),
                    });
                }
                None => {
                    return Err(LakeError::UnsupportedFeature {
                        feature: name.to_owned(),
                        reason: "the Delta protocol known to this engine does not define it, so a copy cannot promise to honour it".into(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_features_are_refused_by_name() {
        let p = json!({"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors", "fancyNewThing"]});
        let err = check_protocol(&p).unwrap_err().to_string();
        assert!(err.contains("fancyNewThing"), "{err}");
        assert!(check_protocol(&json!({"minReaderVersion": 1, "minWriterVersion": 2})).is_ok());
        assert!(check_protocol(&json!({"minReaderVersion": 4, "minWriterVersion": 2})).is_err());
    }

    #[test]
    fn collations_are_cloned_and_catalog_managed_tables_refused() {
        for writer in [
            json!(["collations", "domainMetadata"]),
            json!(["collations-preview", "domainMetadata"]),
            json!(["checkpointProtection", "materializePartitionColumns"]),
        ] {
            let p = json!({"minReaderVersion": 1, "minWriterVersion": 7, "writerFeatures": writer});
            assert!(check_protocol(&p).is_ok(), "{p}");
        }
        let p = json!({"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["catalogManaged"], "writerFeatures": ["catalogManaged", "inCommitTimestamp"]});
        let err = check_protocol(&p).unwrap_err().to_string();
        assert!(
            err.contains("`catalogManaged`") && err.contains("catalog"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn the_docs_list_every_feature_with_its_verdict() {
        let doc = include_str!("../../../../docs/table-features.md");
        for (name, v) in FEATURES {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("docs/table-features.md has no row for `{name}`"));
            let cloned = row.contains("| cloned |");
            assert_eq!(
                cloned,
                *v == Verdict::Clone,
                "verdict of `{name}` differs: {row}"
            );
        }
    }
}
