//! Partitions the group assigned of topics this member does not subscribe to.
//!
//! A static member (`kafka.group_instance_id`) that restarts within its session timeout is
//! handed its previous assignment, without a rebalance, even when its topics changed: the
//! classic protocol's coordinator compares only the selected protocol's name, not the
//! subscription (KAFKA-12759, seen with Kafka 4.3.1). Left alone, the member would consume
//! the topics it was configured for before, and the ones it is configured for now would wait
//! unread, with nothing on `/health`.
//!
//! Such partitions are applied paused (librdkafka requires the whole assignment applied),
//! never reconciled, fetched or written. The member then leaves the group and joins again
//! (`unsubscribe`, then `subscribe`; librdkafka sends LeaveGroup for a static member on
//! unsubscribe, only not on close), so the coordinator rebalances with its real
//! subscription. `/health` is degraded from the moment such an assignment arrives until one
//! without them does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::wal::TopicPartition;

/// How long after a rejoin that got partitions of other topics again the next rejoin waits:
/// each one rebalances the whole group.
const REJOIN_RETRY: Duration = Duration::from_secs(30);

/// The partitions held of topics not in `kafka.topics`, and when to leave and join again.
#[derive(Debug, Default)]
pub(super) struct Unsubscribed {
    held: BTreeSet<TopicPartition>,
    /// When the next rejoin is due, while partitions are held and none is under way.
    rejoin_at: Option<Instant>,
    /// A rejoin was made for the partitions held now or before (cleared once resolved).
    rejoined: bool,
}

impl Unsubscribed {
    /// Keeps `tp` if its topic is not one of `topics`; returns whether it did.
    pub fn hold_if_foreign(&mut self, topics: &[String], tp: &TopicPartition) -> bool {
        if topics.contains(&tp.topic) {
            return false;
        }
        self.held.insert(tp.clone());
        true
    }

    /// Forgets a revoked partition; returns whether it was held.
    pub fn revoked(&mut self, tp: &TopicPartition) -> bool {
        self.held.remove(tp)
    }

    /// After a rebalance was applied; `assigned` says whether it brought an assignment (even
    /// an empty one). Schedules a rejoin for partitions held, at once the first time and
    /// `REJOIN_RETRY` later after one was made. An assignment without partitions of other
    /// topics drops any rejoin scheduled, whether ours or the group's own rebalance brought
    /// it; true if a rejoin had been made (`/health` was degraded): the group's assignment
    /// matches `kafka.topics` again.
    pub fn after_rebalance(&mut self, assigned: bool, now: Instant) -> bool {
        if !self.held.is_empty() {
            if self.rejoin_at.is_none() {
                let wait = if self.rejoined {
                    REJOIN_RETRY
                } else {
                    Duration::ZERO
                };
                self.rejoin_at = Some(now + wait);
            }
            return false;
        }
        if !assigned {
            return false;
        }
        // The group moved the held partitions away on its own: no rejoin is needed.
        self.rejoin_at = None;
        std::mem::take(&mut self.rejoined)
    }

    /// Whether a rejoin may be due (no clock read): the poll loop asks per turn.
    pub fn rejoin_scheduled(&self) -> bool {
        self.rejoin_at.is_some()
    }

    /// If a rejoin is due at `now`, records that it is made and returns the partitions held.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<TopicPartition>> {
        if self.rejoin_at.is_none_or(|at| now < at) {
            return None;
        }
        self.rejoin_at = None;
        if self.held.is_empty() {
            return None; // revoked meanwhile: the group is rebalancing already
        }
        self.rejoined = true;
        Some(self.held.iter().cloned().collect())
    }
}

/// What `/health` and the log say while partitions of other topics are held.
pub(super) fn reason(
    held: &[TopicPartition],
    topics: &[String],
    instance_id: Option<&str>,
) -> String {
    const NAMED_MAX: usize = 6;
    let mut named: Vec<String> = held
        .iter()
        .take(NAMED_MAX)
        .map(|tp| tp.to_string())
        .collect();
    if held.len() > NAMED_MAX {
        named.push(format!("and {} more", held.len() - NAMED_MAX));
    }
    let cause = match instance_id {
        Some(id) => format!(
            "this static member (kafka.group_instance_id = {id:?}) was likely restarted within \
             session_timeout_ms after kafka.topics changed, and the coordinator handed it its \
             previous assignment (KAFKA-12759)"
        ),
        None => "the group's assignment is stale".to_string(),
    };
    format!(
        "the group assigned partitions of topics not in kafka.topics {topics:?}: {}; they are \
         not consumed. {cause}; leaving the group and joining again",
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, p: i32) -> TopicPartition {
        TopicPartition::new(topic, p)
    }

    #[test]
    fn only_partitions_of_other_topics_are_held() {
        let topics = vec!["b".to_string()];
        let mut u = Unsubscribed::default();
        assert!(!u.hold_if_foreign(&topics, &tp("b", 0)));
        assert!(u.hold_if_foreign(&topics, &tp("a", 0)));
        assert!(u.revoked(&tp("a", 0)));
        assert!(!u.revoked(&tp("b", 0)));
    }

    #[test]
    fn a_rejoin_is_due_at_once_then_retried_later_until_an_assignment_matches() {
        let topics = vec!["b".to_string()];
        let t0 = Instant::now();
        let mut u = Unsubscribed::default();
        assert!(!u.after_rebalance(true, t0));
        assert!(!u.rejoin_scheduled(), "nothing held, nothing to do");

        u.hold_if_foreign(&topics, &tp("a", 1));
        assert!(!u.after_rebalance(true, t0));
        assert!(u.rejoin_scheduled());
        assert_eq!(u.take_due(t0), Some(vec![tp("a", 1)]));
        assert_eq!(u.take_due(t0), None, "one rejoin per schedule");

        // Leaving revokes everything; that is not yet a matching assignment.
        assert!(u.revoked(&tp("a", 1)));
        assert!(!u.after_rebalance(false, t0));
        // The rejoin got the old topic again: the next waits REJOIN_RETRY.
        u.hold_if_foreign(&topics, &tp("a", 1));
        assert!(!u.after_rebalance(true, t0));
        assert_eq!(u.take_due(t0 + REJOIN_RETRY / 2), None);
        assert!(u.take_due(t0 + REJOIN_RETRY).is_some());

        u.revoked(&tp("a", 1));
        assert!(u.after_rebalance(true, t0), "resolved");
        assert!(!u.rejoin_scheduled());
        assert!(!u.after_rebalance(true, t0), "resolved once");
    }

    #[test]
    fn partitions_the_group_moves_away_before_the_rejoin_need_none() {
        let topics = vec!["b".to_string()];
        let t0 = Instant::now();
        let mut u = Unsubscribed::default();
        u.hold_if_foreign(&topics, &tp("a", 0));
        assert!(!u.after_rebalance(true, t0));
        // Another member's join revokes everything before the poll loop makes the rejoin.
        assert!(u.revoked(&tp("a", 0)));
        assert!(!u.after_rebalance(false, t0));
        assert_eq!(u.take_due(t0), None, "nothing held: no rejoin");
        assert!(
            !u.after_rebalance(true, t0),
            "never degraded, nothing to resolve"
        );

        // Held again, a retry scheduled after a rejoin; then moved away by the group.
        u.hold_if_foreign(&topics, &tp("a", 0));
        assert!(!u.after_rebalance(true, t0));
        assert!(u.take_due(t0).is_some());
        u.hold_if_foreign(&topics, &tp("a", 0));
        assert!(!u.after_rebalance(true, t0));
        assert!(u.rejoin_scheduled());
        u.revoked(&tp("a", 0));
        assert!(
            u.after_rebalance(true, t0),
            "resolved by the group's own rebalance"
        );
        assert!(!u.rejoin_scheduled(), "the retry is dropped");
        assert_eq!(u.take_due(t0 + REJOIN_RETRY), None);
    }

    #[test]
    fn the_reason_names_the_key_the_partitions_and_the_instance() {
        let held: Vec<_> = (0..8).map(|p| tp("old", p)).collect();
        let r = reason(&held, &["new".to_string()], Some("edge-1"));
        assert!(r.contains("kafka.topics [\"new\"]"), "{r}");
        assert!(r.contains("old/0") && r.contains("old/5"), "{r}");
        assert!(!r.contains("old/6") && r.contains("and 2 more"), "{r}");
        assert!(r.contains("kafka.group_instance_id = \"edge-1\""), "{r}");
        assert!(!reason(&held, &[], None).contains("group_instance_id"));
    }
}
