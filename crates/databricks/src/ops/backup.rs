//! Backup (source workspace): each streaming table's backing table is deep-cloned into the
//! backup catalog, from where a share carries it to the target.

use chrono::{DateTime, Utc};

use crate::client::WorkspaceClient;
use crate::{DatabricksError, Ident, TableName};

use super::{SourceTable, Step, WorkspacePair, clone_metrics};

/// Catalog of streaming tables' backing tables.
pub const INTERNAL_CATALOG: &str = "__databricks_internal";

/// The schema that holds a pipeline's backing tables.
pub fn materialization_schema(pipeline_id: &str) -> String {
    // Databricks names it after the pipeline ID with dashes turned into underscores.
    format!(
        "__dlt_materialization_schema_{}",
        pipeline_id.replace('-', "_")
    )
}

/// Where Databricks may keep the backing table of streaming table `st`, most usual first
/// (the places the Databricks data-replicator probes).
pub fn backing_table_candidates(
    pipeline_id: &str,
    st: &TableName,
) -> Result<Vec<TableName>, DatabricksError> {
    let pid = pipeline_id.replace('-', "_");
    let internal = Ident::new(INTERNAL_CATALOG)?;
    let schema = Ident::new(&materialization_schema(pipeline_id))?;
    let t = st.table.as_str();
    let mat = Ident::new(&format!("__materialization_mat_{pid}_{t}_1"))?;
    Ok(vec![
        TableName {
            catalog: internal.clone(),
            schema: schema.clone(),
            table: st.table.clone(),
        },
        TableName {
            catalog: internal.clone(),
            schema: schema.clone(),
            table: mat.clone(),
        },
        TableName {
            catalog: st.catalog.clone(),
            schema: st.schema.clone(),
            table: mat,
        },
        TableName {
            catalog: internal,
            schema,
            table: Ident::new(&format!("__materialization_mat_{t}_1"))?,
        },
    ])
}

/// The backing table of streaming table `st` as Unity Catalog of `client` knows it.
pub(super) async fn find_backing_table(
    client: &WorkspaceClient,
    pipeline_id: &str,
    st: &TableName,
) -> Result<TableName, DatabricksError> {
    let candidates = backing_table_candidates(pipeline_id, st)?;
    for c in &candidates {
        if client.get_table(&c.full_name()).await?.is_some() {
            return Ok(c.clone());
        }
    }
    Err(DatabricksError::Refused(format!(
        "no backing table of streaming table {st} (pipeline {pipeline_id}) found at {}",
        candidates
            .iter()
            .map(TableName::full_name)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

impl WorkspacePair {
    /// Backup of one streaming table: deep clone its backing table into the backup catalog;
    /// with `as_of`, the backing table as of that instant (`TIMESTAMP AS OF`).
    pub async fn backup_table(
        &self,
        t: &SourceTable,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Step, (Vec<String>, DatabricksError)> {
        let mut ids = Vec::new();
        let r = self.backup_inner(t, as_of, &mut ids).await;
        r.map_err(|e| (ids, e))
    }

    async fn backup_inner(
        &self,
        t: &SourceTable,
        as_of: Option<DateTime<Utc>>,
        ids: &mut Vec<String>,
    ) -> Result<Step, DatabricksError> {
        let name = t.name()?;
        if !t.is_streaming() {
            return Ok(Step::default());
        }
        // Listings may omit properties: read the table itself for its pipeline.
        let info = match t.info.pipeline() {
            Some(_) => t.info.clone(),
            None => self
                .source
                .get_table(&name.full_name())
                .await?
                .unwrap_or_else(|| t.info.clone()),
        };
        let pipeline = info.pipeline().ok_or_else(|| {
            DatabricksError::Refused(format!(
                "streaming table {name} has no `pipelines.pipelineId` property"
            ))
        })?;
        let backing = find_backing_table(&self.source, pipeline, &name).await?;
        let backup = Ident::new(&self.mapping(t).backup())?;
        self.ensure_schema(&self.source, &backup, &name.schema, ids)
            .await?;
        let dest = name.in_catalog(&backup);
        let r = self
            .deep_clone(&self.source, &dest, &backing, as_of, ids)
            .await?;
        Ok(Step {
            statement_ids: ids.clone(),
            metrics: clone_metrics(&r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_table_names() {
        let st = TableName::new("c", "s", "ev`ents").unwrap();
        let c = backing_table_candidates("1a2b-3c", &st).unwrap();
        let quoted: Vec<String> = c.iter().map(TableName::quoted).collect();
        assert_eq!(
            quoted,
            [
                "`__databricks_internal`.`__dlt_materialization_schema_1a2b_3c`.`ev``ents`",
                "`__databricks_internal`.`__dlt_materialization_schema_1a2b_3c`.`__materialization_mat_1a2b_3c_ev``ents_1`",
                "`c`.`s`.`__materialization_mat_1a2b_3c_ev``ents_1`",
                "`__databricks_internal`.`__dlt_materialization_schema_1a2b_3c`.`__materialization_mat_ev``ents_1`",
            ]
        );
    }

    #[test]
    fn materialization_schema_turns_dashes_into_underscores() {
        assert_eq!(
            materialization_schema("p-1111-aaaa"),
            "__dlt_materialization_schema_p_1111_aaaa"
        );
    }

    #[test]
    fn a_backing_table_name_unity_catalog_refuses_is_an_error() {
        // A pipeline ID with a period would make every candidate an invalid identifier.
        let st = TableName::new("c", "s", "t").unwrap();
        let err = backing_table_candidates("p.1", &st).unwrap_err();
        assert!(err.to_string().starts_with("invalid identifier"), "{err}");
    }
}
