//! The raw RabbitMQ baseline of the fleet benchmark: how fast the broker alone moves
//! messages the size of a clone task, with the guarantees the fleet uses (durable queue,
//! persistent messages, publisher confirms, manual acks, prefetch).
//!
//! ```text
//! amqp_baseline AMQP_URL MESSAGES BYTES [PREFETCH] [IN_FLIGHT] [publish-only]
//! ```
//! Prints one JSON line: messages, bytes, publish_s, total_s, per_s. IN_FLIGHT (8) publishes
//! wait for their confirms at once; `publish-only` attaches no consumer (the planner's case:
//! `bench/estate.sh --plan-only` prints this baseline beside the planning time).

use std::time::Instant;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.first().ok_or(
        "usage: amqp_baseline AMQP_URL MESSAGES BYTES [PREFETCH] [IN_FLIGHT] [publish-only]",
    )?;
    let n: usize = args.get(1).ok_or("MESSAGES")?.parse()?;
    let size: usize = args.get(2).ok_or("BYTES")?.parse()?;
    let prefetch: u16 = args.get(3).map(|p| p.parse()).transpose()?.unwrap_or(8);
    let in_flight: usize = args.get(4).map(|p| p.parse()).transpose()?.unwrap_or(8);
    let consume_too = args.get(5).map(String::as_str) != Some("publish-only");
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let queue = format!("baseline-{}", uuid::Uuid::new_v4().simple());
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    publisher
        .queue_declare(queue.as_str().into(), durable, FieldTable::default())
        .await?;
    let body = vec![b'x'; size];
    let props = BasicProperties::default().with_delivery_mode(2);

    let consumer_ch = conn.create_channel().await?;
    consumer_ch
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        if !consume_too {
            return Ok(Instant::now());
        }
        for _ in 0..n {
            let d = consumer.next().await.expect("delivery")?;
            d.ack(BasicAckOptions::default()).await?;
        }
        Ok::<_, lapin::Error>(Instant::now())
    });
    // Each publish waits for its confirm, as the fleet's publishes do; a few run at once.
    let publishes = futures::stream::iter(0..n)
        .map(|_| {
            let (ch, q, body, props) = (
                publisher.clone(),
                queue.clone(),
                body.clone(),
                props.clone(),
            );
            async move {
                ch.basic_publish(
                    "".into(),
                    q.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await?
                .await
            }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await;
    for p in publishes {
        p?;
    }
    let published = started.elapsed().as_secs_f64();
    let done = consume.await??;
    let total = if consume_too {
        (done - started).as_secs_f64()
    } else {
        published
    };
    publisher
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    println!(
        "{{\"messages\":{n},\"bytes\":{size},\"publish_s\":{published:.4},\"total_s\":{total:.4},\"per_s\":{:.1}}}",
        n as f64 / total
    );
    Ok(())
}
