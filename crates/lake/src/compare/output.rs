//! What a comparison reports besides counts: keys and partitions rendered as
//! `name=value, …`, and the partitions whose row count or checksum differ.

use std::collections::HashMap;

use arrow::datatypes::Field;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use replicator_proto::PartitionDiff;

use super::columns::{ScanPlan, converter};
use super::{MAX_PARTITIONS, arrow_err};
use crate::LakeError;

impl ScanPlan {
    /// Render row-format bytes of `fields` as `name=value, …`.
    pub(super) fn render(
        &self,
        fields: &[Field],
        rows: &[Vec<u8>],
    ) -> Result<Vec<String>, LakeError> {
        let Some(conv) = converter(fields)? else {
            return Ok(rows.iter().map(|_| "(table)".to_owned()).collect());
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let parser = conv.parser();
        let arrays = conv
            .convert_rows(rows.iter().map(|r| parser.parse(r)))
            .map_err(arrow_err("cannot decode keys"))?;
        let options = FormatOptions::default().with_null("NULL");
        let formatters = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_err("cannot render keys"))?;
        Ok((0..rows.len())
            .map(|i| {
                fields
                    .iter()
                    .zip(&formatters)
                    .map(|(f, fmt)| format!("{}={}", f.name(), fmt.value(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect())
    }

    /// Partitions whose count or checksum differ, and (compared, differing) counts.
    #[allow(clippy::type_complexity)]
    pub(super) fn partition_diffs(
        &self,
        src: &HashMap<Vec<u8>, (u64, u64)>,
        tgt: &HashMap<Vec<u8>, (u64, u64)>,
    ) -> Result<((u64, u64), Vec<PartitionDiff>), LakeError> {
        let mut all: Vec<&Vec<u8>> = src.keys().chain(tgt.keys()).collect();
        all.sort();
        all.dedup();
        let differing: Vec<Vec<u8>> = all
            .iter()
            .filter(|p| src.get(**p) != tgt.get(**p))
            .map(|p| (*p).clone())
            .collect();
        let names = self.render(&self.parts, &differing)?;
        let mut diffs: Vec<PartitionDiff> = differing
            .iter()
            .zip(names)
            .map(|(p, name)| {
                let (s, t) = (src.get(p), tgt.get(p));
                PartitionDiff {
                    partition: if self.parts.is_empty() {
                        "(table)".into()
                    } else {
                        name
                    },
                    source_rows: s.map_or(0, |x| x.0),
                    target_rows: t.map_or(0, |x| x.0),
                    source_checksum: s.map(|x| format!("{:016x}", x.1)),
                    target_checksum: t.map(|x| format!("{:016x}", x.1)),
                }
            })
            .collect();
        diffs.sort_by(|a, b| a.partition.cmp(&b.partition));
        let counts = (all.len() as u64, diffs.len() as u64);
        diffs.truncate(MAX_PARTITIONS);
        Ok((counts, diffs))
    }
}
