//! Connection, channels and the declared topology (work, retry and dead-letter queues,
//! the events and dead-letter exchanges).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::AmqpBus;
use super::access::{CONNECTING, backend};
use super::wire::{long_str, short};
use crate::BusError;

impl AmqpBus {
    /// The retry queue of `queue` for `delay`, named by its delay so processes configured
    /// with different delays share a broker without conflicting declarations.
    pub(super) fn retry_queue(&self, queue: &str, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.name(queue), delay.as_millis())
    }

    pub(super) fn events_exchange(&self) -> String {
        self.name("events")
    }

    pub(super) fn dlx(&self) -> String {
        self.name("dlx")
    }

    /// A fresh channel, reconnecting with exponential backoff while the broker is away.
    pub(super) async fn channel(&self) -> Result<Channel, BusError> {
        let inner = self.inner.clone();
        let open = || {
            let inner = inner.clone();
            async move {
                let conn = inner
                    .pool
                    .get()
                    .await
                    .map_err(backend(&inner.settings.url, CONNECTING))?;
                conn.create_channel().await.map_err(backend(
                    &inner.settings.url,
                    "cannot open a RabbitMQ channel",
                ))
            }
        };
        open.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_total_delay(Some(self.inner.settings.reconnect_timeout))
                .without_max_times()
                .with_jitter(),
        )
        // A refusal (wrong credentials, no access to the virtual host) is not an outage.
        .when(|e| !e.is_permanent())
        .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, "RabbitMQ unavailable"))
        .await
    }

    pub(super) async fn declare_exchanges(&self, ch: &Channel) -> Result<(), BusError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            short(&self.events_exchange()),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(backend(
            &self.inner.settings.url,
            "cannot declare the events exchange",
        ))?;
        ch.exchange_declare(
            short(&self.dlx()),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(backend(
            &self.inner.settings.url,
            "cannot declare the dead-letter exchange",
        ))?;
        Ok(())
    }

    /// Declare a work queue with its retry and dead-letter queues (once per process).
    pub(super) async fn declare_queue(&self, ch: &Channel, queue: &str) -> Result<(), BusError> {
        if self
            .inner
            .declared
            .lock()
            .expect("declared")
            .contains(queue)
        {
            return Ok(());
        }
        let work = self.name(queue);
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        if self.inner.settings.quorum {
            args.insert(short("x-queue-type"), long_str("quorum"));
        }
        let mut work_args = args.clone();
        work_args.insert(short("x-dead-letter-exchange"), long_str(&self.dlx()));
        work_args.insert(short("x-dead-letter-routing-key"), long_str(queue));
        ch.queue_declare(short(&work), durable, work_args)
            .await
            .map_err(backend(
                &self.inner.settings.url,
                &format!("cannot declare queue {work}"),
            ))?;
        let dead = format!("{work}.dead");
        ch.queue_declare(short(&dead), durable, args.clone())
            .await
            .map_err(backend(
                &self.inner.settings.url,
                &format!("cannot declare queue {dead}"),
            ))?;
        ch.queue_bind(
            short(&dead),
            short(&self.dlx()),
            short(queue),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend(
            &self.inner.settings.url,
            &format!("cannot bind {dead}"),
        ))?;
        for delay in &self.inner.settings.retry_delays {
            let retry = self.retry_queue(queue, *delay);
            let mut retry_args = args.clone();
            retry_args.insert(
                short("x-message-ttl"),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            retry_args.insert(short("x-dead-letter-exchange"), long_str(""));
            retry_args.insert(short("x-dead-letter-routing-key"), long_str(&work));
            ch.queue_declare(short(&retry), durable, retry_args)
                .await
                .map_err(backend(
                    &self.inner.settings.url,
                    &format!("cannot declare queue {retry}"),
                ))?;
        }
        self.inner
            .declared
            .lock()
            .expect("declared")
            .insert(queue.to_owned());
        Ok(())
    }

    /// Delete every queue this process declared, and the exchanges: tears a prefix's
    /// topology down (tests; decommissioning a fleet). Messages in them are lost.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let ch = self.channel().await?;
        let queues: Vec<String> = self
            .inner
            .declared
            .lock()
            .expect("declared")
            .drain()
            .collect();
        for q in queues {
            let work = self.name(&q);
            let mut names = vec![work.clone(), format!("{work}.dead")];
            names.extend(
                self.inner
                    .settings
                    .retry_delays
                    .iter()
                    .map(|d| self.retry_queue(&q, *d)),
            );
            for name in names {
                ch.queue_delete(short(&name), Default::default())
                    .await
                    .map_err(backend(
                        &self.inner.settings.url,
                        &format!("cannot delete queue {name}"),
                    ))?;
            }
        }
        for ex in [self.events_exchange(), self.dlx()] {
            ch.exchange_delete(short(&ex), Default::default())
                .await
                .map_err(backend(
                    &self.inner.settings.url,
                    &format!("cannot delete exchange {ex}"),
                ))?;
        }
        let _ = ch.close(200, short("deleted")).await;
        Ok(())
    }

    /// Messages ready in a work queue (for metrics and autoscaling).
    pub async fn depth(&self, queue: &str) -> Result<u64, BusError> {
        let ch = self.channel().await?;
        self.declare_queue(&ch, queue).await?;
        let q = ch
            .queue_declare(
                short(&self.name(queue)),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend(&self.inner.settings.url, "cannot inspect queue"))?;
        let _ = ch.close(200, short("done")).await;
        Ok(u64::from(q.message_count()))
    }
}
