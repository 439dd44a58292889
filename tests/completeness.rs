//! Completeness markers against the real Kafka and HDFS: two instances in one group, one
//! partition that never receives a record, records with explicit timestamps in minute
//! buckets. Exactly one marker per complete bucket, none in a bucket whose horizon has not
//! passed, and a record that arrives for a marked bucket goes to the late path, counted.

mod common;

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::{testbed, Case};

const LIMIT: Duration = Duration::from_secs(180);
const MINUTE_MS: i64 = 60_000;
/// Ten minutes: a bucket 30 minutes old is past its horizon, one 2 minutes old is not.
const LATENESS_S: i64 = 600;

/// Produces `{"id":N}` records to `partition`, each with its explicit timestamp.
fn produce_at(p: &BaseProducer, topic: &str, partition: i32, records: &[(u64, i64)]) {
    for (id, ts) in records {
        let value = format!("{{\"id\":{id}}}");
        let key = format!("cell-{id}");
        p.send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&value)
                .timestamp(*ts),
        )
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("flush producer");
}

/// The `%Y%m%d/%H%M` directory of `ms` (UTC).
fn bucket_dir(out: &str, ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    format!("{out}/{}", t.format("%Y%m%d/%H%M"))
}

/// The sum of a counter over its label sets in a Prometheus text body.
fn counter_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metrics(addr: &str) -> String {
    common::http_get(addr, "/metrics").unwrap_or_default()
}

fn exists(client: &hdfs_native::Client, path: &str) -> bool {
    common::runtime()
        .block_on(client.get_file_info(path))
        .is_ok()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn markers_under_two_instances_with_an_idle_partition_and_a_late_record() {
    let tb = testbed();
    let mut c = Case::new("complete");
    let out = format!("/flumen-tests/{}/out", c.cfg.topic);
    c.cfg.hdfs_path = format!("{out}/%Y%m%d/%H%M");
    c.cfg.extra_hdfs = format!(
        "roll_records_max = 500\nroll_interval_s = 2\n\
         [hdfs.completeness]\nenabled = true\nallowed_lateness_s = {LATENESS_S}\n"
    );
    let addr_1 = c.with_metrics();
    let mut second = c.cfg.clone();
    second.channel = c.work.path().join("channel-2");
    let addr_2 = format!("127.0.0.1:{}", common::free_port());
    second.metrics_listen = addr_2.clone();
    let second_path = c.work.path().join("second.toml");
    second.write(tb, &second_path);

    // Buckets: `a` and `b` 30 and 29 minutes old (past their horizon, end + 10 min), `fresh`
    // two minutes old (not). Partition 0 has all three, partition 1 `a` and `b`, partition 2
    // nothing at all.
    let now = chrono::Utc::now().timestamp_millis();
    let minute = |ago: i64| (now - ago * MINUTE_MS) / MINUTE_MS * MINUTE_MS;
    let (a, b, fresh) = (minute(30), minute(29), minute(2));
    let p = common::producer(tb);
    let at = |start: i64, ids: std::ops::Range<u64>| -> Vec<(u64, i64)> {
        ids.map(|id| (id, start + 1_000 + (id % 50) as i64 * 100))
            .collect()
    };
    let mut p0 = at(a, 0..100);
    p0.extend(at(b, 100..200));
    p0.extend(at(fresh, 200..300));
    let mut p1 = at(a, 300..400);
    p1.extend(at(b, 400..500));
    produce_at(&p, &c.cfg.topic, 0, &p0);
    produce_at(&p, &c.cfg.topic, 1, &p1);

    let first = common::spawn_relay(&c.config, None);
    let joiner = common::spawn_relay(&second_path, None);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &out, 500, LIMIT);
    common::assert_exactly_once(&landed, 500);

    // The idle partition 2 and the caught-up ones are advanced to the wall clock: `a` and `b`
    // complete, `fresh` waits for its horizon (its end + 10 minutes).
    let marker = |start: i64| format!("{}/_COMPLETE", bucket_dir(&out, start));
    wait_until("markers in the two complete buckets", LIMIT, || {
        exists(&client, &marker(a)) && exists(&client, &marker(b))
    });
    // A few more rounds (5 s each) of both instances: still exactly these two markers.
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        !exists(&client, &marker(fresh)),
        "a marker in a bucket whose horizon has not passed"
    );
    let written = counter_sum(&metrics(&addr_1), "flumen_completeness_markers_total")
        + counter_sum(&metrics(&addr_2), "flumen_completeness_markers_total");
    assert_eq!(written, 2.0, "markers created across both instances");
    let markers: Vec<_> = common::runtime()
        .block_on(common::list_names(&client, &out))
        .into_iter()
        .filter(|n| n.ends_with("/_COMPLETE"))
        .collect();
    assert_eq!(markers.len(), 2, "{markers:?}");

    // A record for the marked bucket `a` arrives on partition 1: late. It lands once, under
    // the late path, never in `a`.
    produce_at(&p, &c.cfg.topic, 1, &[(500, a + 5_000)]);
    let late_dir = format!("{out}/_late");
    let late = common::wait_landed(&client, &late_dir, 1, LIMIT);
    assert_eq!(late.len(), 1, "late records: {:?}", ids(&late));
    assert_eq!(late[0].id, 500);
    assert!(
        late[0].file.starts_with(&bucket_dir(&late_dir, a)),
        "{}",
        late[0].file
    );
    let landed = common::wait_landed(&client, &out, 500, LIMIT);
    common::assert_exactly_once(&landed, 500);
    let in_a = landed
        .iter()
        .filter(|l| l.file.starts_with(&bucket_dir(&out, a)))
        .count();
    assert_eq!(in_a, 200, "bucket a changed after its marker");
    let counted = counter_sum(&metrics(&addr_1), "flumen_late_records_total")
        + counter_sum(&metrics(&addr_2), "flumen_late_records_total");
    assert!(counted >= 1.0, "flumen_late_records_total: {counted}");
    // Partition 1's writer knew only its own records' times, so it first wrote the record
    // into bucket `a`; sealing the ledger entry before the claim found the idle advance
    // and sent the range back to be written again, late.
    let rewritten = counter_sum(&metrics(&addr_1), "flumen_files_late_at_claim_total")
        + counter_sum(&metrics(&addr_2), "flumen_files_late_at_claim_total");
    assert!(
        rewritten >= 1.0,
        "flumen_files_late_at_claim_total: {rewritten}"
    );
    drop(first);
    drop(joiner);
}

fn ids(l: &[common::Landed]) -> Vec<u64> {
    l.iter().map(|l| l.id).collect()
}

/// A case with completeness on (minute buckets, 10 minutes' lateness) and records in buckets
/// 30 and 29 minutes old on partitions 0 and 1 (200 each); partition 2 stays idle. Returns
/// the case, the output prefix and the two bucket starts.
fn old_buckets_case(prefix: &str) -> (Case, String, i64, i64) {
    let tb = testbed();
    let mut c = Case::new(prefix);
    let out = format!("/flumen-tests/{}/out", c.cfg.topic);
    c.cfg.hdfs_path = format!("{out}/%Y%m%d/%H%M");
    c.cfg.extra_hdfs = format!(
        "roll_records_max = 50\nroll_interval_s = 2\n\
         [hdfs.completeness]\nenabled = true\nallowed_lateness_s = {LATENESS_S}\n"
    );
    c.rewrite();
    let now = chrono::Utc::now().timestamp_millis();
    let minute = |ago: i64| (now - ago * MINUTE_MS) / MINUTE_MS * MINUTE_MS;
    let (a, b) = (minute(30), minute(29));
    let p = common::producer(tb);
    for (partition, ids) in [(0, 0..200), (1, 200..400)] {
        let records: Vec<_> = ids
            .map(|id| (id, if id % 200 < 100 { a } else { b } + 1_000 + id as i64))
            .collect();
        produce_at(&p, &c.cfg.topic, partition, &records);
    }
    (c, out, a, b)
}

/// Runs a relay that must die at the failpoint `site`, then a clean one; every record lands
/// once and both buckets get their marker, with no note left behind.
fn crash_then_mark(site: &str) {
    let (c, out, a, b) = old_buckets_case(&format!("complete-{site}"));
    common::relay_dies_at(&c.config, site, LIMIT);

    let _second = common::spawn_relay(&c.config, None);
    let client = common::hdfs(testbed());
    let landed = common::wait_landed(&client, &out, 400, LIMIT);
    common::assert_exactly_once(&landed, 400);
    let marker = |start: i64| format!("{}/_COMPLETE", bucket_dir(&out, start));
    wait_until("both markers after the restart", LIMIT, || {
        exists(&client, &marker(a)) && exists(&client, &marker(b))
    });
    let pending = format!("{}/completeness/pending", c.cfg.state_dir());
    wait_until("the notes of the marked buckets deleted", LIMIT, || {
        common::runtime()
            .block_on(common::list_names(&client, &pending))
            .is_empty()
    });
}

/// Crash row 15: a writer dies between sealing its predecessor and claiming. The restarted
/// member's reconciliation deletes its staging, so the dead seal is taken over (the range is
/// claimed) and the idle partitions' watermarks still advance: the buckets get their markers.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_crash_after_a_seal_delays_nothing_after_the_restart() {
    crash_then_mark("commit-after-seal");
}

/// Crash row 17: the marker task dies after a marker's create, before deleting its note. The
/// next round finds the marker and deletes the note; no second marker, nothing lost.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_crash_after_a_marker_before_its_note_is_deleted_is_finished_by_the_next_round() {
    crash_then_mark("marker-before-note-delete");
}
