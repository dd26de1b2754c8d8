//! The `catalog` section: carry a whole catalog, not just its tables (docs/catalog.md) —
//! which object kinds, how external tables are carried, grants and volumes options.

use std::collections::BTreeMap;

use replicator_proto::ObjectKind;

use crate::mapping::Mapping;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How an external table reaches the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalTables {
    /// Deep-cloned into the mapped location.
    #[default]
    Clone,
    /// Registered over the mapped location (storage already geo-replicated).
    Register,
}

/// `catalog.grants`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsSettings {
    /// Revoke privileges the target has and the source does not (otherwise reported).
    pub revoke_extra: bool,
}

/// `catalog.volumes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeSettings {
    /// Delete target files the source no longer has (otherwise reported).
    pub delete_extra: bool,
    /// A volume with more files than this is copied by several tasks, each a part of its
    /// files (by a hash of the path).
    pub chunk_files: u64,
    /// Databricks engine: copy an external volume's files straight from its storage
    /// location to the mapped one with the native engine's object stores (credentials from
    /// the environment), instead of through the Files API of both workspaces.
    pub direct: bool,
    /// `0` (the default): every sync lists the target volume. A period (`24h`): trust the
    /// target's manifest of what earlier syncs wrote instead of listing it, until the last
    /// listing that checked it is that old (an unchanged re-sync then lists the source only;
    /// a file changed behind the replicator's back in the target is found by the next
    /// listing, or by the run's inventory check).
    pub verify_every: super::Period,
}

impl VolumeSettings {
    /// `verify_every` as the volume sync takes it: none when zero.
    pub fn verify_every_duration(&self) -> Option<std::time::Duration> {
        (!self.verify_every.is_zero()).then_some(self.verify_every.0)
    }
}

impl Default for VolumeSettings {
    fn default() -> Self {
        Self {
            delete_extra: false,
            chunk_files: 10_000,
            direct: false,
            verify_every: super::Period::default(),
        }
    }
}

/// The `catalog` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// The kinds to carry besides tables; every kind the engine knows when empty.
    pub objects: Vec<ObjectKind>,
    pub external_tables: ExternalTables,
    /// Also carry owners (`ALTER … OWNER TO`), principals mapped.
    pub owners: bool,
    pub grants: GrantsSettings,
    pub volumes: VolumeSettings,
    /// How long an object waits for one it depends on (a view for the table it reads,
    /// still being cloned) before its task fails naming what is missing.
    pub wait_minutes: u64,
    /// Catalog and schema renames, storage-location prefix rewrites, principal renames
    /// (docs/catalog.md, "Mapping"). With the Databricks engine, `databricks.catalogs`
    /// supplies the catalog renames this does not name.
    pub mapping: Mapping,
    /// Storage credential renames (source name → target name) for the external locations
    /// created in the target; a credential not named keeps its name. Names only: a
    /// credential's secrets never pass through the replicator.
    pub credentials: BTreeMap<String, String>,
    /// Check the whole inventory once the run's catalog objects have settled (the last
    /// catalog task of a run): differences are reported in the run's results and digest,
    /// and make the run mismatched.
    pub inventory: bool,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            objects: Vec::new(),
            external_tables: ExternalTables::Clone,
            owners: false,
            grants: GrantsSettings::default(),
            volumes: VolumeSettings::default(),
            wait_minutes: 30,
            mapping: Mapping::default(),
            credentials: BTreeMap::new(),
            inventory: true,
        }
    }
}

impl CatalogSettings {
    /// Whether `kind` is carried.
    pub fn carries(&self, kind: ObjectKind) -> bool {
        self.objects.is_empty() || self.objects.contains(&kind)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.objects.contains(&ObjectKind::Inventory) {
            return Err(ConfigError::key(
                "objects",
                "`inventory` is not an object to carry: the inventory check runs with every catalog run (`catalog.inventory: false` turns it off)",
            ));
        }
        if self.volumes.chunk_files == 0 {
            return Err(ConfigError::key(
                "volumes.chunk_files",
                "must be at least 1",
            ));
        }
        if self.wait_minutes == 0 {
            return Err(ConfigError::key("wait_minutes", "must be at least 1"));
        }
        self.mapping
            .validate()
            .map_err(|e| ConfigError::key("mapping", e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::test_support::{MINIMAL, none};
    use super::*;

    #[test]
    fn the_section_is_optional_and_its_words_are_checked() {
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        assert!(c.catalog.is_none());
        let yaml = format!(
            "{MINIMAL}catalog: {{ objects: [volume, view], external_tables: register, grants: {{ revoke_extra: true }} }}\n"
        );
        let c = Config::from_yaml(&yaml, none(), &[]).unwrap();
        let cat = c.catalog.unwrap();
        assert!(cat.carries(ObjectKind::Volume) && !cat.carries(ObjectKind::Grants));
        assert_eq!(cat.external_tables, ExternalTables::Register);
        assert!(cat.grants.revoke_extra);
        let bad = format!("{MINIMAL}catalog: {{ objects: [tables] }}\n");
        let e = Config::from_yaml(&bad, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("catalog.objects"), "{e}");
        let bad = format!("{MINIMAL}catalog: {{ volumes: {{ chunk_files: 0 }} }}\n");
        let e = Config::from_yaml(&bad, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("catalog.volumes.chunk_files"), "{e}");
    }
}
