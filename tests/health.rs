//! /health, metrics and logs while HDFS refuses work until an operator acts: a space quota that
//! refuses every new block, and a NameNode in safe mode. The relay must say so by name, log it
//! once without the Java stack trace, keep consuming into its channel, and deliver everything
//! exactly once when the fault ends. These change the shared HDFS, so they run one at a time.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{assert_exactly_once, spawn_relay, testbed};

/// The tests here put the shared HDFS in states every other test would trip over.
static SERIAL: Mutex<()> = Mutex::new(());

fn metrics(addr: &str) -> String {
    common::http_get(addr, "/metrics").expect("/metrics answers")
}

/// Log lines an operator sees (info and above) that mention `needle`.
fn operator_lines(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .filter(|l| l.to_lowercase().contains(&needle.to_lowercase()))
        .map(str::to_string)
        .collect()
}

/// The fault was logged once (at most twice, if the rate limit's minute ran out) at info level
/// or above while it lasted.
fn assert_one_line_over_the_outage(log: &str, needle: &str) {
    let lines = operator_lines(log, needle);
    assert!(
        (1..=2).contains(&lines.len()),
        "want one rate-limited line over the outage, got {}:\n{}",
        lines.len(),
        lines.join("\n")
    );
}

fn assert_no_java_trace(log: &str) {
    let frames: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("at org.apache"))
        .collect();
    assert!(
        frames.is_empty(),
        "the log carries {} Java stack frames, e.g. {:?}",
        frames.len(),
        frames.first()
    );
}

/// Undoes an HDFS fault when dropped, so a failing assertion never leaves the shared testbed
/// refusing writes for the tests after it.
struct Restore(Box<dyn Fn()>);

impl Drop for Restore {
    fn drop(&mut self) {
        (self.0)();
    }
}

// Regression: every file close failed with DSQuotaExceeded for 40 s while /health said "ready",
// and the log repeated the NameNode's Java stack trace with every failure.
#[test]
fn space_quota_is_named_logged_once_and_delivers_exactly_once_when_lifted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let mut c = common::Case::new("dsq");
    let addr = c.with_metrics();
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 600);
    let mut relay = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    common::wait_landed(&client, &c.cfg.hdfs_path, 600, Duration::from_secs(120));

    // The topic's directory holds the final files and the ledger; 1 MiB is far below the
    // 16 MiB a new block needs.
    let dir = format!("/flumen-tests/{}", c.cfg.topic);
    common::hdfs_quota(&dir, 1 << 20);
    let restore = {
        let dir = dir.clone();
        Restore(Box::new(move || common::hdfs_quota_clear(&dir)))
    };
    let began = Instant::now();
    common::produce(&p, &c.cfg.topic, 600, 3000);
    let needle = format!("hdfs: space quota of {dir} exceeded (DSQuotaExceededException)");
    let health = common::wait_health(&addr, &needle, Duration::from_secs(30));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    let m = metrics(&addr);
    assert!(
        m.contains("flumen_hdfs_fault_active{kind=\"space_quota\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("flumen_hdfs_faults_total{kind=\"space_quota\"}"),
        "{m}"
    );
    // It stays named for the whole outage: reads and creates that still work do not clear it.
    while began.elapsed() < Duration::from_secs(35) {
        let h = common::http_get(&addr, "/health").unwrap_or_default();
        assert!(
            h.contains(&needle),
            "/health forgot the quota mid-outage: {h}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = relay.log_text();
    assert_one_line_over_the_outage(&log, "space quota of");

    drop(restore);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 3000, Duration::from_secs(120));
    assert_exactly_once(&landed, 3000);
    common::wait_health(&addr, "\"status\":\"ready\"", Duration::from_secs(30));
    let log = relay.log_text();
    assert_no_java_trace(&log);
    let lines = operator_lines(&log, "space quota of");
    assert!(
        lines.len() <= 3 && lines.last().is_some_and(|l| l.contains("over: ")),
        "want the outage's line and its end, got:\n{}",
        lines.join("\n")
    );
    relay.signal(libc::SIGTERM);
    assert!(relay
        .wait_for(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
}

// Regression: a NameNode in safe mode read as "hdfs unreachable" with the Java stack trace in the
// reason and a warning with the trace every retry; flumen_channel_pending_bytes froze at its
// value from before the outage (it was refreshed only between HDFS calls); and no check noticed
// that partitions with data waiting had stopped committing.
#[test]
fn safe_mode_is_named_pending_bytes_grow_stuck_partitions_show_and_it_recovers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let mut c = common::Case::new("safemode");
    let addr = c.with_metrics();
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 600);
    let mut relay = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    common::wait_landed(&client, &c.cfg.hdfs_path, 600, Duration::from_secs(120));

    common::hdfs_safemode(true);
    let restore = Restore(Box::new(|| common::hdfs_safemode(false)));
    common::produce(&p, &c.cfg.topic, 600, 1200);
    let health = common::wait_health(&addr, "NameNode in safe mode", Duration::from_secs(30));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    assert!(!health.contains("at org.apache"), "{health}");
    let m = metrics(&addr);
    assert!(
        m.contains("flumen_hdfs_fault_active{kind=\"safe_mode\"} 1"),
        "{m}"
    );

    // The channel keeps filling, and the gauge says so while HDFS refuses every change.
    let pending = || {
        common::metric_value(&metrics(&addr), "flumen_channel_pending_bytes")
            .expect("flumen_channel_pending_bytes is exported")
    };
    let before = pending();
    common::produce(&p, &c.cfg.topic, 1200, 3000);
    let t = Instant::now();
    let mut after = before;
    while after <= before && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        after = pending();
    }
    assert!(
        after > before,
        "flumen_channel_pending_bytes stayed at {before} while 1800 records entered the channel"
    );

    // No commit for past the bound (60 s with a 2 s roll interval): each partition is named.
    let health = common::wait_health(&addr, "no file has committed", Duration::from_secs(90));
    assert!(
        health.contains(&format!("partition {}/", c.cfg.topic)),
        "{health}"
    );
    let m = metrics(&addr);
    assert!(m.contains("flumen_partition_stuck{"), "{m}");
    let log = relay.log_text();
    assert_one_line_over_the_outage(&log, "safe mode");

    drop(restore);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 3000, Duration::from_secs(120));
    assert_exactly_once(&landed, 3000);
    common::wait_health(&addr, "\"status\":\"ready\"", Duration::from_secs(30));
    assert_no_java_trace(&relay.log_text());
    relay.signal(libc::SIGTERM);
    assert!(relay
        .wait_for(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
}
