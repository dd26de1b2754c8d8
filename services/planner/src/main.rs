//! `replicator-planner --config FILE`: the planner as its own process.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    replicator_common::service_main("planner", replicator_planner::serve).await
}
