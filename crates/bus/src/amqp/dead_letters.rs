//! Dead letters: kept in `{p}.{queue}.dead`, announced on the events topic, read back and
//! replayed onto the work queue.

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::FieldTable;
use replicator_proto::DeadLetter;

use super::AmqpBus;
use super::access::backend;
use super::wire::{DELIVERIES_HEADER, REASON_HEADER, header_str, header_u32, short};
use crate::{Bus, BusError};

impl AmqpBus {
    fn dead_letter_from(&self, queue: &str, payload: &[u8], props: &BasicProperties) -> DeadLetter {
        serde_json::from_slice::<DeadLetter>(payload).unwrap_or_else(|_| {
            // Dead-lettered by the broker itself (not through `Delivery::dead_letter`).
            crate::dead_letter(
                queue,
                header_str(props, REASON_HEADER)
                    .as_deref()
                    .unwrap_or("rejected by the broker (delivery limit or rejection)"),
                header_u32(props, DELIVERIES_HEADER).unwrap_or(0),
                payload,
            )
        })
    }

    /// Record a dead letter and announce it on the events topic.
    pub(super) async fn bury(&self, queue: &str, letter: &DeadLetter) -> Result<(), BusError> {
        let body = replicator_proto::encode(letter);
        self.publish_raw(
            &self.dlx(),
            queue,
            &body,
            FieldTable::default(),
            Some(queue),
        )
        .await?;
        self.publish_event(
            replicator_proto::names::events::DEAD_LETTER,
            Bytes::from(body),
        )
        .await
    }

    /// Dead letters of `queue`, oldest first, left in place.
    pub(super) async fn read_dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        let ch = self.channel().await?;
        self.declare_queue(&ch, queue).await?;
        let dead = format!("{}.dead", self.name(queue));
        let mut out = Vec::new();
        // Read without acking; closing the channel puts every message back in order.
        while let Some(m) = ch
            .basic_get(short(&dead), BasicGetOptions { no_ack: false })
            .await
            .map_err(backend(
                &self.inner.settings.url,
                "cannot read dead letters",
            ))?
        {
            out.push(self.dead_letter_from(queue, &m.delivery.data, &m.delivery.properties));
        }
        let _ = ch.close(200, short("read")).await;
        Ok(out)
    }

    /// Move the dead letters of `queue` that `filter` accepts back onto the work queue.
    pub(super) async fn replay_dead_letters(
        &self,
        queue: &str,
        filter: &(dyn for<'d> Fn(&'d DeadLetter) -> bool + Send + Sync),
    ) -> Result<usize, BusError> {
        let ch = self.channel().await?;
        self.declare_queue(&ch, queue).await?;
        let dead = format!("{}.dead", self.name(queue));
        let mut moved = 0;
        while let Some(m) = ch
            .basic_get(short(&dead), BasicGetOptions { no_ack: false })
            .await
            .map_err(backend(
                &self.inner.settings.url,
                "cannot read dead letters",
            ))?
        {
            let letter = self.dead_letter_from(queue, &m.delivery.data, &m.delivery.properties);
            if filter(&letter) {
                // Confirmed on the work queue before it leaves the dead letters.
                self.publish(queue, Bytes::from(letter.payload.into_bytes()))
                    .await?;
                m.delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(backend(
                        &self.inner.settings.url,
                        "cannot ack a replayed dead letter",
                    ))?;
                moved += 1;
            }
        }
        // The ones not chosen go back when the channel closes.
        let _ = ch.close(200, short("replayed")).await;
        Ok(moved)
    }
}
