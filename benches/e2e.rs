//! End-to-end throughput harness (issue: "flumen run" benchmarks). Needs the testbed:
//!
//! ```sh
//! eval "$(scripts/testbed up)"
//! FLUMEN_BENCH_EVENTS=1000000 cargo bench --bench e2e
//! ```
//!
//! It preloads N 100-byte events into a fresh 3-partition topic, then measures side by side in
//! one run:
//! - raw consume, the ceiling: an rdkafka consumer with flumen's own source settings that
//!   discards every record;
//! - flumen to HDFS: the release `flumen run` binary, until HDFS holds every offset.
//!
//! For each: wall time, events/s, CPU seconds per million events (user+sys, from getrusage),
//! and peak RSS. Prints a table with the ratios.

#[allow(dead_code)] // shared with the other benches
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flumen::wal::TopicPartition;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!(
            "e2e bench: {name} is not set. Start the testbed first: eval \"$(scripts/testbed up)\""
        );
        std::process::exit(2)
    })
}

fn rusage(who: i32) -> (f64, u64) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(u.ru_utime) + secs(u.ru_stime),
        u.ru_maxrss as u64 / 1024,
    )
}

fn preload(bootstrap: &str, topic: &str, n: u64) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("acks", "1")
        .create()
        .unwrap();
    let mut value = [b'x'; 100];
    for i in 0..n {
        let key = format!("cell-{}", i % 1000);
        let digits = format!("{i:020}");
        value[..20].copy_from_slice(digits.as_bytes());
        while let Err((e, _)) = p.send(BaseRecord::to(topic).key(&key).payload(&value[..])) {
            assert!(
                matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ),
                "{e}"
            );
            p.poll(Duration::from_millis(5));
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(300)).unwrap();
}

fn config_text(bootstrap: &str, hdfs: &str, topic: &str, group: &str, channel: &Path) -> String {
    format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
batch_records_max = 10000
batch_duration_ms = 200
batch_bytes_max = 8388608
[kafka.properties]
"fetch.wait.max.ms" = "100"
[channel]
dir = "{channel}"
segment_bytes_max = 67108864
capacity_bytes_max = 4294967296
resume_bytes = 3221225472
disk_free_bytes_min = 268435456
[hdfs]
url = "{hdfs}"
path = "/flumen-bench/{topic}/{group}"
file_prefix = "bench"
format = "text"
roll_bytes_max = 33554432
roll_interval_s = 1
[metrics]
listen = ""
"#,
        channel = channel.display()
    )
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let bootstrap = env("KAFKA_BOOTSTRAP");
    let hdfs = env("HDFS_URL");
    let n: u64 = std::env::var("FLUMEN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let topic = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed"))
        .args(["topic-create", &topic, "3", "1"])
        .status()
        .unwrap();
    assert!(status.success(), "topic-create failed");
    let t = Instant::now();
    preload(&bootstrap, &topic, n);
    eprintln!(
        "preloaded {n} x 100-byte events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let work = tempfile::tempdir().unwrap();
    let config_path = work.path().join("bench.toml");
    std::fs::write(
        &config_path,
        config_text(
            &bootstrap,
            &hdfs,
            &topic,
            "bench-flumen",
            &work.path().join("channel"),
        ),
    )
    .unwrap();
    let config = flumen::config::Settings::load(&config_path).unwrap();

    // Raw consume with flumen's own source settings.
    let (cpu0, _) = rusage(libc::RUSAGE_SELF);
    let t = Instant::now();
    let mut cc = flumen::source::SourceOptions::from_settings(&config).client_config();
    cc.set("group.id", "bench-raw");
    // flumen sets "error" (it starts from the HDFS ledger); a plain consumer of a new group
    // must start somewhere, or every run on a fresh testbed fails with AutoOffsetReset.
    cc.set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = cc.create().unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = 0u64;
    while seen < n {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.unwrap();
            seen += 1;
        }
    }
    let raw_wall = t.elapsed().as_secs_f64();
    let (cpu1, raw_rss) = rusage(libc::RUSAGE_SELF);
    drop(consumer);

    // flumen to HDFS, until every partition's committed end reaches the log end.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_, ledger) = common::ledger(&hdfs, &config);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let ends: Vec<i64> = (0..3)
        .map(|p| {
            probe
                .fetch_watermarks(&topic, p, Duration::from_secs(10))
                .unwrap()
                .1
                - 1
        })
        .collect();
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    loop {
        let done = rt.block_on(async {
            for (p, end) in ends.iter().enumerate() {
                let tp = TopicPartition::new(&topic, p as i32);
                match ledger.committed_end(&tp).await {
                    Ok(Some(last)) if last >= *end => {}
                    _ => return false,
                }
            }
            true
        });
        if done {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "flumen did not finish in 30 min"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let flumen_wall = t.elapsed().as_secs_f64();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let (child_cpu, child_rss) = rusage(libc::RUSAGE_CHILDREN);

    // Backlog: the NameNode stops once flumen has reconciled, so every event piles up in the
    // channel. Peak RSS must not follow the backlog (the sink reads from disk; the source holds
    // one batch per partition and librdkafka's bounded prefetch).
    let backlog_dir = work.path().join("backlog");
    let backlog_cfg = work.path().join("backlog.toml");
    std::fs::write(
        &backlog_cfg,
        config_text(
            &bootstrap,
            &hdfs,
            &topic,
            "bench-backlog",
            &backlog_dir.join("channel"),
        ),
    )
    .unwrap();
    let testbed = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(["run", "--config"])
        .arg(&backlog_cfg)
        .env("RUST_LOG", "error")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A fixed wait once stopped the NameNode before reconciliation, and the run measured an
    // empty channel ("channel 0 MiB, peak RSS 10 MiB"): wait for the backlog to start.
    wait_for_channel_data(&backlog_dir.join("channel"), &mut child);
    assert!(
        Command::new(testbed)
            .arg("nn-stop")
            .status()
            .unwrap()
            .success(),
        "nn-stop"
    );
    let t = Instant::now();
    let (mut backlog_bytes, mut stable_since) = (0, Instant::now());
    while t.elapsed() < Duration::from_secs(900) {
        let now = dir_bytes(&backlog_dir.join("channel"));
        if now != backlog_bytes {
            (backlog_bytes, stable_since) = (now, Instant::now());
        } else if stable_since.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        Command::new(testbed)
            .arg("nn-start")
            .status()
            .unwrap()
            .success(),
        "nn-start"
    );

    let raw_cpu = cpu1 - cpu0;
    let m = n as f64 / 1e6;
    println!("\n{n} events of 100 bytes, 3 partitions, one run, side by side");
    println!(
        "{:<22} {:>10} {:>14} {:>16} {:>14}",
        "path", "wall s", "events/s", "CPU s / M ev", "peak RSS MiB"
    );
    println!(
        "{:<22} {:>10.2} {:>14.0} {:>16.2} {:>14}",
        "raw consume (ceiling)",
        raw_wall,
        n as f64 / raw_wall,
        raw_cpu / m,
        raw_rss
    );
    println!(
        "{:<22} {:>10.2} {:>14.0} {:>16.2} {:>14}",
        "flumen -> HDFS",
        flumen_wall,
        n as f64 / flumen_wall,
        child_cpu / m,
        child_rss
    );
    println!(
        "throughput ratio flumen/raw = {:.2}; CPU ratio = {:.2}",
        raw_wall / flumen_wall,
        child_cpu / raw_cpu.max(1e-9)
    );
    println!(
        "(raw RSS is this bench process, which also preloaded; flumen RSS is the child's peak)"
    );
    println!(
        "backlog (HDFS unreachable): channel {:.0} MiB, flumen peak RSS {} MiB",
        backlog_bytes as f64 / 1048576.0,
        hwm_kib / 1024
    );
}

/// Waits until the relay's channel holds data (it consumes only after reconciling with HDFS),
/// or fails the bench after 120 s.
fn wait_for_channel_data(channel: &std::path::Path, child: &mut std::process::Child) {
    let t = Instant::now();
    while dir_bytes(channel) < 1 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backlog relay exited before consuming"
        );
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the backlog relay consumed nothing in 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
