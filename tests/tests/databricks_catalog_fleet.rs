//! Whole-catalog DR with the Databricks engine through the fleet path of `replicator run`
//! (docs/catalog.md): with a `catalog` section the run carries, beside the managed,
//! external and streaming tables, the catalog's two schemas, three views (one on another,
//! across schemas), the materialized view (reported), an external volume and a managed one
//! with nested files, the external location the first lives in (storage prefix and
//! credential mapped), grants at four levels with a principal map, tags and comments, and
//! the external table deep-cloned into its mapped location (or registered) — each a catalog
//! task with its result line. The engine's catalog diff is then empty but for what is
//! reported; a second run changes nothing; a privilege removed on the source is reported
//! and revoked only with `grants.revoke_extra`. With `volumes.direct`, volume files go
//! straight between the storages.

use replicator_cli::embedded::{RunOptions, RunOutput, run};
use replicator_common::Config;
use replicator_engine::{DiffState, Engines};
use replicator_proto::{EngineKind, TableStatus, TableSummary};

mod databricks_env;
use databricks_env::Env;

const VOLUME: &str = "prod.sales.landing";
const MODELS: &str = "prod.sales.models";

fn objects(done: &replicator_proto::RunCompleted) -> Vec<&TableSummary> {
    done.summary
        .tables
        .iter()
        .filter(|t| t.kind.is_some())
        .collect()
}

/// The run's inventory check (the last catalog task of a catalog run).
fn inventory(done: &replicator_proto::RunCompleted) -> &TableSummary {
    let checks: Vec<_> = objects(done)
        .into_iter()
        .filter(|t| t.kind == Some(replicator_proto::ObjectKind::Inventory))
        .collect();
    assert_eq!(checks.len(), 1, "{:#?}", objects(done));
    checks[0]
}

fn line<'a>(done: &'a replicator_proto::RunCompleted, label: &str) -> &'a TableSummary {
    objects(done)
        .into_iter()
        .find(|t| t.table == label)
        .unwrap_or_else(|| panic!("no {label} in {:#?}", objects(done)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_carries_views_volumes_locations_and_grants_on_the_fleet() {
    let env = Env::new().await;
    let dir = env.dir.path().to_owned();
    let (s, t) = (env.src.metastore.clone(), env.tgt.metastore.clone());
    let primary = format!("file://{}/primary", dir.display());
    let secondary = format!("file://{}/secondary", dir.display());
    env.world.add_view(
        &s,
        "prod.sales.v_eu",
        "VIEW",
        "SELECT * FROM prod.sales.orders WHERE region = 'eu'",
        &["prod.sales.orders"],
        &[],
    );
    // A second schema, and three views: one on another, across the schemas.
    env.world.add_schema(&s, "prod", "finance");
    env.world.add_view(
        &s,
        "prod.sales.v_us",
        "VIEW",
        "SELECT * FROM prod.sales.orders WHERE region = 'us'",
        &["prod.sales.orders"],
        &[],
    );
    env.world.add_view(
        &s,
        "prod.finance.v_eu_ids",
        "VIEW",
        "SELECT id FROM `prod`.`sales`.`v_eu`",
        &["prod.sales.v_eu"],
        &[],
    );
    env.world.add_storage_credential(&s, "src_cred");
    env.world
        .add_external_location(&s, "landing_loc", &format!("{primary}/landing"), "src_cred");
    env.world.add_storage_credential(&t, "dr_cred");
    env.world
        .create_volume(&s, VOLUME, Some(&format!("{primary}/landing/raw")), None)
        .unwrap();
    let files = env.world.volume_dir(&s, VOLUME).unwrap();
    std::fs::create_dir_all(files.join("2026/11")).unwrap();
    std::fs::write(files.join("2026/11/orders.csv"), b"id\n1\n").unwrap();
    std::fs::write(files.join("it's a `file`.txt"), b"quoted").unwrap();
    // A managed volume with nested files.
    env.world.create_volume(&s, MODELS, None, None).unwrap();
    let models = env.world.volume_dir(&s, MODELS).unwrap();
    std::fs::create_dir_all(models.join("churn/v1")).unwrap();
    std::fs::write(models.join("churn/v1/weights.bin"), vec![9u8; 50_000]).unwrap();
    // Grants at four levels, tags and comments.
    env.world.edit_objects(&s, |o| {
        o.meta("schema", "prod.sales").comment = Some("Sales".into());
        let orders = o.meta("table", "prod.sales.orders");
        orders.comment = Some("One row per order line".into());
        orders.tags.insert("pii".into(), "false".into());
        o.column("prod.sales.orders", "id").comment = Some("order id".into());
        o.grant("catalog", "prod", "analysts", &["USE_CATALOG"]);
        o.grant("schema", "prod.sales", "analysts", &["USE_SCHEMA"]);
        o.grant("table", "prod.sales.orders", "analysts", &["SELECT"]);
        o.grant("table", "prod.sales.orders", "auditors", &["SELECT"]);
        o.grant("table", "prod.sales.v_eu", "analysts", &["SELECT"]);
    });

    let state = dir.join("state.db");
    let yaml = format!(
        r#"{}state: {{ url: "sqlite://{}" }}
catalog:
  mapping:
    locations: [["{primary}/", "{secondary}/"], ["file://{ext}/ext/", "file://{ext}/dr-ext/"]]
    principals: {{ analysts: dr-analysts }}
  credentials: {{ src_cred: dr_cred }}
"#,
        env.yaml(""),
        state.display(),
        ext = dir.display(),
    );
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();
    let opts = RunOptions {
        operation: None,
        dry_run: false,
        validate_only: false,
        progress: false,
        ingest_only: false,
        mirror_only: false,
        ui: false,
    };
    let RunOutput::Completed(done) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(done.summary.is_success(), "{:#?}", done.summary);
    for v in [
        "prod.sales.v_eu",
        "prod.sales.v_us",
        "prod.finance.v_eu_ids",
    ] {
        let view = line(&done, &format!("view {v}"));
        assert!(
            view.detail.as_deref().unwrap().starts_with("applied"),
            "{view:?}"
        );
    }
    let models = line(&done, &format!("volume {MODELS}"));
    assert!(
        models
            .detail
            .as_deref()
            .unwrap()
            .contains("1 file(s) copied"),
        "{models:?}"
    );
    let weights = env
        .world
        .volume_dir(&t, MODELS)
        .unwrap()
        .join("churn/v1/weights.bin");
    assert_eq!(std::fs::read(weights).unwrap().len(), 50_000);
    let mv = line(&done, "materialized_view prod.sales.daily_mv");
    assert!(mv.detail.as_deref().unwrap().contains("reported"), "{mv:?}");
    let location = line(&done, "external_location landing_loc");
    assert!(
        location.detail.as_deref().unwrap().starts_with("applied"),
        "{location:?}"
    );
    let volume = line(&done, &format!("volume {VOLUME}"));
    assert!(
        volume
            .detail
            .as_deref()
            .unwrap()
            .contains("2 file(s) copied"),
        "{volume:?}"
    );
    let target_files = env.world.volume_dir(&t, VOLUME).expect("target volume");
    assert!(
        target_files.starts_with(dir.join("secondary")),
        "{}",
        target_files.display()
    );
    assert_eq!(
        std::fs::read(target_files.join("it's a `file`.txt")).unwrap(),
        b"quoted"
    );
    // The external table was deep-cloned into its mapped location, still external.
    let customers = env.table(&env.tgt, "prod", "sales", "customers").unwrap();
    assert_eq!(customers.table_type, "EXTERNAL");
    assert_eq!(customers.location, dir.join("dr-ext/customers"));
    assert_eq!(
        databricks_env::rows(&customers.location).await,
        databricks_env::rows(&dir.join("ext/customers")).await
    );
    // Grants went to the mapped principal, as diffs.
    assert!(
        env.tgt
            .statements()
            .iter()
            .any(|(_, sql)| sql.contains("GRANT SELECT ON VIEW") && sql.contains("`dr-analysts`")),
        "{:?}",
        env.tgt.statements()
    );

    // The catalogs match, but for what is reported by design.
    let engines = Engines::from_config(&config).unwrap();
    let engine = engines.get(EngineKind::Databricks).unwrap();
    let mut request = config.request(None, None);
    request.catalog = true;
    let diffs = engine
        .diff_objects(&request, engines.catalog_settings())
        .await
        .unwrap();
    assert!(
        diffs.iter().all(|d| d.state == DiffState::Reported),
        "{diffs:#?}"
    );
    // The run's own inventory check found the same: only what is reported by design.
    let check = inventory(&done);
    assert_eq!(check.status, TableStatus::Succeeded, "{check:?}");
    assert!(
        check.detail.as_deref().unwrap().contains("daily_mv"),
        "{check:?}"
    );

    // A second run applies nothing.
    let RunOutput::Completed(again) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(again.summary.is_success(), "{:#?}", again.summary);
    for o in objects(&again) {
        let d = o.detail.as_deref().unwrap_or("");
        assert!(
            d.starts_with("unchanged") || d.starts_with("reported"),
            "{}: {d}",
            o.table
        );
    }

    // A privilege removed on the source is reported on the target, and revoked only with
    // `grants.revoke_extra`.
    env.world.edit_objects(&s, |o| {
        o.meta("table", "prod.sales.orders")
            .grants
            .remove("auditors");
    });
    let RunOutput::Completed(third) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    let grants = line(&third, "grants on table prod.sales.orders");
    let d = grants.detail.as_deref().unwrap();
    assert!(d.starts_with("reported") && d.contains("auditors"), "{d}");
    // The run's inventory check finds the extra privilege: the run is mismatched, and says
    // why.
    let check = inventory(&third);
    assert_eq!(check.status, TableStatus::Mismatched, "{check:?}");
    let why = check.error.as_deref().unwrap();
    assert!(
        why.contains("prod.sales.orders") && why.contains("auditors"),
        "{why}"
    );
    assert!(!third.summary.is_success());
    let mut revoking = config.clone();
    revoking.catalog.as_mut().unwrap().grants.revoke_extra = true;
    env.tgt.clear_log();
    let RunOutput::Completed(fourth) = run(&revoking, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    let grants = line(&fourth, "grants on table prod.sales.orders");
    assert!(
        grants.detail.as_deref().unwrap().starts_with("applied"),
        "{grants:?}"
    );
    assert_eq!(inventory(&fourth).status, TableStatus::Succeeded);
    assert!(fourth.summary.is_success(), "{:#?}", fourth.summary);
    assert!(
        env.tgt
            .statements()
            .iter()
            .any(|(_, sql)| sql.starts_with("REVOKE") && sql.contains("`auditors`")),
        "{:?}",
        env.tgt.statements()
    );

    // Catalog renames that disagree with where the tables go are refused, naming the key.
    let clash = format!(
        "{}\ncatalog:\n  mapping: {{ catalogs: {{ prod: elsewhere }} }}\n",
        env.yaml("")
    );
    let e = Config::from_yaml(&clash, std::iter::empty(), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("catalog.mapping.catalogs.prod"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tables_over_geo_replicated_storage_are_registered_not_copied() {
    let env = Env::new().await;
    let dir = env.dir.path().to_owned();
    // The storage replicates itself: the secondary already holds the files.
    let copied = dir.join("dr-ext/customers");
    std::fs::create_dir_all(dir.join("dr-ext")).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(dir.join("ext/customers"))
        .arg(&copied)
        .status()
        .unwrap();
    assert!(status.success());
    let yaml = format!(
        r#"{}state: {{ url: "sqlite://{}" }}
catalog:
  objects: [schema]
  external_tables: register
  mapping:
    locations: [["file://{d}/ext/", "file://{d}/dr-ext/"]]
"#,
        env.yaml(""),
        dir.join("state.db").display(),
        d = dir.display(),
    );
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();
    let opts = RunOptions {
        operation: None,
        dry_run: false,
        validate_only: false,
        progress: false,
        ingest_only: false,
        mirror_only: false,
        ui: false,
    };
    let RunOutput::Completed(done) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(done.summary.is_success(), "{:#?}", done.summary);
    let customers = env.table(&env.tgt, "prod", "sales", "customers").unwrap();
    assert_eq!(
        (customers.table_type.as_str(), customers.location.as_path()),
        ("EXTERNAL", copied.as_path())
    );
    let statements: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(
        statements.iter().any(
            |s| s.starts_with("CREATE TABLE IF NOT EXISTS `prod`.`sales`.`customers` LOCATION")
        ),
        "{statements:?}"
    );
    assert!(
        !statements
            .iter()
            .any(|s| s.contains("DEEP CLONE") && s.contains("customers")),
        "registered, not copied: {statements:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_direct_volumes_files_move_between_the_storages_not_through_the_workspaces() {
    let env = Env::new().await;
    let dir = env.dir.path().to_owned();
    let (s, t) = (env.src.metastore.clone(), env.tgt.metastore.clone());
    let primary = format!("file://{}/primary", dir.display());
    let secondary = format!("file://{}/secondary", dir.display());
    env.world.add_storage_credential(&s, "src_cred");
    env.world
        .add_external_location(&s, "landing_loc", &format!("{primary}/landing"), "src_cred");
    env.world.add_storage_credential(&t, "dr_cred");
    env.world
        .create_volume(&s, VOLUME, Some(&format!("{primary}/landing/raw")), None)
        .unwrap();
    let files = env.world.volume_dir(&s, VOLUME).unwrap();
    std::fs::create_dir_all(files.join("nested")).unwrap();
    std::fs::write(files.join("nested/a b.csv"), b"id\n1\n").unwrap();
    std::fs::write(files.join("weights.bin"), vec![3u8; 200_000]).unwrap();
    // Written a minute ago: a local file written within the last two seconds is copied
    // again by the next sync (its timestamp could hide a second write; docs/volumes.md).
    let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for f in ["nested/a b.csv", "weights.bin"] {
        std::fs::File::options()
            .write(true)
            .open(files.join(f))
            .unwrap()
            .set_modified(minute_ago)
            .unwrap();
    }
    let yaml = format!(
        r#"{}state: {{ url: "sqlite://{}" }}
catalog:
  objects: [external_location, volume]
  volumes: {{ direct: true }}
  mapping:
    locations: [["{primary}/", "{secondary}/"], ["file://{d}/ext/", "file://{d}/dr-ext/"]]
  credentials: {{ src_cred: dr_cred }}
"#,
        env.yaml(""),
        dir.join("state.db").display(),
        d = dir.display(),
    );
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();
    let opts = RunOptions {
        operation: None,
        dry_run: false,
        validate_only: false,
        progress: false,
        ingest_only: false,
        mirror_only: false,
        ui: false,
    };
    env.tgt.clear_log();
    let RunOutput::Completed(done) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(done.summary.is_success(), "{:#?}", done.summary);
    let volume = line(&done, &format!("volume {VOLUME}"));
    assert!(
        volume
            .detail
            .as_deref()
            .unwrap()
            .contains("2 file(s) copied"),
        "{volume:?}"
    );
    let target_files = env.world.volume_dir(&t, VOLUME).expect("target volume");
    assert_eq!(
        std::fs::read(target_files.join("nested/a b.csv")).unwrap(),
        b"id\n1\n"
    );
    assert!(
        !env.tgt
            .calls()
            .iter()
            .any(|c| c.method == "PUT" && c.path.starts_with("/api/2.0/fs/files")),
        "no file went through the target workspace"
    );
    // The Files API sees the same files: the catalog diff has nothing on the volume.
    let engines = Engines::from_config(&config).unwrap();
    let engine = engines.get(EngineKind::Databricks).unwrap();
    let mut request = config.request(None, None);
    request.catalog = true;
    let diffs = engine
        .diff_objects(&request, engines.catalog_settings())
        .await
        .unwrap();
    assert!(!diffs.iter().any(|d| d.name == VOLUME), "{diffs:#?}");
    let RunOutput::Completed(again) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    let volume = line(&again, &format!("volume {VOLUME}"));
    assert!(
        volume.detail.as_deref().unwrap().starts_with("unchanged"),
        "{volume:?}"
    );
}

/// A volume with more files than `volumes.chunk_files` is copied by several tasks, each the
/// files whose path hashes to its part, as on the native engine: all of them arrive, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_volume_is_split_into_parts_by_the_planner() {
    let env = Env::new().await;
    let dir = env.dir.path().to_owned();
    let (s, t) = (env.src.metastore.clone(), env.tgt.metastore.clone());
    env.world.create_volume(&s, MODELS, None, None).unwrap();
    let models = env.world.volume_dir(&s, MODELS).unwrap();
    for i in 0..7 {
        let d = models.join(format!("part-{}", i % 2));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}.bin")), vec![i as u8; 1000 + i]).unwrap();
    }
    let yaml = format!(
        "{}state: {{ url: \"sqlite://{}\" }}\ncatalog: {{ objects: [volume], inventory: false, volumes: {{ chunk_files: 3 }}, \
         mapping: {{ locations: [[\"file://{ext}/ext/\", \"file://{ext}/dr-ext/\"]] }} }}\n",
        env.yaml(""),
        dir.join("state.db").display(),
        ext = dir.display(),
    );
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();
    let RunOutput::Completed(done) = run(&config, &RunOptions::default()).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(done.summary.is_success(), "{:#?}", done.summary);
    let mut parts: Vec<&str> = objects(&done)
        .into_iter()
        .filter(|o| o.table.starts_with("volume prod.sales.models"))
        .map(|o| o.table.as_str())
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        [
            "volume prod.sales.models (part 1/3)",
            "volume prod.sales.models (part 2/3)",
            "volume prod.sales.models (part 3/3)"
        ]
    );
    let target = env.world.volume_dir(&t, MODELS).unwrap();
    for i in 0..7 {
        let f = target.join(format!("part-{}/f{i}.bin", i % 2));
        assert_eq!(
            std::fs::read(&f).unwrap(),
            vec![i as u8; 1000 + i],
            "{}",
            f.display()
        );
    }
    // A second run finds every part in place.
    let RunOutput::Completed(again) = run(&config, &RunOptions::default()).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(again.summary.is_success(), "{:#?}", again.summary);
    for o in objects(&again)
        .into_iter()
        .filter(|o| o.table.starts_with("volume prod.sales.models"))
    {
        let detail = o.detail.as_deref().unwrap_or_default();
        assert!(detail.starts_with("unchanged"), "{}: {detail}", o.table);
    }
}

/// A volume gone from the source is an extra object: the inventory diff reports it and a
/// run keeps it; with `volumes.delete_extra` a run deletes its files and drops it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_gone_from_the_source_is_kept_then_removed_with_delete_extra() {
    let env = Env::new().await;
    let dir = env.dir.path().to_owned();
    let (s, t) = (env.src.metastore.clone(), env.tgt.metastore.clone());
    env.world.create_volume(&s, MODELS, None, None).unwrap();
    let models = env.world.volume_dir(&s, MODELS).unwrap();
    std::fs::create_dir_all(models.join("v1/weights")).unwrap();
    for (i, f) in ["a.bin", "v1/b.bin", "v1/weights/c.bin"].iter().enumerate() {
        std::fs::write(models.join(f), vec![i as u8; 100 + i]).unwrap();
    }
    let config = |delete_extra: bool| {
        let yaml = format!(
            "{}state: {{ url: \"sqlite://{}\" }}\ncatalog: {{ objects: [volume], inventory: false, volumes: {{ delete_extra: {delete_extra} }}, \
             mapping: {{ locations: [[\"file://{ext}/ext/\", \"file://{ext}/dr-ext/\"]] }} }}\n",
            env.yaml(""),
            dir.join("state.db").display(),
            ext = dir.display(),
        );
        Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap()
    };
    let run_with = |config: Config| async move {
        let RunOutput::Completed(done) = run(&config, &RunOptions::default()).await.unwrap() else {
            panic!("expected a completed run");
        };
        assert!(done.summary.is_success(), "{:#?}", done.summary);
        done
    };
    run_with(config(false)).await;
    let copied = env.world.volume_dir(&t, MODELS).unwrap();
    assert!(copied.join("v1/weights/c.bin").is_file());

    assert!(env.world.drop_volume(&s, MODELS));
    let diff = |config: Config| async move {
        let engines = Engines::from_config(&config).unwrap();
        let engine = engines.get(EngineKind::Databricks).unwrap();
        let mut request = config.request(None, None);
        request.catalog = true;
        engine
            .diff_objects(&request, engines.catalog_settings())
            .await
            .unwrap()
    };
    let diffs = diff(config(false)).await;
    assert!(
        diffs
            .iter()
            .any(|d| d.kind == replicator_proto::ObjectKind::Volume
                && d.name == MODELS
                && d.state == DiffState::Extra),
        "{diffs:#?}"
    );
    // Kept by default: no task touches it.
    let kept = run_with(config(false)).await;
    assert!(
        objects(&kept).iter().all(|o| !o.table.contains(MODELS)),
        "{:#?}",
        objects(&kept)
    );
    assert!(env.world.volume(&t, MODELS).is_some());
    assert!(copied.join("v1/weights/c.bin").is_file());

    // With delete_extra: its files deleted, then the volume dropped.
    let removed = run_with(config(true)).await;
    let o = line(&removed, &format!("volume {MODELS}"));
    assert_eq!(o.status, TableStatus::Succeeded, "{o:?}");
    assert_eq!(o.removed_files, 3, "{o:?}");
    assert!(env.world.volume(&t, MODELS).is_none());
    assert!(!copied.join("v1/weights/c.bin").exists());
    let deletes: Vec<String> = env
        .tgt
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path)
        .collect();
    // The three files and replicator's own manifest, then the volume.
    assert_eq!(deletes.len(), 5, "{deletes:?}");
    assert!(
        deletes
            .last()
            .unwrap()
            .ends_with(&format!("/volumes/{MODELS}"))
    );

    // Once: the next run has nothing to remove, and the diff nothing extra.
    let again = run_with(config(true)).await;
    assert!(objects(&again).iter().all(|o| !o.table.contains(MODELS)));
    assert!(
        diff(config(true))
            .await
            .iter()
            .all(|d| d.state != DiffState::Extra)
    );
}
