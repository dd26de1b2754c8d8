//! The Databricks engine's OAuth tokens: cached, refreshed before they expire, refreshed
//! once when refused, and a wrong secret never leaked.

use std::time::Duration;

use replicator_common::Config;
use replicator_databricks::WorkspacePair;
use replicator_databricks::ops::DbOperation;
use replicator_tests::databricks_emulator::{Workspace, WorkspaceAuth};

mod databricks_env;
use databricks_env::{CLIENT_ID, CLIENT_SECRET, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_oauth_token_is_refreshed_once() {
    let env = Env::new().await;
    let pair = WorkspacePair::from_config(&env.config(""), false).unwrap();
    assert!(pair.run(DbOperation::All).await.unwrap().is_success());
    // One token for the whole run: it is cached.
    assert_eq!(env.tgt.token_requests(), 1);
    env.tgt.expire_tokens();
    let r = pair.run(DbOperation::Reconciliation).await.unwrap();
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(env.tgt.token_requests(), 2);

    // A wrong secret is an authentication error that does not leak the secret.
    std::fs::write(env.dir.path().join("tgt.secret"), "wrong-secret").unwrap();
    let r = WorkspacePair::from_config(&env.config(""), false)
        .unwrap()
        .run(DbOperation::Reconciliation)
        .await
        .unwrap();
    let failed: Vec<_> = r
        .tables
        .iter()
        .filter(|t| t.operation == "reconciliation")
        .collect();
    assert_eq!(failed.len(), 3);
    for t in failed {
        let msg = &t.error.as_ref().unwrap().message;
        assert!(
            msg.contains("authentication failed") && msg.contains("invalid_client"),
            "{msg}"
        );
        assert!(
            !msg.contains("wrong-secret") && !msg.contains(CLIENT_SECRET),
            "{msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_refreshed_before_they_expire() {
    let env = Env::new().await;
    // A workspace whose tokens live one second: the client refreshes at half-life, before
    // the server would refuse the token.
    let short = Workspace::start(
        &env.world,
        &env.tgt.metastore,
        "wh-tgt",
        WorkspaceAuth {
            pat: None,
            oauth: Some((CLIENT_ID.into(), CLIENT_SECRET.into())),
            token_lifetime_s: 1,
        },
    )
    .await;
    let yaml = env.yaml("").replace(&env.tgt.url, &short.url);
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[])
        .unwrap()
        .databricks
        .unwrap();
    let pair = WorkspacePair::from_config(&config, false).unwrap();
    pair.target.metastore_global_id().await.unwrap();
    pair.target.metastore_global_id().await.unwrap();
    assert_eq!(short.token_requests(), 1, "cached");
    tokio::time::sleep(Duration::from_millis(600)).await;
    pair.target.metastore_global_id().await.unwrap();
    assert_eq!(short.token_requests(), 2, "refreshed at half-life");
    // No request was refused on the way.
    assert!(
        short
            .calls()
            .iter()
            .filter(|c| c.path != "/oidc/v1/token")
            .count()
            == 3
    );
}
