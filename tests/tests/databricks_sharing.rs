//! Delta Sharing setup by the Databricks engine: the access probe, bring-your-own sharing,
//! and objects created by a concurrent run.

use replicator_databricks::WorkspacePair;
use replicator_databricks::ops::DbOperation;

mod databricks_env;
use databricks_env::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_checks_access_and_byo_sharing_refuses_to_create() {
    let env = Env::new().await;
    let pair = WorkspacePair::from_config(&env.config(""), false).unwrap();
    let probes = pair.probe().await;
    assert!(probes.iter().all(|p| p.ok), "{probes:#?}");
    assert!(env.src.changes().is_empty() && env.tgt.changes().is_empty());

    let byo = "  sharing: { mode: byo }\n";
    let probes = WorkspacePair::from_config(&env.config(byo), false)
        .unwrap()
        .probe()
        .await;
    assert!(
        probes
            .iter()
            .any(|p| !p.ok && p.check.contains("prod_shared"))
    );
    let err = WorkspacePair::from_config(&env.config(byo), false)
        .unwrap()
        .run(DbOperation::Backup)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("recipient `replicator` does not exist"),
        "{err}"
    );
    assert!(env.src.changes().is_empty());

    // Once set up automatically, byo mode finds everything and runs.
    env.run(DbOperation::All, "").await;
    let r = env.run(DbOperation::All, byo).await;
    assert!(r.is_success() && r.sharing.is_empty(), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_created_by_a_concurrent_run_are_taken_as_they_are() {
    let env = Env::new().await;
    // Between this run's read and its create, another run creates the recipient, the share
    // and adds the tables to the share: each create is answered 409 RESOURCE_ALREADY_EXISTS.
    env.src.faults(|f| {
        f.concurrent_create = vec![
            "replicator".into(),
            "replicator_prod".into(),
            "replicator_prod".into(),
        ]
    });
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    assert!(
        !r.sharing.iter().any(|a| a.starts_with("created recipient")
            || a == "created share replicator_prod"
            || (a.starts_with("added ") && a.ends_with("to share replicator_prod"))),
        "{:#?}",
        r.sharing
    );
    // The grant, which the concurrent run did not make, was made.
    assert!(
        r.sharing
            .contains(&"granted SELECT on share replicator_prod to replicator".to_owned()),
        "{:#?}",
        r.sharing
    );
    let left = env.src.read_faults(|f| f.concurrent_create.len());
    assert_eq!(left, 0, "every injected race happened");
    env.assert_replicas_equal().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_shared_with_their_history_so_a_cut_reads_through_the_share() {
    let env = Env::new().await;
    let pair = WorkspacePair::from_config(&env.config(""), false).unwrap();
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    // Each table on its own, with its history; the streaming table's backup by schema.
    let share = pair
        .source
        .get_share("replicator_prod")
        .await
        .unwrap()
        .unwrap();
    let mut entries: Vec<(String, String, Option<String>)> = share
        .objects
        .into_iter()
        .map(|o| (o.name, o.data_object_type, o.history_data_sharing_status))
        .collect();
    entries.sort();
    let enabled = Some("ENABLED".to_owned());
    assert_eq!(
        entries,
        [
            (
                "prod.sales.customers".into(),
                "TABLE".into(),
                enabled.clone()
            ),
            ("prod.sales.orders".into(), "TABLE".into(), enabled),
        ]
    );
    let backup = pair
        .source
        .get_share("replicator_prod_backup")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(backup.objects.len(), 1);
    assert_eq!(backup.objects[0].data_object_type, "SCHEMA");

    // A cut clones `TIMESTAMP AS OF` through the share.
    let orders = pair.source_table("prod.sales.orders").await.unwrap();
    let cut = chrono::Utc::now();
    pair.replicate_table(&orders, Some(cut)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_holding_whole_schemas_is_kept_but_a_cut_through_it_is_refused_clearly() {
    use replicator_databricks::client::SharedObject;
    let env = Env::new().await;
    let pair = WorkspacePair::from_config(&env.config(""), false).unwrap();
    // The share as an earlier version set it up: the whole schema, so no table history.
    pair.source.create_share("replicator_prod").await.unwrap();
    pair.source
        .add_to_share("replicator_prod", &[SharedObject::schema("prod.sales")])
        .await
        .unwrap();
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    // Nothing was added: the schema entry covers its tables.
    assert!(
        !r.sharing
            .iter()
            .any(|a| a.contains("to share replicator_prod ")
                || a.ends_with("to share replicator_prod")),
        "{:#?}",
        r.sharing
    );
    let orders = pair.source_table("prod.sales.orders").await.unwrap();
    let (_, err) = pair
        .replicate_table(&orders, Some(chrono::Utc::now()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("WITH HISTORY") && msg.contains("orders"),
        "{msg}"
    );
}
