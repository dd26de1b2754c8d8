//! The Kafka backend's contract. By default against librdkafka's mock cluster
//! (`rdkafka::mocking`), which speaks the real Kafka protocol over TCP; every test has its
//! own cluster, with topics provisioned up front (the mock's admin API cannot create them).
//! With `REPLICATOR_KAFKA_BROKERS=host:port` the same tests run against that real broker
//! instead (`scripts/kafka-broker.sh` starts one): each test then uses its own topic prefix
//! and the bus creates its topics through the admin API, as a fleet does.

use std::time::Duration;

use bytes::Bytes;
use replicator_bus::{Bus, KafkaBus, KafkaSettings};

type Mock = rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

struct Cluster {
    /// The mock cluster, when no real broker was given.
    mock: Option<Mock>,
    brokers: String,
    prefix: String,
}

impl Cluster {
    fn mock(&self) -> Option<&Mock> {
        self.mock.as_ref()
    }
}

fn cluster() -> Cluster {
    if let Some(brokers) = std::env::var("REPLICATOR_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
    {
        return Cluster {
            mock: None,
            brokers,
            prefix: format!("t{}", uuid::Uuid::new_v4().simple()),
        };
    }
    let cluster = Mock::new(3).expect("mock cluster");
    for t in KafkaBus::topic_names("test", &["q", "tasks.clone"]) {
        cluster.create_topic(&t, 3, 1).expect("topic");
    }
    Cluster {
        brokers: cluster.bootstrap_servers(),
        mock: Some(cluster),
        prefix: "test".into(),
    }
}

async fn bus_on(c: &Cluster, max_deliveries: u32) -> KafkaBus {
    let mut s = KafkaSettings::new(c.brokers.clone(), &c.prefix);
    s.retry_delays = vec![Duration::from_millis(100), Duration::from_millis(300)];
    s.max_deliveries = max_deliveries;
    s.partitions = 3;
    s.create_topics = c.mock.is_none();
    KafkaBus::connect(s).await.expect("Kafka cluster")
}

async fn recv(s: &mut Box<dyn replicator_bus::Subscription>) -> (String, Bytes) {
    tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("an event within 5 s")
        .expect("subscription open")
}

async fn next(c: &mut Box<dyn replicator_bus::Consumer>) -> replicator_bus::Delivery {
    tokio::time::timeout(Duration::from_secs(20), c.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_ack_and_nothing_is_redelivered() {
    let c = cluster();
    let bus = bus_on(&c, 3).await;
    let mut c = bus.consume("tasks.clone", 4).await.unwrap();
    bus.publish("tasks.clone", Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap();
    let d = next(&mut c).await;
    assert_eq!(&d.payload[..], b"{\"a\":1}");
    assert_eq!(d.deliveries, 1);
    d.ack();
    assert!(
        tokio::time::timeout(Duration::from_millis(700), c.next())
            .await
            .is_err(),
        "an acked message came back"
    );
    assert_eq!(bus.depth("tasks.clone").await.unwrap(), 0);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_after_a_delay_then_dead_letters_with_the_reason() {
    let c = cluster();
    let bus = bus_on(&c, 3).await;
    let mut c = bus.consume("q", 1).await.unwrap();
    let payload = r#"{"run_id":"0190b5d2-0000-7000-8000-000000000001","x":1}"#;
    bus.publish("q", Bytes::from(payload)).await.unwrap();
    let first = next(&mut c).await;
    assert_eq!(first.deliveries, 1);
    let t = std::time::Instant::now();
    first.nack("boom 1");
    let second = next(&mut c).await;
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(second.deliveries, 2);
    second.nack("boom 2");
    let third = next(&mut c).await;
    assert_eq!(third.deliveries, 3);
    third.nack("boom 3");
    // The third delivery was the last: dead-lettered, not redelivered.
    assert!(
        tokio::time::timeout(Duration::from_millis(800), c.next())
            .await
            .is_err()
    );
    let dead = bus.dead_letters("q").await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, payload);
    assert_eq!(dead[0].deliveries, 3);
    assert!(dead[0].reason.contains("boom 3"), "{}", dead[0].reason);
    assert_eq!(
        dead[0].header.run_id.to_string(),
        "0190b5d2-0000-7000-8000-000000000001"
    );
    // Reading dead letters does not remove them.
    assert_eq!(bus.dead_letters("q").await.unwrap().len(), 1);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferral_does_not_count_as_a_delivery() {
    let c = cluster();
    let bus = bus_on(&c, 2).await;
    let mut c = bus.consume("q", 1).await.unwrap();
    bus.publish("q", Bytes::from_static(b"{}")).await.unwrap();
    for _ in 0..4 {
        let d = next(&mut c).await;
        assert_eq!(d.deliveries, 1);
        d.defer("busy");
    }
    next(&mut c).await.ack();
    assert!(bus.dead_letters("q").await.unwrap().is_empty());
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_moves_chosen_dead_letters_back_and_keeps_the_rest() {
    let c = cluster();
    let bus = bus_on(&c, 1).await;
    let mut c = bus.consume("q", 2).await.unwrap();
    bus.publish("q", Bytes::from_static(b"{\"n\":1}"))
        .await
        .unwrap();
    bus.publish("q", Bytes::from_static(b"{\"n\":2}"))
        .await
        .unwrap();
    // The two messages may sit on different partitions and arrive in either order: each
    // gets the reason of its own payload.
    for _ in 0..2 {
        let d = next(&mut c).await;
        let reason = if d.payload.ends_with(b"1}") {
            "bad one"
        } else {
            "bad two"
        };
        d.dead_letter(reason);
    }
    // Dead-lettering is settled asynchronously: wait until both are recorded.
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead = bus.dead_letters("q").await.unwrap();
        if dead.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    let moved = bus
        .replay("q", &|d| d.payload.contains("\"n\":2"))
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let back = next(&mut c).await;
    assert_eq!(&back.payload[..], b"{\"n\":2}");
    assert_eq!(
        back.deliveries, 1,
        "a replayed message starts counting afresh"
    );
    back.ack();
    let left = bus.dead_letters("q").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].reason, "bad one");
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_matching_subscriber() {
    let c = cluster();
    let bus = bus_on(&c, 3).await;
    let mut all = bus.subscribe("#").await.unwrap();
    let mut clones = bus.subscribe("clone.*").await.unwrap();
    // Events of one run keep their order (they share a partition).
    let run = r#"{"run_id":"0190b5d2-0000-7000-8000-000000000009"}"#;
    bus.publish_event("run.planned", Bytes::from_static(run.as_bytes()))
        .await
        .unwrap();
    bus.publish_event("clone.succeeded", Bytes::from_static(run.as_bytes()))
        .await
        .unwrap();
    assert_eq!(recv(&mut all).await.0, "run.planned");
    assert_eq!(recv(&mut all).await.0, "clone.succeeded");
    assert_eq!(
        recv(&mut clones).await,
        ("clone.succeeded".into(), Bytes::from_static(run.as_bytes()))
    );
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsettled_deliveries_return_when_a_consumer_dies() {
    let c = cluster();
    let bus = bus_on(&c, 5).await;
    bus.publish("q", Bytes::from_static(b"{}")).await.unwrap();
    {
        // A second process that takes the message and dies without settling it.
        let dying = bus_on(&c, 5).await;
        let mut consumer = dying.consume("q", 1).await.unwrap();
        let d = next(&mut consumer).await;
        std::mem::forget(d); // never acked, never nacked
        dying.close().await;
    }
    let mut consumer = bus.consume("q", 1).await.unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(
        &d.payload[..],
        b"{}",
        "redelivered to the next member of the group"
    );
    d.ack();
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_never_pass_an_unsettled_delivery() {
    let c = cluster();
    let bus = bus_on(&c, 5).await;
    // One partition key, so the three messages are in order in one partition.
    for n in 1..=3 {
        let body = format!("{{\"target\":\"t\",\"n\":{n}}}");
        bus.publish("q", Bytes::from(body)).await.unwrap();
    }
    {
        let first = bus_on(&c, 5).await;
        let mut consumer = first.consume("q", 3).await.unwrap();
        let a = next(&mut consumer).await;
        let b = next(&mut consumer).await;
        let c3 = next(&mut consumer).await;
        // The first is still being worked on when the worker goes away; the later ones
        // finished. Their offsets must not be committed past the first.
        std::mem::forget(a);
        b.ack();
        c3.ack();
        first.close().await;
    }
    let mut consumer = bus.consume("q", 3).await.unwrap();
    let again = next(&mut consumer).await;
    assert!(
        std::str::from_utf8(&again.payload)
            .unwrap()
            .contains("\"n\":1"),
        "{:?}",
        again.payload
    );
    again.ack();
    bus.close().await;
}

/// An ACL refusal is permanent and named: the brokers, what was refused, no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_produce_is_permanent_and_names_the_cluster() {
    let c = cluster();
    let Some(mock) = c.mock() else {
        eprintln!("skipped: injecting a refusal needs the mock cluster");
        return;
    };
    let bus = bus_on(&c, 3).await;
    mock.request_errors(
        rdkafka::types::RDKafkaApiKey::Produce,
        &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 5],
    );
    let e = bus
        .publish("q", Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap_err();
    assert!(e.is_permanent(), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("Kafka at {} refused access", c.brokers)),
        "{msg}"
    );
    assert!(msg.contains("authorization"), "{msg}");
}
