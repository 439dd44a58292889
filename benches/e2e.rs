//! End-to-end throughput, CPU and memory harness (issues 9 and 12). Needs the testbed:
//!
//! ```sh
//! eval "$(scripts/testbed up)"
//! FLUMEN_BENCH_EVENTS=2000000 cargo bench --bench e2e
//! FLUMEN_BENCH_EVENTS=2000000 FLUMEN_BENCH_PARTITIONS=1000 cargo bench --bench e2e
//! FLUMEN_BENCH_EVENTS=70000000 FLUMEN_BENCH_BACKLOG_ONLY=1 cargo bench --bench e2e  # ~10 GiB
//! FLUMEN_BENCH_BIN=/tmp/flumen-base cargo bench --bench e2e  # another flumen build, same harness
//! FLUMEN_BENCH_KAFKA='prefetch_memory_bytes_max = 67108864' cargo bench --bench e2e  # extra [kafka] keys
//! FLUMEN_BENCH_PROPERTIES='"fetch.queue.backoff.ms" = "1"' cargo bench --bench e2e  # librdkafka's
//! FLUMEN_BENCH_BATCH_RECORDS=1000 cargo bench --bench e2e  # kafka.batch_records_max (10,000)
//! ```
//!
//! It preloads N 100-byte events (key `cell-N`, lz4) into a fresh topic of P partitions
//! (default 3), then measures side by side in one run, each path in its own process so CPU and
//! peak RSS are that path's alone (`wait4`):
//! - **raw poll** and **raw batch**, the ceilings: a librdkafka consumer with flumen's own client
//!   settings (`SourceOptions::client_config`, so the same prefetch budget), partitions
//!   `assign()`ed from the beginning (no group join), timed from the first message to the last;
//!   one per-message `poll`, one `rd_kafka_consume_batch_queue` of 1,000;
//! - **raw relay**, the ceiling of any relay on this testbed: the batch consume writing values
//!   as lines straight into HDFS files per partition, rolled by the same `roll_bytes_max` and
//!   `roll_interval_s` as flumen's (so the last files wait for their interval, as flumen's
//!   do), with no channel and no commit protocol; timed from the first message until every
//!   file is closed;
//! - **live**: the release `flumen run`, from its first channel append until `/metrics` counts
//!   N records committed to HDFS: like the raw rows, from the first message, so without the
//!   group join and the reconciliation with HDFS, which are printed apart (`startup`), and
//!   which the drain's wall time, and so live/drain, include on both sides;
//! - **backlog**: two more `flumen run` instances (two groups) with the NameNode stopped, so all N
//!   events pile up in their channels; their peak RSS at that backlog, then `kill -9`;
//! - **drain**: NameNode back; one of them restarts (`flumen run`) and is timed until HDFS holds
//!   its channel, the other's channel is delivered by `flumen replay`.
//!
//! Before the measured rows, one raw relay runs unmeasured so that the JVMs' JIT has compiled
//! Kafka's fetch path and HDFS's write path, and before each measured phase `sync` flushes
//! what earlier phases left for the kernel to write back.
//!
//! Besides each path's whole run, it prints its rate while data flows: from 10% to 90% of N,
//! consumed for the raw consumers and the raw relay (whose consume waits for its HDFS
//! writes), committed to HDFS for the live runs and the drain by restart (the rate between
//! the two commits that crossed 10% and 90%). That is the throughput of a relay that runs for
//! days; the whole run adds fixed costs (startup, and the last files' 1 s roll interval and
//! close, about 1.5 s) that a short run cannot amortize.
//!
//! It prints events/s, channel MB/s (the backlog's channel bytes over the wall time), CPU
//! seconds per million events (which is also the cores needed per 1M ev/s at that rate), peak
//! RSS, flumen's pauses, the ratios, the machine's CPU per path split by process (the path's
//! own, the Kafka brokers', HDFS's, the rest), and the load average before and after.
//!
//! On this 2-core VM the rows move by ±0.1 from run to run, so it also prints where the noise
//! comes from, per row: the cores the host stole; the JVMs' JIT compilation; pages the kernel
//! scanned to reclaim memory; and HDFS's CPU in the kernel. The last is most of HDFS's CPU,
//! and it is copying the DataNode's block writes into the page cache. On a VM whose balloon
//! reports free pages to the host (virtio-balloon `REPORTING`), memory that has been free
//! for a while costs the guest a host fault on first touch: writing 3 GB into the page cache
//! took 1.5 s of system time into such memory and 0.55 s into pages freed just before. So
//! rows can pay different prices for the same bytes, depending on the memory they get: in
//! eight 35M runs, HDFS's CPU per event during live was 1.3-2.2x the raw relay's and
//! 1.4-2.5x the drain's, for the same writes. The ceilings it prints (the raw relay's, and
//! live's floor from its CPU) are what this box allowed in that run.
//!
//! One more ceiling holds for any relay with a channel, flumen or another: it must consume
//! (at least what the bare batch consumer and Kafka spend per event), drain (at least what
//! flumen's own drain spends while data flows) and have HDFS write (at least the cheapest
//! phase's cost). Their sum over the cores is the most events/s such a relay reaches here with
//! every core busy, printed as the best live/drain could be while data flows, beside what
//! live reached and flumen's own CPU in live against the bare consumer's plus its drain's.

#[allow(dead_code)] // shared with the other benches
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// What one measured process cost.
#[derive(Clone, Copy, Default)]
struct Cost {
    wall_s: f64,
    cpu_s: f64,
    rss_mib: u64,
    /// Events/s while data flows: from 10% to 90% of N (consumed for the raw paths, committed
    /// for flumen's live runs and its drain by restart; none for `replay`, which serves no
    /// metrics), so without startup, ramp-up and the last files' roll interval.
    mid_rate: Option<f64>,
    /// The process's own CPU seconds per M events over the same stretch (flumen's live run and
    /// its drain by restart), so without a restart's scan of its channel.
    mid_cpu_per_m: Option<f64>,
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
    p.flush(Duration::from_secs(600)).unwrap();
}

fn config_text(
    bootstrap: &str,
    hdfs: &str,
    topic: &str,
    group: &str,
    work: &Path,
    extra_channel: &str,
) -> String {
    format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{topic}-{group}"
# Static membership: the drain's restart after kill -9 takes its partitions back at once
# instead of waiting kafka.session_timeout_ms for its dead predecessor. Both ids are the run's
# own: a static member that rejoins is handed its previous assignment, and the previous run's
# topic is deleted by then.
group_instance_id = "{topic}-{group}-1"
batch_records_max = {batch_records}
batch_duration_ms = 200
batch_bytes_max = 8388608
{extra_kafka}
[kafka.properties]
"fetch.wait.max.ms" = "100"
"statistics.interval.ms" = "1000"
{extra_properties}
[channel]
dir = "{channel}"
segment_bytes_max = 67108864
capacity_bytes_max = 68719476736
resume_bytes = 64424509440
disk_free_bytes_min = 268435456
{extra_channel}
[hdfs]
url = "{hdfs}"
path = "{dir}/{group}"
file_prefix = "bench"
format = "text"
roll_bytes_max = 33554432
roll_interval_s = 1
[metrics]
listen = "127.0.0.1:{port}"
"#,
        dir = topic_dir(topic),
        channel = work.join(group).join("channel").display(),
        port = common::free_port(),
        // Extra [kafka] keys and librdkafka properties for flumen and the raw consumers alike
        // (they take flumen's client settings), to compare a setting on one testbed.
        extra_kafka = std::env::var("FLUMEN_BENCH_KAFKA").unwrap_or_default(),
        batch_records = common::env_or("FLUMEN_BENCH_BATCH_RECORDS", 10_000u64),
        extra_properties = std::env::var("FLUMEN_BENCH_PROPERTIES").unwrap_or_default(),
    )
}

/// Where every path of the run writes in HDFS, each under its own directory.
fn topic_dir(topic: &str) -> String {
    format!("/flumen-bench/{topic}")
}

/// One `flumen run` (or another subcommand) on a written config.
struct Flumen {
    config: PathBuf,
    metrics: String,
    channel: PathBuf,
}

impl Flumen {
    fn new(bench: &Bench, group: &str) -> Self {
        Self::with_channel(bench, group, "")
    }

    /// With extra `[channel]` keys.
    fn with_channel(bench: &Bench, group: &str, extra_channel: &str) -> Self {
        let text = config_text(
            &bench.bootstrap,
            &bench.hdfs,
            &bench.topic,
            group,
            bench.work(),
            extra_channel,
        );
        let config = bench.work().join(format!("{group}.toml"));
        std::fs::write(&config, &text).unwrap();
        let settings = flumen::config::Settings::load(&config).unwrap();
        Flumen {
            config,
            metrics: settings.metrics_listen.unwrap().to_string(),
            channel: settings.channel.dir.clone(),
        }
    }

    /// `common::flumen_bin()`: this build, or `FLUMEN_BENCH_BIN`.
    fn spawn(&self, command: &str) -> Child {
        Command::new(common::flumen_bin())
            .args([command, "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }

    /// The sum of a counter over its labels, or 0 while the listener is not up.
    fn counter(&self, name: &str) -> f64 {
        common::metrics_counter(&self.metrics, name)
    }

    /// Polls `/metrics` until `name` reaches `n`; fails after 60 min or if the process exits.
    fn wait_for(&self, child: &mut Child, name: &str, n: u64) {
        self.wait_every(child, name, n, Duration::from_millis(100))
    }

    /// From the first append until all N are committed, polling every 20 ms: what the machine
    /// spent on the data flow (until 90% is committed, before the last files' roll interval
    /// runs out with the machine idle), the commit rate while data flows, and the tail from the
    /// last record consumed.
    fn milestones(&self, child: &mut Child, n: u64) -> Milestones {
        let names = [
            "flumen_records_consumed_total",
            "flumen_records_committed_total",
        ];
        let (ticks0, mut flow, mut consumed_at) = (cpu_ticks(), None, None);
        let mut mid = MidRate::with_cpu_of(n, child.id());
        loop {
            let [consumed, committed] = common::metrics_counters(&self.metrics, &names);
            if consumed >= n as f64 && consumed_at.is_none() {
                consumed_at = Some(Instant::now());
            }
            mid.sample(committed);
            if committed >= (n - n / 10) as f64 && flow.is_none() {
                flow = Some(Busy::between(ticks0, cpu_ticks()));
            }
            if committed >= n as f64 {
                let tail = consumed_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
                // A small N can commit its last 10% and more between two polls.
                let flow = flow.unwrap_or_else(|| Busy::between(ticks0, cpu_ticks()));
                return Milestones {
                    flow,
                    tail,
                    mid_rate: mid.rate(),
                    mid_cpu_per_m: mid.cpu_per_m(),
                };
            }
            assert!(child.try_wait().unwrap().is_none(), "flumen exited early");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `wait_for`, polling every `every`.
    fn wait_every(&self, child: &mut Child, name: &str, n: u64, every: Duration) {
        let t = Instant::now();
        while self.counter(name) < n as f64 {
            assert!(child.try_wait().unwrap().is_none(), "flumen exited early");
            assert!(
                t.elapsed() < Duration::from_secs(3600),
                "{name} < {n} after 60 min"
            );
            std::thread::sleep(every);
        }
    }
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

fn testbed(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed");
    let ok = Command::new(script)
        .arg(command)
        .status()
        .unwrap()
        .success();
    assert!(ok, "scripts/testbed {command} failed");
}

/// What the whole machine spent while a phase ran (from `/proc/stat`), every process alike:
/// Kafka, HDFS and the bench too.
#[derive(Clone, Copy)]
struct Busy {
    /// Busy cores on average: near the core count, the phase was bound by CPU, whoever spent it.
    cores: f64,
    /// Busy core-seconds.
    core_s: f64,
    /// Of those, the core-seconds of the testbed's Kafka brokers and of its HDFS (zero where
    /// not measured).
    services: Services,
    /// Cores stolen on average: time our vCPUs wanted to run while the host ran someone else
    /// (`/proc/stat` steal; not counted in `cores`). The noise of a shared machine, shown.
    steal: f64,
    /// Pages the kernel scanned to reclaim memory meanwhile: by the allocating processes
    /// themselves (direct reclaim, charged to whoever allocated) and by kswapd.
    scanned: Scanned,
}

/// Runs `f` and returns what the machine spent meanwhile.
fn busy_cores<T>(f: impl FnOnce() -> T) -> (T, Busy) {
    // The kernel's writeback of what an earlier phase wrote (HDFS block files, the preload's
    // log) would otherwise run, and be counted, during this one.
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let (ticks0, services0) = (cpu_ticks(), Services::cpu_now());
    let out = f();
    let mut busy = Busy::between(ticks0, cpu_ticks());
    busy.services = Services::since(&Services::cpu_now(), &services0);
    (out, busy)
}

/// CPU core-seconds of the testbed's services: every Kafka broker, and HDFS.
#[derive(Clone, Copy, Default)]
struct Services {
    kafka_s: f64,
    hdfs_s: f64,
    /// Of HDFS's, the seconds in the kernel: mostly copying the DataNode's block writes into
    /// the page cache, whose cost on this VM depends on how long the memory it gets was free.
    hdfs_sys_s: f64,
    /// Of both, what the JVMs' JIT compiler threads spent: it lands on whichever phase runs
    /// while a new code path gets hot, so it is a phase's noise, not its cost.
    jit_s: f64,
}

/// One service process's CPU so far.
struct Reading {
    name: String,
    pid: i32,
    cpu_s: f64,
    sys_s: f64,
    jit_s: f64,
}

impl Services {
    /// Each service process's CPU seconds so far, from `scripts/testbed`'s pid files.
    fn cpu_now() -> Vec<Reading> {
        let dir = PathBuf::from(common::testbed_env("e2e", "FLUMEN_TESTBED_DIR")).join("pids");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        entries
            .filter_map(|e| {
                let path = e.ok()?.path();
                let pid: i32 = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
                let name = path.file_stem()?.to_string_lossy().into_owned();
                let (user_s, sys_s) = common::stat_times_s(&format!("/proc/{pid}/stat"))?;
                let jit_s = jit_cpu_s(pid as u32);
                Some(Reading {
                    name,
                    pid,
                    cpu_s: user_s + sys_s,
                    sys_s,
                    jit_s,
                })
            })
            .collect()
    }

    /// What each service spent between two readings of `cpu_now`; a process that was not there
    /// at the first counts from its start.
    fn since(now: &[Reading], before: &[Reading]) -> Services {
        let mut out = Services::default();
        for r in now {
            let base = before.iter().find(|b| b.pid == r.pid);
            let (cpu_s, sys_s, jit_s) = match base {
                Some(b) => (r.cpu_s - b.cpu_s, r.sys_s - b.sys_s, r.jit_s - b.jit_s),
                None => (r.cpu_s, r.sys_s, r.jit_s),
            };
            // The KDC and the Kerberized HDFS of `up --secure` count in the rest.
            match r.name.as_str() {
                n if n.starts_with("kafka") => out.kafka_s += cpu_s,
                n if n.starts_with("hdfs") => {
                    out.hdfs_s += cpu_s;
                    out.hdfs_sys_s += sys_s;
                }
                _ => continue,
            }
            out.jit_s += jit_s;
        }
        out
    }
}

/// A JVM's CPU seconds in its JIT compiler threads (HotSpot's `C1 CompilerThre…` and
/// `C2 CompilerThre…`).
fn jit_cpu_s(pid: u32) -> f64 {
    thread_cpu_s(pid)
        .iter()
        .filter(|(name, _)| name.starts_with("C1 Compiler") || name.starts_with("C2 Compiler"))
        .map(|(_, s)| s)
        .sum()
}

/// A process's CPU seconds by thread name (threads of one name added up), most first.
fn thread_cpu_s(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.filter_map(Result::ok) {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cpu_s = common::stat_cpu_s(&dir.join("stat").to_string_lossy()).unwrap_or(0.0);
        match by_name.iter_mut().find(|(n, _)| n == name.trim()) {
            Some((_, total)) => *total += cpu_s,
            None => by_name.push((name.trim().to_string(), cpu_s)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
}

impl Busy {
    /// Between two readings of `cpu_ticks`.
    fn between(t0: Ticks, t1: Ticks) -> Busy {
        let total = ((t1.total - t0.total) as f64).max(1.0);
        Busy {
            cores: (t1.busy - t0.busy) as f64 / total * cores(),
            core_s: (t1.busy - t0.busy) as f64 / common::clock_ticks_per_s(),
            services: Services::default(),
            steal: (t1.steal - t0.steal) as f64 / total * cores(),
            scanned: Scanned {
                direct: t1.scanned.direct - t0.scanned.direct,
                kswapd: t1.scanned.kswapd - t0.scanned.kswapd,
            },
        }
    }
}

/// What `Flumen::milestones` saw.
struct Milestones {
    flow: Busy,
    tail: f64,
    /// Records committed per second from the first poll past 10% of N to the first past 90%.
    mid_rate: Option<f64>,
    /// flumen's own CPU seconds per M records committed over the same stretch.
    mid_cpu_per_m: Option<f64>,
}

/// The rate between the first sample at or past 10% of N and the first at or past 90%,
/// counting the records those two samples actually saw. Commits come a file at a time, so
/// this is the rate between two commits, which a threshold on its own would blur by a file.
/// The clock is read only at those two samples, so a raw consumer can sample every message.
struct MidRate {
    n: u64,
    /// The process whose CPU is read at both marks, if any.
    pid: Option<i32>,
    low: Option<Mark>,
    high: Option<Mark>,
}

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    count: f64,
    cpu_s: Option<f64>,
}

impl MidRate {
    fn new(n: u64) -> Self {
        MidRate {
            n,
            pid: None,
            low: None,
            high: None,
        }
    }

    /// Also reads `pid`'s CPU at both marks (for [`MidRate::cpu_per_m`]).
    fn with_cpu_of(n: u64, pid: u32) -> Self {
        MidRate {
            pid: Some(pid as i32),
            ..MidRate::new(n)
        }
    }

    fn sample(&mut self, count: f64) {
        if self.low.is_none() && count >= (self.n / 10) as f64 {
            self.low = Some(self.mark(count));
        }
        if self.high.is_none() && count >= (self.n - self.n / 10) as f64 {
            self.high = Some(self.mark(count));
        }
    }

    fn mark(&self, count: f64) -> Mark {
        Mark {
            at: Instant::now(),
            count,
            cpu_s: self.pid.and_then(common::process_cpu_s),
        }
    }

    /// None until both were seen; a run that crossed both between two samples gives none.
    fn rate(&self) -> Option<f64> {
        let (l, h) = (self.low?, self.high?);
        let s = h.at.duration_since(l.at).as_secs_f64();
        (s > 0.0 && h.count > l.count).then(|| (h.count - l.count) / s)
    }

    /// The process's CPU seconds per M events between the two marks.
    fn cpu_per_m(&self) -> Option<f64> {
        let (l, h) = (self.low?, self.high?);
        let cpu_s = h.cpu_s? - l.cpu_s?;
        (h.count > l.count).then(|| cpu_s * 1e6 / (h.count - l.count))
    }
}

/// The machine's clock ticks from `/proc/stat`, all cores added up.
#[derive(Clone, Copy)]
struct Ticks {
    /// Every state but idle, iowait and steal.
    busy: u64,
    total: u64,
    steal: u64,
    scanned: Scanned,
}

/// `/proc/vmstat`'s pages scanned for reclaim.
#[derive(Clone, Copy, Default)]
struct Scanned {
    direct: u64,
    kswapd: u64,
}

impl Scanned {
    fn now() -> Scanned {
        let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
        let get = |key: &str| {
            vmstat
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        Scanned {
            direct: get("pgscan_direct "),
            kswapd: get("pgscan_kswapd "),
        }
    }
}

fn cpu_ticks() -> Ticks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let total: u64 = ticks.iter().take(8).sum();
    let (idle, iowait, steal) = (at(3), at(4), at(7));
    Ticks {
        busy: total - idle - iowait - steal,
        total,
        steal,
        scanned: Scanned::now(),
    }
}

struct Bench {
    bootstrap: String,
    hdfs: String,
    topic: String,
    partitions: i32,
    n: u64,
    dir: tempfile::TempDir,
}

/// What every path wrote to HDFS and the topic go when the bench ends: each run writes about
/// 5 GB to HDFS at 7M events, and its topic holds N events (a 35M or 95M run's topic is
/// gigabytes), which soon fill the testbed's disk.
impl Drop for Bench {
    fn drop(&mut self) {
        let dir = topic_dir(&self.topic);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let removed = rt.block_on(common::hdfs_client(&self.hdfs).delete(&dir, true));
        if let Err(e) = removed {
            eprintln!("could not delete {dir} from HDFS: {e}");
        }
        if let Err(e) = rt.block_on(delete_topic(&self.bootstrap, &self.topic)) {
            eprintln!("could not delete topic {}: {e}", self.topic);
        }
    }
}

async fn delete_topic(bootstrap: &str, topic: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .delete_topics(&[topic], &opts)
        .await
        .map_err(|e| e.to_string())?;
    results
        .into_iter()
        .try_for_each(|r| r.map(drop).map_err(|(t, code)| format!("{t}: {code}")))
}

impl Bench {
    fn work(&self) -> &Path {
        self.dir.path()
    }

    /// A raw consumer in a child process (this binary, `raw MODE`), so its CPU and RSS are its own.
    fn raw(&self, mode: &str) -> Cost {
        let cfg = Flumen::new(self, &format!("raw-{mode}")).config;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "raw",
                mode,
                &self.topic,
                &self.partitions.to_string(),
                &self.n.to_string(),
            ])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (ok, cpu_s, rss_mib) = common::reap(&mut child);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        assert!(ok, "raw {mode} consumer failed");
        let parsed: Vec<f64> = out
            .split_whitespace()
            .map(|w| w.parse().expect("raw child prints numbers"))
            .collect();
        let [wall_s, mid_rate] = parsed[..] else {
            panic!("raw child prints its wall seconds and its 10-90% rate: {out:?}");
        };
        Cost {
            wall_s,
            cpu_s,
            rss_mib,
            mid_rate: Some(mid_rate).filter(|r| r.is_finite()),
            mid_cpu_per_m: None,
        }
    }

    /// `flumen run` until every event is committed to HDFS.
    fn live(&self) -> Live {
        self.live_as(Flumen::new(self, "live"))
    }

    fn live_as(&self, f: Flumen) -> Live {
        let t = Instant::now();
        let mut child = f.spawn("run");
        let first = "flumen_channel_bytes_appended_total";
        f.wait_every(&mut child, first, 1, Duration::from_millis(10));
        let startup = t.elapsed().as_secs_f64();
        let m = f.milestones(&mut child, self.n);
        let spawn_to_end = t.elapsed().as_secs_f64();
        let [pauses, fsync_s, fsyncs, appended] = common::metrics_counters(
            &f.metrics,
            &[
                "flumen_pauses_total",
                "flumen_channel_fsync_seconds_sum",
                "flumen_channel_fsync_seconds_count",
                "flumen_channel_bytes_appended_total",
            ],
        );
        std::thread::sleep(Duration::from_millis(1200)); // one more librdkafka statistics report
        let [fetched, dropped] = common::metrics_counters(
            &f.metrics,
            &[
                "flumen_kafka_fetched_records_total",
                "flumen_kafka_outdated_records_dropped_total",
            ],
        );
        let refetch = (fetched / self.n as f64, dropped);
        eprintln!("{}", hdfs_call_seconds(&f));
        let threads = thread_cpu_s(child.id());
        stop(&child);
        let (ok, cpu_s, rss_mib) = common::reap(&mut child);
        assert!(ok, "flumen run (live) failed");
        Live {
            cost: Cost {
                wall_s: spawn_to_end - startup,
                cpu_s,
                rss_mib,
                mid_rate: m.mid_rate,
                mid_cpu_per_m: m.mid_cpu_per_m,
            },
            pauses,
            startup,
            spawn_to_end,
            refetch,
            flow_busy: m.flow,
            tail: m.tail,
            fsync: (fsync_s, fsyncs, appended),
            threads,
        }
    }
}

/// What the live run measured besides its cost.
struct Live {
    cost: Cost,
    /// flumen's pauses of consumption.
    pauses: f64,
    /// Spawn to the first channel append: the group join and the reconciliation with HDFS.
    startup: f64,
    /// Spawn to every record committed (`cost.wall_s` is from the first append).
    spawn_to_end: f64,
    /// librdkafka's fetched records over N, and the records it dropped as outdated.
    refetch: (f64, f64),
    /// What the machine spent from the first append until 90% was committed.
    flow_busy: Busy,
    /// Seconds from the last record consumed to the last committed: the last files' roll
    /// interval, close and commit.
    tail: f64,
    /// The channel writer's fdatasync seconds, how many, and the bytes appended.
    fsync: (f64, f64, f64),
    /// CPU seconds by thread name, most first, when every record was committed.
    threads: Vec<(String, f64)>,
}

/// Seconds `f`'s process spent inside HDFS calls, by call (`flumen_hdfs_call_seconds`): a
/// write includes its wait for the writer's window of unacknowledged bytes.
fn hdfs_call_seconds(f: &Flumen) -> String {
    let body = common::http_get(&f.metrics, "/metrics").unwrap_or_default();
    // `<prefix>{op="<op>"} <value>` as (op, value).
    let series = |prefix: &str| -> Vec<(String, f64)> {
        body.lines()
            .filter_map(|l| {
                let (labels, value) = l.strip_prefix(prefix)?.split_once(' ')?;
                let op = labels.strip_prefix("{op=\"")?.strip_suffix("\"}")?;
                Some((op.to_string(), value.parse().ok()?))
            })
            .collect()
    };
    let counts = series("flumen_hdfs_call_seconds_count");
    let calls: Vec<String> = series("flumen_hdfs_call_seconds_sum")
        .into_iter()
        .map(|(op, sum)| {
            let count = counts.iter().find(|(o, _)| *o == op).map_or(0.0, |c| c.1);
            format!("{op} {sum:.2} s / {count:.0}")
        })
        .collect();
    let group = f.config.file_stem().unwrap_or_default().to_string_lossy();
    format!(
        "{group}: seconds in HDFS calls (a write includes its window wait): {}",
        calls.join(", ")
    )
}

fn stop(child: &Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Fills two channels with every event while the NameNode is down; returns their peak RSS
/// (MiB) and channel bytes. Both instances are killed with SIGKILL, as a crash would.
fn backlog(bench: &Bench, relays: &[&Flumen]) -> Vec<(u64, u64)> {
    let mut children: Vec<Child> = relays.iter().map(|f| f.spawn("run")).collect();
    // A partition the ledger has never seen starts only once HDFS has fixed its start: wait
    // until both have every partition reconciled before nn-stop (1,000 partitions take a
    // while; stopping at the first append left hundreds that never consumed).
    for (f, c) in relays.iter().zip(children.iter_mut()) {
        f.wait_for(c, "flumen_channel_bytes_appended_total", 1);
        while f.counter("flumen_partitions_unreconciled") > 0.0 {
            assert!(c.try_wait().unwrap().is_none(), "flumen run exited");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    testbed("nn-stop");
    let mut out = Vec::new();
    for (f, c) in relays.iter().zip(children.iter_mut()) {
        f.wait_for(c, "flumen_records_consumed_total", bench.n);
        let mut last = -1.0;
        while f.counter("flumen_channel_bytes_appended_total") != last {
            last = f.counter("flumen_channel_bytes_appended_total");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    for (f, c) in relays.iter().zip(children.iter_mut()) {
        let hwm_kib = common::vm_hwm_kib(c.id() as i32).unwrap_or(0);
        c.kill().unwrap();
        c.wait().unwrap();
        out.push((hwm_kib / 1024, dir_bytes(&f.channel)));
    }
    testbed("nn-start");
    wait_hdfs_writable(&bench.hdfs);
    out
}

/// After `nn-start`: waits until a file can be written and closed (the DataNode re-registered
/// and safe mode ended), so the drain times flumen, not the NameNode's restart.
fn wait_hdfs_writable(url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = common::hdfs_client(url);
    let path = "/flumen-bench/.writable-probe";
    let t = Instant::now();
    let opts = hdfs_native::WriteOptions::default()
        .overwrite(true)
        .create_parent(true);
    while rt
        .block_on(async {
            let mut w = client.create(path, opts.clone()).await?;
            w.write_bytes(bytes::Bytes::from_static(b"probe")).await?;
            w.close().await
        })
        .is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "HDFS not writable 180 s after nn-start"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "HDFS writable {:.1} s after nn-start",
        t.elapsed().as_secs_f64()
    );
}

/// Restarts `a` on its backlog and times it until HDFS holds every event.
fn drain_by_restart(bench: &Bench, a: &Flumen) -> Cost {
    let t = Instant::now();
    let mut child = a.spawn("run");
    let mut mid = MidRate::with_cpu_of(bench.n, child.id());
    loop {
        let committed = a.counter("flumen_records_committed_total");
        mid.sample(committed);
        if committed >= bench.n as f64 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "flumen exited early");
        assert!(
            t.elapsed() < Duration::from_secs(3600),
            "drain: not done after 60 min"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall_s = t.elapsed().as_secs_f64();
    eprintln!("{}", hdfs_call_seconds(a));
    stop(&child);
    let (ok, cpu_s, rss_mib) = common::reap(&mut child);
    assert!(ok, "flumen run (drain) failed");
    Cost {
        wall_s,
        cpu_s,
        rss_mib,
        mid_rate: mid.rate(),
        mid_cpu_per_m: mid.cpu_per_m(),
    }
}

/// `flumen replay` of `b`'s backlog, timed to its exit.
fn drain_by_replay(b: &Flumen) -> Cost {
    let t = Instant::now();
    let mut child = b.spawn("replay");
    let (ok, cpu_s, rss_mib) = common::reap(&mut child);
    assert!(ok, "flumen replay failed");
    Cost {
        wall_s: t.elapsed().as_secs_f64(),
        cpu_s,
        rss_mib,
        mid_rate: None,
        mid_cpu_per_m: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    if args.get(1).map(String::as_str) == Some("raw") {
        return raw_child(&args[2..]);
    }
    let bench = Bench {
        bootstrap: common::testbed_env("e2e", "KAFKA_BOOTSTRAP"),
        hdfs: common::testbed_env("e2e", "HDFS_URL"),
        topic: format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        partitions: common::env_or("FLUMEN_BENCH_PARTITIONS", 3),
        n: common::env_or("FLUMEN_BENCH_EVENTS", 1_000_000),
        dir: tempfile::tempdir().unwrap(),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed");
    let parts = bench.partitions.to_string();
    let ok = Command::new(script)
        .args(["topic-create", &bench.topic, &parts, "1"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "topic-create failed");
    let t = Instant::now();
    preload(&bench.bootstrap, &bench.topic, bench.n);
    eprintln!(
        "preloaded {} x 100-byte events in {:.1} s",
        bench.n,
        t.elapsed().as_secs_f64()
    );

    if std::env::var_os("FLUMEN_BENCH_BACKLOG_ONLY").is_some() {
        return backlog_only(&bench);
    }
    // Unmeasured: the first reader of a fresh topic and the first writer to HDFS pay for the
    // JVMs' JIT compiling their fetch and write paths (Kafka's C2 compiler thread took 2.3 s
    // of CPU over one run), and would charge it to whichever row came first.
    let warm = bench.raw("relay");
    eprintln!("warm-up (not counted): raw relay in {:.1} s", warm.wall_s);
    let load_before = common::loadavg();
    let (raw_poll, raw_busy) = busy_cores(|| bench.raw("poll"));
    let (raw_batch, batch_busy) = busy_cores(|| bench.raw("batch"));
    let (raw_relay, relay_busy) = busy_cores(|| bench.raw("relay"));
    // Live twice: as configured, and writing channel frame version 1 (151 bytes per event
    // against version 2's 114). Which goes first is a coin toss, printed, so the warmer second
    // run favours neither on average.
    let v1_first = bench.topic.bytes().last().is_some_and(|b| b % 2 == 0);
    let v1 = || bench.live_as(Flumen::with_channel(&bench, "live-v1", "frame_version = 1"));
    let run_v1_first = v1_first.then(v1);
    let (run, live_busy) = busy_cores(|| bench.live());
    let run_v1 = run_v1_first.unwrap_or_else(v1);
    let (live, (fetched, dropped)) = (run.cost, run.refetch);
    let (a, b) = (Flumen::new(&bench, "drain"), Flumen::new(&bench, "replay"));
    let filled = backlog(&bench, &[&a, &b]);
    let (drain, drain_busy) = busy_cores(|| drain_by_restart(&bench, &a));
    let (replay, replay_busy) = busy_cores(|| drain_by_replay(&b));
    let load_after = common::loadavg();

    let channel_bytes = filled[0].1;
    let rows = [
        ("raw poll (ceiling)", raw_poll),
        ("raw batch", raw_batch),
        ("raw relay -> HDFS", raw_relay),
        ("flumen live -> HDFS", live),
        ("live, frame v1", run_v1.cost),
        ("drain: restart", drain),
        ("drain: flumen replay", replay),
    ];
    report(&bench, &rows, channel_bytes);
    println!(
        "live: {:.2} s of startup (join, reconcile) before its first append, {:.2} s from spawn \
         to all committed; {:.0} pauses",
        run.startup, run.spawn_to_end, run.pauses
    );
    let top: Vec<String> = run
        .threads
        .iter()
        .take(6)
        .map(|(n, s)| format!("{n} {s:.2}"))
        .collect();
    println!(
        "live: CPU s by thread over its {:.2} s from the first append: {}",
        live.wall_s,
        top.join(", ")
    );
    println!(
        "live: {:.2} s from the last record consumed to the last committed (the last files' \
         roll interval of 1 s, close, commit)",
        run.tail
    );
    for (name, r) in [("live", &run), ("live, frame v1", &run_v1)] {
        let (fsync_s, fsyncs, appended) = r.fsync;
        println!(
            "{name}: the channel writer spent {fsync_s:.2} s in {fsyncs:.0} fdatasyncs ({:.1} ms \
             each, {:.1} MB each, {:.0} bytes per event)",
            1e3 * fsync_s / fsyncs.max(1.0),
            appended / 1e6 / fsyncs.max(1.0),
            appended / bench.n as f64,
        );
    }
    println!(
        "live frame v2/v1 throughput = {:.2}, CPU = {:.2}, spawn to all committed = {:.2} \
         (v1 ran {})",
        run_v1.cost.wall_s / live.wall_s,
        live.cpu_s / run_v1.cost.cpu_s.max(1e-9),
        run_v1.spawn_to_end / run.spawn_to_end,
        if v1_first { "first" } else { "second" },
    );
    println!(
        "live: librdkafka fetched {fetched:.2}x the events (1.00 = no refetch), \
         {dropped:.0} dropped as outdated"
    );
    println!(
        "live/raw poll throughput = {:.2}; live/raw poll CPU = {:.2}; live/drain = {:.2} \
         (spawn to all committed on both sides)",
        raw_poll.wall_s / live.wall_s,
        live.cpu_s / raw_poll.cpu_s.max(1e-9),
        drain.wall_s / run.spawn_to_end,
    );
    println!(
        "live/raw relay throughput = {:.2} (the relay: batch consume straight to HDFS files \
         rolled by flumen's rules, no channel, no commit)",
        raw_relay.wall_s / live.wall_s
    );
    let mid = |a: &Cost, b: &Cost| a.mid_rate.zip(b.mid_rate).map_or(f64::NAN, |(a, b)| a / b);
    println!(
        "while data flows (10% to 90% of N): live/raw poll throughput = {:.2}, live/raw batch \
         = {:.2}, live/raw relay = {:.2}, live/drain by restart = {:.2}",
        mid(&live, &raw_poll),
        mid(&live, &raw_batch),
        mid(&live, &raw_relay),
        mid(&live, &drain),
    );
    println!(
        "machine busy, every process (Kafka, HDFS and the bench too), of {} cores: raw poll \
         {:.2}, raw relay {:.2}, live {:.2}, drain by restart {:.2}, replay {:.2}; live from its \
         first append until 90% was committed {:.2} (the whole runs include startup and the idle \
         wait for the last roll)",
        cores(),
        raw_busy.cores,
        relay_busy.cores,
        live_busy.cores,
        drain_busy.cores,
        replay_busy.cores,
        run.flow_busy.cores,
    );
    println!(
        "stolen by the host (its other guests), of {} cores: raw poll {:.2}, raw relay {:.2}, \
         live {:.2}, drain by restart {:.2}, replay {:.2}",
        cores(),
        raw_busy.steal,
        relay_busy.steal,
        live_busy.steal,
        drain_busy.steal,
        replay_busy.steal,
    );
    let scanned = |b: &Busy| format!("{}/{}", b.scanned.direct, b.scanned.kswapd);
    println!(
        "pages scanned to reclaim memory, directly by whoever allocated / by kswapd: raw poll {}, \
         raw relay {}, live {}, drain by restart {}, replay {}",
        scanned(&raw_busy),
        scanned(&relay_busy),
        scanned(&live_busy),
        scanned(&drain_busy),
        scanned(&replay_busy),
    );
    let paths = [
        ("raw poll", raw_poll, raw_busy),
        ("raw batch", raw_batch, batch_busy),
        ("raw relay", raw_relay, relay_busy),
        ("live", live, live_busy),
        ("drain by restart", drain, drain_busy),
        ("replay", replay, replay_busy),
    ];
    report_by_process(&bench, &paths);
    report_relay_floor(&bench, &paths);
    let floor_s = live_busy.core_s / cores();
    println!(
        "live's floor from CPU alone: its machine CPU over the {} cores is {floor_s:.2} s, so \
         live/drain could reach {:.2} and live/raw relay {:.2} only with every core busy all along",
        cores(),
        drain.wall_s / floor_s,
        raw_relay.wall_s / floor_s,
    );
    let flow_max = cores() * bench.n as f64 / live_busy.core_s.max(1e-9);
    println!(
        "while data flows, at live's machine CPU per event and every core busy, live/drain \
         could reach {:.2}",
        drain.mid_rate.map_or(f64::NAN, |d| flow_max / d),
    );
    println!(
        "the ceiling of any relay here, the raw relay (no channel, no commit): raw relay/drain \
         = {:.2} whole, {:.2} while data flows; raw relay/raw poll = {:.2} whole, {:.2} while \
         data flows",
        drain.wall_s / raw_relay.wall_s,
        mid(&raw_relay, &drain),
        raw_poll.wall_s / raw_relay.wall_s,
        mid(&raw_relay, &raw_poll),
    );
    for (i, (rss, bytes)) in filled.iter().enumerate() {
        println!(
            "backlog instance {i} (NameNode down): channel {:.0} MiB, peak RSS {rss} MiB",
            *bytes as f64 / 1048576.0
        );
    }
    println!("load average before {load_before}, after {load_after}");
}

/// Each path's machine CPU per M events, split by process.
fn report_by_process(bench: &Bench, paths: &[(&str, Cost, Busy)]) {
    let m = bench.n as f64 / 1e6;
    println!(
        "machine CPU s per M events by process: path = its own process + Kafka + HDFS + the \
         rest (kernel threads, the bench); in brackets, HDFS's in the kernel and what Kafka's \
         and HDFS's JIT compilers spent"
    );
    for (name, cost, busy) in paths {
        let s = busy.services;
        let rest = busy.core_s - cost.cpu_s - s.kafka_s - s.hdfs_s;
        println!(
            "  {name}: {:.2} = {:.2} + {:.2} + {:.2} + {:.2} (HDFS kernel {:.2}, JIT {:.2})",
            busy.core_s / m,
            cost.cpu_s / m,
            s.kafka_s / m,
            s.hdfs_s / m,
            rest / m,
            s.hdfs_sys_s / m,
            s.jit_s / m,
        );
    }
}

/// The least machine CPU per event any relay through a channel pays here, from the phases'
/// own measures: consuming (the bare batch consumer, and Kafka serving it), draining (flumen's
/// own CPU in its drain while data flows: channel read, sink, commit) and HDFS's writing (the
/// cheapest phase's). It leaves out the channel's writes, so live cannot cost less; with every
/// core busy it caps live's rate, and so live/drain while data flows, whatever flumen does.
fn report_relay_floor(bench: &Bench, paths: &[(&str, Cost, Busy)]) {
    let m = bench.n as f64 / 1e6;
    let path = |name: &str| paths.iter().find(|p| p.0 == name).expect("a measured path");
    let (batch, drain, live) = (path("raw batch"), path("drain by restart"), path("live"));
    let own = |c: &Cost| c.mid_cpu_per_m.unwrap_or(c.cpu_s / m);
    let hdfs_s = ["raw relay", "live", "drain by restart"]
        .map(|n| path(n).2.services.hdfs_s / m)
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let consume_s = (batch.1.cpu_s + batch.2.services.kafka_s) / m;
    let floor_s = consume_s + own(&drain.1) + hdfs_s;
    let cap = cores() * 1e6 / floor_s;
    println!(
        "a relay's CPU floor here, per M events: consume {consume_s:.2} (raw batch + Kafka) + \
         drain's own {:.2} (while data flows) + HDFS's least {hdfs_s:.2} = {floor_s:.2} s, so \
         at most {cap:.0} ev/s with every core busy: live/drain while data flows could reach \
         {:.2} at best, and reached {:.2}",
        own(&drain.1),
        drain.1.mid_rate.map_or(f64::NAN, |d| cap / d),
        live.1
            .mid_rate
            .zip(drain.1.mid_rate)
            .map_or(f64::NAN, |(l, d)| l / d),
    );
    println!(
        "flumen's own CPU per M events while data flows: live {:.2}, against raw batch's own \
         {:.2} + drain's own {:.2} = {:.2}",
        own(&live.1),
        batch.1.cpu_s / m,
        own(&drain.1),
        batch.1.cpu_s / m + own(&drain.1),
    );
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// `FLUMEN_BENCH_BACKLOG_ONLY=1`: one relay fills its channel with every event while the
/// NameNode is down (a large N gives the multi-GB backlog); peak RSS against the backlog.
fn backlog_only(bench: &Bench) {
    let load_before = common::loadavg();
    let t = Instant::now();
    let filled = backlog(bench, &[&Flumen::new(bench, "backlog")]);
    let (rss, bytes) = filled[0];
    println!(
        "\n{} events of 100 bytes, {} partitions, NameNode down: channel {:.2} GiB in {:.0} s, \
         flumen peak RSS {rss} MiB; load average before {load_before}, after {}",
        bench.n,
        bench.partitions,
        bytes as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64(),
        common::loadavg()
    );
}

fn report(bench: &Bench, rows: &[(&str, Cost)], channel_bytes: u64) {
    let m = bench.n as f64 / 1e6;
    println!(
        "\n{} events of 100 bytes, {} partitions, one run, side by side",
        bench.n, bench.partitions
    );
    println!(
        "{:<22} {:>8} {:>11} {:>10} {:>14} {:>13} {:>11}",
        "path", "wall s", "events/s", "MB/s", "CPU s / M ev", "peak RSS MiB", "10-90% ev/s"
    );
    for (name, c) in rows {
        let mid = c.mid_rate.map_or("-".into(), |r| format!("{r:.0}"));
        println!(
            "{:<22} {:>8.2} {:>11.0} {:>10.1} {:>14.2} {:>13} {:>11}",
            name,
            c.wall_s,
            bench.n as f64 / c.wall_s,
            channel_bytes as f64 / 1e6 / c.wall_s,
            c.cpu_s / m,
            c.rss_mib,
            mid
        );
    }
    println!("(MB/s: the channel bytes of this data over the wall time, for every row alike;");
    println!(" CPU s / M ev is also the cores needed per 1M ev/s at that rate;");
    println!(" 10-90% ev/s: while data flows, from 10% to 90% of N, consumed by the raw rows,");
    println!(" committed to HDFS by flumen's, so without startup and the last roll interval)");
}

/// `raw MODE TOPIC PARTITIONS N CONFIG`: consumes N messages and prints the seconds from the
/// first to the last.
fn raw_child(args: &[String]) {
    let [mode, topic, parts, n, config] = args else {
        panic!("usage: e2e raw poll|batch|relay TOPIC PARTITIONS N CONFIG");
    };
    let (parts, n): (i32, u64) = (parts.parse().unwrap(), n.parse().unwrap());
    let settings = flumen::config::Settings::load(Path::new(config)).unwrap();
    let mut cc = flumen::source::SourceOptions::from_settings(&settings).client_config();
    cc.set("group.id", format!("bench-raw-{mode}"));
    let consumer: BaseConsumer = cc.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let marks = match mode.as_str() {
        "poll" => raw_poll(&consumer, n),
        "batch" => batch_consume(&consumer, n, |_, _| {}),
        "relay" => raw_relay(&consumer, &settings, parts, n),
        other => panic!("unknown raw mode {other}"),
    };
    let rate = marks.mid.rate().unwrap_or(f64::NAN);
    println!("{} {rate}", marks.first.elapsed().as_secs_f64());
}

/// When a raw consumer took its first message, and its rate from 10% to 90% of N.
struct Marks {
    first: Instant,
    mid: MidRate,
}

impl Marks {
    fn new(n: u64) -> Self {
        Marks {
            first: Instant::now(),
            mid: MidRate::new(n),
        }
    }

    /// Called with the count so far after each message (1 after the first).
    fn seen(&mut self, seen: u64) {
        if seen == 1 {
            self.first = Instant::now();
        }
        self.mid.sample(seen as f64);
    }
}

fn raw_poll(consumer: &BaseConsumer, n: u64) -> Marks {
    let mut marks = Marks::new(n);
    let mut seen = 0u64;
    while seen < n {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.unwrap();
            seen += 1;
            marks.seen(seen);
        }
    }
    marks
}

/// Takes N messages with `rd_kafka_consume_batch_queue` (1,000 a call) and hands each
/// one's partition and payload to `each`; returns when the first, the 10% and the 90% mark
/// arrived.
fn batch_consume(consumer: &BaseConsumer, n: u64, mut each: impl FnMut(i32, &[u8])) -> Marks {
    use rdkafka::bindings as rd;
    let mut marks = Marks::new(n);
    let mut seen = 0u64;
    let mut buf = vec![std::ptr::null_mut::<rd::rd_kafka_message_t>(); 1000];
    // SAFETY: the queue and every message returned are destroyed exactly once; messages are
    // only read before they are destroyed.
    unsafe {
        let q = rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
        while seen < n {
            let got = rd::rd_kafka_consume_batch_queue(q, 100, buf.as_mut_ptr(), buf.len());
            for m in &buf[..got.max(0) as usize] {
                let msg = &**m;
                assert_eq!(
                    msg.err,
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                    "fetch error"
                );
                seen += 1;
                marks.seen(seen);
                let payload = if msg.payload.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(msg.payload as *const u8, msg.len)
                };
                each(msg.partition, payload);
                rd::rd_kafka_message_destroy(*m);
            }
        }
        rd::rd_kafka_queue_destroy(q);
    }
    marks
}

/// The ceiling of a relay with no channel and no commit protocol: values as lines straight
/// from librdkafka's batch consume into HDFS files per partition (256 KiB writes, as the
/// sink's), rolled by flumen's own rules (`hdfs.roll_bytes_max`, and `roll_interval_s` from a
/// file's opening, so the last files wait for it as flumen's do), closed in the background as
/// the sink's are, on one thread as flumen's sink. Timed from the first message to the last
/// close.
fn raw_relay(
    consumer: &BaseConsumer,
    settings: &flumen::config::Settings,
    parts: i32,
    n: u64,
) -> Marks {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = std::sync::Arc::new(flumen::hdfs::connect(&settings.hdfs).unwrap());
    // Under the topic's directory (its config's path), which the bench deletes when it ends.
    let prefix = settings.hdfs.path.static_prefix();
    let dir = format!("{prefix}/{}", uuid::Uuid::new_v4().simple());
    let mut files: Vec<RawFile> = (0..parts).map(|_| RawFile::default()).collect();
    let mut closing = Vec::new();
    let marks = batch_consume(consumer, n, |p, value| {
        let f = &mut files[p as usize];
        f.buf.extend_from_slice(value);
        f.buf.push(b'\n');
        f.written += value.len() as u64 + 1;
        if f.buf.len() >= RawFile::CHUNK {
            rt.block_on(f.write(&client, &dir, p));
        }
        if f.written >= settings.hdfs.roll_bytes_max {
            rt.block_on(f.write(&client, &dir, p));
            closing.push(rt.spawn(f.close()));
        }
    });
    // The last files: each closes when its roll interval runs out, as flumen's do.
    let mut last: Vec<(Instant, usize)> = Vec::new();
    for (p, f) in files.iter_mut().enumerate() {
        if !f.buf.is_empty() {
            rt.block_on(f.write(&client, &dir, p as i32));
        }
        if let Some((_, opened)) = &f.open {
            last.push((*opened + settings.hdfs.roll_interval, p));
        }
    }
    last.sort();
    for (due, p) in last {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        closing.push(rt.spawn(files[p].close()));
    }
    for c in closing {
        rt.block_on(c).unwrap();
    }
    marks
}

/// One partition's file of the raw relay.
#[derive(Default)]
struct RawFile {
    open: Option<(hdfs_native::file::FileWriter, Instant)>,
    buf: Vec<u8>,
    written: u64,
    files: u32,
}

impl RawFile {
    const CHUNK: usize = 256 << 10;

    /// Writes what is buffered, opening the partition's next file first if none is open.
    async fn write(&mut self, client: &hdfs_native::Client, dir: &str, p: i32) {
        if self.open.is_none() {
            let opts = hdfs_native::WriteOptions::default().create_parent(true);
            let path = format!("{dir}/{p}.{}", self.files);
            self.files += 1;
            let w = client.create(&path, opts).await.unwrap();
            self.open = Some((w, Instant::now()));
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::CHUNK + 4096));
        if !chunk.is_empty() {
            self.open
                .as_mut()
                .unwrap()
                .0
                .write_bytes(chunk.into())
                .await
                .unwrap();
        }
    }

    /// Takes the open file out to be closed, so the next record opens a new one.
    fn close(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        self.written = 0;
        let (mut w, _) = self.open.take().expect("a file is open");
        async move { w.close().await.unwrap() }
    }
}
