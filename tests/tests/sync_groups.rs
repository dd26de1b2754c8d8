//! Sync groups end to end on the native engine (docs/sync.md): three groups over a generated
//! estate, a schedule driven by the test's clock (no sleeping for ticks), a trigger by a new
//! commit, a group whose sync half-fails keeping its previous cut in the store and in both
//! metadata tables while the others advance, failover to the cut (rows checked), lag and the
//! RPO alert in `sync status` and `/metrics`, and two planners firing each tick once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use replicator_bus::{BusRef, MemoryBus};
use replicator_cli::runtime::{self, Deps, Service};
use replicator_common::Config;
use replicator_common::shutdown::CancellationToken;
use replicator_lake::{TableLocation, sample, sync_meta};
use replicator_planner::sync::{Clock, ManualClock, Syncer};
use replicator_proto::names;
use replicator_store::SyncStatus;

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

fn config(dir: &Path) -> Config {
    let yaml = format!(
        r#"source: {{ root: {src} }}
target: {{ root: {dst} }}
state: {{ url: "sqlite://{state}" }}
retry: {{ max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }}
sync:
  default_schedule: "*/30 * * * *"
  max_retries: 0
  notify: {{ failure: [dr@example.com] }}
  groups:
    - name: sales
      owner: [sales@example.com]
      tables: [sales.orders, sales.customers]
      rpo: 45m
    - name: marketing
      owner: [mkt@example.com]
      tables: ["marketing.*"]
      on_commit: true
    - name: ops
      owner: [ops@example.com]
      tables: [ops.broken, ops.fine]
"#,
        src = dir.join("source").display(),
        dst = dir.join("target").display(),
        state = dir.join("state.db").display(),
    );
    Config::from_yaml(&yaml, Vec::new(), &[]).unwrap()
}

/// The first half-hour tick comfortably after now: the cuts are instants after every commit
/// the test makes before it.
fn next_tick() -> DateTime<Utc> {
    let t = Utc::now() + chrono::Duration::minutes(2);
    let base = t
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap()
        .with_minute(if t.minute() < 30 { 30 } else { 0 })
        .unwrap();
    if t.minute() < 30 {
        base
    } else {
        base + chrono::Duration::hours(1)
    }
}

struct Estate {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    config: Config,
    deps: Deps,
    memory: MemoryBus,
    clock: Arc<ManualClock>,
    syncer: Syncer,
    shutdown: CancellationToken,
    services: Vec<tokio::task::JoinHandle<()>>,
}

impl Estate {
    async fn new() -> Estate {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let src = loc(&root.join("source"));
        sample::demo_estate(&src).await.unwrap();
        for t in ["ops/broken", "ops/fine"] {
            let l = src.child(t).unwrap();
            sample::create(&l, &sample::orders(0, 50, "eu"), &[])
                .await
                .unwrap();
        }
        let config = config(&root);
        let memory = MemoryBus::new(1024, 3);
        let deps = Deps::open(&config, Arc::new(memory.clone()) as BusRef)
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        // The services, with a planner that runs no scheduler of its own: the test drives
        // the one scheduler, on its clock.
        let services_config = Config {
            sync: None,
            ..config.clone()
        };
        let services = runtime::start(&services_config, &deps, &Service::ALL, None, &shutdown)
            .await
            .unwrap();
        let clock = Arc::new(ManualClock::new(next_tick() - chrono::Duration::minutes(1)));
        let syncer = Self::syncer_of(&config, &deps, &clock);
        // A new group waits for its first tick.
        assert!(syncer.tick().await.unwrap().is_empty());
        clock.advance(chrono::Duration::minutes(2));
        Estate {
            _dir: dir,
            root,
            config,
            deps,
            memory,
            clock,
            syncer,
            shutdown,
            services,
        }
    }

    fn syncer_of(config: &Config, deps: &Deps, clock: &Arc<ManualClock>) -> Syncer {
        Syncer::new(
            Arc::new(config.clone()),
            deps.engines.clone(),
            deps.bus.clone(),
            deps.store.clone(),
            clock.clone() as Arc<dyn Clock>,
        )
        .unwrap()
    }

    fn source(&self, table: &str) -> TableLocation {
        loc(&self.root.join("source").join(table.replace('.', "/")))
    }

    fn target(&self, table: &str) -> TableLocation {
        loc(&self.root.join("target").join(table.replace('.', "/")))
    }

    /// Tick, then wait until no group is in progress (ticking to finish completed syncs).
    async fn settle(&self) -> Vec<replicator_planner::sync::Fired> {
        let fired = self.syncer.tick().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            self.syncer.finish_completed().await.unwrap();
            let states = self.deps.store.sync_groups().await.unwrap();
            if states.iter().all(|s| s.status != SyncStatus::InProgress) {
                return fired;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "groups still syncing: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn group(&self, name: &str) -> replicator_store::GroupState {
        self.deps.store.sync_group(name).await.unwrap().unwrap()
    }

    async fn rows(&self, l: &TableLocation) -> u64 {
        replicator_lake::inspect::count_rows(l, None)
            .await
            .unwrap()
            .0
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for s in self.services {
            let _ = s.await;
        }
        self.memory.close();
    }
}

/// Remove the newest data file of a local table (its log still names it).
fn remove_newest_data_file(table: &Path) {
    let newest = std::fs::read_dir(table)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .expect("a data file");
    std::fs::remove_file(newest).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_advance_by_consistent_cuts_and_a_failed_table_keeps_its_group_at_the_previous_cut()
{
    let e = Estate::new().await;
    let mut notices = e.deps.bus.subscribe("sync.#").await.unwrap();

    // First tick: every group fires as of the latest half-hour tick, and reaches its cut.
    let fired = e.settle().await;
    let cut1 = e.clock.now() - chrono::Duration::minutes(1);
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!(
        fired
            .iter()
            .all(|f| f.at == cut1 && f.fired_by == "schedule")
    );
    for g in ["sales", "marketing", "ops"] {
        let s = e.group(g).await;
        assert_eq!(s.status, SyncStatus::Success, "{g}: {s:?}");
        assert_eq!(s.cut_at, Some(cut1), "{g}");
    }
    assert_eq!(
        e.rows(&e.target("ops.fine")).await,
        e.rows(&e.source("ops.fine")).await
    );
    let sales1 = e.group("sales").await;
    let marketing1 = e.group("marketing").await;

    // Five minutes later: nothing is due.
    e.clock.advance(chrono::Duration::minutes(5));
    assert!(e.syncer.tick().await.unwrap().is_empty());

    // New data everywhere; one of `ops`'s files disappears from the source.
    for t in ["sales.orders", "ops.broken", "ops.fine"] {
        sample::append(&e.source(t), &sample::orders(1000, 25, "us"))
            .await
            .unwrap();
    }
    remove_newest_data_file(&e.root.join("source/ops/broken"));
    let fine_at_cut1 = e.rows(&e.target("ops.fine")).await;

    // The next tick: `sales` advances, `ops` half-fails and keeps its first cut.
    e.clock.advance(chrono::Duration::minutes(30));
    let fired = e.settle().await;
    let cut2 = cut1 + chrono::Duration::minutes(30);
    assert!(
        fired.iter().any(|f| f.group == "sales" && f.at == cut2),
        "{fired:?}"
    );
    let sales2 = e.group("sales").await;
    assert_eq!(sales2.cut_at, Some(cut2));
    // Only the table that moved was cloned; the other is carried into the new cut as it was.
    let sales_run = fired.iter().find(|f| f.group == "sales").unwrap().run_id;
    let cloned: Vec<String> = e
        .deps
        .store
        .tasks(sales_run)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.table)
        .collect();
    assert_eq!(cloned, ["sales.orders"]);
    let version = |g: &replicator_store::GroupState, t: &str| {
        let c = g.cut_tables.iter().find(|c| c.table == t).unwrap();
        (c.source_version, c.target_version)
    };
    assert_eq!(sales2.cut_tables.len(), 2, "{sales2:?}");
    assert_eq!(
        version(&sales2, "sales.customers"),
        version(&sales1, "sales.customers")
    );
    assert!(version(&sales2, "sales.orders").0 > version(&sales1, "sales.orders").0);
    // Nothing of `marketing` moved: its cut moves to the new instant without a run.
    let marketing_run = fired
        .iter()
        .find(|f| f.group == "marketing")
        .unwrap()
        .run_id;
    assert!(e.deps.store.run(marketing_run).await.unwrap().is_none());
    let marketing2 = e.group("marketing").await;
    assert_eq!(
        (marketing2.status, marketing2.cut_at),
        (SyncStatus::Success, Some(cut2))
    );
    assert_eq!(marketing2.cut_tables, marketing1.cut_tables);
    let ops = e.group("ops").await;
    assert_eq!(ops.status, SyncStatus::Failed, "{ops:?}");
    assert_eq!(ops.cut_at, Some(cut1), "the previous cut stands");
    assert!(
        ops.message.as_deref().unwrap_or("").contains("ops.broken"),
        "{ops:?}"
    );
    // `ops.fine` was cloned by the failed sync: ahead of the group's cut.
    assert!(e.rows(&e.target("ops.fine")).await > fine_at_cut1);

    // Both metadata tables say the same: `ops` failed with its old timestamps.
    let primary = loc(&e.root.join("source/_replicator/sync_groups"));
    let secondary = loc(&e.root.join("target/_replicator/sync_groups"));
    for m in [&primary, &secondary] {
        let rows = sync_meta::read(m).await.unwrap();
        let row = |g: &str| rows.iter().find(|r| r.group_name == g).unwrap().clone();
        assert_eq!(row("ops").current_sync_status, "failed", "{m}");
        assert_eq!(row("ops").sync_start_timestamp, Some(cut1), "{m}");
        assert_eq!(row("sales").current_sync_status, "success", "{m}");
        assert_eq!(row("sales").sync_start_timestamp, Some(cut2), "{m}");
    }

    // Failover of `ops`: every table back at the first cut, rows checked.
    let cfg = e.config.clone();
    let dry = replicator_cli::sync::failover(&cfg, "ops", false)
        .await
        .unwrap();
    assert!(
        dry.iter().any(|l| l.starts_with("ops.fine: would restore")),
        "{dry:?}"
    );
    assert!(
        e.rows(&e.target("ops.fine")).await > fine_at_cut1,
        "dry run"
    );
    let done = replicator_cli::sync::failover(&cfg, "ops", true)
        .await
        .unwrap();
    assert!(done.iter().any(|l| l.contains("restored")), "{done:?}");
    assert_eq!(e.rows(&e.target("ops.fine")).await, fine_at_cut1);
    for t in ["ops.fine", "ops.broken"] {
        let want = ops
            .cut_tables
            .iter()
            .find(|c| c.table == t)
            .and_then(|c| c.target_version)
            .unwrap();
        let snapshot = replicator_lake::inspect::table_info(&e.target(t), None)
            .await
            .unwrap();
        // Restored by a new commit (history kept), to the cut's content.
        assert!(snapshot.version >= want, "{t}");
    }

    // Failback of `sales`: the secondary's tables replicated back over the primary's.
    let dry = replicator_cli::sync::failback(&cfg, "sales", false)
        .await
        .unwrap();
    assert!(
        dry.iter()
            .any(|l| l.starts_with("sales.orders: would copy")),
        "{dry:?}"
    );
    sample::append(&e.source("sales.orders"), &sample::orders(7000, 5, "eu"))
        .await
        .unwrap();
    assert_ne!(
        e.rows(&e.source("sales.orders")).await,
        e.rows(&e.target("sales.orders")).await
    );
    let done = replicator_cli::sync::failback(&cfg, "sales", true)
        .await
        .unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    for t in ["sales.orders", "sales.customers"] {
        assert_eq!(
            e.rows(&e.source(t)).await,
            e.rows(&e.target(t)).await,
            "{t} failed back"
        );
    }

    // The failure and the owners were told.
    let mut keys = Vec::new();
    while let Ok(Some((key, payload))) =
        tokio::time::timeout(Duration::from_millis(200), notices.next()).await
    {
        let n: replicator_proto::SyncNotice = replicator_proto::decode(&payload).unwrap();
        keys.push((key, n.group, n.recipients));
    }
    assert!(
        keys.iter().any(|(k, g, r)| k == names::events::SYNC_FAILED
            && g == "ops"
            && r.contains(&"ops@example.com".to_owned())
            && r.contains(&"dr@example.com".to_owned())),
        "{keys:?}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_commit_triggers_its_group_and_lag_past_the_rpo_alerts_the_owners() {
    let e = Estate::new().await;
    e.settle().await;
    let mut notices = e.deps.bus.subscribe("sync.#").await.unwrap();

    // A commit on a marketing table (its group syncs on commit) between two ticks.
    e.clock.advance(chrono::Duration::minutes(3));
    sample::append(
        &e.source("marketing.events"),
        &sample::orders(5000, 10, "eu"),
    )
    .await
    .unwrap();
    let fired = e.settle().await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0].group.as_str(), fired[0].fired_by.as_str()),
        ("marketing", "commit")
    );
    assert_eq!(
        e.rows(&e.target("marketing.events")).await,
        e.rows(&e.source("marketing.events")).await
    );

    // 50 minutes after the first cut with the schedule stalled: `sales` (RPO 45m) is late.
    let broken = Syncer::new(
        Arc::new({
            let mut c = e.config.clone();
            c.sync.as_mut().unwrap().default_schedule = Some("0 0 1 1 *".into());
            c
        }),
        e.deps.engines.clone(),
        e.deps.bus.clone(),
        e.deps.store.clone(),
        e.clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    e.clock.advance(chrono::Duration::minutes(47));
    // The first planner steps down; this one leads.
    e.syncer.step_down().await;
    broken.tick().await.unwrap();
    let status = broken.status().await.unwrap();
    let sales = status.iter().find(|g| g.group == "sales").unwrap();
    assert!(sales.rpo_exceeded, "{sales:?}");
    assert!(sales.lag_seconds.unwrap() >= 50 * 60, "{sales:?}");
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json[0]["group"], "sales");
    assert_eq!(json[0]["rpo_exceeded"], true);
    assert!(
        replicator_common::metrics::render()
            .contains("replicator_group_lag_seconds{group=\"sales\"}"),
        "lag gauge on /metrics"
    );
    // The notices so far: the commit-triggered sync's success, then the lag alert.
    let n = loop {
        let (key, payload) = tokio::time::timeout(Duration::from_secs(5), notices.next())
            .await
            .expect("a lag alert")
            .unwrap();
        if key == names::events::SYNC_LAGGING {
            break replicator_proto::decode::<replicator_proto::SyncNotice>(&payload).unwrap();
        }
    };
    assert_eq!(n.group, "sales");
    assert_eq!(n.recipients, vec!["sales@example.com".to_owned()]);
    // Once per cut.
    broken.tick().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), notices.next())
            .await
            .is_err()
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_planners_fire_each_tick_once() {
    let e = Estate::new().await;
    let other = Estate::syncer_of(&e.config, &e.deps, &e.clock);
    let (a, b) = tokio::join!(e.syncer.tick(), other.tick());
    let fired = a.unwrap().len() + b.unwrap().len();
    assert_eq!(
        fired,
        3,
        "one firing per group: {:?}",
        e.deps.store.sync_groups().await.unwrap()
    );
    e.settle().await;
    // The next tick, with both planners again.
    e.clock.advance(chrono::Duration::minutes(30));
    let (a, b) = tokio::join!(e.syncer.tick(), other.tick());
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 3);
    e.settle().await;

    // Every planner down for three ticks: on start, each group fires once, at the latest.
    e.clock.advance(chrono::Duration::minutes(95));
    e.syncer.step_down().await;
    let fired = other.tick().await.unwrap();
    let latest = e.clock.now() - chrono::Duration::minutes(6);
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!(fired.iter().all(|f| f.at == latest), "{fired:?}");
    assert!(other.tick().await.unwrap().is_empty());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_a_group_on_the_requests_queue_syncs_it() {
    let e = Estate::new().await;
    // Any client: a request for the `marketing` group, without an instant.
    let mut request = e.config.request(None, Some("a client".into()));
    request.tables = replicator_proto::TableFilter {
        include: vec!["marketing.*".into()],
        exclude: Vec::new(),
    };
    request.group = Some("marketing".into());
    replicator_bus::typed::publish(e.deps.bus.as_ref(), names::REQUESTS, &request)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        e.syncer.finish_completed().await.unwrap();
        if let Some(g) = e.deps.store.sync_group("marketing").await.unwrap()
            && g.status == SyncStatus::Success
        {
            assert_eq!(g.attempt_trigger.as_deref(), Some("message"));
            assert_eq!(g.cut_tables.len(), 2, "{g:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        e.rows(&e.target("marketing.events")).await,
        e.rows(&e.source("marketing.events")).await
    );
    e.stop().await;
}
