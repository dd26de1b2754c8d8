//! Prometheus metrics every service exposes on `/metrics`.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `replicator_tasks_total` | `service`, `outcome` | tasks finished (`succeeded`/`failed`) |
//! | `replicator_task_duration_seconds` | `service` | time per task, retries included |
//! | `replicator_tasks_in_flight` | `service` | tasks being worked on now |
//! | `replicator_bytes_copied_total` | | bytes copied by clones |
//! | `replicator_queue_depth` | `queue` | messages waiting (RabbitMQ) or consumer lag (Kafka) |
//! | `replicator_up` | `service` | 1 while the service serves |
//! | `replicator_group_lag_seconds` | `group` | age of a sync group's last consistent cut |

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

struct Metrics {
    registry: Registry,
    tasks: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    bytes: IntCounter,
    depth: IntGaugeVec,
    up: IntGaugeVec,
    group_lag: IntGaugeVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let tasks = IntCounterVec::new(
        Opts::new("replicator_tasks_total", "Tasks finished, by outcome"),
        &["service", "outcome"],
    )
    .expect("metric");
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "replicator_task_duration_seconds",
            "Time per task, retries included",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            1800.0,
        ]),
        &["service"],
    )
    .expect("metric");
    let in_flight = IntGaugeVec::new(
        Opts::new("replicator_tasks_in_flight", "Tasks being worked on"),
        &["service"],
    )
    .expect("metric");
    let bytes =
        IntCounter::new("replicator_bytes_copied_total", "Bytes copied by clones").expect("metric");
    let depth = IntGaugeVec::new(
        Opts::new(
            "replicator_queue_depth",
            "Messages waiting in a work queue (or consumer lag)",
        ),
        &["queue"],
    )
    .expect("metric");
    let up = IntGaugeVec::new(
        Opts::new("replicator_up", "1 while the service serves"),
        &["service"],
    )
    .expect("metric");
    let group_lag = IntGaugeVec::new(
        Opts::new(
            "replicator_group_lag_seconds",
            "Age of a sync group's last consistent cut, in seconds",
        ),
        &["group"],
    )
    .expect("metric");
    for c in [
        Box::new(tasks.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(duration.clone()),
        Box::new(in_flight.clone()),
        Box::new(bytes.clone()),
        Box::new(depth.clone()),
        Box::new(up.clone()),
        Box::new(group_lag.clone()),
    ] {
        registry.register(c).expect("metric registered once");
    }
    Metrics {
        registry,
        tasks,
        duration,
        in_flight,
        bytes,
        depth,
        up,
        group_lag,
    }
});

/// A task of `service` finished.
pub fn task_done(service: &str, succeeded: bool, took: Duration) {
    let outcome = if succeeded { "succeeded" } else { "failed" };
    METRICS.tasks.with_label_values(&[service, outcome]).inc();
    METRICS
        .duration
        .with_label_values(&[service])
        .observe(took.as_secs_f64());
}

/// Counts a task in flight until the guard drops.
#[must_use]
pub fn in_flight(service: &str) -> InFlight {
    let gauge = METRICS.in_flight.with_label_values(&[service]);
    gauge.inc();
    InFlight(gauge)
}

/// Guard of [`in_flight`].
#[derive(Debug)]
pub struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Bytes a clone copied.
pub fn bytes_copied(n: u64) {
    METRICS.bytes.inc_by(n);
}

/// The depth (or lag) of a work queue.
pub fn queue_depth(queue: &str, depth: u64) {
    METRICS
        .depth
        .with_label_values(&[queue])
        .set(depth.min(i64::MAX as u64) as i64);
}

/// How far behind the primary a sync group is: the age of its last consistent cut.
pub fn group_lag(group: &str, lag: Duration) {
    METRICS
        .group_lag
        .with_label_values(&[group])
        .set(lag.as_secs().min(i64::MAX as u64) as i64);
}

/// Whether `service` is serving.
pub fn set_up(service: &str, up: bool) {
    METRICS.up.with_label_values(&[service]).set(i64::from(up));
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_values() {
        task_done("cloner", true, Duration::from_millis(20));
        bytes_copied(1234);
        queue_depth("tasks.clone", 7);
        {
            let _g = in_flight("cloner");
            assert!(render().contains("replicator_tasks_in_flight{service=\"cloner\"} 1"));
        }
        let text = render();
        assert!(
            text.contains("replicator_tasks_total{outcome=\"succeeded\",service=\"cloner\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("replicator_bytes_copied_total 1234"),
            "{text}"
        );
        assert!(
            text.contains("replicator_queue_depth{queue=\"tasks.clone\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("replicator_tasks_in_flight{service=\"cloner\"} 0"),
            "{text}"
        );
    }
}
