//! External locations: the target must have one covering the mapped URL before a volume
//! (or an external table) can live there. Storage credentials are referenced by name: the
//! target's credential must exist already — its cloud secret is never read or copied.

use serde::Serialize;

use super::{StorageMap, covers};
use crate::DatabricksError;
use crate::client::WorkspaceClient;

/// Where the target stands for one source external location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum LocationStatus {
    /// A target external location (named here) covers the mapped URL.
    Covered(String),
    /// Created in this run (or, dry, would be).
    Created,
    /// Not there and not creatable; the findings say why.
    Missing,
}

#[derive(Clone, Debug, Serialize)]
pub struct LocationOutcome {
    pub name: String,
    pub source_url: String,
    pub target_url: String,
    pub target_credential: String,
    pub status: LocationStatus,
    /// API calls made (or, dry, that would be).
    pub statements: Vec<String>,
    pub findings: Vec<String>,
}

/// Make sure the target has an external location covering the source location `name`'s
/// URL as `map` rewrites it: found (any target location whose URL covers it), else created
/// under the same name with the mapped storage credential, else reported missing.
pub async fn ensure_external_location(
    source: &WorkspaceClient,
    target: &WorkspaceClient,
    name: &str,
    map: &dyn StorageMap,
    dry_run: bool,
) -> Result<LocationOutcome, DatabricksError> {
    let src = source.get_external_location(name).await?.ok_or_else(|| {
        DatabricksError::Refused(format!("source external location `{name}` does not exist"))
    })?;
    let target_url = map.location(&src.url).ok_or_else(|| {
        DatabricksError::Refused(format!(
            "external location `{name}`: its URL {} is covered by no storage mapping",
            src.url
        ))
    })?;
    let target_credential = map.credential(&src.credential_name).ok_or_else(|| {
        DatabricksError::Refused(format!(
            "external location `{name}`: storage credential `{}` has no mapping",
            src.credential_name
        ))
    })?;
    let mut out = LocationOutcome {
        name: name.to_owned(),
        source_url: src.url.clone(),
        target_url: target_url.clone(),
        target_credential: target_credential.clone(),
        status: LocationStatus::Missing,
        statements: Vec::new(),
        findings: Vec::new(),
    };
    let existing = target.list_external_locations().await?;
    if let Some(l) = existing.iter().find(|l| covers(&l.url, &target_url)) {
        if l.read_only {
            out.findings.push(format!(
                "target external location `{}` covering {target_url} is read-only",
                l.name
            ));
        }
        out.status = LocationStatus::Covered(l.name.clone());
        return Ok(out);
    }
    if let Some(l) = existing.iter().find(|l| l.name == name) {
        out.findings.push(format!(
            "target external location `{name}` exists at {}, which does not cover {target_url}",
            l.url
        ));
        return Ok(out);
    }
    if target
        .get_storage_credential(&target_credential)
        .await?
        .is_none()
    {
        out.findings.push(format!(
            "external location `{name}` cannot be created: storage credential `{target_credential}` does not exist in the target (credentials are referenced, never copied)"
        ));
        return Ok(out);
    }
    out.statements.push(format!(
        "API POST external-locations name={name} url={target_url} credential_name={target_credential}"
    ));
    if !dry_run {
        match target
            .create_external_location(
                name,
                &target_url,
                &target_credential,
                src.comment.as_deref(),
            )
            .await
        {
            Ok(()) => {}
            // Created by a concurrent run meanwhile: covered now.
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    out.status = LocationStatus::Created;
    Ok(out)
}
