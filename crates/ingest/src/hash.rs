//! Rows reduced to a key and a row hash.
//!
//! The key is Arrow's row format of the primary-key columns (bytes that compare and hash
//! like the typed values); the row hash folds a 64-bit hash of every other column, in
//! order. The hashing is the lake's key reconciliation's own function
//! ([`replicator_lake::compare::hash_columns`]), so a comparison of an ingested table by the
//! reconciler agrees with the ingestion's.

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{Field, Schema};
use arrow::row::{RowConverter, Rows, SortField};
use replicator_lake::compare::hash_columns;

use crate::error::IngestError;

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

    /// The key columns' types, in key order.
    pub(crate) fn key_types(&self) -> impl Iterator<Item = &arrow::datatypes::DataType> {
        self.keys.iter().map(|f| f.data_type())
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
    use arrow::datatypes::DataType;

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
