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
    /// Times deferred: each deferral waits twice as long as the one before.
    deferrals: u32,
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
            deferrals: 0,
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
            let delay = defer_delay(m.deferrals);
            m.deferrals = m.deferrals.saturating_add(1);
            tracing::debug!(queue = %self.queue.name, reason, delay_ms = delay.as_millis() as u64, "message deferred");
            let queue = self.queue.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        tokio::time::sleep(delay).await;
                        queue.push(m);
                    });
                }
                Err(_) => queue.push(m),
            }
        }
    }
}

/// How long a message deferred `deferrals` times before waits now: 100 ms, doubling, at most
/// 5 s (a task that waits long — the inventory check behind a large volume — comes back a
/// few times a minute, not ten times a second).
fn defer_delay(deferrals: u32) -> std::time::Duration {
    std::time::Duration::from_millis((100u64 << deferrals.min(6)).min(5_000))
}

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
mod tests;
