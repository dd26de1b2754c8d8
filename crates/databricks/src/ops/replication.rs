//! Replication (target workspace): each table deep-cloned from the shared catalog, a
//! streaming table into the backing table of the target's own streaming table.

use crate::client::{TableInfo, TableType};
use crate::{DatabricksError, Ident};

use super::backup::find_backing_table;
use super::{SourceTable, Step, WorkspacePair, clone_metrics};

impl WorkspacePair {
    /// Replication of one table into the target metastore.
    pub async fn replicate_table(
        &self,
        t: &SourceTable,
    ) -> Result<Step, (Vec<String>, DatabricksError)> {
        let mut ids = Vec::new();
        let r = self.replicate_inner(t, &mut ids).await;
        r.map_err(|e| (ids, e))
    }

    async fn replicate_inner(
        &self,
        t: &SourceTable,
        ids: &mut Vec<String>,
    ) -> Result<Step, DatabricksError> {
        let name = t.name()?;
        let m = self.mapping(t);
        let target_catalog = Ident::new(&m.target())?;
        let target = name.in_catalog(&target_catalog);
        let existing = self.target.get_table(&target.full_name()).await?;
        let source_info = self.with_columns(t).await?;
        let (from, into) = if t.is_streaming() {
            let st = existing.as_ref().ok_or_else(|| {
                DatabricksError::Refused(format!(
                    "streaming table {target} does not exist in the target: create it with its pipeline first"
                ))
            })?;
            if st.kind() != TableType::StreamingTable {
                return Err(DatabricksError::Refused(format!(
                    "{target} is a {} in the target, not a STREAMING_TABLE",
                    st.table_type
                )));
            }
            let pipeline = st.pipeline().ok_or_else(|| {
                DatabricksError::Refused(format!(
                    "target streaming table {target} has no `pipelines.pipelineId` property"
                ))
            })?;
            self.enforce_schema(&source_info, st, true)?;
            (
                name.in_catalog(&Ident::new(&m.shared_backup())?),
                find_backing_table(&self.target, pipeline, &target).await?,
            )
        } else {
            if let Some(existing) = &existing {
                if !matches!(existing.kind(), TableType::Managed | TableType::External) {
                    return Err(DatabricksError::Refused(format!(
                        "{target} is a {} in the target; refusing to replace it with a table",
                        existing.table_type
                    )));
                }
                self.enforce_schema(&source_info, existing, self.config.enforce_schema)?;
            } else {
                self.ensure_schema(&self.target, &target_catalog, &name.schema, ids)
                    .await?;
            }
            (name.in_catalog(&Ident::new(&m.shared())?), target)
        };
        let sql = format!(
            "CREATE OR REPLACE TABLE {} DEEP CLONE {}",
            into.quoted(),
            from.quoted()
        );
        let r = self.run_sql(&self.target, &sql, ids).await?;
        Ok(Step {
            statement_ids: ids.clone(),
            metrics: clone_metrics(&r),
        })
    }

    /// Refuse to replace `target` when its columns differ from the source's.
    fn enforce_schema(
        &self,
        source: &TableInfo,
        target: &TableInfo,
        enforce: bool,
    ) -> Result<(), DatabricksError> {
        let diff = column_diff(source, target);
        if enforce && !diff.is_empty() && !source.columns.is_empty() {
            return Err(DatabricksError::Refused(format!(
                "schema enforcement: {}.{}.{} differs from its source: {}",
                target.catalog_name,
                target.schema_name,
                target.name,
                diff.join("; ")
            )));
        }
        if !diff.is_empty() {
            tracing::warn!(table = %format!("{}.{}.{}", source.catalog_name, source.schema_name, source.name), differences = %diff.join("; "), "target schema will be replaced by the source's");
        }
        Ok(())
    }
}

/// Differences between two tables' columns, one line each.
pub fn column_diff(source: &TableInfo, target: &TableInfo) -> Vec<String> {
    let mut out = Vec::new();
    for c in &source.columns {
        match target.columns.iter().find(|t| t.name == c.name) {
            None => out.push(format!("column `{}` is missing in the target", c.name)),
            Some(t) => {
                if !t.type_text.eq_ignore_ascii_case(&c.type_text) {
                    out.push(format!(
                        "column `{}` is {} in the target, {} in the source",
                        c.name, t.type_text, c.type_text
                    ));
                }
                if t.nullable != c.nullable {
                    out.push(format!(
                        "column `{}` is nullable={} in the target, nullable={} in the source",
                        c.name, t.nullable, c.nullable
                    ));
                }
            }
        }
    }
    for t in &target.columns {
        if !source.columns.iter().any(|c| c.name == t.name) {
            out.push(format!("column `{}` exists only in the target", t.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ColumnInfo;

    fn table(columns: &[(&str, &str, bool)]) -> TableInfo {
        TableInfo {
            name: "t".into(),
            catalog_name: "c".into(),
            schema_name: "s".into(),
            table_type: "MANAGED".into(),
            properties: Default::default(),
            columns: columns
                .iter()
                .map(|(name, ty, nullable)| ColumnInfo {
                    name: name.to_string(),
                    type_text: ty.to_string(),
                    nullable: *nullable,
                })
                .collect(),
            pipeline_id: None,
            storage_location: None,
        }
    }

    #[test]
    fn equal_columns_differ_in_nothing_type_case_aside() {
        let s = table(&[("id", "bigint", false), ("name", "string", true)]);
        let t = table(&[("name", "STRING", true), ("id", "BIGINT", false)]);
        assert!(column_diff(&s, &t).is_empty());
    }

    #[test]
    fn every_difference_is_one_line() {
        let s = table(&[
            ("id", "bigint", false),
            ("name", "string", true),
            ("gone", "int", true),
        ]);
        let t = table(&[
            ("id", "int", false),
            ("name", "string", false),
            ("note", "string", true),
        ]);
        assert_eq!(
            column_diff(&s, &t),
            [
                "column `id` is int in the target, bigint in the source",
                "column `name` is nullable=false in the target, nullable=true in the source",
                "column `gone` is missing in the target",
                "column `note` exists only in the target",
            ]
        );
    }
}
