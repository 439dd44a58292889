//! Health of the relay as `/health` reports it: `ready`, `degraded` (with reasons) or `down`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::hdfs_fault::{Fault, FaultBook, FaultKind, FaultLine, Proof};

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
    /// A broker answered but refused the login or the TLS handshake: the reason names the key.
    kafka_refused: Option<String>,
    /// Why the HDFS Kerberos login fails, while it does.
    kerberos: Option<String>,
    hdfs: FaultBook,
    paused: Option<String>,
    /// The group assigned partitions of topics not in `kafka.topics`, while it does.
    stale_assignment: Option<String>,
    /// Assigned partitions that waited too long for their start from HDFS, while they wait.
    unreconciled: Option<String>,
    down: Option<String>,
    /// Partitions that cannot go on without an operator, each with why and what to do.
    halted: std::collections::BTreeMap<String, String>,
    /// Partitions whose channel data waits while their commits make no progress, with why.
    stuck: std::collections::BTreeMap<String, String>,
    /// Partitions whose offsets the channel lost (found at open), until HDFS holds them.
    repairing: std::collections::BTreeMap<String, String>,
}

/// Sets (`Some`) or clears (`None`) a partition's reason in one of the per-partition maps.
fn set_reason(
    map: &mut std::collections::BTreeMap<String, String>,
    partition: String,
    reason: Option<String>,
) {
    match reason {
        Some(r) => map.insert(partition, r),
        None => map.remove(&partition),
    };
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
    /// Kafka refused the login or the TLS handshake. Degraded, not down: librdkafka keeps
    /// trying, and a broker whose credentials or certificate are fixed lets it in with no
    /// restart. It stays until a record arrives or a broker answers the relay's probe, and
    /// hides "unreachable", which it causes.
    pub fn set_kafka_refused(&self, reason: String) {
        self.with(|i| i.kafka_refused = Some(reason));
        self.kafka_error_set.store(true, Ordering::Release);
    }
    /// Whether a Kafka error or refusal is on `/health` (one atomic load).
    pub fn kafka_in_doubt(&self) -> bool {
        self.kafka_error_set.load(Ordering::Acquire)
    }
    pub fn set_kafka_ok(&self) {
        // Called per message: a plain load first, so the common case writes nothing to a
        // cache line the HTTP thread reads (the swap alone was 0.5% of live CPU).
        if self.kafka_error_set.load(Ordering::Acquire)
            && self.kafka_error_set.swap(false, Ordering::AcqRel)
        {
            self.with(|i| {
                i.kafka_error = None;
                i.kafka_refused = None;
            });
        }
    }
    /// Records a failed HDFS call; returns the log line the rate limit lets through, if any.
    pub fn hdfs_failed(&self, f: Fault, now: Instant) -> Option<FaultLine> {
        self.inner
            .lock()
            .expect("health lock poisoned")
            .hdfs
            .failed(f, now)
    }
    /// Records a successful HDFS call; returns the faults it ended (kind, last reason, line).
    pub fn hdfs_succeeded(
        &self,
        proof: Proof,
        now: Instant,
    ) -> Vec<(FaultKind, String, Option<FaultLine>)> {
        self.inner
            .lock()
            .expect("health lock poisoned")
            .hdfs
            .succeeded(proof, now)
    }
    pub fn hdfs_fault_active(&self, kind: FaultKind) -> bool {
        self.inner
            .lock()
            .expect("health lock poisoned")
            .hdfs
            .is_active(kind)
    }
    /// Marks a partition stuck (`Some(reason)`: data waits, commits make no progress) or
    /// moving again (`None`). A stuck partition makes the relay degraded.
    pub fn set_stuck(&self, partition: String, reason: Option<String>) {
        self.with(|i| set_reason(&mut i.stuck, partition, reason));
    }
    /// Marks a partition's channel loss (`Some(reason)`) or its repair (`None`). Degraded:
    /// Kafka still has the offsets and they are being fetched again.
    pub fn set_repairing(&self, partition: String, reason: Option<String>) {
        self.with(|i| set_reason(&mut i.repairing, partition, reason));
    }
    /// Marks the HDFS Kerberos login failing (`Some(reason)`) or working (`None`).
    pub fn set_kerberos(&self, reason: Option<String>) {
        self.with(|i| i.kerberos = reason);
    }
    /// Marks the group's assignment as naming topics not in `kafka.topics` (`Some(reason)`)
    /// or matching them again (`None`). Degraded: the member is joining the group again.
    pub fn set_stale_assignment(&self, reason: Option<String>) {
        self.with(|i| i.stale_assignment = reason);
    }
    /// Marks assigned partitions as waiting too long for their start from HDFS (`Some(reason)`)
    /// or every one of them reconciled or within its bound (`None`).
    pub fn set_unreconciled(&self, reason: Option<String>) {
        self.with(|i| i.unreconciled = reason);
    }
    pub fn set_paused(&self, reason: Option<String>) {
        self.with(|i| i.paused = reason);
    }
    /// Marks a partition halted (`Some(reason)`) or running again (`None`). Any halted
    /// partition makes the whole relay `down`: its data does not flow until someone acts.
    pub fn set_halted(&self, partition: String, reason: Option<String>) {
        self.with(|i| set_reason(&mut i.halted, partition, reason));
    }
    pub fn set_down(&self, reason: String) {
        self.with(|i| i.down = Some(reason));
    }

    pub fn report(&self) -> HealthReport {
        self.report_at(Instant::now())
    }

    /// The report as of `now` (tests move time; production passes the clock).
    pub fn report_at(&self, now: Instant) -> HealthReport {
        let i = self.inner.lock().expect("health lock poisoned").clone();
        let (hdfs_degraded, hdfs_down) = i.hdfs.reasons(now);
        if i.down.is_some() || !i.halted.is_empty() || !hdfs_down.is_empty() {
            return HealthReport {
                status: "down",
                reasons: i
                    .down
                    .into_iter()
                    .chain(i.halted.into_values())
                    .chain(hdfs_down)
                    .collect(),
            };
        }
        let kafka = i
            .kafka_refused
            .or_else(|| i.kafka_error.map(|e| format!("kafka unreachable: {e}")));
        let reasons: Vec<String> = [kafka]
            .into_iter()
            .flatten()
            .chain(i.kerberos)
            .chain(i.stale_assignment)
            .chain(hdfs_degraded)
            .chain(i.paused.map(|e| format!("consumption paused: {e}")))
            .chain(i.unreconciled)
            .chain(i.stuck.into_values())
            .chain(i.repairing.into_values())
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
        let now = Instant::now();
        let refused = Fault {
            kind: FaultKind::Unreachable,
            reason: "hdfs unreachable: connection refused".into(),
        };
        h.hdfs_failed(refused, now);
        let r = h.report();
        assert_eq!(r.status, "degraded");
        assert_eq!(r.reasons.len(), 2);
        h.set_paused(None);
        h.hdfs_succeeded(Proof::Answered, now);
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

    #[test]
    fn a_stale_assignment_is_degraded_until_cleared() {
        let h = Health::default();
        h.set_stale_assignment(Some("partitions of topics not in kafka.topics".into()));
        let r = h.report();
        assert_eq!(r.status, "degraded");
        assert_eq!(r.reasons, vec!["partitions of topics not in kafka.topics"]);
        h.set_stale_assignment(None);
        assert_eq!(h.report().status, "ready");
    }

    #[test]
    fn a_refused_login_is_degraded_hides_unreachable_and_ends_with_a_record() {
        let h = Health::default();
        h.set_kafka_error("1/1 brokers are down".into());
        h.set_kafka_refused("Kafka refused the SASL login: check `sasl.password`".into());
        let r = h.report();
        assert_eq!(r.status, "degraded");
        assert_eq!(
            r.reasons,
            vec!["Kafka refused the SASL login: check `sasl.password`".to_string()]
        );
        h.set_kafka_ok();
        assert_eq!(h.report().status, "ready");
    }

    /// One row of the HDFS failure matrix: an error as hdfs-native returns it, and what the
    /// relay must make of it.
    struct Row {
        error: fn() -> hdfs_native::HdfsError,
        op: &'static str,
        kind: FaultKind,
        metric_label: &'static str,
        reason: &'static str,
        /// The success that ends it.
        cure: Proof,
        /// Whether it turns /health down once it lasted `FAULT_DOWN_AFTER`.
        goes_down: bool,
    }

    const TRACE: &str = "\n\tat org.apache.hadoop.hdfs.server.namenode.FSNamesystem.checkNameNodeSafeMode(FSNamesystem.java:1594)\n\tat org.apache.hadoop.ipc.Server$Handler.run(Server.java:3198)";

    fn rpc(class: &str, line: &str) -> hdfs_native::HdfsError {
        hdfs_native::HdfsError::RPCError(class.into(), format!("{line}{TRACE}"))
    }

    fn matrix() -> Vec<Row> {
        vec![
            Row {
                error: || rpc("org.apache.hadoop.hdfs.protocol.DSQuotaExceededException",
                    "The DiskSpace quota of /user/flumen is exceeded: quota = 1048576 B = 1 MB but diskspace consumed = 402653184 B = 384 MB"),
                op: "close",
                kind: FaultKind::SpaceQuota,
                metric_label: "space_quota",
                reason: "hdfs: space quota of /user/flumen exceeded (DSQuotaExceededException)",
                cure: Proof::BlockWritten,
                goes_down: true,
            },
            Row {
                error: || rpc("org.apache.hadoop.hdfs.protocol.NSQuotaExceededException",
                    "The NameSpace quota (directories and files) of directory /user/flumen is exceeded: quota=10 file count=11"),
                op: "create",
                kind: FaultKind::NamespaceQuota,
                metric_label: "namespace_quota",
                reason: "hdfs: namespace quota of /user/flumen exceeded (NSQuotaExceededException)",
                cure: Proof::NamespaceChanged,
                goes_down: true,
            },
            Row {
                error: || rpc("org.apache.hadoop.hdfs.server.namenode.SafeModeException",
                    "Cannot create file/user/flumen/x. Name node is in safe mode.\nIt was turned on manually."),
                op: "create",
                kind: FaultKind::SafeMode,
                metric_label: "safe_mode",
                reason: "hdfs: NameNode in safe mode (SafeModeException); create /user/flumen/x waits",
                cure: Proof::NamespaceChanged,
                goes_down: true,
            },
            Row {
                error: || hdfs_native::HdfsError::IOError(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)")),
                op: "list",
                kind: FaultKind::Unreachable,
                metric_label: "unreachable",
                reason: "hdfs unreachable: list /user/flumen/x: IO error occurred while communicating with HDFS: Connection refused (os error 111)",
                cure: Proof::Answered,
                goes_down: false,
            },
            Row {
                error: || rpc("org.apache.hadoop.security.AccessControlException",
                    "Permission denied: user=flumen, access=WRITE, inode=\"/user\":hdfs:supergroup:drwxr-xr-x"),
                op: "mkdirs",
                kind: FaultKind::Refused,
                metric_label: "refused",
                reason: "hdfs: mkdirs /user/flumen/x refused: AccessControlException: Permission denied: user=flumen, access=WRITE, inode=\"/user\":hdfs:supergroup:drwxr-xr-x",
                cure: Proof::NamespaceChanged,
                goes_down: false,
            },
        ]
    }

    // Regression: every close failed with DSQuotaExceeded for 40 s while /health said "ready",
    // and the log repeated a Java stack trace with each failure; safe mode read as "hdfs
    // unreachable" with the whole trace in the reason. Each class of HDFS failure must map to a
    // status, a reason naming cause and path, a metric label, and one rate-limited log line.
    #[test]
    fn hdfs_failure_matrix() {
        use crate::hdfs_fault::{classify, FAULT_DOWN_AFTER, FAULT_LOG_INTERVAL};
        use std::time::Duration;
        for row in matrix() {
            let name = row.metric_label;
            let e = (row.error)();
            let fault = classify(row.op, "/user/flumen/x", &e);
            assert_eq!(fault.kind, row.kind, "{name}: kind");
            assert_eq!(
                fault.kind.as_str(),
                row.metric_label,
                "{name}: metric label"
            );
            assert_eq!(fault.reason, row.reason, "{name}: reason");
            assert!(
                !fault.reason.contains("at org.apache"),
                "{name}: trace in reason"
            );

            // A 40 s outage with a failure every 100 ms: one line when it begins, none after.
            let h = Health::default();
            let t0 = Instant::now();
            let mut lines = Vec::new();
            for tick in 0..400 {
                let now = t0 + Duration::from_millis(100 * tick);
                lines.extend(h.hdfs_failed(fault.clone(), now));
                // Calls that do not prove the fault over do not end it.
                for weaker in [Proof::Answered, Proof::NamespaceChanged] {
                    if !weaker.clears(row.kind) {
                        assert!(h.hdfs_succeeded(weaker, now).is_empty(), "{name}");
                    }
                }
            }
            assert_eq!(lines, vec![FaultLine::Began], "{name}: log lines over 40 s");
            let at_40s = h.report_at(t0 + Duration::from_secs(40));
            assert_eq!(at_40s.status, "degraded", "{name}");
            assert_eq!(at_40s.reasons, vec![row.reason.to_string()], "{name}");
            assert!(h.hdfs_fault_active(row.kind), "{name}");

            // Lasting past the bound: down if only an operator can end it, else still degraded.
            let late = t0 + FAULT_DOWN_AFTER + Duration::from_secs(1);
            let r = h.report_at(late);
            let want = if row.goes_down { "down" } else { "degraded" };
            assert_eq!(r.status, want, "{name}: {r:?}");
            assert!(r.reasons[0].starts_with(row.reason), "{name}: {r:?}");
            // Still failing a minute after the first line: one summary line.
            let summary = h.hdfs_failed(fault.clone(), t0 + FAULT_LOG_INTERVAL);
            assert!(
                matches!(
                    summary,
                    Some(FaultLine::Continues {
                        suppressed: 399,
                        ..
                    })
                ),
                "{name}: {summary:?}"
            );

            // The cure ends it: one line, and /health is ready again.
            let ended = h.hdfs_succeeded(row.cure, late);
            assert_eq!(ended.len(), 1, "{name}");
            assert_eq!(ended[0].0, row.kind, "{name}");
            assert!(
                matches!(ended[0].2, Some(FaultLine::Cleared { .. })),
                "{name}"
            );
            assert_eq!(h.report_at(late).status, "ready", "{name}");
            assert!(!h.hdfs_fault_active(row.kind), "{name}");
        }
    }

    #[test]
    fn a_flapping_fault_logs_at_most_once_per_interval() {
        use crate::hdfs_fault::FAULT_LOG_INTERVAL;
        use std::time::Duration;
        let h = Health::default();
        let t0 = Instant::now();
        let f = Fault {
            kind: FaultKind::SafeMode,
            reason: "hdfs: NameNode in safe mode".into(),
        };
        let mut lines = 0;
        // Fails and recovers every second for 50 s.
        for s in 0..50 {
            let now = t0 + Duration::from_secs(s);
            lines += h.hdfs_failed(f.clone(), now).into_iter().count();
            let ended = h.hdfs_succeeded(Proof::NamespaceChanged, now + Duration::from_millis(500));
            lines += ended.into_iter().filter(|e| e.2.is_some()).count();
        }
        assert!(50 < FAULT_LOG_INTERVAL.as_secs());
        assert_eq!(lines, 2, "one line when it began, one when it first ended");
    }

    #[test]
    fn a_stuck_partition_degrades_until_it_moves() {
        let h = Health::default();
        h.set_stuck(
            "t/1".into(),
            Some("partition t/1: no commit for 61 s".into()),
        );
        let r = h.report();
        assert_eq!(r.status, "degraded");
        assert_eq!(
            r.reasons,
            vec!["partition t/1: no commit for 61 s".to_string()]
        );
        h.set_stuck("t/1".into(), None);
        assert_eq!(h.report().status, "ready");
    }
}
