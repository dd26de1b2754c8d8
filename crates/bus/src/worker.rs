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
