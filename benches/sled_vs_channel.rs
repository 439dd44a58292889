//! sled 0.34.7 against the channel on the workload of the design issue: "append 100 KB batches
//! and delete the old ones".
//!
//! Each engine appends ~100 KB batches (the same encoded frame bytes for both) and keeps a sliding
//! window of the last `FLUMEN_SLED_BENCH_WINDOW` (default 30, ~3 MB) batches live:
//! - sled: `insert(seq as u64 big-endian, frame)`, `remove(seq - window)`, then `flush()` after
//!   every batch, to ask for the same durability as the channel (defaults otherwise: 512 KiB
//!   segments, 1 GiB cache, 500 ms background flusher);
//! - channel: `WalWriter::append(&[batch])` (one write + one fdatasync), then
//!   `WalIndex::trim` of every whole segment whose batches are all below the window, with
//!   `segment_bytes_max` = `FLUMEN_SLED_BENCH_SEGMENT_BYTES` (default 4 MiB) so trimming happens.
//!
//! Each run is a child process (this binary re-executed with `FLUMEN_SLED_BENCH_CHILD=sled|channel`)
//! in a fresh directory, so the peak RSS (VmHWM from /proc/self/status) is per engine. It reports
//! batches/s, MB/s, the time spent inside the engine calls, disk usage of its directory
//! (allocated blocks as du counts them, at half time, at the end, and the peak of once-a-second
//! samples), files, the peak RSS of the append phase and the close time. A second child then
//! reopens the directory, as a restart would (`sled::open` / `Wal::open`, which scans every
//! segment), checks that exactly the window survived, and reports the open time and its own
//! peak RSS. By default the runs go channel, sled, sled, channel (10 s each) so that drift of
//! the shared disk hits both engines alike, with a `sync` before each run so one engine's
//! leftover writeback does not slow the next; the table shows each engine's mean, and one line
//! per run shows the spread.
//!
//! What sled's `flush()` actually does (read from the sled 0.34.7 source, as the design issue
//! says): the log buffers are written with `pwrite` and then `sync_file_range(WAIT_BEFORE |
//! WRITE | WAIT_AFTER)` on the written range (`pagecache/iobuf.rs`, the non-io_uring path on
//! Linux). `sync_file_range` writes back data pages only: it does not commit the file's
//! metadata (size, newly allocated extents) and does not flush the drive's volatile cache, so
//! after a power loss the data may be gone; the man page calls it "extremely dangerous" for
//! durability. Only the background flusher thread calls `fsync` (`sync_all`) on the main file,
//! every `flush_every_ms` (500 ms). Any log message (a page update or a rewritten node) larger
//! than a quarter segment minus its header (~128 KiB with the default 512 KiB segments), which
//! 100 KB values quickly produce, goes to a separate blob file (`pagecache/blob_io.rs:
//! write_blob`), written with `write_all` and never fsynced, nor is the `blobs/` directory.
//! The channel's append is a `write` + `fdatasync`, and a new segment is fsynced with its
//! directory.
//!
//! So sled's flush is cheaper per call than what the channel does, and this bench cannot show
//! durability differences (that needs power-cut or dm-log-writes tests). It reproduces only the
//! measurable parts: throughput, disk growth, memory (RSS) and reopen time.
//!
//! Environment: `FLUMEN_SLED_BENCH_SECS` (per run, default 10), or
//! `FLUMEN_SLED_BENCH_BATCHES` for a fixed count; `FLUMEN_SLED_BENCH_WINDOW` (30);
//! `FLUMEN_SLED_BENCH_SEGMENT_BYTES` (4 MiB); `FLUMEN_SLED_BENCH_ORDER`
//! (`channel,sled,sled,channel`; any sequence naming both);
//! `FLUMEN_BENCH_DIR` (parent of the temporary directories; default `$TMPDIR` or /tmp).
//! Without `--bench` (e.g. `cargo test --benches`) each run lasts 1 s.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flumen::wal::{Batch, EncodedBatch, Record, Wal, WalOptions, WalReader};

#[allow(dead_code)] // shared with the other benches
mod common;
use common::{env_or, filesystem_of};

const CHILD_ENV: &str = "FLUMEN_SLED_BENCH_CHILD";
const DIR_ENV: &str = "FLUMEN_SLED_BENCH_CHILD_DIR";
const REOPEN_ENV: &str = "FLUMEN_SLED_BENCH_CHILD_REOPEN";
const RECORDS_PER_BATCH: i64 = 100;
const VALUE_BYTES: usize = 1000;

#[derive(Debug, Clone)]
struct Config {
    secs: f64,
    batches: Option<u64>,
    window: u64,
    segment_bytes: u64,
}

impl Config {
    fn from_env(default_secs: f64) -> Self {
        Self {
            secs: env_or("FLUMEN_SLED_BENCH_SECS", default_secs),
            batches: std::env::var("FLUMEN_SLED_BENCH_BATCHES")
                .ok()
                .and_then(|v| v.parse().ok()),
            window: env_or("FLUMEN_SLED_BENCH_WINDOW", 30u64).max(1),
            segment_bytes: env_or("FLUMEN_SLED_BENCH_SEGMENT_BYTES", 4u64 << 20),
        }
    }

    fn halfway(&self, n: u64, start: Instant) -> bool {
        match self.batches {
            Some(max) => n >= max / 2,
            None => start.elapsed().as_secs_f64() >= self.secs / 2.0,
        }
    }

    fn finished(&self, n: u64, start: Instant) -> bool {
        match self.batches {
            Some(max) => n >= max,
            None => start.elapsed().as_secs_f64() >= self.secs,
        }
    }
}

/// Makes ~100 KB batches (100 records of 1000 pseudo-random bytes: a ~103 KB frame) cheaply:
/// the values come from a pool generated up front, so the timed loop spends its time in the
/// engines, not in a random number generator.
struct Batches {
    pool: Vec<Vec<Vec<u8>>>,
}

impl Batches {
    fn new() -> Self {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let pool = (0..16)
            .map(|_| {
                (0..RECORDS_PER_BATCH)
                    .map(|_| {
                        (0..VALUE_BYTES)
                            .map(|_| {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                x as u8
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Self { pool }
    }

    /// Batch `seq` covers offsets `seq * 100 ..= seq * 100 + 99`.
    fn get(&self, seq: u64) -> Batch {
        let start = seq as i64 * RECORDS_PER_BATCH;
        let values = &self.pool[seq as usize % self.pool.len()];
        Batch {
            topic: "bench".into(),
            partition: 0,
            start_offset: start,
            last_offset: start + RECORDS_PER_BATCH - 1,
            records: values
                .iter()
                .enumerate()
                .map(|(i, v)| Record {
                    offset: start + i as i64,
                    timestamp_ms: Some(1_700_000_000_000 + start + i as i64),
                    key: None,
                    value: Some(v.clone()),
                    headers: Vec::new(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------------------------

/// (allocated bytes as du counts them, apparent bytes, regular files) under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64, u64) {
    let mut total = (0, 0, 0);
    let Ok(entries) = fs::read_dir(dir) else {
        return total;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let sub = disk_usage(&entry.path());
            total.0 += sub.0 + meta.blocks() * 512;
            total.1 += sub.1;
            total.2 += sub.2;
        } else {
            total.0 += meta.blocks() * 512;
            total.1 += meta.len();
            total.2 += 1;
        }
    }
    total
}

fn status_kb(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples disk usage at most once a second, keeping the peak.
struct DuSampler {
    dir: PathBuf,
    last: Instant,
    peak: u64,
    /// Usage at half the run, to tell growth from a steady state.
    mid: Option<u64>,
}

impl DuSampler {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            last: Instant::now(),
            peak: 0,
            mid: None,
        }
    }

    fn tick(&mut self, halfway: bool) {
        if self.mid.is_none() && halfway {
            let now = disk_usage(&self.dir).0;
            self.mid = Some(now);
            self.peak = self.peak.max(now);
        }
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.sample();
        }
    }

    fn sample(&mut self) {
        self.peak = self.peak.max(disk_usage(&self.dir).0);
        self.last = Instant::now();
    }
}

// ---------------------------------------------------------------------------------------------
// Child: one engine
// ---------------------------------------------------------------------------------------------

/// What the append phase of one engine measured.
#[derive(Default)]
struct Outcome {
    batches: u64,
    frame_bytes: u64,
    secs: f64,
    /// Time inside the engine calls only (append + trim, insert + remove + flush).
    engine_secs: f64,
    du_peak: u64,
    du_mid: u64,
    rss_peak_kb: u64,
    close_ms: f64,
}

fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::default().path(dir)
}

fn channel_options(cfg: &Config, dir: &Path) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes_max: cfg.segment_bytes,
        group_commit_bytes_max: 4 << 20,
        segment_version: flumen::wal::log::SEGMENT_VERSION,
    }
}

/// Fills in what both engines report alike, and times closing the engine (`close`).
fn finish(
    mut out: Outcome,
    start: Instant,
    engine: Duration,
    n: u64,
    mut du: DuSampler,
    dir: &Path,
    close: impl FnOnce(),
) -> Outcome {
    out.secs = start.elapsed().as_secs_f64();
    out.engine_secs = engine.as_secs_f64();
    out.batches = n;
    out.rss_peak_kb = status_kb("VmHWM:");
    du.sample();
    out.du_peak = du.peak;
    out.du_mid = du.mid.unwrap_or(0);
    print_disk(dir);
    let t = Instant::now();
    close();
    out.close_ms = t.elapsed().as_secs_f64() * 1e3;
    out
}

fn run_sled(cfg: &Config, dir: &Path) -> Outcome {
    let mut out = Outcome::default();
    let batches = Batches::new();
    let db = sled_config(dir).open().expect("sled open");
    let mut du = DuSampler::new(dir);
    let mut engine = Duration::ZERO;
    let start = Instant::now();
    let mut n = 0u64;
    while !cfg.finished(n, start) {
        let frame = EncodedBatch::encode(&batches.get(n)).expect("encode").frame;
        out.frame_bytes += frame.len() as u64;
        let t = Instant::now();
        db.insert(n.to_be_bytes(), frame).expect("sled insert");
        if n >= cfg.window {
            db.remove((n - cfg.window).to_be_bytes())
                .expect("sled remove");
        }
        db.flush().expect("sled flush");
        engine += t.elapsed();
        n += 1;
        du.tick(cfg.halfway(n, start));
    }
    finish(out, start, engine, n, du, dir, || drop(db))
}

fn run_channel(cfg: &Config, dir: &Path) -> Outcome {
    let mut out = Outcome::default();
    let batches = Batches::new();
    let mut wal = Wal::open(channel_options(cfg, dir)).expect("channel open");
    let mut du = DuSampler::new(dir);
    let mut engine = Duration::ZERO;
    let start = Instant::now();
    let mut n = 0u64;
    while !cfg.finished(n, start) {
        let batch = EncodedBatch::encode(&batches.get(n)).expect("encode");
        out.frame_bytes += batch.frame.len() as u64;
        let t = Instant::now();
        wal.writer.append(&[batch]).expect("append");
        // Live window: the last `window` batches; everything below is done.
        let low = (n + 1).saturating_sub(cfg.window) as i64 * RECORDS_PER_BATCH;
        wal.index
            .trim(u64::MAX, |_, last| last < low)
            .expect("trim");
        engine += t.elapsed();
        n += 1;
        du.tick(cfg.halfway(n, start));
    }
    finish(out, start, engine, n, du, dir, || drop(wal))
}

/// Opens what the append phase left (in a fresh process, as a restart would), checks that the
/// window survived, and returns (open time in ms, batches readable).
fn reopen(engine: &str, cfg: &Config, dir: &Path, appended: u64) -> (f64, u64) {
    let window_first = appended.saturating_sub(cfg.window);
    match engine {
        "sled" => {
            let t = Instant::now();
            let db = sled_config(dir).open().expect("sled reopen");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let keys: Vec<u64> = db
                .iter()
                .keys()
                .map(|k| u64::from_be_bytes(k.expect("sled key").as_ref().try_into().expect("8")))
                .collect();
            let want: Vec<u64> = (window_first..appended).collect();
            assert_eq!(keys, want, "sled holds the wrong keys after reopen");
            (ms, keys.len() as u64)
        }
        "channel" => {
            let t = Instant::now();
            let wal = Wal::open(channel_options(cfg, dir)).expect("channel reopen");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert!(
                wal.damage.is_empty(),
                "damage after a clean run: {:?}",
                wal.damage
            );
            let mut reader = WalReader::new(wal.index.clone());
            let mut seqs = Vec::new();
            while let Some((_, b)) = reader.next_batch().expect("read back") {
                seqs.push((b.start_offset / RECORDS_PER_BATCH) as u64);
            }
            // Whole segments are trimmed, so more than the window may remain, but the tail must
            // be exactly the window, in order.
            let tail = &seqs[seqs.len().saturating_sub(cfg.window as usize)..];
            let want: Vec<u64> = (window_first..appended).collect();
            assert_eq!(tail, &want[..], "channel lost live batches");
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "channel order");
            (ms, seqs.len() as u64)
        }
        other => panic!("unknown engine {other}"),
    }
}

fn print_disk(dir: &Path) {
    let (alloc, apparent, files) = disk_usage(dir);
    println!("DISK alloc={alloc} apparent={apparent} files={files}");
}

fn child(engine: &str) {
    let cfg = Config::from_env(15.0);
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("child dir"));
    if let Ok(appended) = std::env::var(REOPEN_ENV) {
        let appended: u64 = appended.parse().expect("appended count");
        let (ms, live) = reopen(engine, &cfg, &dir, appended);
        println!(
            "REOPEN ms={ms:.2} rss_peak_kb={} live={live}",
            status_kb("VmHWM:")
        );
        return;
    }
    fs::create_dir_all(&dir).expect("child dir");
    let out = match engine {
        "sled" => run_sled(&cfg, &dir),
        "channel" => run_channel(&cfg, &dir),
        other => panic!("unknown engine {other}"),
    };
    println!(
        "RESULT batches={} frame_bytes={} secs={:.3} engine_secs={:.3} du_peak={} du_mid={} \
         rss_peak_kb={} close_ms={:.2}",
        out.batches,
        out.frame_bytes,
        out.secs,
        out.engine_secs,
        out.du_peak,
        out.du_mid,
        out.rss_peak_kb,
        out.close_ms,
    );
}

// ---------------------------------------------------------------------------------------------
// Parent: run both, print the table
// ---------------------------------------------------------------------------------------------

/// Parses the child's `KEY k=v ...` lines into one map per key.
fn parse(stdout: &str) -> Results {
    let mut m = BTreeMap::new();
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        let Some(kind) = words.next() else { continue };
        if !["RESULT", "DISK", "REOPEN"].contains(&kind) {
            continue;
        }
        for kv in words {
            if let Some((k, v)) = kv.split_once('=') {
                if let Ok(v) = v.parse::<f64>() {
                    m.insert(format!("{}.{k}", kind.to_lowercase()), v);
                }
            }
        }
    }
    m
}

/// Runs this binary as a child for one phase of one engine and returns what it printed.
/// `reopen_after` selects the reopen phase (with the number of batches appended).
fn run_child(engine: &str, dir: &Path, secs: f64, reopen_after: Option<u64>) -> Results {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, engine)
        .env(DIR_ENV, dir)
        .env(
            "FLUMEN_SLED_BENCH_SECS",
            std::env::var("FLUMEN_SLED_BENCH_SECS").unwrap_or_else(|_| secs.to_string()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(n) = reopen_after {
        cmd.env(REOPEN_ENV, n.to_string());
    }
    let out = cmd.output().expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{engine} child failed ({}): {stdout}",
        out.status
    );
    let m = parse(&stdout);
    let key = if reopen_after.is_some() {
        "reopen.ms"
    } else {
        "result.batches"
    };
    assert!(m.contains_key(key), "{engine}: no {key} in {stdout}");
    m
}

type Results = BTreeMap<String, f64>;

fn get(m: &Results, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(f64::NAN)
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// (label, value from a child's results, unit) for each row of the table.
type Metric = (&'static str, fn(&Results) -> f64, &'static str);

const METRICS: &[Metric] = &[
    ("batches appended", |m| get(m, "result.batches"), ""),
    (
        "batches/s",
        |m| get(m, "result.batches") / get(m, "result.secs"),
        "",
    ),
    (
        "MB/s (frame bytes)",
        |m| get(m, "result.frame_bytes") / get(m, "result.secs") / 1e6,
        "",
    ),
    (
        "ms per batch (wall)",
        |m| 1e3 * get(m, "result.secs") / get(m, "result.batches"),
        "ms",
    ),
    (
        "ms per batch (engine only)",
        |m| 1e3 * get(m, "result.engine_secs") / get(m, "result.batches"),
        "ms",
    ),
    (
        "disk at half time (du)",
        |m| mib(get(m, "result.du_mid")),
        "MiB",
    ),
    ("disk at end (du)", |m| mib(get(m, "disk.alloc")), "MiB"),
    (
        "disk at end (apparent)",
        |m| mib(get(m, "disk.apparent")),
        "MiB",
    ),
    (
        "disk peak (du, 1/s)",
        |m| mib(get(m, "result.du_peak")),
        "MiB",
    ),
    ("files at end", |m| get(m, "disk.files"), ""),
    (
        "peak RSS, append phase",
        |m| get(m, "result.rss_peak_kb") / 1024.0,
        "MiB",
    ),
    ("close time", |m| get(m, "result.close_ms"), "ms"),
    ("reopen time (new process)", |m| get(m, "reopen.ms"), "ms"),
    (
        "peak RSS, reopen process",
        |m| get(m, "reopen.rss_peak_kb") / 1024.0,
        "MiB",
    ),
    ("batches readable after", |m| get(m, "reopen.live"), ""),
];

fn main() {
    if let Ok(engine) = std::env::var(CHILD_ENV) {
        child(&engine);
        return;
    }
    let bench_mode = std::env::args().any(|a| a == "--bench");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let default_secs = if bench_mode { 10.0 } else { 1.0 };
    let cfg = Config::from_env(default_secs);
    let root = std::env::var_os("FLUMEN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("flumen-bench-sled-")
        .tempdir_in(&root)
        .expect("bench tempdir");
    let order = std::env::var("FLUMEN_SLED_BENCH_ORDER")
        .unwrap_or_else(|_| "channel,sled,sled,channel".into());
    let engines: Vec<&str> = order.split(',').map(str::trim).collect();
    assert!(
        engines.contains(&"sled") && engines.contains(&"channel"),
        "FLUMEN_SLED_BENCH_ORDER must name sled and channel"
    );
    let run = match cfg.batches {
        Some(n) => format!("{n} batches"),
        None => format!("{} s", cfg.secs),
    };
    println!(
        "sled_vs_channel: ~100 KB batches, window of {} live, {run} per run, channel \
         segments of {} B; dir {} on {}",
        cfg.window,
        cfg.segment_bytes,
        tmp.path().display(),
        filesystem_of(tmp.path())
    );

    let mut runs: BTreeMap<&str, Vec<Results>> = BTreeMap::new();
    let mut sequence: Vec<(&str, f64)> = Vec::new();
    for (i, engine) in engines.iter().enumerate() {
        // Write back what earlier runs left dirty (sled's blob files are never fsynced) so it
        // does not land on the next run's fdatasyncs, then start in a fresh directory.
        let _ = Command::new("sync").status();
        std::thread::sleep(Duration::from_millis(500));
        let dir = tmp.path().join(format!("{i}-{engine}"));
        let mut m = run_child(engine, &dir, cfg.secs, None);
        let appended = get(&m, "result.batches") as u64;
        m.extend(run_child(engine, &dir, cfg.secs, Some(appended)));
        println!(
            "run {} {engine:<8} {:>7.0} batches/s {:>6.1} MB/s, du at end {:.1} MiB, peak RSS \
             {:.1} MiB, reopen {:.1} ms",
            i + 1,
            get(&m, "result.batches") / get(&m, "result.secs"),
            get(&m, "result.frame_bytes") / get(&m, "result.secs") / 1e6,
            mib(get(&m, "disk.alloc")),
            get(&m, "result.rss_peak_kb") / 1024.0,
            get(&m, "reopen.ms"),
        );
        fs::remove_dir_all(&dir).expect("remove run dir");
        sequence.push((engine, get(&m, "result.batches") / get(&m, "result.secs")));
        runs.entry(engine).or_default().push(m);
    }
    // Throughput ratios of neighbouring runs, the least exposed to drift of the shared disk.
    let pairs: Vec<String> = sequence
        .windows(2)
        .filter(|w| w[0].0 != w[1].0)
        .map(|w| {
            let (c, s) = if w[0].0 == "channel" {
                (w[0].1, w[1].1)
            } else {
                (w[1].1, w[0].1)
            };
            format!("{:.2}", s / c)
        })
        .collect();
    println!(
        "sled/channel batches/s of neighbouring runs: {}",
        pairs.join(", ")
    );
    // Each metric is the mean over an engine's runs.
    let mean = |engine: &str| -> Results {
        let rs = &runs[engine];
        let mut out = Results::new();
        for r in rs {
            for (k, v) in r {
                *out.entry(k.clone()).or_insert(0.0) += v / rs.len() as f64;
            }
        }
        out
    };
    let ch = &mean("channel");
    let sl = &mean("sled");
    let rows: Vec<(&str, f64, f64, &str)> = METRICS
        .iter()
        .map(|(label, f, unit)| (*label, f(ch), f(sl), *unit))
        .collect();
    println!(
        "\n{:<28} {:>14} {:>14} {:>14}   (mean of each engine's runs)",
        "metric", "channel", "sled", "sled/channel"
    );
    for (label, c, s, unit) in &rows {
        let fmt = |v: f64| {
            if v.abs() >= 100.0 || (unit.is_empty() && v.fract() == 0.0) {
                format!("{v:.0} {unit}")
            } else {
                format!("{v:.2} {unit}")
            }
        };
        println!(
            "{:<28} {:>14} {:>14} {:>14}",
            label,
            fmt(*c),
            fmt(*s),
            format!("{:.2}", s / c)
        );
    }
    let live_mib =
        mib(cfg.window as f64 * get(ch, "result.frame_bytes") / get(ch, "result.batches"));
    println!(
        "\nlive data held by the window: {live_mib:.1} MiB. sled's flush is sync_file_range + \
         a 500 ms background fsync (blob files never fsynced); the channel fdatasyncs every \
         append: throughput is not like-for-like durability (see the top of this file)."
    );
}
