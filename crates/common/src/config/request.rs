//! The request a config describes, and the one place that decides which engine a config
//! asks for: a config with only a `databricks` section (no `source.root`) replicates between
//! Unity Catalog metastores; every other config uses the native engine.

use replicator_proto::{EngineKind, Header, Operation, ReplicationRequest};

use super::Config;

impl Config {
    /// The engine this config asks for.
    pub fn engine(&self) -> EngineKind {
        if self.databricks.is_some() && self.source.root.trim().is_empty() {
            EngineKind::Databricks
        } else {
            EngineKind::Native
        }
    }

    /// The replication request this config describes (`operation` overrides the config's),
    /// with a new run ID.
    pub fn request(
        &self,
        operation: Option<Operation>,
        requested_by: Option<String>,
    ) -> ReplicationRequest {
        let engine = self.engine();
        let (source_root, target_root) = match (&self.databricks, engine) {
            (Some(d), EngineKind::Databricks) => d.roots(),
            _ => (self.source.root.clone(), self.target.root.clone()),
        };
        ReplicationRequest {
            ingest: Vec::new(),
            header: Header::new(uuid::Uuid::now_v7()),
            operation: operation.unwrap_or(self.operation),
            source_root,
            target_root,
            tables: (&self.tables).into(),
            version: None,
            requested_by,
            engine,
            replace: self.cloning.replace,
            external_roots: self.cloning.external_roots.clone(),
            as_of: None,
            group: None,
            catalog: self.catalog.is_some(),
            mirror: self.snowflake.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{MINIMAL, none};

    #[test]
    fn a_config_with_roots_asks_for_the_native_engine() {
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        let r = c.request(Some(Operation::Replication), Some("me".into()));
        assert_eq!(r.engine, EngineKind::Native);
        assert_eq!(r.operation, Operation::Replication);
        assert!(r.source_root.ends_with("lake/source"), "{}", r.source_root);
        assert_eq!(r.requested_by.as_deref(), Some("me"));
    }
}
