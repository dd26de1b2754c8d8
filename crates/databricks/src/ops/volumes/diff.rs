//! Catalog reconciliation of a volume: its files against the source's, by path and size.

use serde::Serialize;

use super::OURS;
use crate::DatabricksError;
use crate::client::{VolumeName, VolumeTree, WorkspaceClient};

/// Files of two volumes compared by path and size (the manifest excluded).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VolumeDiff {
    pub source: String,
    pub target: String,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    /// Present on both sides with another size.
    pub different: Vec<String>,
    pub matched: u64,
    /// Listed paths refused on either side.
    pub refused: Vec<String>,
}

impl VolumeDiff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty()
    }
}

/// Missing, extra and different files of the target volume against the source's.
pub async fn diff_volume(
    source: &WorkspaceClient,
    target: &WorkspaceClient,
    source_full_name: &str,
    target_full_name: &str,
) -> Result<VolumeDiff, DatabricksError> {
    let (src, tgt) = (
        VolumeName::parse(source_full_name)?,
        VolumeName::parse(target_full_name)?,
    );
    let s = source.list_tree(&src, &OURS).await?;
    let t = if target.get_volume(&tgt.full_name()).await?.is_some() {
        target.list_tree(&tgt, &OURS).await?
    } else {
        VolumeTree::default()
    };
    let mut d = VolumeDiff {
        source: src.full_name(),
        target: tgt.full_name(),
        ..Default::default()
    };
    for (rel, fs) in &s.files {
        match t.files.get(rel) {
            None => d.missing.push(rel.clone()),
            Some(ft) if ft.size != fs.size => d.different.push(rel.clone()),
            Some(_) => d.matched += 1,
        }
    }
    d.extra = t
        .files
        .keys()
        .filter(|k| !s.files.contains_key(*k))
        .cloned()
        .collect();
    d.refused = s.refused.into_iter().chain(t.refused).collect();
    Ok(d)
}
