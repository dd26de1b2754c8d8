//! Delta Sharing setup: on the source a recipient for the target metastore, shares of the
//! source and backup catalogs' schemas and the grants; on the target a catalog from each
//! share. Idempotent: objects are read first and only what is missing is created; with
//! `sharing.mode: byo` nothing is created and a missing object is an error naming it.

use std::collections::{BTreeMap, BTreeSet};

use replicator_common::databricks::SharingMode;

use crate::client::{RecipientInfo, ShareInfo, SharedObject};
use crate::{DatabricksError, Ident};

use super::{SourceTable, WorkspacePair, vanished};

/// The entries of `wanted` that the share `info` does not cover: a schema entry is covered by
/// itself; a table entry by itself or by an entry of its whole schema (a share created by an
/// earlier version held schemas: their tables are shared, but without history).
fn lacking(info: &ShareInfo, wanted: &[SharedObject]) -> Vec<SharedObject> {
    wanted
        .iter()
        .filter(|w| {
            !info.objects.iter().any(|o| {
                o.same_as(w)
                    || (w.data_object_type == "TABLE"
                        && o.data_object_type == "SCHEMA"
                        && w.name
                            .rsplit_once('.')
                            .is_some_and(|(schema, _)| schema == o.name))
            })
        })
        .cloned()
        .collect()
}

fn names(objects: &[SharedObject]) -> String {
    objects
        .iter()
        .map(|o| o.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl WorkspacePair {
    /// Source side of Delta Sharing: recipient, shares, schemas in shares, grants. Returns
    /// what was created.
    pub async fn setup_source_sharing(
        &self,
        tables: &[&SourceTable],
    ) -> Result<Vec<String>, DatabricksError> {
        let byo = self.config.sharing.mode == SharingMode::Byo;
        let mut actions = Vec::new();
        let recipient = Ident::new(&self.config.sharing.recipient)?;
        let target_id = self.target.metastore_global_id().await?;
        let check_recipient = |r: &RecipientInfo| match &r.data_recipient_global_metastore_id {
            Some(id) if id != &target_id => Err(DatabricksError::Refused(format!(
                "recipient `{recipient}` is for metastore {id}, not the target's {target_id}"
            ))),
            _ => Ok(()),
        };
        match self.source.get_recipient(recipient.as_str()).await? {
            Some(r) => check_recipient(&r)?,
            None if byo => {
                return Err(DatabricksError::Refused(format!(
                    "sharing mode byo: recipient `{recipient}` does not exist in the source metastore"
                )));
            }
            None => match self
                .source
                .create_recipient(recipient.as_str(), &target_id)
                .await
            {
                Ok(()) => actions.push(format!("created recipient {recipient} for {target_id}")),
                // Created meanwhile (a concurrent run): use it if it is the one we need.
                Err(e) if e.is_already_exists() => {
                    tracing::info!(%recipient, "recipient created concurrently; reading it back");
                    let r = self
                        .source
                        .get_recipient(recipient.as_str())
                        .await?
                        .ok_or_else(|| vanished("recipient", recipient.as_str()))?;
                    check_recipient(&r)?;
                }
                Err(e) => return Err(e),
            },
        }
        // share name -> entries it must hold. A table is shared on its own with its history,
        // so a sync group's cut can clone it `TIMESTAMP AS OF` through the share (a schema
        // entry cannot carry history; docs/databricks.md, "Time travel through the share").
        // A streaming table's backup is cloned at its latest version: its schema is shared.
        let mut wanted: BTreeMap<String, Vec<SharedObject>> = BTreeMap::new();
        for t in tables {
            let m = self.mapping(t);
            let (share, entry) = if t.is_streaming() {
                let schema = format!("{}.{}", m.backup(), t.info.schema_name);
                (m.backup_share(), SharedObject::schema(&schema))
            } else {
                let table = format!("{}.{}.{}", m.source, t.info.schema_name, t.info.name);
                (m.share(), SharedObject::table_with_history(&table))
            };
            let entries = wanted.entry(share).or_default();
            if !entries.iter().any(|e| e.same_as(&entry)) {
                entries.push(entry);
            }
        }
        for (share, entries) in wanted {
            let share = Ident::new(&share)?;
            let mut created = false;
            let existing = match self.source.get_share(share.as_str()).await? {
                Some(s) => s,
                None if byo => {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: share `{share}` does not exist in the source metastore"
                    )));
                }
                None => match self.source.create_share(share.as_str()).await {
                    Ok(()) => {
                        actions.push(format!("created share {share}"));
                        created = true;
                        ShareInfo {
                            name: share.to_string(),
                            objects: Vec::new(),
                        }
                    }
                    // Created meanwhile (a concurrent run): carry on with it as it is.
                    Err(e) if e.is_already_exists() => {
                        tracing::info!(%share, "share created concurrently; reading it back");
                        self.source
                            .get_share(share.as_str())
                            .await?
                            .ok_or_else(|| vanished("share", share.as_str()))?
                    }
                    Err(e) => return Err(e),
                },
            };
            let missing = lacking(&existing, &entries);
            if !missing.is_empty() {
                if byo {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: share `{share}` lacks {}",
                        names(&missing)
                    )));
                }
                match self.source.add_to_share(share.as_str(), &missing).await {
                    Ok(()) => actions.push(format!("added {} to share {share}", names(&missing))),
                    // Some were added meanwhile (a concurrent run): add what still lacks.
                    Err(e) if e.is_already_exists() => {
                        tracing::info!(%share, "objects added to the share concurrently; reading it back");
                        let now = self
                            .source
                            .get_share(share.as_str())
                            .await?
                            .ok_or_else(|| vanished("share", share.as_str()))?;
                        let still = lacking(&now, &missing);
                        if !still.is_empty() {
                            self.source.add_to_share(share.as_str(), &still).await?;
                            actions.push(format!("added {} to share {share}", names(&still)));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            // A share just created has no grants (and in a dry run does not exist yet).
            let granted = !created
                && self
                    .source
                    .share_permissions(share.as_str())
                    .await?
                    .into_iter()
                    .any(|(p, privs)| {
                        p == recipient.as_str() && privs.iter().any(|x| x == "SELECT")
                    });
            if !granted {
                if byo {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: recipient `{recipient}` has no SELECT on share `{share}`"
                    )));
                }
                self.source
                    .grant_share(share.as_str(), recipient.as_str())
                    .await?;
                actions.push(format!("granted SELECT on share {share} to {recipient}"));
            }
        }
        Ok(actions)
    }

    /// The provider of the source metastore as the target sees it.
    async fn provider(&self) -> Result<Ident, DatabricksError> {
        if let Some(p) = &self.config.sharing.provider {
            return Ident::new(p);
        }
        let source_id = self.source.metastore_global_id().await?;
        let providers = self.target.list_providers().await?;
        match providers
            .iter()
            .find(|p| p.data_provider_global_metastore_id.as_deref() == Some(source_id.as_str()))
        {
            Some(p) => Ident::new(&p.name),
            // A dry run has not created the recipient that would make the provider appear.
            None if self.target.is_dry_run() => Ident::new("provider-of-source"),
            None => Err(DatabricksError::Refused(format!(
                "no provider for the source metastore {source_id} is visible in the target metastore: run the backup operation (it creates the recipient) or set `sharing.provider`"
            ))),
        }
    }

    /// Target side of Delta Sharing: a catalog from each share the tables need.
    pub async fn setup_target_sharing(
        &self,
        tables: &[SourceTable],
    ) -> Result<Vec<String>, DatabricksError> {
        let byo = self.config.sharing.mode == SharingMode::Byo;
        let mut wanted: BTreeMap<String, String> = BTreeMap::new(); // catalog -> share
        for t in tables {
            let m = self.mapping(t);
            if t.is_streaming() {
                wanted.insert(m.shared_backup(), m.backup_share());
            } else {
                wanted.insert(m.shared(), m.share());
            }
        }
        let mut actions = Vec::new();
        let mut provider = None;
        for (catalog, share) in wanted {
            let (catalog, share) = (Ident::new(&catalog)?, Ident::new(&share)?);
            match self.target.get_catalog(catalog.as_str()).await? {
                Some(c) => {
                    if let Some(s) = &c.share_name
                        && s != share.as_str()
                    {
                        return Err(DatabricksError::Refused(format!(
                            "target catalog `{catalog}` is built from share `{s}`, not `{share}`"
                        )));
                    }
                }
                None if byo => {
                    return Err(DatabricksError::Refused(format!(
                        "sharing mode byo: catalog `{catalog}` does not exist in the target metastore"
                    )));
                }
                None => {
                    let p = match &provider {
                        Some(p) => p,
                        None => provider.insert(self.provider().await?),
                    };
                    let sql = format!(
                        "CREATE CATALOG IF NOT EXISTS {} USING SHARE {}.{}",
                        catalog.quoted(),
                        p.quoted(),
                        share.quoted()
                    );
                    self.run_sql(&self.target, &sql, &mut Vec::new()).await?;
                    actions.push(format!("created catalog {catalog} using share {p}.{share}"));
                }
            }
        }
        Ok(actions)
    }

    /// Everything the tables' clones need before they can run independently (the fleet
    /// path): backup schemas for streaming tables, then source- and target-side sharing.
    /// Returns what was created.
    pub async fn prepare(&self, tables: &[SourceTable]) -> Result<Vec<String>, DatabricksError> {
        let mut actions = Vec::new();
        let mut done = BTreeSet::new();
        for t in tables.iter().filter(|t| t.is_streaming()) {
            let backup = Ident::new(&self.mapping(t).backup())?;
            let schema = Ident::new(&t.info.schema_name)?;
            if done.insert((backup.clone(), schema.clone())) {
                let mut ids = Vec::new();
                self.ensure_schema(&self.source, &backup, &schema, &mut ids)
                    .await?;
                if !ids.is_empty() {
                    actions.push(format!("created backup schema {backup}.{schema}"));
                }
            }
        }
        let refs: Vec<&SourceTable> = tables.iter().collect();
        actions.extend(self.setup_source_sharing(&refs).await?);
        actions.extend(self.setup_target_sharing(tables).await?);
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SharedObject;

    #[test]
    fn only_entries_the_share_lacks_are_added() {
        let share = ShareInfo {
            name: "s".into(),
            objects: vec![
                SharedObject::schema("prod.sales"),
                SharedObject::table_with_history("prod.hr.people"),
            ],
        };
        let wanted = [
            // covered by the schema entry (shared by an earlier version, without history)
            SharedObject::table_with_history("prod.sales.orders"),
            SharedObject::table_with_history("prod.hr.people"),
            SharedObject::table_with_history("prod.hr.salaries"),
            // a schema is not covered by a table of it
            SharedObject::schema("prod.hr"),
        ];
        let names: Vec<String> = lacking(&share, &wanted)
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["prod.hr.salaries", "prod.hr"]);
        assert!(lacking(&share, &wanted[..2]).is_empty());
        // a table named like a schema's prefix is not in it
        let other = [SharedObject::table_with_history("prod.salesx.t")];
        assert_eq!(lacking(&share, &other).len(), 1);
    }
}
