//! The assigned partitions still waiting for their start from HDFS (the reconciliation with
//! their ledger), and since when.
//!
//! Such a partition's data cannot reach HDFS: one the ledger has never seen is not even
//! fetched, and one consuming from a provisional start only fills the channel. A few seconds of
//! that is every assignment's start. Longer than [`WAIT_MAX`] (a NameNode that answers too
//! slowly, 1,000 partitions reconciling on a loaded box) it is a partition that does not flow,
//! and `/health` must not say `ready`: it turns degraded naming the partitions, as it does for
//! a stuck one, until they are reconciled.

use std::time::{Duration, Instant};

use crate::events;
use crate::health::Health;
use crate::wal::TopicPartition;

use super::HashMap;

/// How long a partition may wait for its start before `/health` names it: the least bound of
/// a stuck partition (`sink::watchdog`), so both say "does not flow" after the same minute.
pub const WAIT_MAX: Duration = Duration::from_secs(60);
/// How often the waits are compared with [`WAIT_MAX`].
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Partitions named in the reason; the rest are counted.
const NAMED_MAX: usize = 5;

/// The partitions waiting for their start, since when, and what was last reported of them.
#[derive(Debug)]
pub(super) struct Unreconciled {
    since: HashMap<TopicPartition, Instant>,
    /// The count as last published (`flumen_partitions_unreconciled`).
    published: Option<usize>,
    /// The reason `/health` holds now, if any.
    reported: Option<String>,
    next_check: Instant,
}

impl Unreconciled {
    pub fn new(now: Instant) -> Self {
        Self {
            since: HashMap::default(),
            published: None,
            reported: None,
            next_check: now,
        }
    }

    /// `tp` waits for its start from `now` on; a partition already waiting keeps its time.
    pub fn insert(&mut self, tp: TopicPartition, now: Instant) {
        self.since.entry(tp).or_insert(now);
    }

    /// `tp` was reconciled or revoked.
    pub fn remove(&mut self, tp: &TopicPartition) {
        self.since.remove(tp);
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.since.keys().cloned().collect()
    }

    /// Publishes the count when it changed and, once a second, reports on `/health` the
    /// partitions that waited longer than [`WAIT_MAX`]. Called every poll-loop turn.
    pub fn report(&mut self, health: &Health, now: Instant) {
        let n = self.since.len();
        if self.published != Some(n) {
            self.published = Some(n);
            events::partitions_unreconciled(n);
        }
        if now < self.next_check || (n == 0 && self.reported.is_none()) {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        let reason = self.overdue_reason(now);
        match (&self.reported, &reason) {
            (None, Some(r)) => tracing::warn!("{r}"),
            (Some(_), None) => tracing::info!("over: every assigned partition has its start"),
            _ => {}
        }
        if reason != self.reported {
            health.set_unreconciled(reason.clone());
            self.reported = reason;
        }
    }

    /// Why `/health` is degraded by waits longer than [`WAIT_MAX`], if any are.
    fn overdue_reason(&self, now: Instant) -> Option<String> {
        let mut overdue: Vec<&TopicPartition> = self
            .since
            .iter()
            .filter(|(_, &at)| now.saturating_duration_since(at) > WAIT_MAX)
            .map(|(tp, _)| tp)
            .collect();
        if overdue.is_empty() {
            return None;
        }
        overdue.sort();
        let more = overdue.len().saturating_sub(NAMED_MAX);
        overdue.truncate(NAMED_MAX);
        let names: Vec<String> = overdue.iter().map(|tp| tp.to_string()).collect();
        let mut named = names.join(", ");
        if more > 0 {
            named.push_str(&format!(" and {more} more"));
        }
        Some(format!(
            "{} partition(s) waited over {} s for their start from HDFS (the reconciliation \
             with their ledger), so none of their data can land: {named}",
            overdue.len() + more,
            WAIT_MAX.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn a_wait_longer_than_the_bound_degrades_until_the_partition_is_reconciled() {
        let (h, t0) = (Health::default(), Instant::now());
        let mut u = Unreconciled::new(t0);
        u.insert(tp(0), t0);
        u.insert(tp(1), t0 + Duration::from_secs(30));
        u.report(&h, t0 + WAIT_MAX);
        assert_eq!(h.report().status, "ready", "a minute is every start's due");

        u.report(&h, t0 + WAIT_MAX + Duration::from_secs(2));
        let r = h.report();
        assert_eq!(r.status, "degraded");
        assert!(
            r.reasons[0].starts_with("1 partition(s) waited over 60 s"),
            "{r:?}"
        );
        assert!(
            r.reasons[0].ends_with(": t/0"),
            "only the one past the bound: {r:?}"
        );

        u.remove(&tp(0));
        u.report(&h, t0 + WAIT_MAX + Duration::from_secs(4));
        assert_eq!(h.report().status, "ready", "t/1 is still within its minute");
        u.remove(&tp(1));
        u.report(&h, t0 + 3 * WAIT_MAX);
        assert_eq!(h.report().status, "ready");
    }

    #[test]
    fn waiting_again_keeps_the_first_time_and_many_are_counted_not_listed() {
        let (h, t0) = (Health::default(), Instant::now());
        let mut u = Unreconciled::new(t0);
        for p in 0..1000 {
            u.insert(tp(p), t0);
        }
        // Assigned again while it waits (a rebalance that keeps it): its wait goes on.
        u.insert(tp(0), t0 + WAIT_MAX);
        u.report(&h, t0 + WAIT_MAX + Duration::from_secs(1));
        let r = &h.report().reasons[0];
        assert!(r.starts_with("1000 partition(s)"), "{r}");
        assert!(r.ends_with("t/0, t/1, t/2, t/3, t/4 and 995 more"), "{r}");
    }

    #[test]
    fn the_check_runs_once_a_second_not_every_turn() {
        let (h, t0) = (Health::default(), Instant::now());
        let mut u = Unreconciled::new(t0);
        u.insert(tp(0), t0);
        u.report(&h, t0);
        let late = t0 + WAIT_MAX + Duration::from_millis(1);
        u.report(&h, late);
        assert_eq!(h.report().status, "degraded");
        u.remove(&tp(0));
        u.report(&h, late + Duration::from_millis(10));
        assert_eq!(h.report().status, "degraded", "cleared at the next check");
        u.report(&h, late + CHECK_EVERY);
        assert_eq!(h.report().status, "ready");
    }
}
