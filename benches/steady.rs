//! Steady-rate harness (issue 9): latency from produce to visible in a final file, per-file
//! commit latency, and how many partitions one instance keeps up with. Needs the testbed:
//!
//! ```sh
//! eval "$(scripts/testbed up)"
//! cargo bench --bench steady                      # 2,000 ev/s, 3 partitions, 10 s rolls, 60 s
//! FLUMEN_BENCH_PARTITIONS=1000 FLUMEN_BENCH_RATE=20000 FLUMEN_BENCH_ROLL_INTERVAL_S=60 \
//!   FLUMEN_BENCH_SECONDS=180 cargo bench --bench steady
//! FLUMEN_BENCH_BIN=/tmp/flumen-base cargo bench --bench steady  # another flumen build
//! ```
//!
//! It starts the release `flumen run` on a fresh topic, waits until every partition is
//! reconciled, then produces at a fixed rate; each value carries its produce time. When
//! producing ends it waits for HDFS to hold every offset, then reads the final files. An event's
//! latency is the time its file's "committed HDFS file" line was logged (right after the rename
//! that makes it visible) minus its produce time. It prints latency percentiles, per-file
//! commit latency (roll decision to final name), files/s, the lag when producing ended, CPU,
//! peak RSS and the load average.

#[allow(dead_code)] // shared with the other benches
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::env_or;
use flumen::commit::Ledger;
use flumen::hdfs::NativeHdfs;
use flumen::wal::TopicPartition;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

struct Params {
    rate: u64,
    seconds: u64,
    partitions: i32,
    roll_interval_s: u64,
    /// Read at most this many final files for event latencies (evenly spread).
    files_read_max: usize,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn config_text(
    bootstrap: &str,
    hdfs: &str,
    topic: &str,
    work: &Path,
    p: &Params,
    port: u16,
) -> String {
    format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "steady-{topic}"
batch_records_max = 10000
batch_duration_ms = 100
[kafka.properties]
"fetch.wait.max.ms" = "100"
[channel]
dir = "{channel}"
[hdfs]
url = "{hdfs}"
path = "/flumen-bench/steady/{topic}"
file_prefix = "steady"
format = "text"
roll_records_max = 0
roll_bytes_max = 0
roll_interval_s = {interval}
[metrics]
listen = "127.0.0.1:{port}"
"#,
        channel = work.join("channel").display(),
        interval = p.roll_interval_s,
    )
}

/// Produces `rate` events/s for `seconds`, round-robin over partitions; values carry
/// `<produce ms> <seq>` padded to 100 bytes. Returns the count.
fn produce(bootstrap: &str, topic: &str, p: &Params) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("acks", "1")
        .create()
        .unwrap();
    let t = Instant::now();
    let total = p.rate * p.seconds;
    let mut sent = 0u64;
    while sent < total {
        let due = (t.elapsed().as_secs_f64() * p.rate as f64) as u64;
        while sent < due.min(total) {
            let mut v = format!("{} {}", now_ms(), sent).into_bytes();
            v.resize(100, b'.');
            let part = (sent % p.partitions as u64) as i32;
            let rec = BaseRecord::<(), _>::to(topic).partition(part).payload(&v);
            if producer.send(rec).is_err() {
                producer.poll(Duration::from_millis(1));
                continue;
            }
            sent += 1;
        }
        producer.poll(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    sent
}

/// (visible ms, path, commit latency ms) of every "committed HDFS file" line of the log.
fn commits(log: &Path) -> Vec<(i64, String, u64)> {
    let f = BufReader::new(std::fs::File::open(log).unwrap());
    let field = |l: &str, k: &str| -> Option<String> {
        let rest = &l[l.find(k)? + k.len()..];
        Some(rest.split(' ').next()?.trim_matches('"').to_string())
    };
    f.lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("committed HDFS file"))
        .filter_map(|l| {
            let ts = chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok()?;
            let path = field(&l, "path=")?;
            let lat = field(&l, "latency_ms=")?.parse().ok()?;
            Some((ts.timestamp_millis(), path, lat))
        })
        .collect()
}

fn pct(v: &mut [i64], q: f64) -> i64 {
    v.sort_unstable();
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(-1)
}

fn proc_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// "op mean_ms (count)" per HDFS operation, from flumen's `flumen_hdfs_call_seconds`.
fn hdfs_call_means(port: u16) -> String {
    use std::io::{Read, Write};
    let mut body = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let _ = s.read_to_string(&mut body);
    }
    let mut ops: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("flumen_hdfs_call_seconds_") else {
            continue;
        };
        let (Some(op), Some(v)) = (
            rest.split('"').nth(1),
            rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let e = ops.entry(op.to_string()).or_default();
        if rest.starts_with("sum") {
            e.0 = v;
        } else if rest.starts_with("count") {
            e.1 = v;
        }
    }
    ops.iter()
        .map(|(op, (sum, n))| format!("{op} {:.1} ({n})", sum / n.max(1.0) * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (bootstrap, hdfs) = (
        common::testbed_env("steady", "KAFKA_BOOTSTRAP"),
        common::testbed_env("steady", "HDFS_URL"),
    );
    let p = Params {
        rate: env_or("FLUMEN_BENCH_RATE", 2000),
        seconds: env_or("FLUMEN_BENCH_SECONDS", 60),
        partitions: env_or("FLUMEN_BENCH_PARTITIONS", 3),
        roll_interval_s: env_or("FLUMEN_BENCH_ROLL_INTERVAL_S", 10),
        files_read_max: env_or("FLUMEN_BENCH_FILES_READ_MAX", 400),
    };
    let topic = format!("steady-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let testbed = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed");
    let parts = p.partitions.to_string();
    let ok = Command::new(testbed)
        .args(["topic-create", &topic, &parts, "1"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "topic-create failed");
    let work = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = work.path().join("steady.toml");
    std::fs::write(
        &cfg,
        config_text(&bootstrap, &hdfs, &topic, work.path(), &p, port),
    )
    .unwrap();
    let log = work.path().join("flumen.log");
    let mut child = Command::new(common::flumen_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn,flumen::events=info")
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let config = flumen::config::Settings::load(&cfg).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, ledger) = common::ledger(&hdfs, &config);
    let tps: Vec<TopicPartition> = (0..p.partitions)
        .map(|i| TopicPartition::new(&topic, i))
        .collect();
    let ends = |ledger: &Ledger<NativeHdfs>| -> Vec<i64> {
        rt.block_on(async {
            let mut v = Vec::new();
            for tp in &tps {
                v.push(
                    ledger
                        .committed_end(tp)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(i64::MIN),
                );
            }
            v
        })
    };
    // Ready: every partition has its genesis (reconciled), so producing starts on a warm relay.
    let t = Instant::now();
    while ends(&ledger).contains(&i64::MIN) {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "partitions not reconciled in 300 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (load0, cpu0) = (
        common::loadavg(),
        common::process_cpu_s(child.id() as i32).unwrap_or(0.0),
    );
    let t = Instant::now();
    let n = produce(&bootstrap, &topic, &p);
    let produce_s = t.elapsed().as_secs_f64();
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let highs: Vec<i64> = (0..p.partitions)
        .map(|i| {
            probe
                .fetch_watermarks(&topic, i, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    let lag_at_end: i64 = ends(&ledger)
        .iter()
        .zip(&highs)
        .map(|(e, h)| h - 1 - e)
        .sum();
    let t = Instant::now();
    while ends(&ledger).iter().zip(&highs).any(|(e, h)| *e < h - 1) {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "HDFS did not catch up in 600 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let catch_up_s = t.elapsed().as_secs_f64();
    let (cpu, rss_kib, load1) = (
        common::process_cpu_s(child.id() as i32).unwrap_or(0.0) - cpu0,
        proc_field(child.id(), "VmHWM:"),
        common::loadavg(),
    );
    let hdfs_calls = hdfs_call_means(port);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();

    let commits = commits(&log);
    let mut file_lat: Vec<i64> = commits.iter().map(|c| c.2 as i64).collect();
    let step = (commits.len() / p.files_read_max.max(1)).max(1);
    let mut ev_lat = Vec::new();
    rt.block_on(async {
        for (visible, path, _) in commits.iter().step_by(step) {
            let Ok(mut r) = client.read(path).await else {
                continue;
            };
            let bytes = r.read_bytes(r.file_length()).await.unwrap();
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let produced: Option<i64> = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.split(' ').next()?.parse().ok());
                if let Some(t0) = produced {
                    ev_lat.push(visible - t0);
                }
            }
        }
    });
    // What the run wrote goes (at 250k ev/s for 30 s, 860 MB): repeated runs fill the disk.
    let dir = config.hdfs.path.static_prefix();
    if let Err(e) = rt.block_on(client.delete(&dir, true)) {
        eprintln!("could not delete {dir} from HDFS: {e}");
    }
    let files_per_s = commits.len() as f64 / (produce_s + catch_up_s);
    println!("\nsteady: {n} events at {} ev/s over {} partitions, roll_interval_s = {}, {produce_s:.0} s", p.rate, p.partitions, p.roll_interval_s);
    println!("load average: {load0} at start, {load1} at end");
    let events_read = ev_lat.len();
    println!(
        "event produced -> visible (ms, {events_read} events from every {step}th file): p50 {} p90 {} p99 {} max {}",
        pct(&mut ev_lat, 0.5), pct(&mut ev_lat, 0.9), pct(&mut ev_lat, 0.99), pct(&mut ev_lat, 1.0)
    );
    println!(
        "per-file commit, roll decision -> final name (ms, {} files): p50 {} p90 {} p99 {} max {}",
        file_lat.len(),
        pct(&mut file_lat, 0.5),
        pct(&mut file_lat, 0.9),
        pct(&mut file_lat, 0.99),
        pct(&mut file_lat, 1.0)
    );
    println!("files committed: {} ({files_per_s:.1}/s); lag when producing ended: {lag_at_end} records; caught up {catch_up_s:.1} s later", commits.len());
    println!("HDFS calls (mean ms, count): {hdfs_calls}");
    println!(
        "flumen CPU {:.1} s ({:.2} s per M events), peak RSS {} MiB",
        cpu,
        cpu / (n as f64 / 1e6),
        rss_kib / 1024
    );
}
