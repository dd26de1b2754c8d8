//! Which columns a comparison reads and how: the key, value and partition columns both
//! sides have (read as the source's types), their row-format encoders, and the row hash of
//! the value columns.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field};
use arrow::row::{RowConverter, Rows, SortField};
use twox_hash::XxHash3_64;

use super::{CompareOptions, Side, arrow_err};
use crate::LakeError;

/// The hash of a NULL value.
const NULL_HASH: u64 = 0x6e75_6c6c_6e75_6c6c;

/// splitmix64's finalizer: a fast, well-mixed hash of one 64-bit word.
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fold one column's value hash into a row's hash (order matters: a value moved to another
/// column changes the row's hash).
fn combine(row: u64, value: u64) -> u64 {
    (row.rotate_left(23) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Hash every row of `columns` into `hashes`, column by column: fixed-width values by their
/// bytes, strings and binaries by xxh3, booleans by value, anything else (nested, dictionary)
/// through Arrow's row format. Works on the columns' memory directly: no per-row encoding.
pub fn hash_columns(columns: &[ArrayRef], hashes: &mut [u64]) -> Result<(), LakeError> {
    use arrow::array::{Array, AsArray};
    for col in columns {
        let nulls = col.logical_nulls();
        let is_null = |i: usize| nulls.as_ref().is_some_and(|b| b.is_null(i));
        let mut fold = |f: &dyn Fn(usize) -> u64| {
            for (i, h) in hashes.iter_mut().enumerate() {
                *h = combine(*h, if is_null(i) { NULL_HASH } else { f(i) });
            }
        };
        let dt = col.data_type();
        if let Some(width) = dt
            .primitive_width()
            .filter(|w| matches!(w, 1 | 2 | 4 | 8 | 16 | 32))
        {
            let data = col.to_data();
            let start = data.offset() * width;
            let bytes = &data.buffers()[0].as_slice()[start..start + col.len() * width];
            fold(&|i| {
                bytes[i * width..(i + 1) * width]
                    .chunks(8)
                    .fold(0u64, |acc, c| {
                        let mut word = [0u8; 8];
                        word[..c.len()].copy_from_slice(c);
                        mix64(acc ^ u64::from_le_bytes(word))
                    })
            });
            continue;
        }
        match dt {
            DataType::Boolean => {
                let a = col.as_boolean();
                fold(&|i| mix64(a.value(i) as u64 + 1));
            }
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                fold(&|i| XxHash3_64::oneshot(a.value(i).as_bytes()));
            }
            DataType::LargeUtf8 => {
                let a = col.as_string::<i64>();
                fold(&|i| XxHash3_64::oneshot(a.value(i).as_bytes()));
            }
            DataType::Utf8View => {
                let a = col.as_string_view();
                fold(&|i| XxHash3_64::oneshot(a.value(i).as_bytes()));
            }
            DataType::Binary => {
                let a = col.as_binary::<i32>();
                fold(&|i| XxHash3_64::oneshot(a.value(i)));
            }
            DataType::LargeBinary => {
                let a = col.as_binary::<i64>();
                fold(&|i| XxHash3_64::oneshot(a.value(i)));
            }
            DataType::BinaryView => {
                let a = col.as_binary_view();
                fold(&|i| XxHash3_64::oneshot(a.value(i)));
            }
            _ => {
                let conv = converter(&[Field::new("v", dt.clone(), true)])?.expect("one field");
                let rows = conv
                    .convert_columns(std::slice::from_ref(col))
                    .map_err(arrow_err("cannot encode rows"))?;
                fold(&|i| XxHash3_64::oneshot(rows.row(i).data()));
            }
        }
    }
    Ok(())
}

/// Which columns take part, with the (source's) types both sides are read as.
pub(super) struct ScanPlan {
    pub(super) keys: Vec<Field>,
    pub(super) values: Vec<Field>,
    pub(super) parts: Vec<Field>,
    pub(super) ignored: Vec<String>,
    pub(super) checksums: bool,
}

/// Row converters for one scan (one per thread: conversion needs `&mut`-free but
/// converters are cheap, and identical types give identical bytes on both sides).
pub(super) struct Encoders {
    pub(super) keys: Option<RowConverter>,
    pub(super) parts: Option<RowConverter>,
}

impl Encoders {
    pub(super) fn rows(
        &self,
        conv: &Option<RowConverter>,
        fields: &[Field],
        batch: &RecordBatch,
    ) -> Result<Option<Rows>, LakeError> {
        let Some(conv) = conv else { return Ok(None) };
        let columns = self.columns(fields, batch)?;
        conv.convert_columns(&columns)
            .map(Some)
            .map_err(arrow_err("cannot encode rows"))
    }

    /// `fields` of `batch`, each read as the plan's type.
    pub(super) fn columns(
        &self,
        fields: &[Field],
        batch: &RecordBatch,
    ) -> Result<Vec<ArrayRef>, LakeError> {
        fields
            .iter()
            .map(|f| {
                let c = batch.column_by_name(f.name()).ok_or_else(|| {
                    LakeError::Invalid(format!(
                        "column `{}` is missing from a scanned batch",
                        f.name()
                    ))
                })?;
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    // Unsafe casts fail instead of turning what does not fit into NULL.
                    let options = arrow::compute::CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    arrow::compute::cast_with_options(c, f.data_type(), &options).map_err(
                        arrow_err(&format!(
                            "cannot read column `{}` as {}",
                            f.name(),
                            f.data_type()
                        )),
                    )
                }
            })
            .collect::<Result<Vec<ArrayRef>, LakeError>>()
    }
}

pub(super) fn converter(fields: &[Field]) -> Result<Option<RowConverter>, LakeError> {
    if fields.is_empty() {
        return Ok(None);
    }
    RowConverter::new(
        fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map(Some)
    .map_err(arrow_err("cannot build a row encoder"))
}

fn supported(dt: &DataType) -> bool {
    RowConverter::supports_fields(&[SortField::new(dt.clone())])
}

impl ScanPlan {
    pub(super) fn new(src: &Side, tgt: &Side, options: &CompareOptions) -> Result<Self, LakeError> {
        let mut keys = Vec::new();
        for k in &options.primary_key {
            let f = src.schema.field_with_name(k).map_err(|_| {
                LakeError::Invalid(format!(
                    "primary key column `{k}` is not in the source table"
                ))
            })?;
            if tgt.schema.field_with_name(k).is_err() {
                return Err(LakeError::Invalid(format!(
                    "primary key column `{k}` is not in the target table"
                )));
            }
            if !supported(f.data_type()) {
                return Err(LakeError::Invalid(format!(
                    "primary key column `{k}` has type {}, which cannot be compared",
                    f.data_type()
                )));
            }
            keys.push(f.clone());
        }
        let (mut values, mut ignored) = (Vec::new(), Vec::new());
        for f in src.schema.fields() {
            if options.primary_key.contains(f.name()) {
                continue;
            }
            if tgt.schema.field_with_name(f.name()).is_err() {
                ignored.push(format!("{} (not in the target)", f.name()));
            } else if !supported(f.data_type()) {
                ignored.push(format!(
                    "{} (type {} has no row format)",
                    f.name(),
                    f.data_type()
                ));
            } else {
                values.push(f.as_ref().clone());
            }
        }
        for f in tgt.schema.fields() {
            if src.schema.field_with_name(f.name()).is_err() {
                ignored.push(format!("{} (not in the source)", f.name()));
            }
        }
        let parts = src
            .partition_columns
            .iter()
            .filter(|p| tgt.partition_columns.contains(p))
            .filter_map(|p| src.schema.field_with_name(p).ok().cloned())
            .collect();
        Ok(Self {
            keys,
            values,
            parts,
            ignored,
            checksums: options.partition_checksums,
        })
    }

    pub(super) fn encoders(&self) -> Result<Encoders, LakeError> {
        Ok(Encoders {
            keys: converter(&self.keys)?,
            parts: converter(&self.parts)?,
        })
    }
}
