//! The one consume loop every worker uses: up to `concurrency` deliveries in flight, each
//! decoded into its message type (undecodable ones are dead-lettered with the reason) and
//! handed to `handle` on its own task inside a tracing span. When `shutdown` fires the loop
//! stops taking deliveries and waits for the in-flight ones to finish, so a scaled-down
//! worker hands back nothing half-done.

use std::future::Future;
use std::sync::Arc;

use replicator_proto::Message;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Consumer, Delivery, typed};

/// Serve `consumer` until it ends or `shutdown` fires; `span` names each message's span.
pub async fn serve<T, F, Fut>(
    mut consumer: Box<dyn Consumer>,
    concurrency: usize,
    shutdown: CancellationToken,
    span: fn(&T) -> tracing::Span,
    handle: F,
) where
    T: Message,
    F: Fn(T, Delivery) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            d = consumer.next() => match d { Some(d) => d, None => break },
        };
        while running.try_join_next().is_some() {}
        let Some((msg, delivery)) = typed::accept::<T>(delivery) else {
            continue;
        };
        let span = span(&msg);
        let work = handle(msg, delivery);
        running.spawn(
            async move {
                work.await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use replicator_proto::{CloneTask, EngineKind, Header, Operation};

    use super::*;
    use crate::{Bus, MemoryBus};

    fn task(table: &str) -> CloneTask {
        CloneTask {
            ingest: None,
            header: Header::new(uuid::Uuid::now_v7()),
            task_id: uuid::Uuid::now_v7(),
            attempt: 1,
            table: table.into(),
            source: format!("file:///src/{table}"),
            target: format!("file:///dst/{table}"),
            version: None,
            operation: Operation::All,
            engine: EngineKind::Native,
            replace: false,
            external_roots: Vec::new(),
            as_of: None,
        }
    }

    #[tokio::test]
    async fn at_most_concurrency_handlers_run_and_bad_messages_are_skipped() {
        let bus = MemoryBus::new(100, 3);
        for i in 0..6 {
            typed::publish(&bus, "q", &task(&format!("s.t{i}")))
                .await
                .unwrap();
        }
        bus.publish("q", Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let consumer = bus.consume("q", 2).await.unwrap();
        let (r, m, d) = (running.clone(), most.clone(), done.clone());
        let serving = tokio::spawn(serve(
            consumer,
            2,
            shutdown.clone(),
            |_: &CloneTask| tracing::Span::none(),
            move |_task: CloneTask, delivery: Delivery| {
                let (r, m, d) = (r.clone(), m.clone(), d.clone());
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    delivery.ack();
                    d.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while done.load(Ordering::SeqCst) < 6 || bus.dead_letters("q").await.unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the worker stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("serve ends on shutdown")
            .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 6);
        assert_eq!(most.load(Ordering::SeqCst), 2, "two at a time, never more");
        let dead = bus.dead_letters("q").await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].reason.starts_with("malformed message"), "{dead:?}");
    }

    #[tokio::test]
    async fn shutdown_waits_for_in_flight_work_and_takes_no_more() {
        let bus = MemoryBus::new(100, 3);
        for i in 0..3 {
            typed::publish(&bus, "q", &task(&format!("s.t{i}")))
                .await
                .unwrap();
        }
        let shutdown = CancellationToken::new();
        let finished = Arc::new(AtomicUsize::new(0));
        let (f, s) = (finished.clone(), shutdown.clone());
        let consumer = bus.consume("q", 1).await.unwrap();
        serve(
            consumer,
            1,
            shutdown.clone(),
            |_: &CloneTask| tracing::Span::none(),
            move |_task: CloneTask, delivery: Delivery| {
                let (f, s) = (f.clone(), s.clone());
                async move {
                    // Shutdown arrives while the first task is in flight.
                    s.cancel();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    f.fetch_add(1, Ordering::SeqCst);
                    delivery.ack();
                }
            },
        )
        .await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the in-flight task finished"
        );
        assert_eq!(
            bus.depth("q"),
            2,
            "the others stay queued for another worker"
        );
    }
}
