//! Grants, diffed and not replayed: both sides' direct privileges read through the
//! permissions API, the source's principals mapped, only the missing privileges granted.

use std::collections::BTreeSet;

use replicator_common::mapping::Mapping;

use super::sql::{privilege, quote_name, quote_principal, securable};
use super::{CatalogError, CatalogSync, Outcome};
use crate::client::Grants;

/// The target name of a securable of API type `api` (`catalog`, `schema`, `table`,
/// `volume`, `function`; metastore-level objects keep their names).
pub(super) fn target_name(
    mapping: &Mapping,
    api: &str,
    name: &str,
    object: &str,
) -> Result<String, CatalogError> {
    Ok(match api {
        "catalog" => mapping.map_catalog(name, object)?,
        "schema" => mapping.map_schema(name, object)?,
        "table" | "volume" | "function" => mapping.map_name(name, object)?,
        _ => name.to_owned(),
    })
}

/// The source's grants with their principals mapped (privileges of principals that map
/// to the same target principal are merged).
pub(super) fn map_grants(
    mapping: &Mapping,
    grants: &Grants,
    object: &str,
) -> Result<Grants, CatalogError> {
    let mut out = Grants::new();
    for (p, privs) in grants {
        out.entry(mapping.map_principal(p, object)?)
            .or_default()
            .extend(privs.iter().cloned());
    }
    Ok(out)
}

/// Per principal: what `want` has and `have` lacks.
pub(super) fn missing(want: &Grants, have: &Grants) -> Vec<(String, Vec<String>)> {
    let none = BTreeSet::new();
    want.iter()
        .filter_map(|(p, privs)| {
            let h = have.get(p).unwrap_or(&none);
            let m: Vec<String> = privs.difference(h).cloned().collect();
            (!m.is_empty()).then(|| (p.clone(), m))
        })
        .collect()
}

impl CatalogSync<'_> {
    /// The grants on one securable (`CATALOG`, `SCHEMA`, `TABLE`, `VIEW`, `VOLUME`, …
    /// named by its source full name): privileges the target lacks are granted; those only
    /// the target has are revoked with `revoke_extra`, else reported.
    pub async fn sync_grants(
        &self,
        securable_type: &str,
        source_name: &str,
    ) -> Result<Outcome, CatalogError> {
        let sec = securable(securable_type)?;
        let object = format!("grants on {} {source_name}", sec.sql);
        let name = target_name(self.mapping, sec.api, source_name, &object)?;
        let src = self
            .source
            .permissions(sec.api, source_name)
            .await?
            .ok_or_else(|| {
                CatalogError::Refused(format!("source {} {source_name} does not exist", sec.sql))
            })?;
        let tgt = match self.target.permissions(sec.api, &name).await? {
            None if self.planned(&name) => Some(Grants::new()),
            t => t,
        };
        let tgt = tgt.ok_or_else(|| CatalogError::Waits {
            object: format!("grants on {} {name}", sec.sql),
            missing: name.clone(),
        })?;
        let want = map_grants(self.mapping, &src, &object)?;
        let q = quote_name(&name)?;
        let list = |privs: &[String]| -> Result<String, CatalogError> {
            let p: Result<Vec<String>, CatalogError> = privs.iter().map(|p| privilege(p)).collect();
            Ok(p?.join(", "))
        };
        let mut stmts = Vec::new();
        for (p, privs) in missing(&want, &tgt) {
            stmts.push(format!(
                "GRANT {} ON {} {q} TO {}",
                list(&privs)?,
                sec.sql,
                quote_principal(&p)?
            ));
        }
        let mut findings = Vec::new();
        for (p, privs) in missing(&tgt, &want) {
            if self.options.revoke_extra {
                stmts.push(format!(
                    "REVOKE {} ON {} {q} FROM {}",
                    list(&privs)?,
                    sec.sql,
                    quote_principal(&p)?
                ));
            } else {
                findings.push(format!(
                    "grants on {} {name}: `{p}` has {} on the target only (not revoked: revoke_extra is off)",
                    sec.sql,
                    privs.join(", ")
                ));
            }
        }
        self.apply(stmts, findings).await
    }
}
