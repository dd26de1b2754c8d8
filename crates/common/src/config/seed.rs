//! The DR sync job's JSON file (`workspaces[].sync_groups[]`, docs/sync.md "Import") as a
//! replicator config: [`import`] maps it, [`SeedImport::to_yaml`] prints it, and
//! [`crate::Config::load`] accepts such a file wherever a config is ([`from_json_text`]).
//!
//! The mapping, for the first workspace (the others are reported, not mapped):
//! - `sync_groups[]` → `sync.groups` (`group_name` → `name`, `group_owner_email` → `owner`,
//!   `workflow`, `tables`);
//! - `sync_default_schedule` → `sync.default_schedule`; `sync_max_retries` (a string or a
//!   number) → `sync.max_retries`;
//! - `sync_success_notification` / `sync_failure_notification` (an address, or several
//!   separated by `,` or `;`) → `sync.notify.success` / `failure`;
//! - `sync_location_primary` / `sync_location_secondary` → `sync.primary` / `secondary`, and
//!   `source.root` / `target.root` (the native engine needs roots; the seed has no others);
//! - `workspace_instance_url` and `workspace_pat_key` → a commented-out `databricks` section
//!   (`source.host`, and `source.auth.token` as a secret reference: the file
//!   `/run/secrets/<key>` — a mounted secrets directory — or, without a key, the variable
//!   `DATABRICKS_TOKEN`; never the token itself). It stays commented: the Databricks engine
//!   also needs a SQL warehouse, a target workspace and catalogs, which the file does not
//!   give.
//!
//! Every field that is not mapped is named in [`SeedImport::notes`].

use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

/// The mounted secrets directory a `workspace_pat_key` names a file in.
pub const SECRETS_DIR: &str = "/run/secrets";

/// The environment variable the token is read from when the file names no PAT key.
pub const TOKEN_ENV: &str = "DATABRICKS_TOKEN";

/// A DR sync job's JSON file, mapped.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedImport {
    /// The config document (`source`, `target`, `sync`).
    pub config: Yaml,
    /// The `databricks` section the file describes in part (printed commented out).
    pub databricks: Option<Yaml>,
    /// One line per group found: its name and what it has.
    pub groups: Vec<String>,
    /// One line per field that was not mapped, naming it and why.
    pub notes: Vec<String>,
}

/// Whether `doc` is in the DR sync job's shape: an object with a `workspaces` list.
pub fn is_seed(doc: &Json) -> bool {
    doc.get("workspaces").is_some_and(Json::is_array)
}

/// `text` converted to a config's YAML when it is a JSON file in the DR sync job's shape;
/// `None` when it is not (a YAML config, or JSON of another shape).
pub fn from_json_text(text: &str) -> Option<Result<SeedImport, String>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let doc: Json = serde_json::from_str(text).ok()?;
    is_seed(&doc).then(|| import(&doc))
}

const WORKSPACE_KEYS: &[&str] = &[
    "workspace_name",
    "workspace_instance_url",
    "workspace_pat_key",
    "sync_location_primary",
    "sync_location_secondary",
    "sync_failure_notification",
    "sync_success_notification",
    "sync_default_schedule",
    "sync_max_retries",
    "sync_groups",
];

const GROUP_KEYS: &[&str] = &["group_name", "group_owner_email", "workflow", "tables"];

/// Map a DR sync job's JSON file to a config. Refused only when it is not that shape (no
/// `workspaces` list, or no workspace in it); everything else is mapped or noted.
pub fn import(doc: &Json) -> Result<SeedImport, String> {
    let top = doc
        .as_object()
        .ok_or("expected a JSON object with a `workspaces` list")?;
    let workspaces = top
        .get("workspaces")
        .and_then(Json::as_array)
        .ok_or("expected a `workspaces` list")?;
    let ws = workspaces
        .first()
        .ok_or("`workspaces` is empty: nothing to import")?;
    let ws = ws.as_object().ok_or("`workspaces[0]` is not an object")?;
    let mut notes = Vec::new();

    for (k, v) in top {
        match k.as_str() {
            "workspaces" => {}
            "secret_scope" => {
                if !text(v).is_empty() {
                    notes.push(format!(
                        "secret_scope `{}`: Databricks secret scopes are not read; the token is a \
                         reference to a file in {SECRETS_DIR} or an environment variable",
                        text(v)
                    ));
                }
            }
            other => notes.push(format!("{other}: unknown key")),
        }
    }
    for (i, other) in workspaces.iter().enumerate().skip(1) {
        let name = other.get("workspace_name").map(text).unwrap_or_default();
        notes.push(format!(
            "workspaces[{i}] `{name}`: a config describes one workspace (import it from a file \
             of its own)"
        ));
    }
    for k in ws.keys() {
        if !WORKSPACE_KEYS.contains(&k.as_str()) {
            notes.push(format!("workspaces[0].{k}: unknown key"));
        }
    }
    if let Some(name) = ws.get("workspace_name").map(text).filter(|n| !n.is_empty()) {
        notes.push(format!(
            "workspaces[0].workspace_name `{name}`: a name only"
        ));
    }

    // Locations: sync.primary/secondary, and the roots the native engine needs.
    let mut config = Mapping::new();
    let mut sync = Mapping::new();
    for (key, side, root) in [
        ("sync_location_primary", "primary", "source"),
        ("sync_location_secondary", "secondary", "target"),
    ] {
        match ws.get(key).map(text).filter(|l| !l.is_empty()) {
            Some(location) => {
                sync.insert(side.into(), location.clone().into());
                config.insert(root.into(), mapping([("root", location.into())]));
            }
            None => notes.push(format!(
                "workspaces[0].{key}: missing: set sync.{side} and {root}.root"
            )),
        }
    }
    if config.contains_key("source") || config.contains_key("target") {
        notes.push(
            "source.root, target.root: not in the file (it names tables, not their storage): set \
             to the sync locations; point them at where the tables live if that is elsewhere"
                .into(),
        );
    }
    if let Some(s) = ws
        .get("sync_default_schedule")
        .map(text)
        .filter(|s| !s.is_empty())
    {
        sync.insert("default_schedule".into(), s.into());
    }
    match ws.get("sync_max_retries") {
        None | Some(Json::Null) => {}
        Some(v) => match text(v).trim().parse::<u32>() {
            Ok(n) => {
                sync.insert("max_retries".into(), Yaml::Number(n.into()));
            }
            Err(_) => notes.push(format!(
                "workspaces[0].sync_max_retries `{}`: not a whole number (the default, 3, applies)",
                text(v)
            )),
        },
    }
    let mut notify = Mapping::new();
    for (key, when) in [
        ("sync_success_notification", "success"),
        ("sync_failure_notification", "failure"),
    ] {
        let list = ws.get(key).map(addresses).unwrap_or_default();
        if !list.is_empty() {
            notify.insert(when.into(), strings(list));
        }
    }
    if !notify.is_empty() {
        sync.insert("notify".into(), Yaml::Mapping(notify));
    }

    // Groups.
    let mut groups = Vec::new();
    let mut lines = Vec::new();
    let listed = ws.get("sync_groups");
    let list = listed.and_then(Json::as_array).cloned().unwrap_or_default();
    if listed.is_some_and(|l| !l.is_array()) {
        notes.push("workspaces[0].sync_groups: not a list".into());
    }
    for (i, g) in list.iter().enumerate() {
        let Some(g) = g.as_object() else {
            notes.push(format!("workspaces[0].sync_groups[{i}]: not an object"));
            continue;
        };
        for k in g.keys() {
            if !GROUP_KEYS.contains(&k.as_str()) {
                notes.push(format!("workspaces[0].sync_groups[{i}].{k}: unknown key"));
            }
        }
        let name = g.get("group_name").map(text).unwrap_or_default();
        let owner = g
            .get("group_owner_email")
            .map(addresses)
            .unwrap_or_default();
        let tables = g.get("tables").map(addresses).unwrap_or_default();
        let workflow = g.get("workflow").map(text).filter(|w| !w.is_empty());
        let mut group = Mapping::new();
        group.insert("name".into(), name.clone().into());
        if !owner.is_empty() {
            group.insert("owner".into(), strings(owner));
        }
        group.insert("tables".into(), strings(tables.clone()));
        if let Some(w) = &workflow {
            group.insert("workflow".into(), w.clone().into());
        }
        groups.push(Yaml::Mapping(group));
        let shown = if name.is_empty() {
            format!("sync_groups[{i}] (no name)")
        } else {
            name
        };
        lines.push(format!(
            "{shown}: {} table{}{}",
            tables.len(),
            if tables.len() == 1 { "" } else { "s" },
            workflow
                .map(|w| format!(", workflow {w}"))
                .unwrap_or_default()
        ));
    }
    if !groups.is_empty() {
        sync.insert("groups".into(), Yaml::Sequence(groups));
    }
    config.insert("sync".into(), Yaml::Mapping(sync));

    // The workspace: a `databricks` section the file only half describes.
    let host = ws
        .get("workspace_instance_url")
        .map(text)
        .filter(|h| !h.is_empty());
    let pat_key = ws
        .get("workspace_pat_key")
        .map(text)
        .filter(|k| !k.trim().is_empty());
    let token = match &pat_key {
        Some(key) => mapping([("file", format!("{SECRETS_DIR}/{}", key.trim()).into())]),
        None => mapping([("env", TOKEN_ENV.into())]),
    };
    let databricks = host.as_ref().map(|host| {
        let source = mapping([
            ("host", host.clone().into()),
            ("warehouse_id", "WAREHOUSE_ID".into()),
            ("auth", mapping([("token", token.clone())])),
        ]);
        mapping([
            ("source", source),
            (
                "target",
                mapping([
                    ("host", "https://SECONDARY-WORKSPACE".into()),
                    ("warehouse_id", "WAREHOUSE_ID".into()),
                    (
                        "auth",
                        mapping([("token", mapping([("env", "SECONDARY_TOKEN".into())]))]),
                    ),
                ]),
            ),
            (
                "catalogs",
                Yaml::Sequence(vec![mapping([("source", "CATALOG".into())])]),
            ),
        ])
    });
    if let Some(host) = &host {
        notes.push(format!(
            "workspaces[0].workspace_instance_url `{host}`: written as a commented-out \
             `databricks` section (source.host): the Databricks engine also needs a warehouse, \
             a target workspace and catalogs the file does not give"
        ));
    }
    match (&pat_key, &host) {
        (Some(key), _) => notes.push(format!(
            "workspaces[0].workspace_pat_key `{}`: the token is read from the file \
             {SECRETS_DIR}/{} (a mounted secret), in the commented-out `databricks` section",
            key.trim(),
            key.trim()
        )),
        (None, Some(_)) => notes.push(format!(
            "workspaces[0].workspace_pat_key: empty: the token is read from ${TOKEN_ENV}, in \
             the commented-out `databricks` section"
        )),
        (None, None) => {}
    }

    Ok(SeedImport {
        config: Yaml::Mapping(config),
        databricks,
        groups: lines,
        notes,
    })
}

impl SeedImport {
    /// The config as YAML, with the `databricks` section commented out at the end.
    pub fn to_yaml(&self) -> String {
        let mut out =
            String::from("# Imported from a DR sync job's JSON file (`replicator sync import`).\n");
        out.push_str(&serde_yaml::to_string(&self.config).unwrap_or_default());
        if let Some(d) = &self.databricks {
            out.push_str(
                "# The Databricks engine: fill in the warehouse, the target workspace and the \
                 catalogs, then uncomment.\n",
            );
            let section =
                serde_yaml::to_string(&mapping([("databricks", d.clone())])).unwrap_or_default();
            for line in section.lines() {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// A JSON value as text: a string as it is, a number or boolean as written, null as empty.
fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// A list of strings from a list, or from one string of items separated by `,` or `;`.
fn addresses(v: &Json) -> Vec<String> {
    let items: Vec<String> = match v {
        Json::Array(a) => a.iter().map(text).collect(),
        other => text(other).split([',', ';']).map(str::to_owned).collect(),
    };
    items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn strings(v: Vec<String>) -> Yaml {
    Yaml::Sequence(v.into_iter().map(Yaml::String).collect())
}

fn mapping<const N: usize>(entries: [(&str, Yaml); N]) -> Yaml {
    Yaml::Mapping(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::none;

    /// The seed's JSON block, verbatim.
    const SEED: &str = include_str!("../../../../tests/fixtures/seed_002_sync.json");

    fn seed() -> Json {
        serde_json::from_str(SEED).unwrap()
    }

    fn load(imported: &SeedImport) -> Config {
        Config::from_yaml(&imported.to_yaml(), none(), &[]).unwrap()
    }

    #[test]
    fn the_seed_maps_to_a_config_with_its_three_groups() {
        let imported = import(&seed()).unwrap();
        assert_eq!(
            imported.groups,
            vec![
                "core_product: 4 tables, workflow core_product_job",
                "example_group_1: 1 table, workflow example_workflow_1",
                "scheduled_sync: 3 tables",
            ]
        );
        let c = load(&imported);
        let s = c.sync.as_ref().unwrap();
        let location = "abfss://container@storageaccount.dfs.core.windows.net/";
        assert_eq!(s.primary.as_deref(), Some(location));
        assert_eq!(s.secondary.as_deref(), Some(location));
        assert_eq!(
            (c.source.root.as_str(), c.target.root.as_str()),
            (location, location)
        );
        assert_eq!(s.default_schedule.as_deref(), Some("0 */12 * * *"));
        assert_eq!(s.max_retries, 3);
        assert_eq!(
            s.notify.success,
            vec!["mohit.singh@databricks.com".to_owned()]
        );
        assert_eq!(
            s.notify.failure,
            vec!["mohit.singh@databricks.com".to_owned()]
        );
        let core = s.group("core_product").unwrap();
        assert_eq!(core.owner, vec!["mohit.singh@databricks.com".to_owned()]);
        assert_eq!(
            core.tables,
            vec!["core_raw", "core_silver", "core_gold", "job_metadata"]
        );
        assert_eq!(core.workflow.as_deref(), Some("core_product_job"));
        assert_eq!(s.group("scheduled_sync").unwrap().workflow, None);
        assert!(s.check_groups().is_empty(), "{:?}", s.check_groups());
        assert_eq!(s.valid_groups().len(), 3);
        // The workspace is kept, commented out, with its token as a reference.
        assert!(c.databricks.is_none());
        let yaml = imported.to_yaml();
        assert!(
            yaml.contains(
                "# databricks:\n#   source:\n#     host: https://<workspace-1>.databricks.com\n"
            ),
            "{yaml}"
        );
        assert!(yaml.contains("#         env: DATABRICKS_TOKEN\n"), "{yaml}");
    }

    #[test]
    fn what_is_not_mapped_is_named() {
        let imported = import(&seed()).unwrap();
        let notes = imported.notes.join("\n");
        for words in [
            "workspaces[0].workspace_name `dr_test_east_workspace`: a name only",
            "workspaces[0].workspace_instance_url `https://<workspace-1>.databricks.com`: written as a commented-out `databricks` section",
            "workspaces[0].workspace_pat_key: empty: the token is read from $DATABRICKS_TOKEN",
            "source.root, target.root: not in the file",
        ] {
            assert!(notes.contains(words), "{words}\n{notes}");
        }
        // An empty secret scope is nothing to report; a named one, a PAT key, other
        // workspaces and unknown keys are.
        assert!(!notes.contains("secret_scope"), "{notes}");
        let mut doc = seed();
        doc["secret_scope"] = "dr-scope".into();
        doc["extra"] = 1.into();
        doc["workspaces"][0]["workspace_pat_key"] = "dr-pat".into();
        doc["workspaces"][0]["sync_max_retries"] = "three".into();
        doc["workspaces"][0]["sync_groups"][0]["schedule"] = "* * * * *".into();
        let mut second = doc["workspaces"][0].clone();
        second["workspace_name"] = "west".into();
        doc["workspaces"].as_array_mut().unwrap().push(second);
        let imported = import(&doc).unwrap();
        let notes = imported.notes.join("\n");
        for words in [
            "secret_scope `dr-scope`: Databricks secret scopes are not read",
            "extra: unknown key",
            "workspaces[1] `west`: a config describes one workspace",
            "workspaces[0].workspace_pat_key `dr-pat`: the token is read from the file /run/secrets/dr-pat",
            "workspaces[0].sync_max_retries `three`: not a whole number",
            "workspaces[0].sync_groups[0].schedule: unknown key",
        ] {
            assert!(notes.contains(words), "{words}\n{notes}");
        }
        assert!(
            imported
                .to_yaml()
                .contains("#         file: /run/secrets/dr-pat\n")
        );
        assert!(!imported.to_yaml().contains("dr-scope"));
        assert_eq!(load(&imported).sync.unwrap().max_retries, 3);
    }

    #[test]
    fn values_may_be_numbers_lists_or_separated_strings() {
        let mut doc = seed();
        let ws = &mut doc["workspaces"][0];
        ws["sync_max_retries"] = 5.into();
        ws["sync_failure_notification"] = "a@example.com; b@example.com,".into();
        ws["sync_success_notification"] = serde_json::json!(["c@example.com"]);
        ws["sync_groups"][1]["group_owner_email"] = "x@example.com, y@example.com".into();
        ws["sync_groups"][1]["workflow"] = "".into();
        let c = load(&import(&doc).unwrap());
        let s = c.sync.unwrap();
        assert_eq!(s.max_retries, 5);
        assert_eq!(s.notify.failure, vec!["a@example.com", "b@example.com"]);
        assert_eq!(s.notify.success, vec!["c@example.com"]);
        let g = s.group("example_group_1").unwrap();
        assert_eq!(g.owner, vec!["x@example.com", "y@example.com"]);
        assert_eq!(g.workflow, None);
    }

    #[test]
    fn only_the_seed_shape_is_taken_for_one() {
        assert!(from_json_text("source: { root: /a }\n").is_none());
        assert!(from_json_text("{ \"source\": { \"root\": \"/a\" } }").is_none());
        assert!(from_json_text("{ not json").is_none());
        assert!(from_json_text(SEED).unwrap().is_ok());
        let err = from_json_text("{ \"workspaces\": [] }")
            .unwrap()
            .unwrap_err();
        assert!(err.contains("`workspaces` is empty"), "{err}");
        assert!(import(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn config_load_accepts_the_json_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dr_sync.json");
        let mut doc = seed();
        doc["workspaces"][0]["sync_location_primary"] = "primary".into();
        doc["workspaces"][0]["sync_groups"][2]["tables"] = serde_json::json!([]);
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let c = Config::load(&path, &["sync.max_retries=4".into()]).unwrap();
        let s = c.sync.as_ref().unwrap();
        assert_eq!(s.max_retries, 4, "overrides apply");
        // Relative locations resolve against the file's directory, as a YAML config's do.
        assert_eq!(
            s.primary_root(&c),
            dir.path().join("primary").to_string_lossy()
        );
        assert_eq!(c.source.root, dir.path().join("primary").to_string_lossy());
        // The group without tables is reported and skipped; the others run.
        assert_eq!(
            s.check_groups(),
            vec![(
                "scheduled_sync".to_owned(),
                "sync.groups[2].tables: list at least one table".to_owned()
            )]
        );
        let valid: Vec<&str> = s.valid_groups().iter().map(|g| g.name.as_str()).collect();
        assert_eq!(valid, vec!["core_product", "example_group_1"]);
        // A bad default schedule refuses the file, naming the key.
        doc["workspaces"][0]["sync_default_schedule"] = "*/5 * * * *".into();
        std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
        let err = Config::load(&path, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("config key `sync.default_schedule`"),
            "{err}"
        );
        std::fs::write(&path, "{ \"workspaces\": [] }").unwrap();
        let err = Config::load(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("`workspaces` is empty"), "{err}");
    }
}
