//! Publishing: every publish waits for the broker's confirm, reconnecting and retrying
//! while the broker is away.

use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;

use super::AmqpBus;
use super::access::backend;
use super::wire::{persistent, short};
use crate::BusError;

impl AmqpBus {
    /// Publish with a broker confirm, reconnecting and retrying while the broker is away.
    pub(super) async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        headers: FieldTable,
        declare: Option<&str>,
    ) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + self.inner.settings.reconnect_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = async {
                let ch = self.publisher().await?;
                if let Some(q) = declare {
                    self.declare_queue(&ch, q).await?;
                }
                let confirm = ch
                    .basic_publish(
                        short(exchange),
                        short(routing_key),
                        BasicPublishOptions::default(),
                        payload,
                        persistent(headers.clone()),
                    )
                    .await
                    .map_err(backend(&self.inner.settings.url, "publish failed"))?
                    .await
                    .map_err(backend(&self.inner.settings.url, "publish not confirmed"))?;
                if confirm.is_nack() {
                    return Err(BusError::Backend(format!(
                        "the broker refused a message for {routing_key}"
                    )));
                }
                Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if !e.is_permanent() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, routing_key, "publish failed; reconnecting");
                    *self.inner.publisher.lock().await = None;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn publisher(&self) -> Result<Channel, BusError> {
        let mut slot = self.inner.publisher.lock().await;
        if let Some(ch) = slot.as_ref()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(backend(
                &self.inner.settings.url,
                "cannot enable publisher confirms",
            ))?;
        *slot = Some(ch.clone());
        Ok(ch)
    }
}
