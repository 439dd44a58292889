//! Operating faults against the real testbed: the NameNode or the only broker goes away
//! mid-stream, and a channel disk below its free-space floor. Nothing may be lost, duplicated or
//! crash-loop, and /health must say what is wrong. These stop shared services, so they live in
//! their own test binary (cargo runs test binaries one at a time) and run one after another.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{assert_exactly_once, spawn_relay, testbed};

/// The tests here stop services every other test needs: never two at once.
static SERIAL: Mutex<()> = Mutex::new(());

struct Case {
    c: common::Case,
    metrics: String,
}

fn case(prefix: &str) -> Case {
    let mut c = common::Case::new(prefix);
    let metrics = c.with_metrics();
    Case { c, metrics }
}

impl std::ops::Deref for Case {
    type Target = common::Case;
    fn deref(&self) -> &common::Case {
        &self.c
    }
}

/// Polls /health until its body contains `needle` or `limit` passes; returns the last body.
fn wait_health(addr: &str, needle: &str, limit: Duration) -> String {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < limit {
        if let Some(b) = common::http_get(addr, "/health") {
            if b.contains(needle) {
                return b;
            }
            last = b;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("/health never said {needle:?} within {limit:?}; last answer:\n{last}");
}

#[test]
fn namenode_outage_mid_stream_stalls_then_catches_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let c = case("nn-down");
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 1000);
    let mut relay = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    common::wait_landed(&client, &c.cfg.hdfs_path, 1000, Duration::from_secs(120));
    common::testbed_cmd(&["nn-stop"]);
    let restore = Restore(&["nn-start"]);
    common::produce(&p, &c.cfg.topic, 1000, 2500);
    let health = wait_health(&c.metrics, "hdfs unreachable", Duration::from_secs(60));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay must not exit while HDFS is down"
    );
    drop(restore);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 2500, Duration::from_secs(180));
    assert_exactly_once(&landed, 2500);
    wait_health(&c.metrics, "\"status\":\"ready\"", Duration::from_secs(60));
    relay.signal(libc::SIGTERM);
    assert!(
        relay
            .wait_for(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "{}",
        relay.log_text()
    );
}

#[test]
fn broker_outage_mid_stream_is_retried_without_loss() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let c = case("kafka-down");
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 1000);
    let relay = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    common::wait_landed(&client, &c.cfg.hdfs_path, 1000, Duration::from_secs(120));
    common::testbed_cmd(&["kafka-stop", "1"]);
    let restore = Restore(&["kafka-start", "1"]);
    let health = wait_health(&c.metrics, "kafka unreachable", Duration::from_secs(60));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    assert!(
        relay_alive(&relay),
        "the relay must not exit while Kafka is down"
    );
    drop(restore);
    common::produce(&p, &c.cfg.topic, 1000, 2000);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 2000, Duration::from_secs(180));
    assert_exactly_once(&landed, 2000);
}

/// Restarts a stopped service when dropped, so a failing assertion never leaves the shared
/// testbed broken for the tests after it.
struct Restore(&'static [&'static str]);

impl Drop for Restore {
    fn drop(&mut self) {
        common::testbed_cmd(self.0);
    }
}

fn relay_alive(r: &common::Relay) -> bool {
    // SAFETY: signal 0 only checks that our child exists.
    unsafe { libc::kill(r.pid(), 0) == 0 }
}

#[test]
fn low_channel_disk_pauses_consumption_and_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let c = case("disk");
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 800);
    // A free-space floor no disk meets: the writer must hold the batch and the source pause.
    let full = c.config.with_file_name("full.toml");
    let body = std::fs::read_to_string(&c.config).unwrap().replace(
        "disk_free_bytes_min = 1048576",
        "disk_free_bytes_min = 1125899906842624",
    );
    std::fs::write(&full, body).unwrap();
    let mut relay = spawn_relay(&full, None);
    let health = wait_health(&c.metrics, "channel disk full", Duration::from_secs(60));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    std::thread::sleep(Duration::from_secs(3));
    let client = common::hdfs(tb);
    let landed = common::runtime().block_on(common::read_landed(&client, &c.cfg.hdfs_path));
    assert!(
        landed.is_empty(),
        "nothing may reach HDFS through a channel that cannot write"
    );
    let report = flumen::tools::wal_check(&c.cfg.channel).unwrap();
    assert!(report.text.contains("0 intact batches"), "{}", report.text);
    relay.signal(libc::SIGTERM);
    relay.wait_for(Duration::from_secs(30));
    // Space is back (the normal floor): everything arrives, once.
    let _relay = spawn_relay(&c.config, None);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 800, Duration::from_secs(120));
    assert_exactly_once(&landed, 800);
}
