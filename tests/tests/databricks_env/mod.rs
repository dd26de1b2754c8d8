//! The environment every Databricks engine test runs in: two metastores linked by Delta
//! Sharing in the workspace emulator (`replicator_tests::databricks_emulator`), tables backed
//! by local Delta directories. Each `databricks_*.rs` test file includes this module and uses
//! part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use replicator_common::Config;
use replicator_common::databricks::DatabricksConfig;
use replicator_databricks::WorkspacePair;
use replicator_databricks::ops::{DbOperation, Report, TableReport};
use replicator_lake::TableLocation;
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::sample;
use replicator_tests::databricks_emulator::{Table, Workspace, WorkspaceAuth, World};

pub const PAT: &str = "dapi-source-token";
pub const CLIENT_ID: &str = "sp-target";
pub const CLIENT_SECRET: &str = "target-secret";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub world: World,
    pub src: Workspace,
    pub tgt: Workspace,
}

pub fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(&p.to_string_lossy()).unwrap()
}

pub async fn rows(p: &Path) -> Vec<String> {
    sorted_rows(&read_batches(&loc(p), None).await.unwrap()).unwrap()
}

impl Env {
    /// Source metastore `prod` with a managed, an external and a streaming table (and a
    /// materialized view the engine must skip); target metastore `dr` with the streaming
    /// table already created by its pipeline.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let world = World::new();
        let src_ms = world.add_metastore("prod", &dir.path().join("prod-root"));
        let tgt_ms = world.add_metastore("dr", &dir.path().join("dr-root"));
        let add = |name: &str, ty: &str, path: PathBuf| {
            world.add_table(
                &src_ms,
                "prod",
                "sales",
                name,
                Table {
                    table_type: ty.into(),
                    location: path,
                    properties: Default::default(),
                },
            );
        };
        let orders = dir.path().join("src/orders");
        sample::create(&loc(&orders), &sample::orders(0, 40, "eu"), &["region"])
            .await
            .unwrap();
        sample::append(&loc(&orders), &sample::orders(40, 10, "us"))
            .await
            .unwrap();
        add("orders", "MANAGED", orders);
        let customers = dir.path().join("ext/customers");
        sample::create(&loc(&customers), &sample::orders(100, 25, "apac"), &[])
            .await
            .unwrap();
        add("customers", "EXTERNAL", customers);
        add("daily_mv", "MATERIALIZED_VIEW", dir.path().join("src/mv"));
        let events = dir.path().join("src/events");
        sample::create(&loc(&events), &sample::orders(500, 30, "eu"), &[])
            .await
            .unwrap();
        world.add_streaming_table(&src_ms, "prod", "sales", "events", "p-1111-aaaa", &events);
        let tgt_events = dir.path().join("tgt/events");
        sample::create(&loc(&tgt_events), &sample::orders(9000, 1, "pipeline"), &[])
            .await
            .unwrap();
        world.add_streaming_table(
            &tgt_ms,
            "prod",
            "sales",
            "events",
            "p-2222-bbbb",
            &tgt_events,
        );

        let src = Workspace::start(
            &world,
            &src_ms,
            "wh-src",
            WorkspaceAuth {
                pat: Some(PAT.into()),
                oauth: None,
                token_lifetime_s: 3600,
            },
        )
        .await;
        let tgt = Workspace::start(
            &world,
            &tgt_ms,
            "wh-tgt",
            WorkspaceAuth {
                pat: None,
                oauth: Some((CLIENT_ID.into(), CLIENT_SECRET.into())),
                token_lifetime_s: 3600,
            },
        )
        .await;
        std::fs::write(dir.path().join("src.token"), format!("{PAT}\n")).unwrap();
        std::fs::write(dir.path().join("tgt.secret"), CLIENT_SECRET).unwrap();
        // Exercise the documented listing corner cases on every run: one item per page and
        // an empty page (with a next token) before each.
        for ws in [&src, &tgt] {
            ws.faults(|f| {
                f.page_size = 1;
                f.empty_pages = true;
                f.min_polls = 2;
            });
        }
        Self {
            dir,
            world,
            src,
            tgt,
        }
    }

    pub fn yaml(&self, extra: &str) -> String {
        format!(
            r#"
databricks:
  source:
    host: {src}
    warehouse_id: wh-src
    auth: {{ token: {{ file: {dir}/src.token }} }}
  target:
    host: {tgt}
    warehouse_id: wh-tgt
    auth: {{ client_id: {CLIENT_ID}, client_secret: {{ file: {dir}/tgt.secret }} }}
  catalogs:
    - source: prod
  client:
    poll_interval_ms: 2
    statement_timeout_ms: 20000
    wait_timeout_s: 0
    max_retry_after_ms: 20
    page_size: 50
    retry: {{ max_attempts: 8, base_delay_ms: 1, max_delay_ms: 5 }}
{extra}"#,
            src = self.src.url,
            tgt = self.tgt.url,
            dir = self.dir.path().display(),
        )
    }

    pub fn config(&self, extra: &str) -> DatabricksConfig {
        Config::from_yaml(&self.yaml(extra), std::iter::empty(), &[])
            .unwrap()
            .databricks
            .unwrap()
    }

    pub async fn run(&self, op: DbOperation, extra: &str) -> Report {
        WorkspacePair::from_config(&self.config(extra), false)
            .unwrap()
            .run(op)
            .await
            .unwrap()
    }

    pub fn table(&self, ws: &Workspace, catalog: &str, schema: &str, name: &str) -> Option<Table> {
        self.world.table(&ws.metastore, catalog, schema, name)
    }

    pub fn source_path(&self, name: &str) -> PathBuf {
        self.table(&self.src, "prod", "sales", name)
            .unwrap()
            .location
    }

    /// Every replicated target table holds exactly its source's rows.
    pub async fn assert_replicas_equal(&self) {
        for name in ["orders", "customers", "events"] {
            let target = self.table(&self.tgt, "prod", "sales", name).unwrap();
            assert_eq!(
                rows(&target.location).await,
                rows(&self.source_path(name)).await,
                "{name}"
            );
        }
    }
}

pub fn find<'a>(r: &'a Report, op: &str, table: &str) -> &'a TableReport {
    r.tables
        .iter()
        .find(|t| t.operation == op && t.table == table)
        .unwrap_or_else(|| panic!("no {op} report for {table}: {:#?}", r.tables))
}
