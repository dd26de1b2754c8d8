//! Reconciliation (target workspace): row counts, schemas, and rows missing or extra by key
//! (`EXCEPT` both ways between the shared catalog and the replica).

use replicator_proto::Check;

use crate::{DatabricksError, Ident, TableName};

use super::{Reconciled, SourceTable, WorkspacePair, column_diff};

/// Rows shown by a reconciliation that finds some missing (or extra) in the target.
const ROW_SAMPLE: usize = 10;

/// A column name quoted for SQL (column names may hold dots and spaces, never control
/// characters).
fn quote_column(name: &str) -> Result<String, DatabricksError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(DatabricksError::InvalidIdentifier {
            name: name.escape_debug().to_string(),
            reason: "a column name must be non-empty and free of control characters".into(),
        });
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

impl WorkspacePair {
    /// Reconciliation of one table: row counts, schema, missing and extra rows by key.
    pub async fn reconcile_table(
        &self,
        t: &SourceTable,
    ) -> Result<Reconciled, (Vec<String>, DatabricksError)> {
        let mut ids = Vec::new();
        let r = self.reconcile_inner(t, &mut ids).await;
        r.map_err(|e| (ids, e))
    }

    async fn reconcile_inner(
        &self,
        t: &SourceTable,
        ids: &mut Vec<String>,
    ) -> Result<Reconciled, DatabricksError> {
        let name = t.name()?;
        let m = self.mapping(t);
        let shared = if t.is_streaming() {
            m.shared_backup()
        } else {
            m.shared()
        };
        let source = name.in_catalog(&Ident::new(&shared)?);
        let target = name.in_catalog(&Ident::new(&m.target())?);
        let target_info = match self.target.get_table(&target.full_name()).await? {
            Some(info) => info,
            // A dry run did not create it; the replication would have, with the source's
            // columns.
            None if self.target.is_dry_run() => self.with_columns(t).await?,
            None => {
                return Err(DatabricksError::Refused(format!(
                    "target table {target} does not exist"
                )));
            }
        };
        let source_info = self.with_columns(t).await?;
        let mut out = Reconciled::default();
        let count = |n: &TableName| format!("SELECT COUNT(*) AS n FROM {}", n.quoted());
        let s = self.run_sql(&self.target, &count(&source), ids).await?;
        let tg = self.run_sql(&self.target, &count(&target), ids).await?;
        if !self.target.is_dry_run() {
            let (sn, tn) = (s.single_u64()?, tg.single_u64()?);
            out.source_rows = Some(sn);
            out.target_rows = Some(tn);
            out.checks.push(Check {
                name: "row_count".into(),
                passed: sn == tn,
                detail: format!("source {sn} rows, target {tn} rows"),
            });
        }
        let diff = column_diff(&source_info, &target_info);
        out.checks.push(Check {
            name: "schema".into(),
            passed: diff.is_empty(),
            detail: if diff.is_empty() {
                format!("{} columns match", source_info.columns.len())
            } else {
                diff.join("; ")
            },
        });
        let keys: Vec<String> = match self.config.reconciliation_keys.get(&t.full_name()) {
            Some(k) => k.clone(),
            None => source_info.columns.iter().map(|c| c.name.clone()).collect(),
        };
        let missing_in_target: Vec<&String> = keys
            .iter()
            .filter(|k| !target_info.columns.iter().any(|c| &c.name == *k))
            .collect();
        if keys.is_empty() || !missing_in_target.is_empty() {
            let detail = if keys.is_empty() {
                "no key columns known for the source".to_owned()
            } else {
                format!("key columns {missing_in_target:?} are missing in the target")
            };
            for name in ["missing_rows", "extra_rows"] {
                out.checks.push(Check {
                    name: name.into(),
                    passed: false,
                    detail: detail.clone(),
                });
            }
        } else {
            let cols = keys
                .iter()
                .map(|k| quote_column(k))
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            // Both directions: rows of the source the target lacks, and rows only the target
            // has (a row count alone misses them when as many rows are missing as are extra).
            for (name, from, other, what) in [
                (
                    "missing_rows",
                    &source,
                    &target,
                    "source rows missing in the target",
                ),
                (
                    "extra_rows",
                    &target,
                    &source,
                    "target rows not in the source",
                ),
            ] {
                let except = format!(
                    "SELECT {cols} FROM {} EXCEPT SELECT {cols} FROM {}",
                    from.quoted(),
                    other.quoted()
                );
                let r = self
                    .run_sql(
                        &self.target,
                        &format!("SELECT COUNT(*) AS n FROM ({except})"),
                        ids,
                    )
                    .await?;
                if self.target.is_dry_run() {
                    continue;
                }
                let n = r.single_u64()?;
                let mut detail = format!("{n} {what} (by {})", keys.join(", "));
                if n > 0 {
                    // Show a few, so the operator knows where to look.
                    let sample = format!("SELECT {cols} FROM ({except}) LIMIT {ROW_SAMPLE}");
                    let rows = self.run_sql(&self.target, &sample, ids).await?;
                    let shown: Vec<String> = rows
                        .rows
                        .iter()
                        .map(|r| {
                            let vals: Vec<&str> =
                                r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
                            format!("({})", vals.join(", "))
                        })
                        .collect();
                    detail.push_str(&format!(", for example {}", shown.join(" ")));
                }
                out.checks.push(Check {
                    name: name.into(),
                    passed: n == 0,
                    detail,
                });
            }
        }
        out.statement_ids = ids.clone();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_quoted() {
        assert_eq!(quote_column("a`b c.d").unwrap(), "`a``b c.d`");
        assert!(quote_column("").is_err());
        assert!(quote_column("a\u{0}").is_err());
    }

    #[test]
    fn a_refused_column_name_is_an_invalid_identifier_shown_escaped() {
        let err = quote_column("a\nb").unwrap_err();
        assert!(
            matches!(&err, DatabricksError::InvalidIdentifier { name, .. } if name == "a\\nb"),
            "{err:?}"
        );
    }
}
