//! `format = "parquet"` against the real Kafka and HDFS (issue 13): a round trip written by
//! `flumen run` under a Hive-style path and read back by the parquet crate, pyarrow and
//! Spark (partition discovery included), every envelope field checked; values that misfit
//! the value schema in the dead-letter directory; exactly-once under kill -9 and at the
//! commit protocol's crash sites. Needs `--features failpoints`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::{assert_exactly_once, spawn_relay, testbed, Landed, RawRecord};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use rdkafka::producer::{BaseRecord, Producer};

const LIMIT: Duration = Duration::from_secs(180);

/// Turns a jsonl relay config into a Parquet one (snappy), with `tables` (TOML tables such
/// as `[hdfs.parquet]`) appended.
fn parquet_config(config: &Path, tables: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let text = text.replace(
        "format = \"jsonl\"",
        "format = \"parquet\"\ncompression = \"snappy\"",
    );
    std::fs::write(config, format!("{text}\n{tables}")).unwrap();
}

/// Rows of every final file under `dir`, as (file, partition, offset, value); every final
/// file must be valid Parquet (a file is final only once closed, footer written).
fn parquet_rows(dir: &str) -> Vec<(String, i32, i64, Option<Vec<u8>>)> {
    let client = common::hdfs(testbed());
    let files = common::runtime().block_on(common::read_final_files(&client, dir));
    let mut out = Vec::new();
    for (path, bytes) in files {
        assert!(path.ends_with(".parquet"), "{path}");
        let reader = SerializedFileReader::new(Bytes::from(bytes))
            .unwrap_or_else(|e| panic!("{path} is not valid Parquet: {e}"));
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            let mut partition = None;
            let mut offset = None;
            let mut value = None;
            for (name, f) in row.get_column_iter() {
                match (name.as_str(), f) {
                    ("partition", Field::Int(p)) => partition = Some(*p),
                    ("offset", Field::Long(o)) => offset = Some(*o),
                    ("value", Field::Bytes(b)) => value = Some(b.data().to_vec()),
                    _ => {}
                }
            }
            out.push((path.clone(), partition.unwrap(), offset.unwrap(), value));
        }
    }
    out
}

/// Events (`{"id":N}` values) landed under `dir`, for `assert_exactly_once`.
fn landed(dir: &str) -> Vec<Landed> {
    to_landed(parquet_rows(dir))
}

fn to_landed(rows: Vec<(String, i32, i64, Option<Vec<u8>>)>) -> Vec<Landed> {
    rows.into_iter()
        .map(|(file, partition, offset, value)| {
            let v: serde_json::Value = serde_json::from_slice(&value.expect("a value")).unwrap();
            Landed {
                file,
                partition,
                offset,
                id: v["id"].as_u64().expect("id"),
            }
        })
        .collect()
}

fn wait_rows(dir: &str, n: usize) -> Vec<(String, i32, i64, Option<Vec<u8>>)> {
    let t = Instant::now();
    loop {
        let rows = parquet_rows(dir);
        if rows.len() >= n || t.elapsed() > LIMIT {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_landed(dir: &str, n: usize) -> Vec<Landed> {
    to_landed(wait_rows(dir, n))
}

fn b64(b: &Option<Vec<u8>>) -> serde_json::Value {
    match b {
        Some(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        None => serde_json::Value::Null,
    }
}

/// The records of the round trip: every envelope corner, two values that misfit the schema.
fn round_trip_records() -> (Vec<RawRecord>, Vec<usize>) {
    let event = |p: i32, i: u64| RawRecord {
        partition: p,
        key: Some(format!("cell-{i}").into_bytes()),
        value: Some(
            format!(
                r#"{{"id":{i},"region":"r{}","lat":{}.5,"extra":[1]}}"#,
                i % 3,
                i
            )
            .into_bytes(),
        ),
        headers: Vec::new(),
    };
    let mut rs = vec![
        RawRecord {
            key: Some(vec![0x00, 0xff, 0xc3, 0x28]),
            headers: vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"a".to_vec(), Some(b"2".to_vec())),
                (vec![0xff, 0x28], None),
                (b"".to_vec(), Some(vec![0xfe, 0x00])),
            ],
            ..event(0, 0)
        },
        RawRecord {
            key: None,
            ..event(0, 1)
        },
        // A tombstone: kept, typed columns null.
        RawRecord {
            value: None,
            ..event(0, 2)
        },
        // Misfits: not JSON, and a field of the wrong type.
        RawRecord {
            value: Some(vec![0xff, b'{']),
            ..event(0, 3)
        },
        RawRecord {
            value: Some(br#"{"id":"four","region":"r1"}"#.to_vec()),
            ..event(0, 4)
        },
        // A nullable field missing, another null.
        RawRecord {
            value: Some(br#"{"id":5,"region":"r2","ok":null}"#.to_vec()),
            ..event(0, 5)
        },
    ];
    rs.extend((6..40).map(|i| event(0, i)));
    rs.extend((100..130).map(|i| event(1, i)));
    (rs, vec![3, 4])
}

/// The expected row of a produced record, as `parquet_read.py` prints it (partition and
/// offset come from production order: one record at a time per partition).
fn expected_rows(
    topic: &str,
    rs: &[RawRecord],
    misfits: &[usize],
) -> BTreeMap<(i32, i64), serde_json::Value> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (i, r) in rs.iter().enumerate() {
        let offset = *next.entry(r.partition).and_modify(|o| *o += 1).or_insert(0);
        if misfits.contains(&i) {
            continue;
        }
        let headers: Vec<serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| serde_json::json!([b64(&Some(k.clone())), b64(v)]))
            .collect();
        let json: Option<serde_json::Value> =
            r.value.as_ref().map(|v| serde_json::from_slice(v).unwrap());
        let field = |name: &str| {
            json.as_ref()
                .map_or(serde_json::Value::Null, |j| j[name].clone())
        };
        out.insert(
            (r.partition, offset),
            serde_json::json!({
                "topic": topic, "partition": r.partition, "offset": offset,
                "key": b64(&r.key), "value": b64(&r.value), "headers": headers,
                "id": field("id"), "region": field("region"), "lat": field("lat"), "ok": field("ok"),
            }),
        );
    }
    out
}

/// Copies the final files under `root` to `local`, keeping their relative paths.
fn copy_final_files(root: &str, local: &Path) -> Vec<String> {
    let client = common::hdfs(testbed());
    let files = common::runtime().block_on(common::read_final_files(&client, root));
    let mut rels = Vec::new();
    for (path, bytes) in files {
        let rel = path.strip_prefix(root).unwrap().trim_start_matches('/');
        let to = local.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, bytes).unwrap();
        rels.push(rel.to_string());
    }
    rels
}

/// Runs `parquet_read.py` with the analytics venv's python (pyarrow and pyspark).
fn python_read(local: &Path) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let setup = std::process::Command::new(root.join("analytics/setup.sh"))
        .output()
        .expect("analytics/setup.sh");
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8(setup.stdout).unwrap();
    let python = python
        .lines()
        .last()
        .expect("setup.sh prints the python")
        .trim();
    let out = std::process::Command::new(python)
        .arg(root.join("tests/parquet_read.py"))
        .arg(local)
        .output()
        .expect("run parquet_read.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "parquet_read.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).expect("one JSON line")
}

/// Checks one reader's rows against what was produced; returns the rows by (partition, offset).
fn check_rows(
    reader: &str,
    rows: &[serde_json::Value],
    want: &BTreeMap<(i32, i64), serde_json::Value>,
) -> BTreeMap<(i32, i64), serde_json::Value> {
    let mut got = BTreeMap::new();
    for r in rows {
        let k = (
            r["partition"].as_i64().unwrap() as i32,
            r["offset"].as_i64().unwrap(),
        );
        assert!(got.insert(k, r.clone()).is_none(), "{reader}: {k:?} twice");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{reader}: the rows"
    );
    for (k, w) in want {
        let g = &got[k];
        for field in [
            "topic", "key", "value", "headers", "id", "region", "lat", "ok",
        ] {
            assert_eq!(g[field], w[field], "{reader}: {k:?} field {field}");
        }
        assert!(
            g["timestamp_ms"]
                .as_i64()
                .is_some_and(|t| t > 1_600_000_000_000),
            "{reader}: {g}"
        );
    }
    got
}

#[test]
fn round_trip_read_by_pyarrow_and_spark_with_hive_partitions_and_misfits_dead_lettered() {
    let mut c = common::Case::new("pq-rt");
    let metrics = c.with_metrics();
    let root = format!("/flumen-tests/{}/out", c.cfg.topic);
    let dead = format!("/flumen-tests/{}/dead", c.cfg.topic);
    c.cfg.hdfs_path = format!("{root}/dt=%Y-%m-%d/hr=%H");
    c.cfg
        .extra_hdfs
        .push_str(&format!("dead_letter_dir = \"{dead}\"\n"));
    c.rewrite();
    parquet_config(
        &c.config,
        "[hdfs.parquet]\nvalue_schema = \"id long, region string, lat double nullable, ok boolean nullable\"\n",
    );
    let (records, misfits) = round_trip_records();
    common::produce_raw(testbed(), &c.cfg.topic, &records, &[]);
    let relay = spawn_relay(&c.config, None);
    let want = expected_rows(&c.cfg.topic, &records, &misfits);
    let rows = wait_rows(&root, want.len());
    assert_eq!(rows.len(), want.len(), "{}", relay.key_log_lines());
    for (file, ..) in &rows {
        let rel = file.strip_prefix(&root).unwrap();
        assert!(rel.starts_with("/dt=") && rel.contains("/hr="), "{rel}");
    }

    // The dead letters: both misfits, whole, with why.
    let client = common::hdfs(testbed());
    let letters = common::runtime().block_on(common::read_final_files(&client, &dead));
    assert_eq!(letters.len(), 2, "{letters:?}");
    for ((_, body), i) in letters.iter().zip(&misfits) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["offset"], *i as i64);
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains("hdfs.parquet.value_schema"),
            "{v}"
        );
        assert!(v["detail"].as_str().is_some(), "{v}");
    }
    let body = common::http_get(&metrics, "/metrics").expect("/metrics");
    assert!(
        body.lines()
            .any(|l| l.starts_with("flumen_poison_records_total")
                && l.contains("value_schema_misfit")
                && l.ends_with(" 2")),
        "{body}"
    );

    let local = common::workdir();
    let rels = copy_final_files(&root, local.path());
    assert!(!rels.is_empty());
    let read = python_read(local.path());
    let arrow = check_rows("pyarrow", read["pyarrow"].as_array().unwrap(), &want);
    let spark = check_rows("spark", read["spark"].as_array().unwrap(), &want);
    // Spark discovered the Hive-style partitions as columns, matching each row's timestamp.
    let columns: Vec<&str> = read["spark_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(columns.ends_with(&["dt", "hr"]), "{columns:?}");
    for (k, r) in &spark {
        let ts = arrow[k]["timestamp_ms"].as_i64().unwrap();
        assert_eq!(r["timestamp_ms"].as_i64(), Some(ts), "{k:?}");
        let t = chrono::DateTime::from_timestamp_millis(ts).unwrap();
        assert_eq!(r["dt"], t.format("%Y-%m-%d").to_string(), "{k:?}");
        assert_eq!(
            r["hr"].as_i64(),
            Some(t.format("%H").to_string().parse().unwrap())
        );
    }
    drop(relay);
}

#[test]
fn kill9_loop_loses_and_duplicates_nothing_in_parquet() {
    let c = common::Case::new("pq-kill");
    parquet_config(&c.config, "");
    let p = common::producer(testbed());
    let (_relay, n) = common::kill9_cycles(&p, &c.cfg.topic, &c.config, 5);
    assert_exactly_once(&wait_landed(&c.cfg.hdfs_path, n as usize), n);
}

/// As tests/failpoints.rs: the first relay dies at `site` on its second hit, the second runs
/// clean and every event lands exactly once, in valid Parquet files.
fn crash_at(site: &str) {
    let tb = testbed();
    let c = common::Case::new(&format!("pq-fp-{site}"));
    parquet_config(&c.config, "");
    let p = common::producer(tb);
    let _second = common::crash_at_then_run_clean(&p, &c.cfg.topic, &c.config, site);
    assert_exactly_once(&wait_landed(&c.cfg.hdfs_path, 3000), 3000);
}

#[test]
fn crash_mid_write_parquet() {
    crash_at("sink-mid-write");
}

#[test]
fn crash_after_close_before_claim_parquet() {
    crash_at("commit-before-claim");
}

#[test]
fn crash_after_claim_before_rename_parquet() {
    crash_at("commit-before-rename");
}

#[test]
fn crash_after_rename_before_offset_commit_parquet() {
    crash_at("commit-after-rename");
}

/// The open files' row groups together stay within `hdfs.parquet.buffers_bytes_max`: with a
/// budget of one small row group and a roll interval far away, the largest file rolls early
/// (files land long before the interval), and nothing is lost or doubled by it.
#[test]
fn row_groups_above_the_sink_budget_roll_the_largest_file_early() {
    let mut c = common::Case::new("pq-budget");
    c.cfg.extra_hdfs = "roll_records_max = 0\nroll_bytes_max = 0\nroll_interval_s = 600\n".into();
    c.rewrite();
    parquet_config(
        &c.config,
        "[hdfs.parquet]\nrow_group_bytes_max = 65536\nbuffers_bytes_max = 65536\n",
    );
    let p = common::producer(testbed());
    common::produce(&p, &c.cfg.topic, 0, 3000);
    let mut relay = spawn_relay(&c.config, None);
    // 3000 rows of ~260 buffered bytes are ~12 budgets. How many files roll early depends on
    // how the partitions' batches interleave in the channel (a row group is cut at the budget,
    // so one partition alone never exceeds it): a fast source once put each partition's
    // 1,000 records in a row and only 1,000 landed early. Any file landing is early: the roll
    // interval is 10 minutes away and the counts are off.
    let early = wait_landed(&c.cfg.hdfs_path, 1);
    assert!(
        !early.is_empty(),
        "nothing landed before the stop\n{}",
        relay.key_log_lines()
    );
    assert!(
        relay.log_text().contains("rolling early"),
        "{}",
        relay.key_log_lines()
    );
    // The rest is committed by the graceful stop.
    relay.stop_gracefully(Duration::from_secs(60));
    assert_exactly_once(&landed(&c.cfg.hdfs_path), 3000);
}

/// Produces `n` records to partition 0 of `topic`, each a JSON value with ~1,000 bytes of
/// pseudo-random hex, which neither snappy nor a dictionary shrinks: a row group is about as
/// large encoded as raw.
fn produce_incompressible(topic: &str, n: u64) {
    let p = common::producer(testbed());
    for id in 0..n {
        let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let pad: String = (0..61)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect();
        let value = format!(r#"{{"id":{id},"pad":"{pad}"}}"#);
        common::send(
            &p,
            BaseRecord::<str, str>::to(topic)
                .partition(0)
                .payload(&value),
        );
    }
    p.flush(Duration::from_secs(60)).expect("flush producer");
}

/// Regression: a Parquet row group larger than a writer's window (1 MiB unacknowledged) went to
/// hdfs-native as one chunk, whose tail waited in a packet not yet full; the file's next write
/// then waited out its whole 10 s patience, and /health said HDFS was unreachable, once per row
/// group (the formats bench's Parquet rows took 41 s against 11 for text). A chunk now goes in
/// pieces of half the window. Row groups of ~2 MB, three to a file, two files: no write waits
/// out its patience, and nothing is lost or doubled.
#[test]
fn row_groups_larger_than_the_write_window_never_stall_the_next_write() {
    let mut c = common::Case::new("pq-big-rg");
    c.cfg.extra_hdfs =
        "roll_records_max = 6000\nroll_bytes_max = 0\nroll_interval_s = 600\n".into();
    let metrics = c.with_metrics();
    parquet_config(&c.config, "[hdfs.parquet]\nrow_group_bytes_max = 2097152\n");
    produce_incompressible(&c.cfg.topic, 12_000);
    let relay = spawn_relay(&c.config, None);
    let landed = wait_landed(&c.cfg.hdfs_path, 12_000);
    assert_exactly_once(&landed, 12_000);
    let files: std::collections::BTreeSet<_> = landed.iter().map(|l| &l.file).collect();
    assert_eq!(files.len(), 2, "two files of 6,000 records: {files:?}");
    let body = common::http_get(&metrics, "/metrics").expect("metrics");
    let expired = common::metric_value(&body, "flumen_hdfs_write_window_expired_total");
    assert_eq!(
        expired.unwrap_or(0.0),
        0.0,
        "writes waited out their patience\n{}",
        relay.key_log_lines()
    );
    assert!(
        !relay.log_text().contains("has not answered"),
        "{}",
        relay.key_log_lines()
    );
}
