//! Replication (target workspace): each table deep-cloned from the shared catalog, a
//! streaming table into the backing table of the target's own streaming table.
//!
//! A clone as of an instant (a sync group's consistent cut) puts the temporal specification
//! on the source name: `CREATE OR REPLACE TABLE t DEEP CLONE s TIMESTAMP AS OF
//! '2026-11-20T12:00:00.000000Z'` — the syntax is `… [SHALLOW | DEEP] CLONE source_table_name
//! …` where "source_table_name … may contain a temporal specification"
//! (<https://docs.databricks.com/sql/language-manual/delta-clone.html>), and a timestamp
//! expression may be a string that can be cast to a timestamp, such as
//! `'2018-10-18T22:15:12.013Z'` (<https://docs.databricks.com/delta/history.html>). Delta
//! refuses an instant after the table's latest commit (`DELTA_TIMESTAMP_GREATER_THAN_COMMIT`,
//! SQLSTATE 42816): the table has not changed since that commit, so its state as of the
//! instant is its latest version, and the clone is run again without the specification.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::client::{StatementResult, TableInfo, TableType, WorkspaceClient};
use crate::{DatabricksError, Ident, TableName};

use super::backup::find_backing_table;
use super::{SourceTable, Step, WorkspacePair, clone_metrics};

/// The SQL literal of an instant: `'2026-11-20T12:00:00.000000Z'` (UTC, microseconds, the
/// precision of a Databricks `TIMESTAMP`).
pub fn timestamp_literal(ts: DateTime<Utc>) -> String {
    format!("'{}'", ts.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// `CREATE OR REPLACE TABLE into DEEP CLONE from [TIMESTAMP AS OF '…']`.
pub fn deep_clone_sql(into: &TableName, from: &TableName, as_of: Option<DateTime<Utc>>) -> String {
    let mut sql = format!(
        "CREATE OR REPLACE TABLE {} DEEP CLONE {}",
        into.quoted(),
        from.quoted()
    );
    if let Some(ts) = as_of {
        sql.push_str(" TIMESTAMP AS OF ");
        sql.push_str(&timestamp_literal(ts));
    }
    sql
}

/// ` LOCATION '…'` of a clone into an external location (Databricks' `CREATE TABLE CLONE`
/// grammar: `… CLONE source [TBLPROPERTIES …] [LOCATION path]`), the path a string literal.
fn location_clause(location: &str) -> Result<String, DatabricksError> {
    let literal = super::catalog::sql::literal(location)
        .map_err(|e| DatabricksError::Refused(e.to_string()))?;
    Ok(format!(" LOCATION {literal}"))
}

/// Delta's refusal of a `TIMESTAMP AS OF` later than the table's latest commit.
fn after_latest_commit(e: &DatabricksError) -> bool {
    matches!(e, DatabricksError::Statement { code, message, .. }
        if code.contains("DELTA_TIMESTAMP_GREATER_THAN_COMMIT")
            || message.contains("DELTA_TIMESTAMP_GREATER_THAN_COMMIT"))
}

impl WorkspacePair {
    /// Replication of one table into the target metastore; with `as_of`, the source as of
    /// that instant (`TIMESTAMP AS OF`). A streaming table is cloned from its backup as it
    /// is: the instant applies to the backup ([`WorkspacePair::backup_table`]), whose own
    /// commits are later than the source's.
    pub async fn replicate_table(
        &self,
        t: &SourceTable,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Step, (Vec<String>, DatabricksError)> {
        let mut ids = Vec::new();
        let r = self.replicate_inner(t, as_of, &mut ids).await;
        r.map_err(|e| (ids, e))
    }

    /// `DEEP CLONE` of `from` into `into` on `client`, as of `as_of` when given (see the
    /// module documentation for an instant after the latest commit).
    pub(super) async fn deep_clone(
        &self,
        client: &WorkspaceClient,
        into: &TableName,
        from: &TableName,
        as_of: Option<DateTime<Utc>>,
        ids: &mut Vec<String>,
    ) -> Result<StatementResult, DatabricksError> {
        self.deep_clone_at(client, into, from, as_of, "", ids).await
    }

    /// [`Self::deep_clone`] with a `suffix` after the statement (a `LOCATION` clause).
    async fn deep_clone_at(
        &self,
        client: &WorkspaceClient,
        into: &TableName,
        from: &TableName,
        as_of: Option<DateTime<Utc>>,
        suffix: &str,
        ids: &mut Vec<String>,
    ) -> Result<StatementResult, DatabricksError> {
        let sql = deep_clone_sql(into, from, as_of) + suffix;
        match self.run_sql(client, &sql, ids).await {
            Err(e) if as_of.is_some() && after_latest_commit(&e) => {
                tracing::info!(source = %from, "no commit since the instant asked: cloning the latest version");
                let sql = deep_clone_sql(into, from, None) + suffix;
                self.run_sql(client, &sql, ids).await
            }
            r => r,
        }
    }

    async fn replicate_inner(
        &self,
        t: &SourceTable,
        as_of: Option<DateTime<Utc>>,
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
        // The backup of a streaming table was taken as of the instant already.
        let as_of = if t.is_streaming() { None } else { as_of };
        if let Some(p) = self
            .external
            .as_ref()
            .filter(|_| t.info.kind() == TableType::External)
        {
            let source_location = t.info.storage_location.as_deref().ok_or_else(|| {
                DatabricksError::Refused(format!("external table {name} has no storage location"))
            })?;
            let location = p
                .mapping
                .map_location(source_location, &name.to_string())
                .map_err(|e| DatabricksError::Refused(e.to_string()))?;
            if p.register {
                // The storage is geo-replicated: register the table over its copy.
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS {}{}",
                    into.quoted(),
                    location_clause(&location)?
                );
                self.run_sql(&self.target, &sql, ids).await?;
                return Ok(Step {
                    statement_ids: ids.clone(),
                    metrics: None,
                });
            }
            let suffix = location_clause(&location)?;
            let r = self
                .deep_clone_at(&self.target, &into, &from, as_of, &suffix, ids)
                .await?;
            return Ok(Step {
                statement_ids: ids.clone(),
                metrics: clone_metrics(&r),
            });
        }
        let r = self
            .deep_clone(&self.target, &into, &from, as_of, ids)
            .await?;
        Ok(Step {
            statement_ids: ids.clone(),
            metrics: clone_metrics(&r),
        })
    }

    /// Refuse to replace `target` when its columns differ from the source's.
    pub(super) fn enforce_schema(
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
            table_id: None,
            delta_uniform_iceberg: None,
        }
    }

    #[test]
    fn a_clone_as_of_an_instant_puts_it_on_the_source() {
        let into = TableName::new("dr", "s", "t").unwrap();
        let from = TableName::new("prod_shared", "s", "t`x").unwrap();
        assert_eq!(
            deep_clone_sql(&into, &from, None),
            "CREATE OR REPLACE TABLE `dr`.`s`.`t` DEEP CLONE `prod_shared`.`s`.`t``x`"
        );
        let ts = DateTime::parse_from_rfc3339("2026-11-20T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            deep_clone_sql(&into, &from, Some(ts)),
            "CREATE OR REPLACE TABLE `dr`.`s`.`t` DEEP CLONE `prod_shared`.`s`.`t``x` TIMESTAMP AS OF '2026-11-20T12:00:00.123000Z'"
        );
        let refused = DatabricksError::Statement {
            statement_id: "s".into(),
            state: "FAILED".into(),
            code: "BAD_REQUEST".into(),
            message: "[DELTA_TIMESTAMP_GREATER_THAN_COMMIT] The provided timestamp is after the latest version available to this table. SQLSTATE: 42816".into(),
        };
        assert!(after_latest_commit(&refused));
        assert!(!after_latest_commit(&DatabricksError::Refused("x".into())));
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
