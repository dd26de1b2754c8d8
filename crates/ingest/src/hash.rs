//! Rows reduced to a key and a row hash.
//!
//! The key is Arrow's row format of the primary-key columns (bytes that compare and hash
//! like the typed values); the row hash folds a 64-bit hash of every other column, in
//! order. The hashing is the lake's key reconciliation's (`replicator_lake::compare`,
//! `columns.rs`): fixed-width values by their bytes through splitmix64, strings and binaries
//! by xxh3, booleans by value, NULL as a constant. That function is private to the lake
//! crate, so it is repeated here unchanged; the two must stay equal for a comparison of an
//! ingested table by the reconciler to agree with the ingestion's own.

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::row::{RowConverter, Rows, SortField};
use twox_hash::XxHash3_64;

use crate::error::IngestError;

/// The hash of a NULL value.
const NULL_HASH: u64 = 0x6e75_6c6c_6e75_6c6c;

fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn combine(row: u64, value: u64) -> u64 {
    (row.rotate_left(23) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Fold every row of `columns` into `hashes` (see the module doc).
fn hash_columns(columns: &[ArrayRef], hashes: &mut [u64]) -> Result<(), arrow::error::ArrowError> {
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
                let conv = RowConverter::new(vec![SortField::new(dt.clone())])?;
                let rows = conv.convert_columns(std::slice::from_ref(col))?;
                fold(&|i| XxHash3_64::oneshot(rows.row(i).data()));
            }
        }
    }
    Ok(())
}

/// Keys and row hashes of batches of one shape (the reference schema's types: a batch's
/// columns are found by name and cast to them; a column a batch lacks is NULL).
pub(crate) struct KeyHasher {
    name: String,
    keys: Vec<Field>,
    values: Vec<Field>,
    conv: RowConverter,
}

impl KeyHasher {
    /// `schema`: the columns that take part (keys, then every other column as a value).
    pub(crate) fn new(
        schema: &Schema,
        primary_key: &[String],
        name: &str,
    ) -> Result<Self, IngestError> {
        let data = |detail: String| IngestError::Data {
            table: name.to_owned(),
            detail,
        };
        let mut keys = Vec::new();
        for k in primary_key {
            let f = schema
                .field_with_name(k)
                .map_err(|_| data(format!("primary key column `{k}` is not in the source")))?;
            if !RowConverter::supports_fields(&[SortField::new(f.data_type().clone())]) {
                return Err(data(format!(
                    "primary key column `{k}` has type {}, which cannot be a key",
                    f.data_type()
                )));
            }
            keys.push(f.clone());
        }
        let values = schema
            .fields()
            .iter()
            .filter(|f| !primary_key.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        let conv = RowConverter::new(
            keys.iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| data(format!("cannot encode keys: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            keys,
            values,
            conv,
        })
    }

    fn columns(&self, fields: &[Field], batch: &RecordBatch) -> Result<Vec<ArrayRef>, IngestError> {
        fields
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                None => Ok(new_null_array(f.data_type(), batch.num_rows())),
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => {
                    let options = arrow::compute::CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    arrow::compute::cast_with_options(c, f.data_type(), &options).map_err(|e| {
                        IngestError::Data {
                            table: self.name.clone(),
                            detail: format!(
                                "cannot read column `{}` as {}: {e}",
                                f.name(),
                                f.data_type()
                            ),
                        }
                    })
                }
            })
            .collect()
    }

    /// The keys of `batch`; a NULL key is an error naming the column.
    pub(crate) fn keys(&self, batch: &RecordBatch) -> Result<Rows, IngestError> {
        let cols = self.columns(&self.keys, batch)?;
        for (f, c) in self.keys.iter().zip(&cols) {
            if c.null_count() > 0 {
                return Err(IngestError::Data {
                    table: self.name.clone(),
                    detail: format!("primary key column `{}` holds NULL", f.name()),
                });
            }
        }
        self.conv
            .convert_columns(&cols)
            .map_err(|e| IngestError::Data {
                table: self.name.clone(),
                detail: format!("cannot encode keys: {e}"),
            })
    }

    /// A key as `col=value, …` for messages.
    pub(crate) fn render(&self, key: &[u8]) -> String {
        let parser = self.conv.parser();
        let row = parser.parse(key);
        match self.conv.convert_rows([row]) {
            Ok(cols) => self
                .keys
                .iter()
                .zip(&cols)
                .map(|(f, c)| {
                    let v = arrow::util::display::array_value_to_string(c, 0)
                        .unwrap_or_else(|_| "?".into());
                    format!("{}={v}", f.name())
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "(a key that cannot be shown)".into(),
        }
    }

    /// Keys and row hashes of `batch`.
    pub(crate) fn hash(&self, batch: &RecordBatch) -> Result<(Rows, Vec<u64>), IngestError> {
        let keys = self.keys(batch)?;
        let values = self.columns(&self.values, batch)?;
        let mut hashes = vec![0u64; batch.num_rows()];
        hash_columns(&values, &mut hashes).map_err(|e| IngestError::Data {
            table: self.name.clone(),
            detail: format!("cannot hash rows: {e}"),
        })?;
        Ok((keys, hashes))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn a_missing_column_hashes_as_null_and_a_changed_value_differs() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]);
        let h = KeyHasher::new(&schema, &["id".into()], "t").unwrap();
        let a = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap();
        let only_keys = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)])),
            vec![Arc::new(arrow::array::Int32Array::from(vec![1, 2]))],
        )
        .unwrap();
        let (ka, ha) = h.hash(&a).unwrap();
        let (kb, hb) = h.hash(&only_keys).unwrap();
        assert_eq!(ka.row(0), kb.row(0));
        assert_ne!(ha[0], hb[0]);
        assert_eq!(ha[1], hb[1]);
    }
}
