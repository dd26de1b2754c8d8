//! Probe (`--validate-only`): config, connectivity and the access the operations need,
//! checked without changing anything.

use replicator_common::databricks::SharingMode;

use crate::DatabricksError;

use super::backup::find_backing_table;
use super::{Probe, WorkspacePair};

impl WorkspacePair {
    /// Check the config, connectivity and access without changing anything.
    pub async fn probe(&self) -> Vec<Probe> {
        let mut out = Vec::new();
        let mut record = |check: String, r: Result<String, DatabricksError>| {
            out.push(match r {
                Ok(detail) => Probe {
                    check,
                    ok: true,
                    detail,
                },
                Err(e) => Probe {
                    check,
                    ok: false,
                    detail: e.to_string(),
                },
            })
        };
        for (side, c) in [("source", &self.source), ("target", &self.target)] {
            record(
                format!("{side}: Unity Catalog metastore"),
                c.metastore_global_id()
                    .await
                    .map(|id| format!("global ID {id}")),
            );
            record(
                format!("{side}: SQL warehouse"),
                c.execute("SELECT 1 AS ok")
                    .await
                    .map(|r| format!("statement {} succeeded", r.statement_id)),
            );
        }
        for m in &self.config.catalogs {
            record(
                format!("source: catalog {}", m.source),
                match self.source.get_catalog(&m.source).await {
                    Ok(Some(_)) => self
                        .source
                        .list_schemas(&m.source)
                        .await
                        .map(|s| format!("{} schemas readable", s.len())),
                    Ok(None) => Err(DatabricksError::Refused("does not exist".into())),
                    Err(e) => Err(e),
                },
            );
            for (what, name) in [("catalog", m.shared()), ("catalog", m.shared_backup())] {
                let r = self.target.get_catalog(&name).await;
                let byo = self.config.sharing.mode == SharingMode::Byo;
                record(
                    format!("target: shared {what} {name}"),
                    match r {
                        Ok(Some(_)) => Ok("exists".into()),
                        Ok(None) if byo => Err(DatabricksError::Refused(
                            "does not exist (sharing mode byo)".into(),
                        )),
                        Ok(None) => Ok("missing; replication creates it".into()),
                        Err(e) => Err(e),
                    },
                );
            }
        }
        // Read access the operations need: every table listed, the streaming tables'
        // backing tables visible, the sharing objects readable on both sides.
        let byo = self.config.sharing.mode == SharingMode::Byo;
        let exists = |r: Result<bool, DatabricksError>, creates: &str| match r {
            Ok(true) => Ok("exists".to_owned()),
            Ok(false) if byo => Err(DatabricksError::Refused(
                "does not exist (sharing mode byo)".into(),
            )),
            Ok(false) => Ok(format!("missing; {creates} creates it")),
            Err(e) => Err(e),
        };
        match self.discover().await {
            Err(e) => record("source: list tables".into(), Err(e)),
            Ok(tables) => {
                record(
                    "source: list tables".into(),
                    Ok(format!("{} tables readable", tables.len())),
                );
                for t in tables.iter().filter(|t| t.is_streaming()) {
                    let r = match self.with_columns(t).await {
                        Err(e) => Err(e),
                        Ok(info) => match (t.name(), info.pipeline()) {
                            (Err(e), _) => Err(e),
                            (_, None) => Err(DatabricksError::Refused(
                                "no `pipelines.pipelineId` property".into(),
                            )),
                            (Ok(n), Some(p)) => find_backing_table(&self.source, p, &n)
                                .await
                                .map(|b| format!("backing table {b} readable")),
                        },
                    };
                    record(format!("source: streaming table {}", t.full_name()), r);
                }
            }
        }
        let recipient = &self.config.sharing.recipient;
        record(
            format!("source: recipient {recipient}"),
            exists(
                self.source
                    .get_recipient(recipient)
                    .await
                    .map(|r| r.is_some()),
                "backup",
            ),
        );
        for m in &self.config.catalogs {
            for share in [m.share(), m.backup_share()] {
                record(
                    format!("source: share {share}"),
                    exists(
                        self.source.get_share(&share).await.map(|s| s.is_some()),
                        "backup",
                    ),
                );
            }
        }
        record(
            "target: Delta Sharing providers".into(),
            self.target
                .list_providers()
                .await
                .map(|p| format!("{} providers visible", p.len())),
        );
        out
    }
}
