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
    let health = common::wait_health(&c.metrics, "hdfs unreachable", Duration::from_secs(60));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay must not exit while HDFS is down"
    );
    drop(restore);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 2500, Duration::from_secs(180));
    assert_exactly_once(&landed, 2500);
    common::wait_health(&c.metrics, "\"status\":\"ready\"", Duration::from_secs(60));
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
    let health = common::wait_health(&c.metrics, "kafka unreachable", Duration::from_secs(60));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    assert!(
        relay_alive(&relay),
        "the relay must not exit while Kafka is down"
    );
    drop(restore);
    // Regression: with no record arriving, /health stayed degraded after the broker was back.
    common::wait_health(&c.metrics, "\"status\":\"ready\"", Duration::from_secs(60));
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
    let health = common::wait_health(&c.metrics, "channel disk full", Duration::from_secs(60));
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

/// Regression for the empty-claim wedge: DataNode stops and NameNode restarts while files are
/// being written and claimed used to leave 0-byte claims that stopped partitions for good (they
/// healed only after the 20-minute lease limit and a manual restart). Claims no longer touch a
/// DataNode, so the relay must deliver everything once, by itself, whatever the timing.
/// `FLUMEN_HDFS_FAULT_CYCLES` (default 4) sets how many faults are injected.
#[test]
fn datanode_stops_and_namenode_restarts_heal_without_a_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let mut c = case("hdfs-loop");
    // Small files, so commits (and so claims) are in flight when each fault hits.
    c.c.cfg.extra_hdfs = "roll_records_max = 50\nroll_interval_s = 1\n".into();
    c.c.rewrite();
    let cycles: u64 = std::env::var("FLUMEN_HDFS_FAULT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let per_cycle = 600;
    let p = common::producer(tb);
    let relay = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    for i in 0..cycles {
        common::produce(&p, &c.cfg.topic, i * per_cycle, (i + 1) * per_cycle);
        // Vary where in the commit path the fault lands.
        std::thread::sleep(Duration::from_millis(300 + 450 * (i % 4)));
        if i % 2 == 0 {
            common::testbed_cmd(&["dn-stop", "1"]);
            let restore = Restore(&["dn-start", "1"]);
            std::thread::sleep(Duration::from_secs(3));
            drop(restore);
        } else {
            common::testbed_cmd(&["nn-restart"]);
        }
        assert!(relay_alive(&relay), "the relay must ride out HDFS faults");
    }
    let total = cycles * per_cycle;
    let landed = common::wait_landed(
        &client,
        &c.cfg.hdfs_path,
        total as usize,
        Duration::from_secs(240),
    );
    assert_exactly_once(&landed, total);
    let left = common::runtime().block_on(common::in_use_files(&client, &c.cfg.state_dir()));
    assert!(left.is_empty(), "data files left in the ledger: {left:?}");
    common::wait_health(&c.metrics, "\"status\":\"ready\"", Duration::from_secs(60));
}

/// An HDFS outage that began before flumen started is absorbed like one that began after: the
/// relay consumes into its channel from the group's committed offset (never ahead of HDFS) and
/// reconciles when the NameNode answers. It used to consume nothing until then.
#[test]
fn namenode_down_at_start_still_fills_the_channel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let c = case("nn-down-at-start");
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 500);
    let mut first = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    common::wait_landed(&client, &c.cfg.hdfs_path, 500, Duration::from_secs(120));
    first.signal(libc::SIGTERM);
    assert!(first
        .wait_for(Duration::from_secs(30))
        .is_some_and(|s| s.success()));

    common::testbed_cmd(&["nn-stop"]);
    let restore = Restore(&["nn-start"]);
    common::produce(&p, &c.cfg.topic, 500, 1500);
    let before = batches_in(&c.cfg.channel);
    let relay = spawn_relay(&c.config, None);
    common::wait_health(&c.metrics, "hdfs unreachable", Duration::from_secs(60));
    let t = Instant::now();
    let batches = loop {
        let n = batches_in(&c.cfg.channel);
        if n > before || t.elapsed() > Duration::from_secs(60) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        batches > before,
        "nothing was consumed while HDFS was down at start ({before} batches before, {batches} after)"
    );
    assert!(relay_alive(&relay));
    // Every partition still waits for its start from HDFS, the consuming one included.
    assert_eq!(unreconciled(&c.metrics), 3.0);
    // Past a minute of waiting, /health names them: their data cannot land.
    let waiting = "3 partition(s) waited over 60 s for their start from HDFS";
    let health = common::wait_health(&c.metrics, waiting, Duration::from_secs(90));
    assert!(health.contains("\"degraded\""), "{health}");
    drop(restore);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 1500, Duration::from_secs(180));
    assert_exactly_once(&landed, 1500);
    let t = Instant::now();
    while unreconciled(&c.metrics) != 0.0 || health_says(&c.metrics, waiting) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "partitions still unreconciled, or /health still says so, 30 s after HDFS answered \
             and the data landed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a relay's `/health` answers with `needle` in it.
fn health_says(addr: &str, needle: &str) -> bool {
    common::http_get(addr, "/health").is_some_and(|b| b.contains(needle))
}

/// `flumen_partitions_unreconciled` on a relay's `/metrics`.
fn unreconciled(metrics: &str) -> f64 {
    let body = common::http_get(metrics, "/metrics").expect("metrics endpoint");
    common::metric_value(&body, "flumen_partitions_unreconciled")
        .expect("flumen_partitions_unreconciled is published")
}

/// Intact batches in a channel directory, from `wal check`'s summary line
/// ("<n> intact batches, <m> damaged ranges, ..."); readable while a relay holds the channel.
fn batches_in(channel: &std::path::Path) -> u64 {
    let report = flumen::tools::wal_check(channel).unwrap();
    report
        .text
        .lines()
        .find(|l| l.contains(" intact batches, "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("wal check prints a summary line")
}

/// Regression for finding 2: offsets that retention deleted before they reached HDFS used to be
/// jumped over silently, inside a file whose name claimed them. Now the partition halts with
/// /health down naming the range and the command, the other partitions go on, and after the
/// operator's `flumen ledger skip` it continues after the range, which no file covers.
#[test]
fn offsets_lost_to_retention_halt_until_an_operator_skips_them() {
    // Not a service fault itself, but it reads HDFS, which the other tests here restart.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = testbed();
    let c = case("retention");
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 600);
    let mut first = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 600, Duration::from_secs(120));
    first.signal(libc::SIGTERM);
    assert!(first
        .wait_for(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let end = landed
        .iter()
        .filter(|l| l.partition == 0)
        .map(|l| l.offset)
        .max()
        .unwrap();

    common::produce(&p, &c.cfg.topic, 600, 1500);
    let (from, through) = (end + 1, end + 100);
    common::delete_records(tb, &c.cfg.topic, 0, through + 1);
    let relay = spawn_relay(&c.config, None);
    let needle = format!("offsets {from}..={through} are gone");
    let health = common::wait_health(&c.metrics, &needle, Duration::from_secs(90));
    assert!(health.contains("\"status\":\"down\""), "{health}");
    assert!(health.contains("flumen ledger skip"), "{health}");
    let metrics = common::http_get(&c.metrics, "/metrics").unwrap();
    assert!(metrics.contains("flumen_partition_halted{"), "{metrics}");
    assert!(relay_alive(&relay));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(["ledger", "skip", "--config"])
        .arg(&c.config)
        .args(["--topic", &c.cfg.topic, "--partition", "0"])
        .args([
            "--from",
            &from.to_string(),
            "--through",
            &through.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 1400, Duration::from_secs(180));
    let ids: std::collections::HashSet<u64> = landed.iter().map(|l| l.id).collect();
    assert_eq!(ids.len(), landed.len(), "duplicates landed");
    assert_eq!(
        landed.len(),
        1400,
        "everything but the 100 deleted records; per partition (count, max offset): {:?}\n{}",
        per_partition(&landed),
        relay.key_log_lines()
    );
    assert!(!landed
        .iter()
        .any(|l| l.partition == 0 && (from..=through).contains(&l.offset)));
    let files: std::collections::BTreeSet<&str> = landed
        .iter()
        .filter(|l| l.partition == 0)
        .map(|l| l.file.rsplit('/').next().unwrap())
        .collect();
    for f in files {
        let (_, _, first, last) = flumen::sink::parse_final_name(f).unwrap();
        assert!(
            last < from || first > through,
            "{f} claims part of the lost range"
        );
    }
    common::wait_health(&c.metrics, "\"status\":\"ready\"", Duration::from_secs(60));
}

/// (count, highest offset) of the landed records of each partition.
fn per_partition(landed: &[common::Landed]) -> std::collections::BTreeMap<i32, (usize, i64)> {
    let mut m = std::collections::BTreeMap::new();
    for l in landed {
        let e = m.entry(l.partition).or_insert((0, -1));
        e.0 += 1;
        e.1 = e.1.max(l.offset);
    }
    m
}
