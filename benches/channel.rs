//! Channel append throughput against the raw write + fdatasync rate of the same disk.
//!
//! Four cases, all with ~100 KB frames (the same bytes in every case):
//! - `raw/1_per_sync`: `write_all(frame)` + `File::sync_data` on a plain file;
//! - `channel/1_per_sync`: `WalWriter::append(&[batch])` (one write + one fdatasync);
//! - `raw/8_per_sync` and `channel/8_per_sync`: the same with 8 frames per fdatasync
//!   (group commit).
//!
//! The plain file and the channel live side by side in one temporary directory, so they share a
//! filesystem (printed at start). Set `FLUMEN_BENCH_DIR` to bench another disk; otherwise
//! `$TMPDIR` (or /tmp) is used. Both roll to a new file every 64 MiB (the channel's default
//! segment size); the channel's roll (create, header, fsync of file and directory) is part of its
//! cost, the plain file is replaced outside the timed region, and finished channel segments are
//! trimmed outside the timed region.
//!
//! After criterion, a short interleaved run (raw, channel, raw, channel, ...) prints the
//! channel/raw ratios measured side by side, which is the number to quote: absolute fdatasync
//! rates on a shared VM disk drift by tens of percent between runs.
//!
//! `cargo bench --bench channel` (add `-- --quick` for a faster, rougher run).
//! `FLUMEN_BENCH_SUMMARY_ROUNDS` (default 6, 2 with `--quick`) and `FLUMEN_BENCH_SUMMARY_BATCHES`
//! (frames per round and case, default 256) size the summary.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

#[allow(dead_code)] // shared with the other benches
mod common;
use common::{env_or, filesystem_of};
use flumen::wal::{Batch, EncodedBatch, Record, Wal, WalOptions};

const RECORDS_PER_BATCH: usize = 100;
const VALUE_BYTES: usize = 1000;
const GROUP: usize = 8;
const POOL: usize = 64;
const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// A batch of 100 records with 1000-byte pseudo-random values: a ~103 KB frame.
fn make_batch(seq: u64) -> Batch {
    let start = seq as i64 * RECORDS_PER_BATCH as i64;
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let records = (0..RECORDS_PER_BATCH as i64)
        .map(|i| {
            let value = (0..VALUE_BYTES)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            Record {
                offset: start + i,
                timestamp_ms: Some(1_700_000_000_000 + start + i),
                key: None,
                value: Some(value),
                headers: Vec::new(),
            }
        })
        .collect();
    Batch {
        topic: "bench".into(),
        partition: 0,
        start_offset: start,
        last_offset: start + RECORDS_PER_BATCH as i64 - 1,
        records,
    }
}

fn bench_root() -> PathBuf {
    std::env::var_os("FLUMEN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A plain file written sequentially, replaced by a fresh one (untimed) every segment's worth.
struct RawFile {
    dir: PathBuf,
    file: File,
    len: u64,
    n: u64,
}

impl RawFile {
    fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir).expect("raw dir");
        let mut raw = Self {
            dir: dir.to_path_buf(),
            file: File::open("/dev/null").expect("/dev/null"),
            len: 0,
            n: 0,
        };
        raw.replace();
        raw
    }

    fn replace(&mut self) {
        let old = self.dir.join(format!("raw-{}", self.n));
        let _ = fs::remove_file(&old);
        self.n += 1;
        self.file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(self.dir.join(format!("raw-{}", self.n)))
            .expect("create raw file");
        self.len = 0;
    }

    /// One write and one fdatasync, as the channel does per append.
    fn write_sync(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).expect("raw write");
        self.file.sync_data().expect("raw fdatasync");
        self.len += bytes.len() as u64;
    }

    /// Untimed housekeeping.
    fn maintain(&mut self) {
        if self.len >= SEGMENT_BYTES_MAX {
            self.replace();
        }
    }
}

struct Channel {
    wal: Wal,
}

impl Channel {
    fn new(dir: &Path) -> Self {
        let wal = Wal::open(WalOptions {
            dir: dir.to_path_buf(),
            segment_bytes_max: SEGMENT_BYTES_MAX,
            group_commit_bytes_max: 4 << 20,
            segment_version: flumen::wal::log::SEGMENT_VERSION,
        })
        .expect("open channel");
        Self { wal }
    }

    fn append(&mut self, batches: &[EncodedBatch]) {
        self.wal.writer.append(batches).expect("append");
    }

    /// Untimed housekeeping: every finished segment is done, delete it.
    fn maintain(&mut self) {
        if self.wal.index.segment_count() > 1 {
            self.wal.index.trim(u64::MAX, |_, _| true).expect("trim");
        }
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    batches: Vec<EncodedBatch>,
    /// `GROUP` consecutive frames concatenated, for the raw group case.
    groups: Vec<Vec<u8>>,
    frame_bytes: u64,
    raw: RawFile,
    channel: Channel,
}

impl Fixture {
    fn new() -> Self {
        let root = bench_root();
        let tmp = tempfile::Builder::new()
            .prefix("flumen-bench-channel-")
            .tempdir_in(&root)
            .expect("bench tempdir");
        let batches: Vec<EncodedBatch> = (0..POOL as u64)
            .map(|s| EncodedBatch::encode(&make_batch(s)).expect("encode"))
            .collect();
        let frame_bytes = batches.iter().map(|b| b.frame.len() as u64).sum::<u64>() / POOL as u64;
        let groups = batches
            .chunks(GROUP)
            .map(|c| c.iter().flat_map(|b| b.frame.iter().copied()).collect())
            .collect();
        let raw = RawFile::new(&tmp.path().join("raw"));
        let channel = Channel::new(&tmp.path().join("channel"));
        println!(
            "channel bench: {} B frames, {} frames per group, dir {} on {}",
            frame_bytes,
            GROUP,
            tmp.path().display(),
            filesystem_of(tmp.path())
        );
        Self {
            _tmp: tmp,
            batches,
            groups,
            frame_bytes,
            raw,
            channel,
        }
    }

    /// Runs `n` operations of `case` and returns the elapsed time (housekeeping excluded).
    fn run(&mut self, case: Case, n: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        let mut done = 0;
        while done < n {
            // At most a few MB between housekeeping steps.
            let chunk = (n - done).min(32);
            let start = Instant::now();
            for i in done..done + chunk {
                let i = i as usize;
                match case {
                    Case::RawSingle => self.raw.write_sync(&self.batches[i % POOL].frame),
                    Case::ChannelSingle => {
                        let k = i % POOL;
                        self.channel.append(&self.batches[k..k + 1]);
                    }
                    Case::RawGroup => {
                        let g = i % self.groups.len();
                        self.raw.write_sync(&self.groups[g]);
                    }
                    Case::ChannelGroup => {
                        let k = (i * GROUP) % POOL;
                        self.channel.append(&self.batches[k..k + GROUP]);
                    }
                }
            }
            elapsed += start.elapsed();
            done += chunk;
            self.raw.maintain();
            self.channel.maintain();
        }
        black_box(&self.channel.wal.index);
        elapsed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    RawSingle,
    ChannelSingle,
    RawGroup,
    ChannelGroup,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::RawSingle,
        Case::ChannelSingle,
        Case::RawGroup,
        Case::ChannelGroup,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::RawSingle => "raw/1_per_sync",
            Case::ChannelSingle => "channel/1_per_sync",
            Case::RawGroup => "raw/8_per_sync",
            Case::ChannelGroup => "channel/8_per_sync",
        }
    }

    fn frames_per_op(self) -> u64 {
        match self {
            Case::RawSingle | Case::ChannelSingle => 1,
            Case::RawGroup | Case::ChannelGroup => GROUP as u64,
        }
    }
}

fn criterion_benches(c: &mut Criterion, fx: &mut Fixture) {
    let mut group = c.benchmark_group("append_100KB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for case in Case::ALL {
        group.throughput(Throughput::Bytes(fx.frame_bytes * case.frames_per_op()));
        group.bench_function(case.name(), |b| b.iter_custom(|iters| fx.run(case, iters)));
    }
    group.finish();
}

/// Interleaved rounds of every case, so drift of the shared disk hits all cases alike.
fn summary(fx: &mut Fixture, rounds: u32, ops_single: u64) {
    let ops_group = (ops_single / GROUP as u64).max(1);
    let mut time = [Duration::ZERO; 4];
    let mut bytes = [0u64; 4];
    for round in 0..rounds {
        // Alternate the order (raw first, then channel first) so neither side always runs
        // right after the other's file churn.
        let order: [usize; 4] = if round % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [1, 0, 3, 2]
        };
        for k in order {
            let case = Case::ALL[k];
            let ops = if case.frames_per_op() == 1 {
                ops_single
            } else {
                ops_group
            };
            time[k] += fx.run(case, ops);
            bytes[k] += ops * case.frames_per_op() * fx.frame_bytes;
        }
    }
    let mbps: Vec<f64> = (0..4)
        .map(|k| bytes[k] as f64 / time[k].as_secs_f64() / 1e6)
        .collect();
    let ms_per_sync: Vec<f64> = (0..4)
        .map(|k| {
            let ops = bytes[k] / (Case::ALL[k].frames_per_op() * fx.frame_bytes);
            time[k].as_secs_f64() * 1e3 / ops as f64
        })
        .collect();
    println!(
        "\nsummary: {rounds} interleaved rounds, {ops_single} frames per case per round, \
         {} B frames",
        fx.frame_bytes
    );
    for (k, case) in Case::ALL.into_iter().enumerate() {
        println!(
            "  {:<20} {:>8.1} MB/s  {:>6.2} ms per fdatasync",
            case.name(),
            mbps[k],
            ms_per_sync[k]
        );
    }
    println!(
        "summary: channel/raw throughput ratio: 1 per sync {:.2} ({:.1} vs {:.1} MB/s), \
         {GROUP} per sync {:.2} ({:.1} vs {:.1} MB/s); group commit gain: channel {:.2}x, raw {:.2}x",
        mbps[1] / mbps[0],
        mbps[1],
        mbps[0],
        mbps[3] / mbps[2],
        mbps[3],
        mbps[2],
        mbps[3] / mbps[1],
        mbps[2] / mbps[0],
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let listing = args.iter().any(|a| a == "--list");
    let mut fx = Fixture::new();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &mut fx);
    c.final_summary();
    if listing {
        return;
    }
    if bench_mode {
        let rounds = env_or("FLUMEN_BENCH_SUMMARY_ROUNDS", if quick { 2 } else { 6 });
        let ops = env_or("FLUMEN_BENCH_SUMMARY_BATCHES", 256);
        summary(&mut fx, rounds, ops);
    } else {
        // `cargo test --benches`: criterion ran each case once; keep the summary tiny too.
        summary(&mut fx, 1, GROUP as u64);
    }
}
