//! The one place that starts services: a set of them over one bus, one store and one set of
//! engines, all built from the config and handed in. `replicator run` starts every service
//! over the memory bus and SQLite; `replicator serve` starts the services it names over a
//! broker, with health endpoints around them.

use anyhow::Context;
use replicator_bus::BusRef;
use replicator_cloner::{ClonerConfig, ProgressSink};
use replicator_common::Config;
use replicator_common::shutdown::CancellationToken;
use replicator_engine::Engines;
use replicator_notifier::NotifierConfig;
use replicator_planner::sync::{Syncer, SystemClock};
use replicator_reconciler::ReconcilerConfig;
use replicator_store::Store;
use tokio::task::JoinHandle;

/// A service of the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Planner,
    Cloner,
    Reconciler,
    Notifier,
    /// The operator console (docs/console.md), on `console.listen`; not one of the
    /// services `replicator run` starts (`run --ui` adds it).
    Console,
}

impl Service {
    /// Every service, in the order `run` starts them (consumers of results first).
    pub const ALL: [Service; 4] = [
        Service::Notifier,
        Service::Reconciler,
        Service::Cloner,
        Service::Planner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Planner => "planner",
            Self::Cloner => "cloner",
            Self::Reconciler => "reconciler",
            Self::Notifier => "notifier",
            Self::Console => "console",
        }
    }
}

/// What every service is handed: the bus, the store and the engines.
#[derive(Clone)]
pub struct Deps {
    pub bus: BusRef,
    pub store: Store,
    pub engines: Engines,
}

impl Deps {
    /// The store and engines of `config`, over `bus`.
    pub async fn open(config: &Config, bus: BusRef) -> anyhow::Result<Self> {
        let engines = Engines::from_config(config)?;
        let store = open_store(config).await?;
        Ok(Self {
            bus,
            store,
            engines,
        })
    }
}

/// Open the configured state store.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.state.url)
        .await
        .context("opening the state store")
}

/// Start `services`; each returns once its consumer is attached. `progress` observes the
/// cloners' copies.
pub async fn start(
    config: &Config,
    deps: &Deps,
    services: &[Service],
    progress: Option<ProgressSink>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(services.len());
    for s in services {
        let (bus, store, engines) = (deps.bus.clone(), deps.store.clone(), deps.engines.clone());
        let h = match s {
            Service::Planner => {
                let syncer = Syncer::new(
                    std::sync::Arc::new(config.clone()),
                    engines.clone(),
                    bus.clone(),
                    store.clone(),
                    std::sync::Arc::new(SystemClock),
                );
                match replicator_planner::spawn(bus, store, engines, shutdown.clone()).await {
                    // With sync groups, the planner also runs their scheduler.
                    Ok(planner) => Ok(match (syncer, &config.sync) {
                        (Some(syncer), Some(sync)) => {
                            let scheduler = replicator_planner::sync::spawn(
                                std::sync::Arc::new(syncer),
                                sync.poll.0,
                                shutdown.clone(),
                            );
                            // The planner's end ends both: on shutdown the scheduler finishes
                            // its pass; with the broker gone it stops at once.
                            let stopping = shutdown.clone();
                            tokio::spawn(async move {
                                let _ = planner.await;
                                if !stopping.is_cancelled() {
                                    scheduler.abort();
                                }
                                let _ = scheduler.await;
                            })
                        }
                        _ => planner,
                    }),
                    Err(e) => Err(e),
                }
            }
            Service::Cloner => {
                replicator_cloner::spawn(
                    bus,
                    store,
                    engines,
                    ClonerConfig::from_config(config),
                    progress.clone(),
                    shutdown.clone(),
                )
                .await
            }
            Service::Reconciler => {
                replicator_reconciler::spawn(
                    bus,
                    store,
                    engines,
                    ReconcilerConfig::from_config(config),
                    shutdown.clone(),
                )
                .await
            }
            Service::Console => {
                let listen = config
                    .console
                    .as_ref()
                    .map(|c| c.listen)
                    .unwrap_or_else(|| replicator_common::config::ConsoleConfig::default().listen);
                match crate::console::serve(config, store, bus, engines, listen, shutdown.clone())
                    .await
                {
                    Ok((bound, h)) => {
                        eprintln!("console: http://{bound}/");
                        Ok(h)
                    }
                    Err(e) => Err(e),
                }
            }
            Service::Notifier => {
                replicator_notifier::spawn(
                    bus,
                    store,
                    NotifierConfig {
                        lineage: engines.lineage().clone(),
                        ..NotifierConfig::from_config(config)
                    },
                    shutdown.clone(),
                )
                .await
            }
        };
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                // Stop what started before failing.
                shutdown.cancel();
                for h in handles {
                    let _ = h.await;
                }
                return Err(e);
            }
        }
    }
    Ok(handles)
}
