//! The memory bus's contract: settling, redelivery, deferral, dead letters and replay,
//! bounds, events, closing.

use super::*;
use std::time::Duration;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

#[tokio::test]
async fn ack_removes_and_nack_redelivers() {
    let bus = MemoryBus::new(10, 3);
    bus.publish("q", b("one")).await.unwrap();
    let mut c = bus.consume("q", 1).await.unwrap();
    let d = c.next().await.unwrap();
    assert_eq!((d.payload.as_ref(), d.deliveries), (&b"one"[..], 1));
    d.nack("try again");
    let d = c.next().await.unwrap();
    assert_eq!(d.deliveries, 2);
    d.ack();
    assert_eq!(bus.depth("q"), 0);
    assert!(bus.dead_letters("q").await.unwrap().is_empty());
}

#[tokio::test]
async fn dropped_delivery_is_redelivered_then_dead_lettered() {
    let bus = MemoryBus::new(10, 2);
    let mut events = bus.subscribe("dead_letter").await.unwrap();
    bus.publish(
        "q",
        b("{\"run_id\":\"00000000-0000-0000-0000-000000000001\"}"),
    )
    .await
    .unwrap();
    let mut c = bus.consume("q", 1).await.unwrap();
    drop(c.next().await.unwrap());
    drop(c.next().await.unwrap());
    let dead = bus.dead_letters("q").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].deliveries, 2);
    assert!(
        dead[0].reason.contains("gave up after 2 deliveries"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].header.run_id, uuid::Uuid::from_u128(1));
    assert_eq!(events.next().await.unwrap().0, "dead_letter");
    assert_eq!(bus.replay("q", &|_| true).await.unwrap(), 1);
    let d = c.next().await.unwrap();
    assert_eq!(d.deliveries, 1, "a replayed message starts over");
    d.ack();
}

#[tokio::test]
async fn a_deferred_message_comes_back_later_without_counting() {
    let bus = MemoryBus::new(10, 2);
    bus.publish("q", b("busy")).await.unwrap();
    let mut c = bus.consume("q", 1).await.unwrap();
    let mut d = c.next().await.unwrap();
    for i in 0..4 {
        assert_eq!(d.deliveries, 1, "a deferral is not a delivery");
        let at = tokio::time::Instant::now();
        d.defer("table busy");
        assert_eq!(bus.depth("q"), 0, "not back at once");
        d = c.next().await.unwrap();
        assert!(at.elapsed() >= defer_delay(i), "{i}: {:?}", at.elapsed());
    }
    assert_eq!(d.deliveries, 1);
    d.ack();
    assert!(bus.dead_letters("q").await.unwrap().is_empty());
}

/// A message deferred again and again comes back less and less often, up to every 5 s.
#[test]
fn deferrals_back_off() {
    let ms: Vec<u128> = (0..9).map(|i| defer_delay(i).as_millis()).collect();
    assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
}

#[tokio::test]
async fn queues_are_bounded() {
    let bus = MemoryBus::new(2, 3);
    bus.publish("q", b("1")).await.unwrap();
    bus.publish("q", b("2")).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(50), bus.publish("q", b("3"))).await;
    assert!(third.is_err(), "publish must wait while the queue is full");
    let mut c = bus.consume("q", 1).await.unwrap();
    c.next().await.unwrap().ack();
    tokio::time::timeout(Duration::from_secs(5), bus.publish("q", b("3")))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn events_reach_matching_subscribers_only() {
    let bus = MemoryBus::new(10, 3);
    let mut all = bus.subscribe("#").await.unwrap();
    let mut clones = bus.subscribe("clone.*").await.unwrap();
    bus.publish_event("run.planned", b("a")).await.unwrap();
    bus.publish_event("clone.succeeded", b("b")).await.unwrap();
    assert_eq!(all.next().await.unwrap().0, "run.planned");
    assert_eq!(all.next().await.unwrap().0, "clone.succeeded");
    assert_eq!(
        clones.next().await.unwrap(),
        ("clone.succeeded".into(), b("b"))
    );
}

#[tokio::test]
async fn a_nack_on_the_last_delivery_dead_letters_with_the_reason() {
    let bus = MemoryBus::new(10, 2);
    bus.publish("q", b("{}")).await.unwrap();
    let mut c = bus.consume("q", 1).await.unwrap();
    c.next().await.unwrap().nack("boom");
    assert!(
        bus.dead_letters("q").await.unwrap().is_empty(),
        "one more try"
    );
    let d = c.next().await.unwrap();
    assert_eq!(d.deliveries, 2);
    d.nack("boom again");
    let dead = bus.dead_letters("q").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "gave up after 2 deliveries: boom again");
    assert_eq!(dead[0].deliveries, 2);
    assert_eq!(dead[0].queue, "q");
    assert_eq!(bus.depth("q"), 0);
}

#[tokio::test]
async fn an_explicit_dead_letter_is_kept_announced_and_frees_its_slot() {
    let bus = MemoryBus::new(1, 5);
    let mut events = bus.subscribe("#").await.unwrap();
    let run = uuid::Uuid::from_u128(7);
    let payload = format!("{{\"run_id\":\"{run}\",\"n\":1}}");
    bus.publish("q", b(&payload)).await.unwrap();
    let mut c = bus.consume("q", 1).await.unwrap();
    c.next()
        .await
        .unwrap()
        .dead_letter("permanent: no such table");
    // Not redelivered, whatever `max_deliveries` allows.
    assert_eq!(bus.depth("q"), 0);
    let dead = bus.dead_letters("q").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].reason.as_str(),
            dead[0].deliveries,
            dead[0].payload.as_str()
        ),
        ("permanent: no such table", 1, payload.as_str())
    );
    assert_eq!(dead[0].header.run_id, run, "the run can account for it");
    // Announced on the events topic as the dead letter itself.
    let (key, body) = events.next().await.unwrap();
    assert_eq!(key, replicator_proto::names::events::DEAD_LETTER);
    let announced: DeadLetter = replicator_proto::decode(&body).unwrap();
    assert_eq!(announced, dead[0]);
    // A queue of capacity 1 takes the next message: the dead letter holds no slot.
    tokio::time::timeout(Duration::from_secs(5), bus.publish("q", b("next")))
        .await
        .expect("a dead letter does not take queue capacity")
        .unwrap();
}

#[tokio::test]
async fn replay_moves_the_chosen_dead_letters_and_keeps_the_rest_in_order() {
    let bus = MemoryBus::new(10, 5);
    for p in ["a", "b", "c", "d"] {
        bus.publish("q", b(p)).await.unwrap();
    }
    let mut c = bus.consume("q", 1).await.unwrap();
    for _ in 0..4 {
        let d = c.next().await.unwrap();
        let reason = format!("bad {}", String::from_utf8_lossy(&d.payload));
        d.dead_letter(&reason);
    }
    let moved = bus
        .replay("q", &|d| d.payload == "b" || d.payload == "d")
        .await
        .unwrap();
    assert_eq!(moved, 2);
    let kept: Vec<String> = bus
        .dead_letters("q")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.payload)
        .collect();
    assert_eq!(kept, ["a", "c"]);
    for want in ["b", "d"] {
        let d = c.next().await.unwrap();
        assert_eq!((d.payload.as_ref(), d.deliveries), (want.as_bytes(), 1));
        d.ack();
    }
    assert_eq!(bus.depth("q"), 0);
    // Nothing chosen: nothing moves, nothing is lost.
    assert_eq!(bus.replay("q", &|_| false).await.unwrap(), 0);
    assert_eq!(bus.dead_letters("q").await.unwrap().len(), 2);
    // Dead letters are per queue.
    assert!(bus.dead_letters("other").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_acked_message_is_never_redelivered() {
    let bus = MemoryBus::new(10, 1);
    bus.publish("q", b("x")).await.unwrap();
    let mut c = bus.consume("q", 1).await.unwrap();
    c.next().await.unwrap().ack();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), c.next())
            .await
            .is_err(),
        "an acked message came back"
    );
    assert!(bus.dead_letters("q").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_closed_bus_refuses_publishes_and_subscriptions() {
    let bus = MemoryBus::new(10, 3);
    bus.close();
    assert!(matches!(
        bus.publish("q", b("x")).await,
        Err(BusError::Closed)
    ));
    assert!(matches!(
        bus.publish_event("run.planned", b("x")).await,
        Err(BusError::Closed)
    ));
    assert!(matches!(bus.subscribe("#").await, Err(BusError::Closed)));
}

#[tokio::test]
async fn consumers_end_when_closed() {
    let bus = MemoryBus::new(10, 3);
    let mut c = bus.consume("q", 1).await.unwrap();
    let h = tokio::spawn(async move { c.next().await.is_none() });
    tokio::time::sleep(Duration::from_millis(10)).await;
    bus.close();
    assert!(h.await.unwrap());
}
