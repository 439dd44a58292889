//! Crash at each named site of the commit protocol (wal-format.md, "Crash analysis"), restart,
//! and check that every event still lands exactly once. Needs `--features failpoints`.

mod common;

use std::time::Duration;

use common::{assert_exactly_once, spawn_relay, testbed};

/// Runs one crash site: the first relay dies there (abort, as abrupt as kill -9), the second
/// runs clean and must deliver everything exactly once.
fn crash_at(site: &str) {
    let tb = testbed();
    let common::Case {
        cfg,
        config,
        work: _work,
    } = common::Case::new(&format!("fp-{site}"));
    let topic = cfg.topic.clone();
    let p = common::producer(tb);
    let _second = common::crash_at_then_run_clean(&p, &topic, &config, site);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &cfg.hdfs_path, 3000, Duration::from_secs(180));
    assert_exactly_once(&landed, 3000);
}

#[test]
fn crash_mid_append() {
    crash_at("wal-mid-append");
}

#[test]
fn crash_after_append_before_hdfs_write() {
    crash_at("wal-after-append");
}

#[test]
fn crash_mid_write() {
    crash_at("sink-mid-write");
}

#[test]
fn crash_after_close_before_claim() {
    crash_at("commit-before-claim");
}

/// Regression: a claim used to be create, write, close; a kill inside left an empty claim that
/// wedged the partition for good. A claim is now a rename of a built directory.
#[test]
fn crash_inside_claim_creation() {
    crash_at("commit-mid-claim");
}

/// Dies between building the genesis entry and claiming it (second partition's genesis).
#[test]
fn crash_inside_genesis() {
    crash_at("genesis-before-claim");
}

#[test]
fn crash_after_claim_before_tip_check() {
    crash_at("commit-after-claim");
}

#[test]
fn crash_after_claim_before_rename() {
    crash_at("commit-before-rename");
}

#[test]
fn crash_after_rename_before_offset_commit() {
    crash_at("commit-after-rename");
}

/// Dies reusing a trimmed segment's file (`wal-format.md` §7, row 11c): after its new header
/// and end marker are synced, before the rename makes it the next segment. Each round of
/// events fills about one 1 MiB segment; once the first are delivered and trimmed into the
/// pool, a later roll reuses a file and the relay dies there.
#[test]
fn crash_inside_segment_recycling() {
    let tb = testbed();
    let mut c = common::Case::new("fp-recycle");
    c.cfg.extra_hdfs = "roll_records_max = 100000\nroll_interval_s = 1\n".into();
    c.rewrite();
    let topic = c.cfg.topic.clone();
    let p = common::producer(tb);
    let mut first = spawn_relay(&c.config, Some("wal-mid-recycle=return"));
    let (round, mut produced) = (40_000, 0);
    let status = loop {
        common::produce(&p, &topic, produced, produced + round);
        produced += round;
        if let Some(status) = first.wait_for(Duration::from_secs(6)) {
            break status;
        }
        let log = first.log_text();
        assert!(produced < 10 * round, "no segment file was reused:\n{log}");
    };
    let log = first.log_text();
    assert!(!status.success(), "{status:?}\n{log}");
    assert!(log.contains("failpoint wal-mid-recycle hit"), "{log}");
    let _second = spawn_relay(&c.config, None);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(
        &client,
        &c.cfg.hdfs_path,
        produced as usize,
        Duration::from_secs(240),
    );
    assert_exactly_once(&landed, produced);
}

/// Recovery itself dies right after rolling a claim forward; the next recovery must finish.
#[test]
fn crash_during_recovery() {
    let tb = testbed();
    let common::Case {
        cfg,
        config,
        work: _work,
    } = common::Case::new("fp-recovery");
    let topic = cfg.topic.clone();
    let p = common::producer(tb);
    common::produce(&p, &topic, 0, 2000);
    // 1: die between claim and rename, leaving a claim to roll forward.
    let mut first = spawn_relay(&config, Some("commit-before-rename=1*off->return"));
    assert!(first
        .wait_for(Duration::from_secs(120))
        .is_some_and(|s| !s.success()));
    // 2: die inside recovery, right after the roll-forward rename.
    let mut second = spawn_relay(&config, Some("reconcile-after-roll-forward=return"));
    let status = second.wait_for(Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{}",
        second.log_text()
    );
    assert!(second
        .log_text()
        .contains("failpoint reconcile-after-roll-forward hit"));
    // 3: clean.
    let _third = spawn_relay(&config, None);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &cfg.hdfs_path, 2000, Duration::from_secs(180));
    assert_exactly_once(&landed, 2000);
}

// Regression (issue 12): with a channel writer slowed to 300 ms a group commit, the poll loop
// paused every partition after 200 ms of waiting ("channel writer busy", about once a
// second), and each pause made librdkafka drop its prefetched records and fetch them again.
#[test]
fn a_slow_channel_writer_is_waited_for_not_paused() {
    let tb = testbed();
    let mut c = common::Case::new("fp-slow-writer");
    let metrics = c.with_metrics();
    c.cfg.extra_properties = r#""statistics.interval.ms" = "1000""#.into();
    c.rewrite();
    let relay = spawn_relay(&c.config, Some("channel-append-delay=sleep(300)"));
    // Produce only once every partition is sought and consuming: a fetch that lands between
    // the assignment and its pause at start is dropped as outdated when the partition is
    // sought (seen once in CI on a loaded machine), and that one-off is not what this checks.
    relay.wait_log(
        "partition reconciled; consuming",
        3,
        Duration::from_secs(120),
    );
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 20_000);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 20_000, Duration::from_secs(240));
    assert_exactly_once(&landed, 20_000);
    // librdkafka fetched each record once: a pause would have dropped its prefetched queue
    // as outdated and fetched it again (2.28x in the issue 12 research).
    std::thread::sleep(Duration::from_millis(1500)); // one more statistics report
    let body = common::http_get(&metrics, "/metrics").expect("metrics endpoint");
    let value = |name| common::metric_value(&body, name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(value("flumen_kafka_outdated_records_dropped_total"), 0.0);
    assert_eq!(value("flumen_kafka_fetched_records_total"), 20_000.0);
    let log = relay.log_text();
    let pauses: Vec<&str> = log.lines().filter(|l| l.contains("writer busy")).collect();
    assert!(
        pauses.is_empty(),
        "{} pauses for a slow writer, e.g. {:?}",
        pauses.len(),
        pauses.first()
    );
}
