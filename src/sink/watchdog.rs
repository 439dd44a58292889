//! The sink's watchdog: a task of its own, so it keeps running while the sink waits on HDFS
//! (a retry loop during safe mode, a close refused by a quota). Every `PERIOD` it reports the
//! channel level (`flumen_channel_pending_bytes`), and it marks a partition stuck on /health
//! when channel data of the partition waits while its commits have made no progress for longer
//! than [`stuck_after`], whether or not any error was classified.
//!
//! Cheap by design: one lock of the progress map and, per active partition, one walk of the
//! channel index's segment list (the same walk the sink does when it rewinds).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::events;
use crate::health::Health;
use crate::wal::{TopicPartition, WalIndex};

/// How often the watchdog runs.
const PERIOD: Duration = Duration::from_secs(1);
/// The least a partition may wait without a commit before it is called stuck.
const STUCK_AFTER_MIN: Duration = Duration::from_secs(60);

/// How long a partition with channel data may go without a commit before it is reported
/// stuck: max(2 x roll interval, 60 s). Within one roll interval every open file rolls and
/// commits, so two intervals without progress is not a slow commit. `None` when the roll
/// interval is zero: without a time-based roll, data below the size and count limits may wait
/// for ever by design, and the check would only cry wolf.
pub fn stuck_after(roll_interval: Duration) -> Option<Duration> {
    (!roll_interval.is_zero()).then(|| (2 * roll_interval).max(STUCK_AFTER_MIN))
}

/// The commit progress of each partition the sink writes, shared with the watchdog.
#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<HashMap<TopicPartition, Moved>>,
}

#[derive(Debug, Clone, Copy)]
struct Moved {
    committed_end: i64,
    at: Instant,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Moved>> {
        self.inner.lock().expect("progress lock poisoned")
    }

    /// The partition is (re)activated at `committed_end`. A restart after a failure keeps the
    /// time of the last real progress: restarting is not progress.
    pub fn activated(&self, tp: &TopicPartition, committed_end: i64) {
        let now = Instant::now();
        let mut m = self.lock();
        let e = m.entry(tp.clone()).or_insert(Moved {
            committed_end,
            at: now,
        });
        if committed_end > e.committed_end {
            *e = Moved {
                committed_end,
                at: now,
            };
        }
    }

    /// A file of the partition committed up to `last`.
    pub fn committed(&self, tp: &TopicPartition, last: i64) {
        if let Some(e) = self.lock().get_mut(tp) {
            if last > e.committed_end {
                *e = Moved {
                    committed_end: last,
                    at: Instant::now(),
                };
            }
        }
    }

    /// The sink no longer writes the partition.
    pub fn removed(&self, tp: &TopicPartition) {
        self.lock().remove(tp);
    }

    fn snapshot(&self) -> Vec<(TopicPartition, Moved)> {
        self.lock().iter().map(|(tp, m)| (tp.clone(), *m)).collect()
    }
}

/// The /health reason if a partition is stuck: data `pending` in the channel and no progress
/// since `quiet_since` (the later of its last commit and the last time nothing was pending).
pub fn stuck_reason(
    tp: &TopicPartition,
    pending: bool,
    quiet_since: Instant,
    now: Instant,
    bound: Duration,
) -> Option<String> {
    let quiet = now.saturating_duration_since(quiet_since);
    (pending && quiet > bound).then(|| {
        format!(
            "partition {tp}: channel data waits but no file has committed for {} s (bound {} s)",
            quiet.as_secs(),
            bound.as_secs()
        )
    })
}

/// What the watchdog remembers between runs.
#[derive(Default)]
struct State {
    /// Per partition, the last time it had nothing pending.
    clean_at: HashMap<TopicPartition, Instant>,
    /// Partitions currently reported stuck.
    stuck: HashSet<TopicPartition>,
}

/// Starts the watchdog; it runs until aborted (the sink's `run` aborts it when it returns).
pub fn spawn(
    index: Arc<WalIndex>,
    progress: Arc<Progress>,
    health: Arc<Health>,
    roll_interval: Duration,
) -> JoinHandle<()> {
    let bound = stuck_after(roll_interval);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = State::default();
        // Runs until the sink's run aborts it.
        loop {
            ticker.tick().await;
            events::channel_level(index.bytes_total(), index.segment_count());
            if let Some(bound) = bound {
                check(&index, &progress, &health, bound, &mut state);
            }
        }
    })
}

fn check(
    index: &WalIndex,
    progress: &Progress,
    health: &Health,
    bound: Duration,
    state: &mut State,
) {
    let now = Instant::now();
    let snapshot = progress.snapshot();
    let active: HashSet<&TopicPartition> = snapshot.iter().map(|(tp, _)| tp).collect();
    state.clean_at.retain(|tp, _| active.contains(tp));
    for tp in state.stuck.iter().filter(|tp| !active.contains(tp)) {
        health.set_stuck(tp.to_string(), None);
    }
    state.stuck.retain(|tp| active.contains(tp));
    for (tp, moved) in &snapshot {
        let pending = index.first_segment_after(tp, moved.committed_end).is_some();
        let clean = state.clean_at.entry(tp.clone()).or_insert(now);
        if !pending {
            *clean = now;
        }
        let reason = stuck_reason(tp, pending, (*clean).max(moved.at), now, bound);
        let was = state.stuck.contains(tp);
        match reason {
            Some(r) => {
                if !was {
                    events::partition_stuck(tp, &r);
                    state.stuck.insert(tp.clone());
                }
                // Refreshed every run, so the reason's duration stays current.
                health.set_stuck(tp.to_string(), Some(r));
            }
            None if was => {
                events::partition_unstuck(tp);
                state.stuck.remove(tp);
                health.set_stuck(tp.to_string(), None);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_is_twice_the_roll_interval_but_at_least_a_minute() {
        assert_eq!(stuck_after(Duration::ZERO), None);
        assert_eq!(
            stuck_after(Duration::from_secs(2)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            stuck_after(Duration::from_secs(300)),
            Some(Duration::from_secs(600))
        );
    }

    // Regression: /health said "ready" while a partition's data sat in the channel and no file
    // committed, because no error had been classified.
    #[test]
    fn pending_data_without_progress_past_the_bound_is_stuck() {
        let tp = TopicPartition::new("t", 3);
        let t0 = Instant::now();
        let bound = Duration::from_secs(60);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(stuck_reason(&tp, true, t0, at(60), bound), None);
        let r = stuck_reason(&tp, true, t0, at(61), bound).expect("stuck");
        assert!(r.starts_with("partition t/3: "), "{r}");
        assert!(r.contains("61 s (bound 60 s)"), "{r}");
        // Nothing pending: an idle partition is never stuck, however old its last commit.
        assert_eq!(stuck_reason(&tp, false, t0, at(3600), bound), None);
    }

    #[test]
    fn a_restart_is_not_progress_but_a_commit_is() {
        let p = Progress::default();
        let tp = TopicPartition::new("t", 0);
        p.activated(&tp, 9);
        let first = p.snapshot()[0].1.at;
        std::thread::sleep(Duration::from_millis(5));
        p.activated(&tp, 9); // restarted from its ledger after a failed close
        assert_eq!(p.snapshot()[0].1.at, first);
        p.committed(&tp, 19);
        let (_, m) = p.snapshot()[0];
        assert_eq!(m.committed_end, 19);
        assert!(m.at > first);
        p.removed(&tp);
        assert!(p.snapshot().is_empty());
    }
}
