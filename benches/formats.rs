//! Output formats side by side (issue 13): flumen's CPU seconds per million events and the
//! bytes it leaves on HDFS for text, jsonl, jsonl+gzip, jsonl+zstd and Parquet, on the same
//! events. Needs the testbed and the analytics venv (for `analytics/gen_events.py`):
//!
//! ```sh
//! eval "$(scripts/testbed up)"
//! FLUMEN_BENCH_EVENTS=500000 cargo bench --bench formats
//! FLUMEN_BENCH_BIN=/tmp/flumen-base cargo bench --bench formats  # another flumen build
//! ```
//!
//! Preloads N telecom events (gen_events.py: JSON of ~330 bytes, keyed by cell) into a fresh
//! topic of 3 partitions, then runs the release `flumen run` once per format, each in its own
//! group, process and HDFS directory, from spawn until `/metrics` counts N records committed;
//! CPU is the process's own (`wait4`). Prints CPU s per million events, the bytes on HDFS
//! (final files only) and their ratio to text, with the load average before and after.

#[allow(dead_code)] // shared with the other benches
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// (name, `[hdfs]` lines, more tables)
const FORMATS: &[(&str, &str, &str)] = &[
    ("text", "format = \"text\"", ""),
    ("jsonl", "format = \"jsonl\"", ""),
    (
        "jsonl+gzip",
        "format = \"jsonl\"\ncompression = \"gzip\"",
        "",
    ),
    (
        "jsonl+zstd",
        "format = \"jsonl\"\ncompression = \"zstd\"",
        "",
    ),
    (
        "parquet snappy",
        "format = \"parquet\"\ncompression = \"snappy\"",
        "",
    ),
    (
        "parquet zstd",
        "format = \"parquet\"\ncompression = \"zstd\"",
        "",
    ),
    (
        "parquet snappy+schema",
        "format = \"parquet\"\ncompression = \"snappy\"\ndead_letter_dir = \"/flumen-bench/dead\"",
        "[hdfs.parquet]\nvalue_schema = \"seq long, run_id string, event_time long, \
         event_time_iso string, cell_id string, region string, subscriber string, \
         event_type string, bytes_up long, bytes_down long, setup_latency_ms double nullable\"",
    ),
];

/// The analytics venv's python (pyspark, confluent-kafka), from `analytics/setup.sh`, which
/// runs once per bench.
fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("analytics/setup.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("analytics/setup.sh");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .into()
    })
}

fn preload(bootstrap: &str, topic: &str, n: u64) {
    let admin = Command::new(python())
        .args([
            "-c",
            &format!(
                "from confluent_kafka.admin import AdminClient, NewTopic\n\
             a = AdminClient({{'bootstrap.servers': '{bootstrap}'}})\n\
             [f.result() for f in a.create_topics([NewTopic('{topic}', 3, 1)]).values()]"
            ),
        ])
        .status()
        .unwrap();
    assert!(admin.success(), "create topic");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = Command::new(python())
        .arg(root.join("analytics/gen_events.py"))
        .args([
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--count",
            &n.to_string(),
        ])
        .args(["--seed", "13", "--cells", "60"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "gen_events.py");
}

fn config(bootstrap: &str, hdfs: &str, topic: &str, i: usize, work: &Path) -> (PathBuf, String) {
    let (_, hdfs_lines, tables) = FORMATS[i];
    let port = common::free_port();
    let text = format!(
        r#"shutdown_timeout_ms = 600000
[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "formats-{i}"
batch_records_max = 10000
batch_duration_ms = 200
[channel]
dir = "{channel}"
segment_bytes_max = 67108864
capacity_bytes_max = 68719476736
resume_bytes = 64424509440
disk_free_bytes_min = 268435456
[hdfs]
url = "{hdfs}"
path = "/flumen-bench/{topic}/f{i}/dt=%Y-%m-%d/hr=%H"
file_prefix = "bench"
roll_bytes_max = 134217728
roll_interval_s = 10
{hdfs_lines}
[metrics]
listen = "127.0.0.1:{port}"
{tables}
"#,
        channel = work.join(format!("f{i}")).join("channel").display(),
    );
    let path = work.join(format!("f{i}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, format!("127.0.0.1:{port}"))
}

/// Bytes of the final files under `dir` (not `_`/`.` names), and their count.
fn hdfs_bytes(hdfs: &str, dir: &str) -> (u64, usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = common::hdfs_client(hdfs);
    let list = rt.block_on(client.list_status(dir, true)).unwrap();
    let files: Vec<_> = list
        .iter()
        .filter(|s| !s.isdir)
        .filter(|s| {
            let rel = s.path.strip_prefix(dir).unwrap_or(&s.path);
            !rel.split('/')
                .any(|c| c.starts_with('_') || c.starts_with('.'))
        })
        .collect();
    (files.iter().map(|s| s.length as u64).sum(), files.len())
}

fn main() {
    let bootstrap = common::testbed_env("formats", "KAFKA_BOOTSTRAP");
    let hdfs = common::testbed_env("formats", "HDFS_URL");
    let n: u64 = common::env_or("FLUMEN_BENCH_EVENTS", 500_000);
    let work = tempfile::tempdir().unwrap();
    let topic = format!("formats-{}", std::process::id());
    let t = Instant::now();
    preload(&bootstrap, &topic, n);
    eprintln!("preloaded {n} events in {:.0} s", t.elapsed().as_secs_f64());
    println!("load average before: {}", common::loadavg());
    println!(
        "{:<24} {:>10} {:>12} {:>14} {:>8} {:>7}",
        "format", "wall s", "CPU s/1M ev", "HDFS bytes", "vs text", "files"
    );
    let mut text_bytes = 0;
    for (i, (name, ..)) in FORMATS.iter().enumerate() {
        let (cfg, metrics) = config(&bootstrap, &hdfs, &topic, i, work.path());
        let t = Instant::now();
        let mut child = Command::new(common::flumen_bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        while common::metrics_counter(&metrics, "flumen_records_committed_total") < n as f64 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{name}: flumen exited early"
            );
            assert!(
                t.elapsed() < Duration::from_secs(1800),
                "{name}: not done in 30 min"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let wall = t.elapsed().as_secs_f64();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let cpu = common::reap(&mut child).1;
        let (bytes, files) = hdfs_bytes(&hdfs, &format!("/flumen-bench/{topic}/f{i}"));
        if i == 0 {
            text_bytes = bytes;
        }
        println!(
            "{name:<24} {wall:>10.1} {:>12.2} {bytes:>14} {:>8.3} {files:>7}",
            cpu / (n as f64 / 1e6),
            bytes as f64 / text_bytes as f64
        );
        let _ = std::fs::remove_dir_all(work.path().join(format!("f{i}")));
    }
    println!("load average after: {}", common::loadavg());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = common::hdfs_client(&hdfs);
    let _ = rt.block_on(client.delete(&format!("/flumen-bench/{topic}"), true));
    let _ = Command::new(python())
        .args([
            "-c",
            &format!(
                "from confluent_kafka.admin import AdminClient\n\
             a = AdminClient({{'bootstrap.servers': '{bootstrap}'}})\n\
             [f.result() for f in a.delete_topics(['{topic}']).values()]"
            ),
        ])
        .status();
}
