//! What an HDFS error means to an operator: its kind (a space quota, safe mode, an unreachable
//! cluster, ...), a one-line reason for `/health`, a brief form for logs, and the book that
//! rate-limits the log line of each kind and decides when a lasting fault turns `/health` down.
//!
//! hdfs-native passes the NameNode's RemoteException text through whole, Java stack trace
//! included (one line per frame). Nothing here lets the trace out: [`Brief`] keeps the exception
//! class and the first line of its message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use hdfs_native::HdfsError;

/// At most one log line per fault kind per interval: the first failure logs at once, later ones
/// are counted and summarised when the interval has passed. A cleared fault logs once too.
pub const FAULT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A fault only an operator ends (a quota, a manual safe mode) that lasts this long turns
/// `/health` from `degraded` to `down`. Five minutes: a NameNode's own startup safe mode ends
/// well within it (30 s extension by default), and a quota never lifts by itself; past it the
/// channel is what keeps the data, and it fills.
pub const FAULT_DOWN_AFTER: Duration = Duration::from_secs(300);

/// The kinds of HDFS failure `/health` and the metrics tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `DSQuotaExceededException` (or by storage type): a new block needs replication x block
    /// size of room, more than the directory's space quota leaves.
    SpaceQuota,
    /// `NSQuotaExceededException`: the directory holds as many names as its quota allows.
    NamespaceQuota,
    /// `SafeModeException`: the NameNode refuses every namespace change.
    SafeMode,
    /// The NameNode or a DataNode does not answer, or answers too slowly.
    Unreachable,
    /// Any other refusal (permissions, leases, ...).
    Refused,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::SpaceQuota,
        FaultKind::NamespaceQuota,
        FaultKind::SafeMode,
        FaultKind::Unreachable,
        FaultKind::Refused,
    ];

    /// The `kind` label of the fault metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::SpaceQuota => "space_quota",
            FaultKind::NamespaceQuota => "namespace_quota",
            FaultKind::SafeMode => "safe_mode",
            FaultKind::Unreachable => "unreachable",
            FaultKind::Refused => "refused",
        }
    }

    /// Faults that last until an operator acts; they turn `/health` down after
    /// [`FAULT_DOWN_AFTER`]. An unreachable cluster usually comes back by itself.
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            FaultKind::SpaceQuota | FaultKind::NamespaceQuota | FaultKind::SafeMode
        )
    }
}

/// One classified failure: its kind and the `/health` reason naming cause and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub reason: String,
}

/// Displays an HDFS error on one line: for a RemoteException, its simple class name and the
/// first line of its message (the Java stack trace follows on the next lines and is dropped).
pub struct Brief<'a>(pub &'a HdfsError);

impl fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            HdfsError::RPCError(class, msg) | HdfsError::FatalRPCError(class, msg) => {
                write!(f, "{}: {}", simple_class(class), first_line(msg))
            }
            other => f.write_str(first_line(&other.to_string())),
        }
    }
}

fn simple_class(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim_end()
}

/// Classifies a failed HDFS call `op` on `path`.
pub fn classify(op: &str, path: &str, e: &HdfsError) -> Fault {
    let (class, msg) = match e {
        HdfsError::RPCError(c, m) => (c.as_str(), m.as_str()),
        _ => {
            return Fault {
                kind: FaultKind::Unreachable,
                reason: format!("hdfs unreachable: {op} {path}: {}", Brief(e)),
            }
        }
    };
    let simple = simple_class(class);
    let line = first_line(msg);
    // HA NameNodes in startup safe mode wrap it in a RetriableException.
    let safe_mode = simple == "SafeModeException"
        || (simple == "RetriableException" && line.contains("safe mode"));
    if simple == "DSQuotaExceededException" || simple == "QuotaByStorageTypeExceededException" {
        let dir = quota_dir(line).unwrap_or(path);
        return Fault {
            kind: FaultKind::SpaceQuota,
            reason: format!("hdfs: space quota of {dir} exceeded ({simple})"),
        };
    }
    if simple == "NSQuotaExceededException" {
        let dir = quota_dir(line).unwrap_or(path);
        return Fault {
            kind: FaultKind::NamespaceQuota,
            reason: format!("hdfs: namespace quota of {dir} exceeded ({simple})"),
        };
    }
    if safe_mode {
        return Fault {
            kind: FaultKind::SafeMode,
            reason: format!("hdfs: NameNode in safe mode ({simple}); {op} {path} waits"),
        };
    }
    Fault {
        kind: FaultKind::Refused,
        reason: format!("hdfs: {op} {path} refused: {}", Brief(e)),
    }
}

/// The directory a quota message names: "The DiskSpace quota of /d is exceeded: ...", "The
/// NameSpace quota (directories and files) of directory /d is exceeded: ...", "Quota by storage
/// type : DISK on path : /d is exceeded. ...".
fn quota_dir(line: &str) -> Option<&str> {
    let before = line.split(" is exceeded").next()?;
    let dir = before.rsplit([' ', ':']).find(|w| !w.is_empty())?;
    dir.starts_with('/').then_some(dir)
}

/// What a successful call proves is over. A read proves the NameNode answers; a namespace change
/// proves safe mode and the namespace quota are over; only a flushed or completed file proves a
/// block could be allocated, so only it ends a space quota fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Answered,
    NamespaceChanged,
    BlockWritten,
}

impl Proof {
    /// The proof a successful `op` (as named in [`crate::hdfs`]) gives. A writer's `write`
    /// gives none: hdfs-native may only have buffered the bytes.
    pub fn of_op(op: &str) -> Option<Proof> {
        match op {
            "write" => None,
            "create" | "mkdirs" | "rename" | "delete" => Some(Proof::NamespaceChanged),
            "hsync" | "close" => Some(Proof::BlockWritten),
            _ => Some(Proof::Answered),
        }
    }

    pub fn clears(self, kind: FaultKind) -> bool {
        match self {
            Proof::Answered => kind == FaultKind::Unreachable,
            Proof::NamespaceChanged => kind != FaultKind::SpaceQuota,
            Proof::BlockWritten => true,
        }
    }
}

/// The log line a failure or a recovery calls for, if the rate limit lets one through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultLine {
    /// The first line of an outage.
    Began,
    /// Still failing: `suppressed` failures were not logged since the last line, and the fault
    /// has lasted `lasted`.
    Continues { suppressed: u64, lasted: Duration },
    /// The fault is over after `lasted`.
    Cleared { lasted: Duration },
}

/// The active HDFS faults, one per kind, with their rate limiters. Pure: every call takes `now`.
#[derive(Debug, Default, Clone)]
pub struct FaultBook {
    kinds: BTreeMap<FaultKind, KindState>,
}

#[derive(Debug, Default, Clone)]
struct KindState {
    active: Option<Active>,
    /// When a line of this kind was last logged; kept across outages, so a flapping fault
    /// still logs at most one failure line per interval.
    last_line: Option<Instant>,
    suppressed: u64,
}

#[derive(Debug, Clone)]
struct Active {
    reason: String,
    since: Instant,
    /// Whether this outage's first line was logged (its recovery is logged only then).
    logged: bool,
}

impl FaultBook {
    /// Records a failure; returns the line to log, if any.
    pub fn failed(&mut self, f: Fault, now: Instant) -> Option<FaultLine> {
        let st = self.kinds.entry(f.kind).or_default();
        let active = st.active.get_or_insert_with(|| Active {
            reason: String::new(),
            since: now,
            logged: false,
        });
        active.reason = f.reason;
        let due = st
            .last_line
            .is_none_or(|t| now.duration_since(t) >= FAULT_LOG_INTERVAL);
        if !due {
            st.suppressed += 1;
            return None;
        }
        st.last_line = Some(now);
        let suppressed = std::mem::take(&mut st.suppressed);
        if !active.logged {
            active.logged = true;
            return Some(FaultLine::Began);
        }
        Some(FaultLine::Continues {
            suppressed,
            lasted: now.duration_since(active.since),
        })
    }

    /// Ends the faults a success of this kind proves over; returns each ended fault with its
    /// last reason and the line to log (only for outages whose start was logged).
    pub fn succeeded(
        &mut self,
        proof: Proof,
        now: Instant,
    ) -> Vec<(FaultKind, String, Option<FaultLine>)> {
        let mut ended = Vec::new();
        for (kind, st) in self.kinds.iter_mut().filter(|(k, _)| proof.clears(**k)) {
            let Some(a) = st.active.take() else {
                continue;
            };
            let line = a.logged.then(|| {
                st.last_line = Some(now);
                st.suppressed = 0;
                FaultLine::Cleared {
                    lasted: now.duration_since(a.since),
                }
            });
            ended.push((*kind, a.reason, line));
        }
        ended
    }

    pub fn is_active(&self, kind: FaultKind) -> bool {
        self.kinds.get(&kind).is_some_and(|s| s.active.is_some())
    }

    /// The reasons of the active faults: those that make the relay degraded, and those that
    /// lasted past [`FAULT_DOWN_AFTER`] and make it down.
    pub fn reasons(&self, now: Instant) -> (Vec<String>, Vec<String>) {
        let (mut degraded, mut down) = (Vec::new(), Vec::new());
        for (kind, st) in &self.kinds {
            let Some(a) = &st.active else { continue };
            let lasted = now.duration_since(a.since);
            if kind.needs_operator() && lasted >= FAULT_DOWN_AFTER {
                down.push(format!(
                    "{} for {} s, past the {} s bound",
                    a.reason,
                    lasted.as_secs(),
                    FAULT_DOWN_AFTER.as_secs()
                ));
            } else {
                degraded.push(a.reason.clone());
            }
        }
        (degraded, down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "\n\tat org.apache.hadoop.hdfs.server.namenode.FSDirectory.verifyQuota(FSDirectory.java:1238)\
                         \n\tat org.apache.hadoop.ipc.Server$Handler.run(Server.java:3198)";

    fn rpc(class: &str, first_line: &str) -> HdfsError {
        HdfsError::RPCError(class.into(), format!("{first_line}{TRACE}"))
    }

    // Regression: every log line and /health reason carried the NameNode's Java stack trace.
    #[test]
    fn brief_keeps_the_class_and_first_line_only() {
        let e = rpc(
            "org.apache.hadoop.hdfs.protocol.DSQuotaExceededException",
            "The DiskSpace quota of /user/flumen is exceeded: quota = 1048576 B = 1 MB",
        );
        let b = Brief(&e).to_string();
        assert_eq!(
            b,
            "DSQuotaExceededException: The DiskSpace quota of /user/flumen is exceeded: \
             quota = 1048576 B = 1 MB"
        );
        assert!(!b.contains("at org.apache") && !b.contains('\n'));
        let io = HdfsError::IOError(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert!(Brief(&io).to_string().contains("Connection refused"));
    }

    #[test]
    fn quota_messages_name_their_directory() {
        let cases = [
            (
                "The DiskSpace quota of /user/flumen is exceeded: quota = 1 B",
                "/user/flumen",
            ),
            (
                "The NameSpace quota (directories and files) of directory /a/b is exceeded: quota=3",
                "/a/b",
            ),
            (
                "Quota by storage type : DISK on path : /c is exceeded. quota = 1 B",
                "/c",
            ),
        ];
        for (line, dir) in cases {
            assert_eq!(quota_dir(line), Some(dir), "{line}");
        }
        assert_eq!(quota_dir("something else"), None);
    }

    #[test]
    fn safe_mode_wrapped_by_an_ha_namenode_is_still_safe_mode() {
        let e = rpc(
            "org.apache.hadoop.ipc.RetriableException",
            "org.apache.hadoop.hdfs.server.namenode.SafeModeException: Cannot create file/x. \
             Name node is in safe mode.",
        );
        assert_eq!(classify("create", "/x", &e).kind, FaultKind::SafeMode);
    }

    #[test]
    fn successes_end_only_the_faults_they_disprove() {
        assert_eq!(Proof::of_op("write"), None);
        assert_eq!(Proof::of_op("list"), Some(Proof::Answered));
        assert_eq!(Proof::of_op("create"), Some(Proof::NamespaceChanged));
        assert_eq!(Proof::of_op("close"), Some(Proof::BlockWritten));
        // A quota outage keeps answering reads and creating files: neither ends it.
        assert!(!Proof::Answered.clears(FaultKind::SpaceQuota));
        assert!(!Proof::NamespaceChanged.clears(FaultKind::SpaceQuota));
        assert!(Proof::BlockWritten.clears(FaultKind::SpaceQuota));
        // Reads answer in safe mode too.
        assert!(!Proof::Answered.clears(FaultKind::SafeMode));
        assert!(Proof::NamespaceChanged.clears(FaultKind::SafeMode));
    }
}
