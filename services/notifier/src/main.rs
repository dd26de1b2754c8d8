//! `replicator-notifier --config FILE`: the notifier as its own process.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    replicator_common::service_main("notifier", replicator_notifier::serve).await
}
