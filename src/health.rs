//! Health of the relay as `/health` reports it: `ready`, `degraded` (with reasons) or `down`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
    /// Mirrors `kafka_error.is_some()` so the per-message "Kafka is fine" call is one atomic
    /// load, not a lock.
    kafka_error_set: AtomicBool,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    kafka_error: Option<String>,
    hdfs_error: Option<String>,
    paused: Option<String>,
    down: Option<String>,
    /// Partitions that cannot go on without an operator, each with why and what to do.
    halted: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HealthReport {
    pub status: &'static str,
    pub reasons: Vec<String>,
}

impl Health {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.lock().expect("health lock poisoned"))
    }
    pub fn set_kafka_error(&self, e: String) {
        self.with(|i| i.kafka_error = Some(e));
        self.kafka_error_set.store(true, Ordering::Release);
    }
    pub fn set_kafka_ok(&self) {
        if self.kafka_error_set.swap(false, Ordering::AcqRel) {
            self.with(|i| i.kafka_error = None);
        }
    }
    pub fn set_hdfs_error(&self, e: String) {
        self.with(|i| i.hdfs_error = Some(e));
    }
    pub fn set_hdfs_ok(&self) {
        self.with(|i| i.hdfs_error = None);
    }
    pub fn set_paused(&self, reason: Option<String>) {
        self.with(|i| i.paused = reason);
    }
    /// Marks a partition halted (`Some(reason)`) or running again (`None`). Any halted
    /// partition makes the whole relay `down`: its data does not flow until someone acts.
    pub fn set_halted(&self, partition: String, reason: Option<String>) {
        self.with(|i| match reason {
            Some(r) => {
                i.halted.insert(partition, r);
            }
            None => {
                i.halted.remove(&partition);
            }
        });
    }
    pub fn set_down(&self, reason: String) {
        self.with(|i| i.down = Some(reason));
    }

    pub fn report(&self) -> HealthReport {
        let i = self.inner.lock().expect("health lock poisoned").clone();
        if i.down.is_some() || !i.halted.is_empty() {
            return HealthReport {
                status: "down",
                reasons: i.down.into_iter().chain(i.halted.into_values()).collect(),
            };
        }
        let reasons: Vec<String> = [
            i.kafka_error.map(|e| format!("kafka unreachable: {e}")),
            i.hdfs_error.map(|e| format!("hdfs unreachable: {e}")),
            i.paused.map(|e| format!("consumption paused: {e}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        HealthReport {
            status: if reasons.is_empty() {
                "ready"
            } else {
                "degraded"
            },
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_names_each_reason_and_recovers() {
        let h = Health::default();
        assert_eq!(h.report().status, "ready");
        h.set_paused(Some("channel full".into()));
        h.set_hdfs_error("connection refused".into());
        let r = h.report();
        assert_eq!(r.status, "degraded");
        assert_eq!(r.reasons.len(), 2);
        h.set_paused(None);
        h.set_hdfs_ok();
        assert_eq!(h.report().status, "ready");
        h.set_halted("t/0".into(), Some("offsets 5..9 are gone".into()));
        assert_eq!(h.report().status, "down");
        assert_eq!(
            h.report().reasons,
            vec!["offsets 5..9 are gone".to_string()]
        );
        h.set_halted("t/0".into(), None);
        assert_eq!(h.report().status, "ready");
        h.set_down("fsync failed".into());
        assert_eq!(h.report().status, "down");
    }
}
