//! Catalog replication on Databricks against two emulated workspaces: a catalog with two
//! schemas, a managed table, three views (one on another) and a materialized view, grants at
//! four levels, tags and comments, a column mask and a row filter, replicated with a catalog
//! rename and a principal map. After the sync the catalog diff holds only what is reported
//! (the row filter whose function the target lacks, the materialized view); a second sync
//! issues nothing; a privilege removed on the source is reported and revoked only with
//! `revoke_extra`; a dry run issues nothing and lists every statement.

use std::path::Path;
use std::time::Duration;

use replicator_common::mapping::Mapping;
use replicator_common::retry::{RetryPolicy, Retryable};
use replicator_databricks::Credentials;
use replicator_databricks::client::{ClientOptions, Journal, WorkspaceClient};
use replicator_databricks::ops::catalog::{
    CatalogError, CatalogSync, FindingKind, InventoryFilter, Outcome, SyncOptions, diff_catalog,
    inventory, view_order,
};
use replicator_lake::{TableLocation, sample};
use replicator_tests::databricks_emulator::{Table, Workspace, WorkspaceAuth, World};

const TOKEN: &str = "dapi-test";

struct Env {
    _dir: tempfile::TempDir,
    world: World,
    src: Workspace,
    tgt: Workspace,
}

async fn delta(path: &Path) -> Table {
    let loc = TableLocation::parse(&path.to_string_lossy()).unwrap();
    sample::create(&loc, &sample::orders(0, 10, "eu"), &[])
        .await
        .unwrap();
    Table {
        table_type: "MANAGED".into(),
        location: path.to_owned(),
        properties: Default::default(),
    }
}

impl Env {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let world = World::new();
        let s = world.add_metastore("prod", &dir.path().join("prod-root"));
        let t = world.add_metastore("dr", &dir.path().join("dr-root"));
        world.add_table(
            &s,
            "prod",
            "sales",
            "orders",
            delta(&dir.path().join("src")).await,
        );
        world.add_schema(&s, "prod", "finance");
        // The table itself was replicated by table replication (DEEP CLONE), renamed.
        world.add_table(
            &t,
            "prod_dr",
            "sales",
            "orders",
            delta(&dir.path().join("tgt")).await,
        );
        world.add_view(
            &s,
            "prod.sales.v_eu",
            "VIEW",
            "SELECT * FROM prod.sales.orders WHERE region = 'eu'",
            &["prod.sales.orders"],
            &[],
        );
        world.add_view(
            &s,
            "prod.sales.v_eu_ids",
            "VIEW",
            "SELECT id FROM `prod`.`sales`.`v_eu`",
            &["prod.sales.v_eu"],
            &[],
        );
        world.add_view(
            &s,
            "prod.finance.v_amounts",
            "VIEW",
            "SELECT o.id, o.amount FROM prod.sales.orders o -- prod.sales.orders",
            &["prod.sales.orders"],
            &[],
        );
        world.add_view(
            &s,
            "prod.sales.daily_mv",
            "MATERIALIZED_VIEW",
            "SELECT region, count(*) FROM prod.sales.orders GROUP BY region",
            &["prod.sales.orders"],
            &[],
        );
        for f in ["prod.sales.eu_only", "prod.sales.mask_customer"] {
            world.add_function(&s, f);
        }
        // The target has the mask's function, not the row filter's.
        world.add_function(&t, "prod_dr.sales.mask_customer");
        world.edit_objects(&s, |o| {
            o.meta("catalog", "prod").comment = Some("Production".into());
            let schema = o.meta("schema", "prod.sales");
            schema.comment = Some("Sales, it's \"ours\"".into());
            schema.properties.insert("team".into(), "sales".into());
            o.meta("schema", "prod.finance").comment = Some("Finance".into());
            let orders = o.meta("table", "prod.sales.orders");
            orders.comment = Some("Orders\nper line; 'quoted' \\ too".into());
            orders.tags.insert("pii".into(), "false".into());
            orders.tags.insert("owner team".into(), "sales".into());
            orders.row_filter = Some(("prod.sales.eu_only".into(), vec!["region".into()]));
            let id = o.column("prod.sales.orders", "id");
            id.comment = Some("order id".into());
            id.tags.insert("key".into(), "".into());
            o.column("prod.sales.orders", "customer").mask =
                Some(("prod.sales.mask_customer".into(), vec!["region".into()]));
            o.meta("table", "prod.sales.v_eu").comment = Some("EU orders".into());
            o.meta("table", "prod.sales.v_eu")
                .tags
                .insert("region".into(), "eu".into());
            o.grant("catalog", "prod", "analysts", &["USE_CATALOG"]);
            o.grant("schema", "prod.sales", "analysts", &["USE_SCHEMA"]);
            o.grant("schema", "prod.sales", "group with space", &["USE_SCHEMA"]);
            o.grant("table", "prod.sales.orders", "analysts", &["SELECT"]);
            o.grant(
                "table",
                "prod.sales.orders",
                "etl@example.com",
                &["SELECT", "MODIFY"],
            );
            o.grant("table", "prod.sales.v_eu", "analysts", &["SELECT"]);
        });
        // Something the target has that the source does not: reported, never revoked by
        // default.
        world.edit_objects(&t, |o| {
            o.grant("table", "prod_dr.sales.orders", "old-team", &["SELECT"])
        });
        let auth = || WorkspaceAuth {
            pat: Some(TOKEN.into()),
            oauth: None,
            token_lifetime_s: 3600,
        };
        let src = Workspace::start(&world, &s, "wh", auth()).await;
        let tgt = Workspace::start(&world, &t, "wh", auth()).await;
        for ws in [&src, &tgt] {
            ws.faults(|f| {
                f.page_size = 1;
                f.empty_pages = true;
            });
        }
        Self {
            _dir: dir,
            world,
            src,
            tgt,
        }
    }

    fn client(&self, ws: &Workspace) -> WorkspaceClient {
        let options = ClientOptions {
            poll_interval: Duration::from_millis(2),
            wait_timeout: Duration::ZERO,
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay_ms: 1,
                max_delay_ms: 5,
            },
            ..Default::default()
        };
        WorkspaceClient::new(&ws.url, "wh", Credentials::Token(TOKEN.into()), options).unwrap()
    }
}

fn mapping() -> Mapping {
    let m: Mapping = serde_json::from_value(serde_json::json!({
        "catalogs": {"prod": "prod_dr"},
        "principals": {"analysts": "dr-analysts"},
    }))
    .unwrap();
    m.validate().unwrap();
    m
}

/// The catalog, its schemas and their grants, then tables, then views in dependency order
/// (each with its tags, comments and grants).
async fn sync_all(sync: &CatalogSync<'_>) -> Vec<Outcome> {
    let inv = inventory(sync.source, "prod", &InventoryFilter::default())
        .await
        .unwrap();
    let mut out = vec![
        sync.sync_catalog("prod").await.unwrap(),
        sync.sync_grants("CATALOG", "prod").await.unwrap(),
    ];
    for s in inv.schemas.keys() {
        out.push(sync.sync_schema(s).await.unwrap());
        out.push(sync.sync_grants("SCHEMA", s).await.unwrap());
    }
    for (name, t) in &inv.tables {
        if t.table_type == "MANAGED" {
            out.push(sync.sync_tags_and_comments(name).await.unwrap());
            out.push(sync.sync_grants("TABLE", name).await.unwrap());
        }
    }
    for v in view_order(&inv).unwrap() {
        out.push(sync.sync_view(&v).await.unwrap());
        out.push(sync.sync_tags_and_comments(&v).await.unwrap());
        out.push(sync.sync_grants("VIEW", &v).await.unwrap());
    }
    out.push(sync.sync_view("prod.sales.daily_mv").await.unwrap());
    out
}

fn statements(outcomes: &[Outcome]) -> Vec<String> {
    outcomes.iter().flat_map(|o| o.statements.clone()).collect()
}

fn findings(outcomes: &[Outcome]) -> Vec<String> {
    outcomes.iter().flat_map(|o| o.findings.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_is_replicated_renamed_and_a_second_sync_issues_nothing() {
    let env = Env::new().await;
    let (source, target) = (env.client(&env.src), env.client(&env.tgt));
    let m = mapping();
    let options = SyncOptions::default();
    let sync = CatalogSync::new(&source, &target, &m, &options);

    let first = sync_all(&sync).await;
    let issued: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        issued,
        statements(&first),
        "every statement issued is reported, in order"
    );
    for expected in [
        "COMMENT ON CATALOG `prod_dr` IS 'Production'",
        "GRANT USE CATALOG ON CATALOG `prod_dr` TO `dr-analysts`",
        "CREATE SCHEMA IF NOT EXISTS `prod_dr`.`finance` COMMENT 'Finance'",
        "GRANT USE SCHEMA ON SCHEMA `prod_dr`.`sales` TO `group with space`",
        "GRANT MODIFY, SELECT ON TABLE `prod_dr`.`sales`.`orders` TO `etl@example.com`",
        "CREATE OR REPLACE VIEW `prod_dr`.`sales`.`v_eu_ids` AS SELECT id FROM `prod_dr`.`sales`.`v_eu`",
        "CREATE OR REPLACE VIEW `prod_dr`.`finance`.`v_amounts` AS SELECT o.id, o.amount FROM `prod_dr`.`sales`.`orders` o -- prod.sales.orders",
        "ALTER TABLE `prod_dr`.`sales`.`orders` ALTER COLUMN `customer` SET MASK `prod_dr`.`sales`.`mask_customer` USING COLUMNS (`region`)",
        r"COMMENT ON TABLE `prod_dr`.`sales`.`orders` IS 'Orders\nper line; \'quoted\' \\ too'",
    ] {
        assert!(
            issued.iter().any(|s| s == expected),
            "{expected}\n{issued:#?}"
        );
    }
    let ids: Vec<String> = first.iter().flat_map(|o| o.statement_ids.clone()).collect();
    assert_eq!(ids.len(), issued.len());
    for id in &ids {
        assert_eq!(env.tgt.statement_state(id).as_deref(), Some("SUCCEEDED"));
    }
    assert!(env.src.statements().is_empty(), "the source is only read");
    // A view is created after the view it reads.
    let pos = |v: &str| {
        issued
            .iter()
            .position(|s| s.starts_with(&format!("CREATE OR REPLACE VIEW `prod_dr`.`sales`.`{v}`")))
            .unwrap()
    };
    assert!(pos("v_eu") < pos("v_eu_ids"));
    let reported = findings(&first);
    for expected in [
        "row filter of prod_dr.sales.orders: function prod_dr.sales.eu_only is not on the target; not applied",
        "grants on TABLE prod_dr.sales.orders: `old-team` has SELECT on the target only (not revoked: revoke_extra is off)",
    ] {
        assert!(
            reported.iter().any(|f| f == expected),
            "{expected}\n{reported:#?}"
        );
    }
    assert!(
        reported
            .iter()
            .any(|f| f.starts_with("materialized view prod.sales.daily_mv is reported")),
        "{reported:#?}"
    );

    // The catalog diff: only what is reported.
    let src_inv = inventory(&source, "prod", &InventoryFilter::default())
        .await
        .unwrap();
    let tgt_inv = inventory(&target, "prod_dr", &InventoryFilter::default())
        .await
        .unwrap();
    let diff = diff_catalog(&src_inv, &tgt_inv, &m);
    let kinds: Vec<(&str, FindingKind, &str)> = diff
        .iter()
        .map(|f| {
            (
                f.object.as_str(),
                f.kind,
                f.detail.get(..10).unwrap_or(&f.detail),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                "prod_dr.sales.daily_mv",
                FindingKind::Reported,
                "materializ"
            ),
            ("prod_dr.sales.orders", FindingKind::Different, "grants: `o"),
            ("prod_dr.sales.orders", FindingKind::Different, "row filter"),
        ],
        "{diff:#?}"
    );

    // Second sync: nothing to do.
    env.tgt.clear_log();
    let second = sync_all(&sync).await;
    assert!(statements(&second).is_empty(), "{:#?}", statements(&second));
    assert!(env.tgt.statements().is_empty());
    assert!(second.iter().all(|o| !o.changed));

    // A privilege removed on the source: reported on the target, revoked only on request.
    env.world.edit_objects(&env.src.metastore, |o| {
        o.revoke("table", "prod.sales.orders", "etl@example.com", &["MODIFY"])
    });
    let o = sync
        .sync_grants("TABLE", "prod.sales.orders")
        .await
        .unwrap();
    assert!(o.statements.is_empty(), "{o:#?}");
    assert!(
        o.findings
            .iter()
            .any(|f| f.contains("`etl@example.com` has MODIFY on the target only")),
        "{o:#?}"
    );
    let revoke = SyncOptions {
        revoke_extra: true,
        owners: false,
    };
    let sync2 = CatalogSync::new(&source, &target, &m, &revoke);
    let o = sync2
        .sync_grants("TABLE", "prod.sales.orders")
        .await
        .unwrap();
    assert_eq!(
        o.statements,
        vec![
            "REVOKE MODIFY ON TABLE `prod_dr`.`sales`.`orders` FROM `etl@example.com`",
            "REVOKE SELECT ON TABLE `prod_dr`.`sales`.`orders` FROM `old-team`",
        ]
    );
    let grants = env.world.edit_objects(&env.tgt.metastore, |o| {
        o.meta("table", "prod_dr.sales.orders").grants.clone()
    });
    assert_eq!(
        grants["etl@example.com"].iter().collect::<Vec<_>>(),
        vec!["SELECT"]
    );
    assert!(!grants.contains_key("old-team"));
    let o = sync2
        .sync_grants("TABLE", "prod.sales.orders")
        .await
        .unwrap();
    assert!(o.statements.is_empty() && o.findings.is_empty(), "{o:#?}");

    // Owners, on request, mapped like any principal.
    env.world.edit_objects(&env.src.metastore, |o| {
        o.meta("table", "prod.sales.orders").owner = Some("analysts".into())
    });
    let owners = SyncOptions {
        revoke_extra: false,
        owners: true,
    };
    let o = CatalogSync::new(&source, &target, &m, &owners)
        .sync_tags_and_comments("prod.sales.orders")
        .await
        .unwrap();
    assert_eq!(
        o.statements,
        vec!["ALTER TABLE `prod_dr`.`sales`.`orders` OWNER TO `dr-analysts`"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_issues_nothing_and_lists_every_statement() {
    let env = Env::new().await;
    let journal = Journal::default();
    let (source, target) = (
        env.client(&env.src),
        env.client(&env.tgt).with_dry_run(journal.clone()),
    );
    let m = mapping();
    let options = SyncOptions::default();
    let dry = sync_all(&CatalogSync::new(&source, &target, &m, &options)).await;
    assert!(
        env.tgt.statements().is_empty(),
        "{:?}",
        env.tgt.statements()
    );
    let listed = statements(&dry);
    assert!(listed.len() >= 20, "{listed:#?}");
    assert!(
        listed
            .iter()
            .any(|s| s.starts_with("CREATE OR REPLACE VIEW `prod_dr`.`sales`.`v_eu_ids`"))
    );
    let sql: Vec<String> = journal
        .entries()
        .into_iter()
        .filter_map(|e| {
            e.split_once("] ")
                .filter(|(h, _)| h.starts_with("SQL ["))
                .map(|(_, s)| s.to_owned())
        })
        .collect();
    assert_eq!(sql, listed);
    assert!(dry.iter().all(|o| o.statement_ids.is_empty()));

    // The real run issues exactly what the dry run listed.
    let real_target = env.client(&env.tgt);
    let real = sync_all(&CatalogSync::new(&source, &real_target, &m, &options)).await;
    assert_eq!(statements(&real), listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_waits_for_its_dependency_and_odd_names_are_quoted_or_refused() {
    let env = Env::new().await;
    let (source, target) = (env.client(&env.src), env.client(&env.tgt));
    let m = mapping();
    let options = SyncOptions::default();
    let sync = CatalogSync::new(&source, &target, &m, &options);
    let e = sync.sync_view("prod.sales.v_eu_ids").await.unwrap_err();
    assert!(
        e.is_transient(),
        "a view waiting for its dependency is retried"
    );
    assert!(
        matches!(&e, CatalogError::Waits { missing, .. } if missing == "prod_dr.sales.v_eu"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "view prod_dr.sales.v_eu_ids waits for prod_dr.sales.v_eu: it is not on the target yet"
    );

    // A view named with a backtick and a quote, read through a table named likewise.
    let s = &env.src.metastore;
    let t = &env.tgt.metastore;
    let odd = Table {
        table_type: "MANAGED".into(),
        location: Default::default(),
        properties: Default::default(),
    };
    env.world
        .add_table(s, "prod", "sales", "we`ird'", odd.clone());
    env.world.add_table(t, "prod_dr", "sales", "we`ird'", odd);
    env.world.add_view(
        s,
        "prod.sales.v`x",
        "VIEW",
        "SELECT * FROM prod.sales.`we``ird'`",
        &["prod.sales.we`ird'"],
        &[],
    );
    let o = sync.sync_view("prod.sales.v`x").await.unwrap();
    assert_eq!(
        o.statements,
        vec![
            "CREATE OR REPLACE VIEW `prod_dr`.`sales`.`v``x` AS SELECT * FROM `prod_dr`.`sales`.`we``ird'`"
        ]
    );
    assert!(
        sync.sync_view("prod.sales.v`x")
            .await
            .unwrap()
            .statements
            .is_empty()
    );
    // A principal with a backtick is quoted; one with a newline refused, nothing issued.
    env.world.edit_objects(s, |o| {
        o.grant("table", "prod.sales.v`x", "a`b", &["SELECT"])
    });
    let o = sync.sync_grants("VIEW", "prod.sales.v`x").await.unwrap();
    assert_eq!(
        o.statements,
        vec!["GRANT SELECT ON VIEW `prod_dr`.`sales`.`v``x` TO `a``b`"]
    );
    env.world.edit_objects(s, |o| {
        o.grant("table", "prod.sales.v`x", "bad\nname", &["SELECT"])
    });
    env.tgt.clear_log();
    assert!(sync.sync_grants("VIEW", "prod.sales.v`x").await.is_err());
    assert!(env.tgt.statements().is_empty());
    // A view whose dependency its text names without its catalog cannot be remapped.
    env.world.add_view(
        s,
        "prod.sales.v_short",
        "VIEW",
        "SELECT * FROM sales.orders",
        &["prod.sales.orders"],
        &[],
    );
    let e = sync.sync_view("prod.sales.v_short").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("does not name it as catalog.schema.name"),
        "{e}"
    );
}
