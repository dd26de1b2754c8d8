//! The RabbitMQ backend against the machine's real broker (127.0.0.1:5672, guest/guest).
//! Every test uses its own name prefix, so tests run in parallel and leave each other alone.

use std::time::Duration;

use bytes::Bytes;
use replicator_bus::{AmqpBus, AmqpSettings, Bus};

fn url() -> String {
    std::env::var("REPLICATOR_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into())
}

async fn bus(max_deliveries: u32) -> AmqpBus {
    let prefix = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut s = AmqpSettings::new(url(), prefix);
    s.retry_delays = vec![Duration::from_millis(100), Duration::from_millis(300)];
    s.max_deliveries = max_deliveries;
    s.reconnect_timeout = Duration::from_secs(20);
    AmqpBus::connect(s)
        .await
        .expect("RabbitMQ on 127.0.0.1:5672")
}

async fn recv(s: &mut Box<dyn replicator_bus::Subscription>) -> (String, Bytes) {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("an event within 5 s")
        .expect("subscription open")
}

async fn next(c: &mut Box<dyn replicator_bus::Consumer>) -> replicator_bus::Delivery {
    tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer open")
}

#[tokio::test]
async fn publish_consume_ack_and_nothing_is_redelivered() {
    let bus = bus(3).await;
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
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn nack_redelivers_after_a_delay_then_dead_letters_with_the_reason() {
    let bus = bus(3).await;
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
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn deferral_does_not_count_as_a_delivery() {
    let bus = bus(2).await;
    let mut c = bus.consume("q", 1).await.unwrap();
    bus.publish("q", Bytes::from_static(b"{}")).await.unwrap();
    for _ in 0..4 {
        let d = next(&mut c).await;
        assert_eq!(d.deliveries, 1);
        d.defer("busy");
    }
    next(&mut c).await.ack();
    assert!(bus.dead_letters("q").await.unwrap().is_empty());
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn replay_moves_chosen_dead_letters_back_and_keeps_the_rest() {
    let bus = bus(1).await;
    let mut c = bus.consume("q", 2).await.unwrap();
    bus.publish("q", Bytes::from_static(b"{\"n\":1}"))
        .await
        .unwrap();
    bus.publish("q", Bytes::from_static(b"{\"n\":2}"))
        .await
        .unwrap();
    next(&mut c).await.dead_letter("bad one");
    next(&mut c).await.dead_letter("bad two");
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
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn events_reach_every_matching_subscriber() {
    let bus = bus(3).await;
    let mut all = bus.subscribe("#").await.unwrap();
    let mut clones = bus.subscribe("clone.*").await.unwrap();
    bus.publish_event("run.planned", Bytes::from_static(b"a"))
        .await
        .unwrap();
    bus.publish_event("clone.succeeded", Bytes::from_static(b"b"))
        .await
        .unwrap();
    assert_eq!(recv(&mut all).await.0, "run.planned");
    assert_eq!(recv(&mut all).await.0, "clone.succeeded");
    assert_eq!(
        recv(&mut clones).await,
        ("clone.succeeded".into(), Bytes::from_static(b"b"))
    );
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn unsettled_deliveries_return_when_a_consumer_dies() {
    let bus = bus(5).await;
    bus.publish("q", Bytes::from_static(b"{}")).await.unwrap();
    {
        // A second process that takes the message and dies without settling it.
        let mut settings = AmqpSettings::new(url(), bus.name("").trim_end_matches('.'));
        settings.retry_delays = vec![Duration::from_millis(100), Duration::from_millis(300)];
        let dying = AmqpBus::connect(settings).await.unwrap();
        let mut c = dying.consume("q", 1).await.unwrap();
        let d = next(&mut c).await;
        std::mem::forget(d); // never acked, never nacked
        dying.close().await;
    }
    let mut c = bus.consume("q", 1).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.deliveries, 2, "redelivered by the broker");
    d.ack();
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn quorum_queues_work_the_same() {
    let prefix = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut s = AmqpSettings::new(url(), prefix);
    s.quorum = true;
    s.retry_delays = vec![Duration::from_millis(100)];
    s.max_deliveries = 2;
    let bus = AmqpBus::connect(s).await.unwrap();
    let mut c = bus.consume("q", 2).await.unwrap();
    bus.publish("q", Bytes::from_static(b"{\"q\":1}"))
        .await
        .unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.deliveries, 1);
    d.nack("try again");
    let d = next(&mut c).await;
    assert_eq!(d.deliveries, 2);
    d.nack("still failing");
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead = bus.dead_letters("q").await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].reason.contains("still failing"),
        "{}",
        dead[0].reason
    );
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

/// A wrong password, or a virtual host the user may not use, is not an outage: connecting
/// fails at once (not after the reconnect timeout) with one line that names the broker and
/// never the password.
#[tokio::test]
async fn a_refused_login_fails_at_once_naming_the_broker_not_the_password() {
    for (url, reason) in [
        (
            "amqp://guest:not-the-password@127.0.0.1:5672/%2f",
            "amqp://guest@127.0.0.1:5672/%2f",
        ),
        (
            "amqp://guest:guest@127.0.0.1:5672/no-such-vhost",
            "amqp://guest@127.0.0.1:5672/no-such-vhost",
        ),
    ] {
        let mut s = AmqpSettings::new(url, "test-refused");
        s.reconnect_timeout = Duration::from_secs(60);
        let started = std::time::Instant::now();
        let e = AmqpBus::connect(s).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url}: refused after {:?}",
            started.elapsed()
        );
        assert!(e.is_permanent(), "{url}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("RabbitMQ at {reason} refused access: ")),
            "{msg}"
        );
        assert!(
            !msg.contains("not-the-password") && !msg.contains("guest:guest"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }
}
