//! In-process bus: the embedded default. Bounded work queues with ack/nack, redelivery,
//! deferral (redelivered after a short delay, not counted) and dead letters; an events topic fanned out to per-subscriber queues (a subscriber never
//! misses an event published after it subscribed, however slow it is).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use replicator_proto::DeadLetter;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use crate::{Acker, Bus, BusError, Consumer, Delivery, Nacked, Subscription, topic_matches};

/// The in-process bus.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus").finish_non_exhaustive()
    }
}

struct Inner {
    capacity: usize,
    max_deliveries: u32,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    subscribers: Arc<Subscribers>,
    closed: std::sync::atomic::AtomicBool,
}

type Subscribers = Mutex<Vec<(String, mpsc::UnboundedSender<(String, Bytes)>)>>;

fn fan_out(subs: &Subscribers, routing_key: &str, payload: &Bytes) {
    let mut subs = subs.lock().expect("subs lock");
    subs.retain(|(pattern, tx)| {
        !topic_matches(pattern, routing_key)
            || tx.send((routing_key.to_owned(), payload.clone())).is_ok()
    });
}

struct Message {
    payload: Bytes,
    deliveries: u32,
    _permit: OwnedSemaphorePermit,
}

struct Queue {
    name: String,
    ready: Mutex<VecDeque<Message>>,
    dead: Mutex<Vec<DeadLetter>>,
    notify: Notify,
    permits: Arc<Semaphore>,
    max_deliveries: u32,
    /// Dead letters are announced on the events topic (`dead_letter`), so the run they
    /// belong to can account for them.
    subscribers: Arc<Subscribers>,
}

impl Queue {
    fn push(&self, m: Message) {
        self.ready.lock().expect("queue lock").push_back(m);
        self.notify.notify_one();
    }

    fn bury(&self, m: Message, reason: &str) {
        tracing::warn!(queue = %self.name, deliveries = m.deliveries, reason, "message dead-lettered");
        let letter = crate::dead_letter(&self.name, reason, m.deliveries, &m.payload);
        let event = Bytes::from(replicator_proto::encode(&letter));
        self.dead.lock().expect("dead lock").push(letter);
        fan_out(
            &self.subscribers,
            replicator_proto::names::events::DEAD_LETTER,
            &event,
        );
        // The permit drops with `m`: a dead letter no longer takes queue capacity.
    }
}

impl MemoryBus {
    /// A bus whose queues hold `capacity` messages and dead-letter a message after
    /// `max_deliveries` deliveries.
    pub fn new(capacity: usize, max_deliveries: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                max_deliveries: max_deliveries.max(1),
                queues: Mutex::new(HashMap::new()),
                subscribers: Arc::new(Mutex::new(Vec::new())),
                closed: Default::default(),
            }),
        }
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        let mut qs = self.inner.queues.lock().expect("queues lock");
        qs.entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Queue {
                    name: name.to_owned(),
                    ready: Mutex::new(VecDeque::new()),
                    dead: Mutex::new(Vec::new()),
                    notify: Notify::new(),
                    permits: Arc::new(Semaphore::new(self.inner.capacity)),
                    max_deliveries: self.inner.max_deliveries,
                    subscribers: self.inner.subscribers.clone(),
                })
            })
            .clone()
    }

    /// Messages waiting in a queue (not counting those being handled).
    pub fn depth(&self, queue: &str) -> usize {
        self.queue(queue).ready.lock().expect("queue lock").len()
    }

    /// Stop the bus: consumers and subscriptions end once drained.
    pub fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for q in self.inner.queues.lock().expect("queues lock").values() {
            q.notify.notify_waiters();
        }
        self.inner.subscribers.lock().expect("subs lock").clear();
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, queue: &str, payload: Bytes) -> Result<(), BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let q = self.queue(queue);
        let permit = q
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BusError::Closed)?;
        q.push(Message {
            payload,
            deliveries: 0,
            _permit: permit,
        });
        Ok(())
    }

    async fn consume(&self, queue: &str, _prefetch: usize) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(MemoryConsumer {
            bus: self.clone(),
            queue: self.queue(queue),
        }))
    }

    async fn publish_event(&self, routing_key: &str, payload: Bytes) -> Result<(), BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let mut subs = self.inner.subscribers.lock().expect("subs lock");
        subs.retain(|(pattern, tx)| {
            !topic_matches(pattern, routing_key)
                || tx.send((routing_key.to_owned(), payload.clone())).is_ok()
        });
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<Box<dyn Subscription>, BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .subscribers
            .lock()
            .expect("subs lock")
            .push((pattern.to_owned(), tx));
        Ok(Box::new(MemorySubscription { rx }))
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        Ok(self.queue(queue).dead.lock().expect("dead lock").clone())
    }

    async fn replay(
        &self,
        queue: &str,
        filter: &(dyn for<'d> Fn(&'d DeadLetter) -> bool + Send + Sync),
    ) -> Result<usize, BusError> {
        let q = self.queue(queue);
        let chosen: Vec<DeadLetter> = {
            let mut dead = q.dead.lock().expect("dead lock");
            let (chosen, kept): (Vec<DeadLetter>, Vec<DeadLetter>) =
                dead.drain(..).partition(|d: &DeadLetter| filter(d));
            *dead = kept;
            chosen
        };
        let n = chosen.len();
        for d in chosen {
            self.publish(queue, Bytes::from(d.payload)).await?;
        }
        Ok(n)
    }
}

struct MemoryConsumer {
    bus: MemoryBus,
    queue: Arc<Queue>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let popped = self.queue.ready.lock().expect("queue lock").pop_front();
            if let Some(mut m) = popped {
                m.deliveries += 1;
                let payload = m.payload.clone();
                let deliveries = m.deliveries;
                let acker = MemoryAcker {
                    queue: self.queue.clone(),
                    msg: Mutex::new(Some(m)),
                };
                return Some(Delivery::new(
                    self.queue.name.clone(),
                    payload,
                    deliveries,
                    Box::new(acker),
                ));
            }
            if self.bus.is_closed() {
                return None;
            }
            notified.await;
        }
    }
}

struct MemoryAcker {
    queue: Arc<Queue>,
    msg: Mutex<Option<Message>>,
}

impl Acker for MemoryAcker {
    fn ack(&self) {
        self.msg.lock().expect("acker lock").take();
    }
    fn nack(&self, reason: &str) {
        if let Some(m) = self.msg.lock().expect("acker lock").take() {
            match crate::nacked(m.deliveries, self.queue.max_deliveries, reason) {
                Nacked::GiveUp { reason } => self.queue.bury(m, &reason),
                // No delays in one process: straight back on the queue.
                Nacked::Retry { .. } => {
                    tracing::debug!(queue = %self.queue.name, deliveries = m.deliveries, reason, "message requeued");
                    self.queue.push(m);
                }
            }
        }
    }
    fn dead_letter(&self, reason: &str) {
        if let Some(m) = self.msg.lock().expect("acker lock").take() {
            self.queue.bury(m, reason);
        }
    }
    fn defer(&self, reason: &str) {
        if let Some(mut m) = self.msg.lock().expect("acker lock").take() {
            // Not counted: the next delivery carries the count this one arrived with.
            m.deliveries = m.deliveries.saturating_sub(1);
            tracing::debug!(queue = %self.queue.name, reason, "message deferred");
            let queue = self.queue.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        tokio::time::sleep(DEFER_DELAY).await;
                        queue.push(m);
                    });
                }
                Err(_) => queue.push(m),
            }
        }
    }
}

/// How long a deferred message waits before it is delivered again.
const DEFER_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

struct MemorySubscription {
    rx: mpsc::UnboundedReceiver<(String, Bytes)>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<(String, Bytes)> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
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
        for _ in 0..5 {
            let d = c.next().await.unwrap();
            assert_eq!(d.deliveries, 1, "a deferral is not a delivery");
            let at = tokio::time::Instant::now();
            d.defer("table busy");
            assert_eq!(bus.depth("q"), 0, "not back at once");
            let d = c.next().await.unwrap();
            assert!(at.elapsed() >= DEFER_DELAY, "{:?}", at.elapsed());
            d.defer("table busy");
        }
        let d = c.next().await.unwrap();
        assert_eq!(d.deliveries, 1);
        d.ack();
        assert!(bus.dead_letters("q").await.unwrap().is_empty());
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
}
