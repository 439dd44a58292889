//! Operator tools against the real testbed: Flume import, offsets, replay, wal check, metrics.

mod common;

use std::time::Duration;

use common::{assert_exactly_once, spawn_relay, testbed};

#[test]
fn seed_flume_config_converts_checks_and_relays() {
    let tb = testbed();
    let topic = common::unique("seed");
    common::create_topic(tb, &topic, 3);
    let work = common::workdir();
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/seed-flume.properties"
    );
    let chan = work.path().join("channel");
    let out = common::flumen(&[
        "import-flume",
        seed,
        "--agent",
        "flume1",
        "--bootstrap-servers",
        &tb.kafka,
        "--hdfs-url",
        &tb.hdfs_url,
        "--channel-dir",
        chan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no ZooKeeper"), "{stderr}");
    // Point the converted config at a topic and directory of this test's own.
    let hdfs_path = format!("/flumen-tests/{topic}/seed");
    let toml = String::from_utf8(out.stdout)
        .unwrap()
        .replace(
            "topics = [\"flume.txn\"]",
            &format!("topics = [\"{topic}\"]"),
        )
        .replace("/user/edureka_960126/flume_kafka", &hdfs_path)
        .replace("roll_interval_s = 30", "roll_interval_s = 2")
        // The converted [metrics] section takes the default address; tests run side by side.
        .replace("listen = \"127.0.0.1:9464\"", "listen = \"\"");
    let config = work.path().join("seed.toml");
    std::fs::write(&config, toml).unwrap();
    let check = common::flumen(&["check", "--config", config.to_str().unwrap()]);
    assert!(check.status.success(), "{}", common::output_text(&check));
    let p = common::producer(tb);
    common::produce(&p, &topic, 0, 1000);
    let _relay = spawn_relay(&config, None);
    let client = common::hdfs(tb);
    // The seed writes text (the event bytes): read them back as lines.
    let rt = common::runtime();
    let t = std::time::Instant::now();
    let mut ids = Vec::new();
    while t.elapsed() < Duration::from_secs(120) {
        ids = rt.block_on(read_text_ids(&client, &hdfs_path));
        if ids.len() >= 1000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..1000).collect::<Vec<u64>>(), "every event once");
}

async fn read_text_ids(client: &hdfs_native::Client, dir: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    let Ok(list) = client.list_status(dir, false).await else {
        return ids;
    };
    for st in list
        .iter()
        .filter(|s| !s.isdir && s.path.contains("test-events+"))
    {
        let r = client.read(&st.path).await.unwrap();
        let bytes = r.read_range(0, r.file_length()).await.unwrap();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(v["id"].as_u64().unwrap());
        }
    }
    ids
}

#[test]
fn offsets_match_the_brokers_view_and_survive_kafka_down() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let tb = testbed();
    let common::Case { cfg, config, work } = common::Case::new("offsets");
    let topic = cfg.topic.clone();
    let p = common::producer(tb);
    common::produce(&p, &topic, 0, 1200);
    let mut relay = spawn_relay(&config, None);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &cfg.hdfs_path, 1200, Duration::from_secs(120));
    assert_exactly_once(&landed, 1200);
    relay.signal(libc::SIGTERM);
    assert!(relay
        .wait_for(Duration::from_secs(30))
        .is_some_and(|s| s.success()));

    let out = common::flumen(&["offsets", "--config", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{}", common::output_text(&out));
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &tb.kafka)
        .set("group.id", &cfg.group)
        .create()
        .unwrap();
    for r in &rows {
        let part = r["partition"].as_i64().unwrap() as i32;
        let (lo, hi) = consumer
            .fetch_watermarks(&topic, part, Duration::from_secs(10))
            .unwrap();
        assert_eq!(r["kafka_log_start"], lo, "{r}");
        assert_eq!(r["kafka_log_end"], hi, "{r}");
        let max_landed = landed
            .iter()
            .filter(|l| l.partition == part)
            .map(|l| l.offset)
            .max()
            .unwrap();
        assert_eq!(r["hdfs_last_committed"], max_landed, "{r}");
        assert_eq!(r["lag_hdfs"], 0, "{r}");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(&topic, part);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        let c = committed.elements()[0].offset().to_raw().unwrap();
        assert_eq!(r["group_committed"], c, "{r}");
    }
    // Kafka unreachable: what is known is shown, the rest is marked unknown.
    let mut down = cfg.clone();
    down.channel = cfg.channel.clone();
    let down_path = work.path().join("down.toml");
    down.write(tb, &down_path);
    let body = std::fs::read_to_string(&down_path)
        .unwrap()
        .replace(&tb.kafka, "127.0.0.1:1");
    std::fs::write(&down_path, body).unwrap();
    let out = common::flumen(&["offsets", "--config", down_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("unknown: kafka"), "{table}");
    assert!(
        table.contains(&format!(
            "{}",
            landed.iter().map(|l| l.offset).max().unwrap()
        )),
        "{table}"
    );
}

#[test]
fn replay_delivers_a_dead_collectors_channel_once_without_kafka() {
    let tb = testbed();
    let common::Case { cfg, config, work } = common::Case::new("replay");
    let topic = cfg.topic.clone();
    let p = common::producer(tb);
    common::produce(&p, &topic, 0, 1500);
    // The collector dies right after its first channel append: data only in the channel.
    let mut dead = spawn_relay(&config, Some("wal-after-append=return"));
    assert!(dead
        .wait_for(Duration::from_secs(60))
        .is_some_and(|s| !s.success()));
    let mut in_channel = Vec::new();
    flumen::tools::dump(&cfg.channel, &Default::default(), &mut in_channel).unwrap();
    let pending = String::from_utf8(in_channel).unwrap().lines().count();
    assert!(pending > 0, "the channel must hold undelivered records");

    // Replay with Kafka unreachable: only the channel and HDFS are needed.
    let offline = work.path().join("offline.toml");
    let body = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&tb.kafka, "127.0.0.1:1");
    std::fs::write(&offline, body).unwrap();
    let dry = common::flumen(&["replay", "--config", offline.to_str().unwrap(), "--dry-run"]);
    assert!(
        dry.status.success() && String::from_utf8_lossy(&dry.stdout).contains("would write"),
        "{}",
        common::output_text(&dry)
    );
    let client = common::hdfs(tb);
    let rt = common::runtime();
    assert!(
        rt.block_on(common::read_landed(&client, &cfg.hdfs_path))
            .is_empty(),
        "dry run wrote nothing"
    );
    for _ in 0..2 {
        let out = common::flumen(&["replay", "--config", offline.to_str().unwrap()]);
        assert!(out.status.success(), "{}", common::output_text(&out));
        let landed = rt.block_on(common::read_landed(&client, &cfg.hdfs_path));
        assert_eq!(
            landed.len(),
            pending,
            "replay delivers exactly the channel, twice or not"
        );
    }
    // Then the relay resumes from what replay committed and finishes the stream.
    let _relay = spawn_relay(&config, None);
    let landed = common::wait_landed(&client, &cfg.hdfs_path, 1500, Duration::from_secs(120));
    assert_exactly_once(&landed, 1500);
}

#[test]
fn wal_check_reports_every_planted_corruption() {
    use flumen::wal::{Batch, EncodedBatch, Record, Wal, WalOptions};
    let dir = common::workdir();
    {
        let mut wal = Wal::open(WalOptions {
            dir: dir.path().to_path_buf(),
            segment_bytes_max: 1 << 20,
            group_commit_bytes_max: 1 << 20,
            segment_version: flumen::wal::log::SEGMENT_VERSION,
        })
        .unwrap();
        for i in 0..60i64 {
            let b = Batch {
                topic: "t".into(),
                partition: (i % 3) as i32,
                start_offset: (i / 3) * 100,
                last_offset: (i / 3) * 100 + 99,
                records: (0..100)
                    .map(|o| Record {
                        offset: (i / 3) * 100 + o,
                        timestamp_ms: None,
                        key: None,
                        value: Some(vec![b'v'; 500]),
                        headers: vec![],
                    })
                    .collect(),
            };
            wal.writer
                .append(&[EncodedBatch::encode(&b).unwrap()])
                .unwrap();
        }
    }
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "need several segments, got {}", segs.len());
    // Plant: a bit flip mid-frame in the first segment, a torn tail in the second.
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[5000] ^= 0x10;
    std::fs::write(&segs[0], bytes).unwrap();
    let len = std::fs::metadata(&segs[1]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[1])
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let out = common::flumen(&["wal", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    for seg in &segs[..2] {
        let id = seg.file_stem().unwrap().to_str().unwrap();
        assert!(
            report.contains(&format!("DAMAGED segment {id}")),
            "{report}"
        );
    }
    assert!(report.contains("2 damaged ranges"), "{report}");
    // And the intact data is all still dumpable.
    let dump = common::flumen(&[
        "wal",
        "dump",
        dir.path().to_str().unwrap(),
        "--partition",
        "1",
    ]);
    assert!(dump.status.success(), "{}", common::output_text(&dump));
    assert!(String::from_utf8_lossy(&dump.stdout).lines().count() >= 100);
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_with_records() {
    let tb = testbed();
    let mut case = common::Case::new("metrics");
    let addr = case.with_metrics();
    let common::Case {
        cfg,
        config,
        work: _work,
    } = case;
    let topic = cfg.topic.clone();
    let p = common::producer(tb);
    common::produce(&p, &topic, 0, 500);
    let _relay = spawn_relay(&config, None);
    let client = common::hdfs(tb);
    common::wait_landed(&client, &cfg.hdfs_path, 500, Duration::from_secs(120));
    let first = common::http_get(&addr, "/metrics").expect("metrics endpoint answers");
    let body1 = first
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    // Every sample line is `name{labels} value` with a numeric value.
    for line in body1
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "non-numeric sample {line:?}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name {name:?}"
        );
    }
    let consumed1 = metric(&body1, "flumen_records_consumed_total");
    assert!(consumed1 >= 500.0, "{body1}");
    assert!(
        metric(&body1, "flumen_files_committed_total") >= 1.0,
        "{body1}"
    );
    assert!(
        body1.contains("flumen_commit_latency_seconds_bucket"),
        "commit latency is a histogram"
    );
    assert!(body1.contains("flumen_rebalances_total"), "{body1}");
    common::produce(&p, &topic, 500, 1000);
    common::wait_landed(&client, &cfg.hdfs_path, 1000, Duration::from_secs(120));
    let body2 = common::http_get(&addr, "/metrics").unwrap();
    assert!(
        metric(&body2, "flumen_records_consumed_total") >= consumed1 + 500.0,
        "{body2}"
    );
    let health = common::http_get(&addr, "/health").unwrap();
    assert!(health.contains("\"status\":\"ready\""), "{health}");
}
