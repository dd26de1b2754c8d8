//! The config's `ingest` section as the run's ingest sources (docs/ingest.md): inline
//! definitions and a definitions directory, each checked by `replicator-ingest` with the key
//! named on error (`ingest.sources[1].primary_key: …`).

use replicator_common::{Config, ConfigError};
use replicator_ingest::{SourceDefinition, SourceDefinitions};
use replicator_proto::IngestSource;

/// Every source the config names, inline ones first, then the directory's in name order.
/// Two sources with one target are refused.
pub fn sources(config: &Config) -> Result<Vec<IngestSource>, ConfigError> {
    let Some(ic) = &config.ingest else {
        return Ok(Vec::new());
    };
    let mut defs = Vec::new();
    if !ic.sources.is_empty() {
        let text = serde_yaml::to_string(&serde_yaml::Value::Mapping(
            [(
                serde_yaml::Value::from("sources"),
                serde_yaml::Value::Sequence(ic.sources.clone()),
            )]
            .into_iter()
            .collect(),
        ))
        .map_err(|e| ConfigError::key("ingest.sources", e.to_string()))?;
        defs.extend(
            SourceDefinitions::from_yaml(&text)
                .map_err(|e| without_location(e).within("ingest"))?
                .sources,
        );
    }
    if let Some(dir) = &ic.definitions_dir {
        defs.extend(
            SourceDefinitions::load_dir(dir)
                .map_err(|e| e.within("ingest.definitions_dir"))?
                .sources,
        );
    }
    let all = SourceDefinitions { sources: defs };
    all.validate().map_err(|e| e.within("ingest"))?;
    let files_root = ic
        .files_root
        .clone()
        .or_else(|| (!config.source.root.trim().is_empty()).then(|| config.source.root.clone()));
    all.sources
        .iter()
        .map(|def| {
            Ok(IngestSource {
                name: label(def),
                definition: serde_json::to_value(def)
                    .map_err(|e| ConfigError::key("ingest.sources", e.to_string()))?,
                files_root: if def.kind.is_sql() {
                    None
                } else {
                    files_root.clone()
                },
                validate: ic.validate,
            })
        })
        .collect()
}

/// A source's name in messages: its `name`, else its kind and table, query or files
/// (`postgres public.orders`, `csv landing/orders/*.csv`); never a connection.
pub fn label(def: &SourceDefinition) -> String {
    if let Some(n) = &def.name {
        return n.clone();
    }
    let what = match (&def.table, &def.query, &def.path) {
        (Some(t), _, _) => t.clone(),
        (None, Some(_), _) => format!("query for {}", def.target.trim_matches('/')),
        (None, None, Some(p)) => {
            format!("{}/{}", p.trim_end_matches('/'), def.pattern_or_default())
        }
        _ => def.target.clone(),
    };
    format!("{} {what}", def.kind.as_str())
}

/// The inline sources are parsed from YAML written here: serde_yaml's `at line L column C`
/// points into that, not into the user's file, so it is dropped (the key says where).
fn without_location(e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Key { key, message } => {
            let message = match message.rfind(" at line ") {
                Some(i) if message[i..].contains(" column ") => message[..i].to_owned(),
                _ => message,
            };
            ConfigError::Key { key, message }
        }
        other => other,
    }
}
