//! `replicator-reconciler --config FILE`: a reconciler as its own process.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    replicator_common::service_main("reconciler", replicator_reconciler::serve).await
}
