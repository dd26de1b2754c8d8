//! The Databricks engine in the fleet: planner, cloners and reconcilers find the engine of a
//! task by its location.
//!
//! A Databricks location is `databricks:<workspace URL>/<catalog.schema.table>`; the root
//! `databricks:<source workspace URL>` names the engine built from the config's `databricks`
//! section. Every process that handles Databricks tasks registers the section at start
//! ([`register`]); secrets are read then, from the references in the config.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use replicator_common::databricks::DatabricksConfig;

use crate::ops::{Reconciled, SourceTable, Step};
use crate::{DatabricksError, WorkspacePair};

/// Scheme prefix of Databricks locations.
pub const SCHEME: &str = "databricks:";

fn engines() -> &'static RwLock<HashMap<String, Arc<WorkspacePair>>> {
    static ENGINES: OnceLock<RwLock<HashMap<String, Arc<WorkspacePair>>>> = OnceLock::new();
    ENGINES.get_or_init(Default::default)
}

/// `databricks:<host>` of a workspace URL.
fn root(host: &str) -> String {
    format!("{SCHEME}{}", host.trim_end_matches('/'))
}

/// The source and target roots of a `databricks` section.
pub fn roots(config: &DatabricksConfig) -> (String, String) {
    (root(&config.source.host), root(&config.target.host))
}

/// Whether a location or root belongs to the Databricks engine.
pub fn is_databricks(location: &str) -> bool {
    location.starts_with(SCHEME)
}

/// Build the engine of a `databricks` section and make it findable by its source root.
pub fn register(config: &DatabricksConfig) -> Result<Arc<WorkspacePair>, DatabricksError> {
    let engine = Arc::new(WorkspacePair::from_config(config, false)?);
    let (source, _) = roots(config);
    engines()
        .write()
        .expect("engines lock")
        .insert(source, engine.clone());
    Ok(engine)
}

/// Register the config's `databricks` section, if it has one.
pub fn configure(config: &replicator_common::Config) -> Result<(), DatabricksError> {
    if let Some(d) = &config.databricks {
        register(d)?;
    }
    Ok(())
}

/// The engine of a root or location.
pub fn engine(location: &str) -> Result<Arc<WorkspacePair>, DatabricksError> {
    let (root, _) = split(location).unwrap_or((location, ""));
    engines()
        .read()
        .expect("engines lock")
        .get(root)
        .cloned()
        .ok_or_else(|| {
            DatabricksError::Config(format!(
                "no Databricks engine for {root}: this worker's config needs the same `databricks` section"
            ))
        })
}

/// `databricks:<host>/<catalog.schema.table>` → (`databricks:<host>`, `catalog.schema.table`).
pub fn split(location: &str) -> Option<(&str, &str)> {
    let rest = location.strip_prefix(SCHEME)?;
    let (_, after_scheme) = rest.split_once("://")?;
    let slash = after_scheme.find('/')?;
    let cut = SCHEME.len() + (rest.len() - after_scheme.len()) + slash;
    Some((&location[..cut], &location[cut + 1..]))
}

/// One table a Databricks run replicates.
#[derive(Clone, Debug)]
pub struct PlannedTable {
    /// `catalog.schema.table` in the source metastore.
    pub table: String,
    pub source: String,
    pub target: String,
}

/// Expand a Databricks source through Unity Catalog and set up Delta Sharing (backup
/// schemas, recipient, shares, grants, shared catalogs) so the tasks can run. Views,
/// materialized views and other unsupported types are left out (logged).
pub async fn plan(source_root: &str, prepare: bool) -> Result<Vec<PlannedTable>, DatabricksError> {
    let engine = engine(source_root)?;
    let (src_root, tgt_root) = roots(engine.config());
    let tables = engine.discover().await?;
    let supported: Vec<SourceTable> = tables
        .into_iter()
        .filter(|t| {
            let ok = t.supported();
            if !ok {
                tracing::info!(table = %t.full_name(), table_type = %t.info.table_type, "not replicated: unsupported table type");
            }
            ok
        })
        .collect();
    if prepare {
        let valid: Vec<SourceTable> = supported
            .iter()
            .filter(|t| t.name().is_ok())
            .cloned()
            .collect();
        engine.prepare(&valid).await?;
    }
    Ok(supported
        .iter()
        .map(|t| {
            let target_catalog = engine.config().catalogs[t.mapping].target();
            PlannedTable {
                table: t.full_name(),
                source: format!("{src_root}/{}", t.full_name()),
                target: format!(
                    "{tgt_root}/{target_catalog}.{}.{}",
                    t.info.schema_name, t.info.name
                ),
            }
        })
        .collect())
}

async fn source_table(
    location: &str,
) -> Result<(Arc<WorkspacePair>, SourceTable), DatabricksError> {
    let engine = engine(location)?;
    let (_, full_name) = split(location)
        .ok_or_else(|| DatabricksError::Config(format!("not a Databricks location: {location}")))?;
    // Refuse names that cannot be quoted before any request carries them.
    crate::TableName::parse(full_name)?;
    let t = engine.source_table(full_name).await?;
    Ok((engine, t))
}

/// Clone one table: a streaming table is backed up on the source, then replicated; other
/// tables are replicated.
pub async fn clone(source: &str) -> Result<Step, (Vec<String>, DatabricksError)> {
    let (engine, t) = source_table(source).await.map_err(|e| (Vec::new(), e))?;
    let mut ids = Vec::new();
    if t.is_streaming() {
        let b = engine.backup_table(&t).await?;
        ids = b.statement_ids;
    }
    match engine.replicate_table(&t).await {
        Ok(mut step) => {
            ids.append(&mut step.statement_ids);
            step.statement_ids = ids;
            Ok(step)
        }
        Err((mut more, e)) => {
            ids.append(&mut more);
            Err((ids, e))
        }
    }
}

/// Reconcile one table.
pub async fn reconcile(source: &str) -> Result<Reconciled, (Vec<String>, DatabricksError)> {
    let (engine, t) = source_table(source).await.map_err(|e| (Vec::new(), e))?;
    engine.reconcile_table(&t).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_locations() {
        assert_eq!(
            split("databricks:https://h.example:443/c.s.t"),
            Some(("databricks:https://h.example:443", "c.s.t"))
        );
        assert_eq!(
            split("databricks:http://127.0.0.1:9/c.s.we`ird;x"),
            Some(("databricks:http://127.0.0.1:9", "c.s.we`ird;x"))
        );
        assert_eq!(split("/local/path"), None);
    }
}
