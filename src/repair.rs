//! Offsets the channel lost, found when it opened (a missing segment or a damaged range), kept
//! per partition until HDFS holds them; until then `/health` is degraded naming them. They
//! heal on their own: a partition's chain ends at its hole, so the source fetches them from
//! Kafka again. Were they gone from Kafka too, the partition halts as any gone range does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::health::Health;
use crate::wal::{Gaps, TopicPartition};

pub struct ChannelRepair {
    /// The lost offsets of each partition, first..=last (one span over all its holes).
    lost: Mutex<HashMap<TopicPartition, (i64, i64)>>,
    health: Arc<Health>,
}

impl ChannelRepair {
    pub fn new(gaps: &Gaps, health: Arc<Health>) -> Self {
        let mut lost: HashMap<TopicPartition, (i64, i64)> = HashMap::new();
        for h in gaps.holes.iter().filter(|h| h.cause.is_loss()) {
            let span = lost.entry(h.tp.clone()).or_insert((h.from, h.through));
            span.0 = span.0.min(h.from);
            span.1 = span.1.max(h.through);
        }
        for (tp, (from, through)) in &lost {
            health.set_repairing(
                tp.to_string(),
                Some(format!(
                    "partition {tp}: offsets {from}..={through} were lost from the channel \
                     (a missing segment or damage found at start; see `flumen wal check`); \
                     fetched again from Kafka until HDFS holds them"
                )),
            );
        }
        Self {
            lost: Mutex::new(lost),
            health,
        }
    }

    /// HDFS holds `tp` through `committed_end`.
    pub fn delivered(&self, tp: &TopicPartition, committed_end: i64) {
        let mut lost = self.lost.lock().expect("repair lock");
        if lost
            .get(tp)
            .is_some_and(|&(_, through)| committed_end >= through)
        {
            lost.remove(tp);
            self.health.set_repairing(tp.to_string(), None);
            tracing::info!(partition = %tp, committed_end, "offsets lost from the channel are in HDFS again");
        }
    }

    /// `tp` went to another member, which delivers it from Kafka: not this channel's concern.
    pub fn released(&self, tp: &TopicPartition) {
        if self.lost.lock().expect("repair lock").remove(tp).is_some() {
            self.health.set_repairing(tp.to_string(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::gaps::{ChainHole, HoleCause};

    fn hole(p: i32, from: i64, through: i64, cause: HoleCause) -> ChainHole {
        ChainHole {
            tp: TopicPartition::new("t", p),
            from,
            through,
            after_segment: 1,
            before_segment: 3,
            cause,
        }
    }

    #[test]
    fn health_is_degraded_until_hdfs_holds_the_lost_offsets() {
        let health = Arc::new(Health::default());
        let gaps = Gaps {
            missing: vec![],
            holes: vec![
                hole(0, 10, 19, HoleCause::MissingSegment),
                hole(0, 40, 49, HoleCause::Damage),
                hole(1, 5, 9, HoleCause::Trimmed),
                hole(2, 0, 4, HoleCause::Damage),
            ],
        };
        let repair = ChannelRepair::new(&gaps, health.clone());
        let r = health.report();
        assert_eq!(r.status, "degraded");
        assert_eq!(r.reasons.len(), 2, "trimmed offsets are no loss: {r:?}");
        assert!(r.reasons[0].contains("t/0: offsets 10..=49"), "{r:?}");
        repair.delivered(&TopicPartition::new("t", 0), 48);
        assert_eq!(health.report().reasons.len(), 2);
        repair.delivered(&TopicPartition::new("t", 0), 49);
        assert_eq!(health.report().reasons.len(), 1);
        repair.released(&TopicPartition::new("t", 2));
        assert_eq!(health.report().status, "ready");
    }
}
