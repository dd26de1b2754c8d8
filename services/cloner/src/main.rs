//! `replicator-cloner --config FILE`: a cloner as its own process.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    replicator_common::service_main("cloner", replicator_cloner::serve).await
}
