//! Bad records against the real Kafka and HDFS (issue 10, "Never silent"): poison records
//! (oversized, or a text line break) under each policy, header keys that are not UTF-8 or
//! hold a NUL, duplicate header keys, and dead letters that are complete and written once.
//! Needs `--features failpoints` (one test crashes at a dead letter's rename).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{spawn_relay, testbed, RawRecord, RelayConfig};

const LIMIT: Duration = Duration::from_secs(120);

/// Records this big need a topic (and producer) limit above Kafka's default 1 MB.
const POISON_BYTES: usize = 20 << 20;
const BIG: &str = "26214400";

/// One test's topic (2 partitions), scratch directory, relay config and metrics address.
struct Case {
    cfg: RelayConfig,
    config: PathBuf,
    metrics: String,
    /// `hdfs.format`: the shared fixture writes `jsonl`.
    format: &'static str,
    _work: tempfile::TempDir,
}

impl Case {
    fn new(prefix: &str, format: &'static str, extra_kafka: &str, extra_hdfs: &str) -> Case {
        let tb = testbed();
        let topic = common::unique(prefix);
        common::create_topic_with(tb, &topic, 2, &[("max.message.bytes", BIG)]);
        let work = common::workdir();
        let mut cfg = RelayConfig::new(&topic, work.path());
        cfg.extra_kafka = extra_kafka.into();
        cfg.extra_hdfs = format!("roll_records_max = 500\nroll_interval_s = 2\n{extra_hdfs}");
        let metrics = format!("127.0.0.1:{}", common::free_port());
        cfg.metrics_listen = metrics.clone();
        let c = Case {
            config: work.path().join("flumen.toml"),
            cfg,
            metrics,
            format,
            _work: work,
        };
        c.write();
        c
    }

    fn write(&self) {
        self.cfg.write(testbed(), &self.config);
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replace("format = \"jsonl\"", &format!("format = {:?}", self.format));
        std::fs::write(&self.config, text).unwrap();
    }

    fn dead_dir(&self) -> String {
        format!("/flumen-tests/{}/dead", self.cfg.topic)
    }

    fn produce(&self, records: &[RawRecord]) {
        common::produce_raw(
            testbed(),
            &self.cfg.topic,
            records,
            &[("message.max.bytes", BIG)],
        );
    }

    fn files(&self) -> Vec<(String, Vec<u8>)> {
        let client = common::hdfs(testbed());
        common::runtime().block_on(common::read_final_files(&client, &self.cfg.hdfs_path))
    }

    /// Final jsonl lines, polled until `n` landed or `LIMIT` passed.
    fn wait_jsonl(&self, n: usize) -> Vec<serde_json::Value> {
        let t = Instant::now();
        loop {
            let lines: Vec<serde_json::Value> = self
                .files()
                .iter()
                .flat_map(|(_, b)| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()))
                .map(|l| serde_json::from_slice(l).expect("jsonl line"))
                .collect();
            if lines.len() >= n || t.elapsed() > LIMIT {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The concatenated bytes of every final text file per partition, polled until `n` bytes
    /// landed or `LIMIT` passed.
    fn wait_text(&self, n: usize) -> BTreeMap<i32, Vec<u8>> {
        let t = Instant::now();
        loop {
            let mut by_part: BTreeMap<i32, Vec<u8>> = BTreeMap::new();
            for (path, bytes) in self.files() {
                let name = path.rsplit('/').next().unwrap();
                let (_, p, _, _) = flumen::sink::parse_final_name(name).expect("final name");
                by_part.entry(p).or_default().extend(bytes);
            }
            let total: usize = by_part.values().map(Vec::len).sum();
            if total >= n || t.elapsed() > LIMIT {
                return by_part;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn dead_letters(&self) -> Vec<(String, Vec<u8>)> {
        let client = common::hdfs(testbed());
        common::runtime().block_on(common::read_final_files(&client, &self.dead_dir()))
    }

    fn health(&self, needle: &str) -> String {
        common::wait_health(&self.metrics, needle, LIMIT)
    }

    fn metrics(&self) -> String {
        common::http_get(&self.metrics, "/metrics").expect("/metrics answers")
    }
}

/// The `{"id":N}` ids of jsonl lines, by partition, in file order.
fn ids(lines: &[serde_json::Value]) -> BTreeMap<i64, Vec<u64>> {
    let mut out: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for l in lines {
        let Some(v) = l["value"].as_str() else {
            continue;
        };
        let inner: serde_json::Value = serde_json::from_str(v).expect("event json");
        out.entry(l["partition"].as_i64().unwrap())
            .or_default()
            .push(inner["id"].as_u64().unwrap());
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

fn events(partition: i32, ids: std::ops::Range<u64>) -> Vec<RawRecord> {
    ids.map(|id| RawRecord::event(partition, id)).collect()
}

fn poison(partition: i32) -> RawRecord {
    RawRecord {
        partition,
        key: Some(b"poison-key".to_vec()),
        value: Some(vec![b'x'; POISON_BYTES]),
        headers: vec![
            (b"trace".to_vec(), Some(b"t-1".to_vec())),
            (vec![0xff, b'k'], Some(vec![0x00, 0xfe])),
        ],
    }
}

/// Lines of the relay's log at ERROR that name `needle`.
fn error_lines(relay: &common::Relay, needle: &str) -> Vec<String> {
    relay
        .log_text()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains(needle))
        .map(str::to_string)
        .collect()
}

fn stop(mut relay: common::Relay) {
    relay.stop_gracefully(Duration::from_secs(60));
}

/// Regression: under `oversized_record_policy = "fail"` a 20 MiB record ended the Kafka thread;
/// records 0..11 before it were never delivered, /health said ready and nothing was logged.
/// Now what came before lands, the partition halts with /health down naming the offset, size
/// and fix, one ERROR line and a metric, the other partition keeps flowing, and a restart does
/// exactly the same.
#[test]
fn poison_record_under_fail_delivers_what_came_before_and_halts_its_partition() {
    let c = Case::new("poison-fail", "jsonl", "", "");
    let mut before = events(0, 0..12);
    before.push(poison(0));
    before.extend(events(0, 100..105));
    before.extend(events(1, 200..210));
    c.produce(&before);
    let relay = spawn_relay(&c.config, None);
    let needle = format!("partition {}/0 halted at offset 12", c.cfg.topic);
    let health = c.health(&needle);
    assert!(health.contains("\"status\":\"down\""), "{health}");
    assert!(health.contains(&POISON_BYTES.to_string()), "{health}");
    assert!(
        health.contains("oversized_record_policy = \\\"dead_letter\\\""),
        "{health}"
    );
    assert!(health.contains("hdfs.dead_letter_dir"), "{health}");
    let landed = ids(&c.wait_jsonl(22));
    assert_eq!(landed.get(&0), Some(&(0..12).collect::<Vec<_>>()));
    assert_eq!(landed.get(&1), Some(&(200..210).collect::<Vec<_>>()));

    // The other partition keeps flowing while partition 0 is halted.
    c.produce(&events(1, 210..220));
    let landed = ids(&c.wait_jsonl(32));
    assert_eq!(landed.get(&1), Some(&(200..220).collect::<Vec<_>>()));
    assert_eq!(
        landed.get(&0),
        Some(&(0..12).collect::<Vec<_>>()),
        "nothing past the poison"
    );
    let metrics = c.metrics();
    assert!(
        metrics.contains("flumen_poison_records_total{")
            && metrics.contains("reason=\"oversized\"")
            && metrics.contains("action=\"halt\""),
        "{metrics}"
    );
    assert!(metrics.contains("flumen_partition_halted{"), "{metrics}");
    std::thread::sleep(Duration::from_secs(12)); // past a halted partition's 10 s retry
    let errors = error_lines(&relay, "offset=12");
    assert_eq!(errors.len(), 1, "one ERROR line: {errors:#?}");
    stop(relay);

    // A restart behaves the same, and delivers nothing twice.
    let relay = spawn_relay(&c.config, None);
    let health = c.health(&needle);
    assert!(health.contains("\"status\":\"down\""), "{health}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(error_lines(&relay, "offset=12").len(), 1);
    let landed = ids(&c.wait_jsonl(32));
    assert_eq!(landed.get(&0), Some(&(0..12).collect::<Vec<_>>()));
    assert_eq!(landed.get(&1), Some(&(200..220).collect::<Vec<_>>()));
    stop(relay);
}

/// Regression: a dead letter kept only the value (no key, headers or offset) and logged
/// nothing. Now it holds the whole record and why it was diverted, is logged, and is written
/// exactly once even when the relay dies right after renaming it into place (as abruptly as
/// kill -9) and the restart writes the same range again.
#[test]
fn poison_record_under_dead_letter_is_complete_and_written_once_across_a_crash() {
    let mut c = Case::new(
        "poison-dl",
        "jsonl",
        "oversized_record_policy = \"dead_letter\"\n",
        "",
    );
    let dir = c.dead_dir();
    c.cfg
        .extra_hdfs
        .push_str(&format!("dead_letter_dir = \"{dir}\"\n"));
    c.write();
    let mut records = events(0, 0..12);
    records.push(poison(0));
    records.extend(events(0, 12..17));
    records.extend(events(1, 200..210));
    c.produce(&records);
    let mut first = spawn_relay(&c.config, Some("dead-letter-after-rename=return"));
    let status = first.wait_for(LIMIT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "the relay should have died after the rename: {status:?}\n{}",
        first.key_log_lines()
    );
    assert_eq!(c.dead_letters().len(), 1);

    let second = spawn_relay(&c.config, None);
    let landed = ids(&c.wait_jsonl(27));
    assert_eq!(landed.get(&0), Some(&(0..17).collect::<Vec<_>>()));
    assert_eq!(landed.get(&1), Some(&(200..210).collect::<Vec<_>>()));
    let health = c.health("\"status\":\"ready\"");
    assert!(health.contains("ready"), "{health}");
    let log = second.log_text();
    assert!(
        log.contains("dead letter already written"),
        "the restart wrote the range again and found the dead letter in place:\n{}",
        second.key_log_lines()
    );
    stop(second);

    let client = common::hdfs(testbed());
    let names = common::runtime().block_on(common::list_names(&client, &c.dead_dir()));
    let visible: Vec<_> = names
        .iter()
        .filter(|n| !n.rsplit('/').next().unwrap().starts_with('.'))
        .collect();
    assert_eq!(
        visible,
        vec![&format!(
            "{}/{}+0+00000000000000000012.json",
            c.dead_dir(),
            c.cfg.topic
        )],
        "{names:?}"
    );
    let letters = c.dead_letters();
    let body: serde_json::Value = serde_json::from_slice(&letters[0].1).expect("one JSON doc");
    assert_eq!(body["topic"], c.cfg.topic.as_str());
    assert_eq!(body["partition"], 0);
    assert_eq!(body["offset"], 12);
    assert!(
        body["timestamp"].as_i64().is_some(),
        "{}",
        body["timestamp"]
    );
    assert_eq!(body["key"], "poison-key");
    assert_eq!(body["value"].as_str().map(str::len), Some(POISON_BYTES));
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    assert_eq!(
        body["headers"],
        serde_json::json!([
            {"key": "trace", "value": "t-1"},
            {"key_base64": b64(&[0xff, b'k']), "value_base64": b64(&[0x00, 0xfe])},
        ])
    );
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("record_bytes_max")),
        "{}",
        body["reason"]
    );
}

/// Regression: a header key that is not UTF-8 panicked the Kafka thread inside rdkafka's
/// header iterator (`unwrap` on a `Utf8Error`), and 0 records were delivered. Now the key is
/// bytes and survives into jsonl as `key_base64`.
#[test]
fn header_key_that_is_not_utf8_is_kept_as_bytes() {
    let c = Case::new("hdr-bytes", "jsonl", "", "");
    let mut records = events(0, 0..3);
    records[1].headers = vec![(vec![0xc3, 0x28, b'k'], Some(b"v".to_vec()))];
    c.produce(&records);
    let relay = spawn_relay(&c.config, None);
    let lines = c.wait_jsonl(3);
    assert_eq!(lines.len(), 3, "{}", relay.key_log_lines());
    let b64 = base64::engine::general_purpose::STANDARD.encode([0xc3, 0x28, b'k']);
    assert_eq!(
        lines[1]["headers"],
        serde_json::json!([{"key_base64": b64, "value": "v"}])
    );
    assert!(
        !relay.log_text().contains("panicked"),
        "{}",
        relay.log_text()
    );
    stop(relay);
}

/// Regression: jsonl headers were a JSON object, so duplicate keys kept only the last value
/// and keys were cut at a NUL byte (`a\0b` and `a\0c` both became `a`). Now they are an
/// ordered list with every entry.
#[test]
fn jsonl_headers_keep_duplicates_and_nul_keys_in_order() {
    let c = Case::new("hdr-list", "jsonl", "", "");
    let mut records = events(0, 0..2);
    records[0].headers = vec![
        (b"a".to_vec(), Some(b"1".to_vec())),
        (b"a".to_vec(), Some(b"2".to_vec())),
        (b"a\0b".to_vec(), Some(b"x".to_vec())),
        (b"a\0c".to_vec(), None),
        (b"a".to_vec(), Some(Vec::new())),
    ];
    c.produce(&records);
    let relay = spawn_relay(&c.config, None);
    let lines = c.wait_jsonl(2);
    assert_eq!(lines.len(), 2, "{}", relay.key_log_lines());
    assert_eq!(
        lines[0]["headers"],
        serde_json::json!([
            {"key": "a", "value": "1"},
            {"key": "a", "value": "2"},
            {"key": "a\u{0}b", "value": "x"},
            {"key": "a\u{0}c", "value": null},
            {"key": "a", "value": ""},
        ])
    );
    assert_eq!(lines[1]["headers"], serde_json::json!([]));
    stop(relay);
}

/// The records of the text tests: offsets 0..=5 of partition 0; 2 and 3 hold line breaks.
fn text_records() -> Vec<RawRecord> {
    let v = |s: &[u8]| RawRecord {
        partition: 0,
        key: None,
        value: Some(s.to_vec()),
        headers: Vec::new(),
    };
    let mut tombstone = v(b"");
    tombstone.value = None;
    vec![
        v(b"zero"),
        v(b"one"),
        v(b"two\nlines"),
        v(b"crlf\r\nline"),
        tombstone,
        v(b""),
        v(b"six"),
    ]
}

/// Regression: in `text`, a record holding `\n` or `\r\n` became two lines (Spark read two
/// records), undocumented. The default (`fail`) now delivers what came before and halts the
/// partition at the first such record, loudly, like an oversized record.
#[test]
fn text_line_break_under_fail_halts_after_delivering_what_came_before() {
    let c = Case::new("text-fail", "text", "", "");
    c.produce(&text_records());
    c.produce(&[RawRecord {
        partition: 1,
        value: Some(b"p1".to_vec()),
        ..Default::default()
    }]);
    let relay = spawn_relay(&c.config, None);
    let needle = format!("partition {}/0 halted at offset 2", c.cfg.topic);
    let health = c.health(&needle);
    assert!(health.contains("\"status\":\"down\""), "{health}");
    assert!(
        health.contains("text_newline_policy = \\\"dead_letter\\\""),
        "{health}"
    );
    let text = c.wait_text(b"zero\none\np1\n".len());
    assert_eq!(text.get(&0).map(Vec::as_slice), Some(&b"zero\none\n"[..]));
    assert_eq!(text.get(&1).map(Vec::as_slice), Some(&b"p1\n"[..]));
    assert_eq!(error_lines(&relay, "offset=2").len(), 1);
    stop(relay);
}

/// `text_newline_policy = "dead_letter"`: records with line breaks go to the dead-letter
/// directory whole; every other record is one line. A tombstone and an empty value are both an
/// empty line (text cannot tell them apart), and tombstones are counted.
#[test]
fn text_line_break_under_dead_letter_diverts_the_record() {
    let mut c = Case::new("text-dl", "text", "", "");
    c.cfg.extra_hdfs.push_str(&format!(
        "text_newline_policy = \"dead_letter\"\ndead_letter_dir = \"{}\"\n",
        c.dead_dir()
    ));
    c.write();
    c.produce(&text_records());
    let relay = spawn_relay(&c.config, None);
    let text = c.wait_text(b"zero\none\n\n\nsix\n".len());
    assert_eq!(
        text.get(&0).map(Vec::as_slice),
        Some(&b"zero\none\n\n\nsix\n"[..]),
        "{}",
        relay.key_log_lines()
    );
    let letters = c.dead_letters();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let values: Vec<String> = letters
        .iter()
        .map(|(_, b)| {
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            v["value"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(values, ["two\nlines", "crlf\r\nline"]);
    let metrics = c.metrics();
    assert!(
        metrics.contains("reason=\"text_line_break\"")
            && metrics.contains("action=\"dead_letter\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("flumen_text_tombstone_records_total 1"),
        "{metrics}"
    );
    stop(relay);
}

/// `text_newline_policy = "raw"`: Flume's own behaviour (the bytes as they are, so one record
/// may read as two lines), each such record counted and warned about.
#[test]
fn text_line_break_under_raw_is_written_as_is_and_counted() {
    let mut c = Case::new("text-raw", "text", "", "");
    c.cfg.extra_hdfs.push_str("text_newline_policy = \"raw\"\n");
    c.write();
    c.produce(&text_records());
    let relay = spawn_relay(&c.config, None);
    let want = b"zero\none\ntwo\nlines\ncrlf\r\nline\n\n\nsix\n";
    let text = c.wait_text(want.len());
    assert_eq!(text.get(&0).map(Vec::as_slice), Some(&want[..]));
    let metrics = c.metrics();
    assert!(
        metrics.contains("reason=\"text_line_break\"") && metrics.contains("action=\"raw\"} 2"),
        "{metrics}"
    );
    assert!(
        relay.log_text().contains("written as is"),
        "{}",
        relay.key_log_lines()
    );
    stop(relay);
}
