//! Which offset is safe to store: per partition, the lowest offset still in flight, so a
//! crash or a rebalance re-delivers unfinished work and never skips it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

/// Per partition: offsets handed out and not settled yet, and the highest settled one.
#[derive(Default)]
pub(super) struct OffsetTracker {
    partitions: HashMap<(String, i32), (BTreeSet<i64>, i64)>,
}

impl OffsetTracker {
    pub(super) fn started(&mut self, topic: &str, partition: i32, offset: i64) {
        let e = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| (BTreeSet::new(), -1));
        e.0.insert(offset);
    }

    /// Settle `offset`; returns the offset safe to commit (the next to read), if it moved.
    pub(super) fn settled(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let e = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        e.0.remove(&offset);
        e.1 = e.1.max(offset);
        Some(match e.0.first() {
            Some(lowest) => *lowest,
            None => e.1 + 1,
        })
    }
}

/// Settles one offset of one partition (shared by the acker and the retry forwarder).
#[derive(Clone)]
pub(super) struct Settle {
    pub(super) consumer: Arc<StreamConsumer>,
    pub(super) offsets: Arc<Mutex<OffsetTracker>>,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

impl Settle {
    pub(super) fn done(&self) {
        let next =
            self.offsets
                .lock()
                .expect("offsets")
                .settled(&self.topic, self.partition, self.offset);
        if let Some(next) = next {
            let mut tpl = TopicPartitionList::new();
            if tpl
                .add_partition_offset(&self.topic, self.partition, Offset::Offset(next))
                .is_ok()
                && let Err(e) = self.consumer.store_offsets(&tpl)
            {
                // The partition moved to another consumer: it resumes from the last
                // committed offset (at least once).
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "offset not stored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetTracker;

    #[test]
    fn the_stored_offset_never_passes_one_still_in_flight() {
        let mut t = OffsetTracker::default();
        for o in [5, 6, 7] {
            t.started("q", 0, o);
        }
        // 6 is done, 5 is not: a crash now must re-deliver 5.
        assert_eq!(t.settled("q", 0, 6), Some(5));
        assert_eq!(t.settled("q", 0, 5), Some(7));
        assert_eq!(t.settled("q", 0, 7), Some(8));
        // Later deliveries of the partition continue from there.
        t.started("q", 0, 8);
        assert_eq!(t.settled("q", 0, 8), Some(9));
    }

    #[test]
    fn partitions_and_topics_are_tracked_apart() {
        let mut t = OffsetTracker::default();
        t.started("q", 0, 10);
        t.started("q", 1, 3);
        t.started("q.retry", 0, 100);
        assert_eq!(t.settled("q", 1, 3), Some(4));
        assert_eq!(t.settled("q.retry", 0, 100), Some(101));
        assert_eq!(t.settled("q", 0, 10), Some(11));
        // An offset of a partition this consumer never handed out moves nothing.
        assert_eq!(t.settled("q", 2, 0), None);
    }
}
