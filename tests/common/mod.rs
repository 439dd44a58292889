//! Shared fixture for integration tests against the real Kafka and HDFS of `scripts/testbed`.
//!
//! It reuses a running testbed (`scripts/testbed status`) or starts one (`scripts/testbed up`)
//! and stops it when the test process exits. A test that cannot get a service fails with a
//! message saying how to start it; nothing is ever skipped.
#![allow(dead_code)]

pub mod net;
pub mod secure_kafka;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdfs_native::Client;
pub use net::{free_port, http_get};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub mod kerberos;

pub struct Testbed {
    pub kafka: String,
    pub hdfs_url: String,
    pub hdfs_http: String,
    /// Everything `scripts/testbed` exported, for the optional parts (`--secure`).
    pub exports: HashMap<String, String>,
}

impl Testbed {
    /// An export of `scripts/testbed up --secure`; fails the test, naming how to get it.
    pub fn secure_export(&self, key: &str) -> String {
        self.exports.get(key).cloned().unwrap_or_else(|| {
            panic!(
                "the testbed exports no {key}: it runs without --secure. Stop it (scripts/testbed \
                 down) and rerun, or start it with `scripts/testbed up --secure`; tests never \
                 skip when a service is missing."
            )
        })
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_exports(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
        .collect()
}

extern "C" fn stop_testbed() {
    let _ = Command::new(repo().join("scripts/testbed"))
        .arg("down")
        .status();
}

/// The testbed, started at most once per test process.
pub fn testbed() -> &'static Testbed {
    static TB: OnceLock<Testbed> = OnceLock::new();
    TB.get_or_init(|| {
        let script = repo().join("scripts/testbed");
        let status = Command::new(&script)
            .arg("status")
            .stderr(Stdio::null())
            .output();
        let exports = match status {
            Ok(o) if o.status.success() => parse_exports(&String::from_utf8_lossy(&o.stdout)),
            _ => {
                eprintln!(
                    "fixture: no testbed running; starting one with scripts/testbed up --secure"
                );
                let o = Command::new(&script)
                    .args(["up", "--secure"])
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("run scripts/testbed up");
                assert!(
                    o.status.success(),
                    "could not start the Kafka/HDFS testbed (scripts/testbed up failed, see its \
                     output above). Start it by hand with `scripts/testbed up` and rerun; tests \
                     never skip when a service is missing."
                );
                // SAFETY: registering a plain extern "C" fn with atexit has no preconditions.
                unsafe { libc::atexit(stop_testbed) };
                parse_exports(&String::from_utf8_lossy(&o.stdout))
            }
        };
        let get = |k: &str| {
            exports
                .get(k)
                .cloned()
                .unwrap_or_else(|| panic!("scripts/testbed printed no {k}; got {exports:?}"))
        };
        Testbed {
            kafka: get("KAFKA_BOOTSTRAP"),
            hdfs_url: get("HDFS_URL"),
            hdfs_http: get("HDFS_HTTP"),
            exports,
        }
    })
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

pub fn hdfs(tb: &Testbed) -> Arc<Client> {
    Arc::new(
        hdfs_native::ClientBuilder::new()
            .with_url(&tb.hdfs_url)
            .build()
            .expect("hdfs client"),
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An admin client of the testbed's Kafka.
fn admin(tb: &Testbed) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &tb.kafka)
        .create()
        .expect("admin client")
}

pub fn create_topic(tb: &Testbed, name: &str, partitions: i32) {
    let admin = admin(tb);
    let rt = runtime();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let r = rt
        .block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| {
            panic!(
                "Kafka at {} did not answer create_topics: {e}. Is `scripts/testbed up` running?",
                tb.kafka
            )
        });
    for res in r {
        res.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

pub fn producer(tb: &Testbed) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &tb.kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces events `from..to` with key `cell-<id % cells>` and value `{"id":N}`; waits for
/// every delivery.
pub fn produce(p: &BaseProducer, topic: &str, from: u64, to: u64) {
    for id in from..to {
        let key = format!("cell-{}", id % 97);
        let value = format!("{{\"id\":{id}}}");
        send(p, BaseRecord::to(topic).key(&key).payload(&value));
    }
    p.flush(Duration::from_secs(60)).expect("flush producer");
}

/// Sends `rec`, polling while librdkafka's queue is full; any other error fails the test.
pub fn send<K, V>(p: &BaseProducer, mut rec: BaseRecord<'_, K, V>)
where
    K: rdkafka::message::ToBytes + ?Sized,
    V: rdkafka::message::ToBytes + ?Sized,
{
    while let Err((e, back)) = p.send(rec) {
        assert!(
            matches!(
                e,
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull
                )
            ),
            "produce: {e}"
        );
        p.poll(Duration::from_millis(10));
        rec = back;
    }
    p.poll(Duration::ZERO);
}

pub struct Relay {
    pub child: Child,
    pub log: PathBuf,
}

impl Relay {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid(), sig) };
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Waits until the log contains `needle` `count` times; fails after `limit`, with the log.
    pub fn wait_log(&self, needle: &str, count: usize, limit: Duration) {
        let t = Instant::now();
        while self.log_text().matches(needle).count() < count {
            assert!(
                t.elapsed() < limit,
                "no {count}x {needle:?} within {limit:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    /// The log lines that tell a partition's story (ownership, halts, reconciliation, errors),
    /// for a failing assertion's message.
    pub fn key_log_lines(&self) -> String {
        const KEYS: [&str; 13] = [
            "WARN", "ERROR", "halt", "resum", "reconcil", "assign", "revok", "genesis", "skip",
            "stuck", "abandon", "restart", "lease",
        ];
        let text = self.log_text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| KEYS.iter().any(|k| l.contains(k)))
            .collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
    /// Sends SIGTERM and asserts a clean exit (status 0) within `limit`.
    pub fn stop_gracefully(&mut self, limit: Duration) {
        self.signal(libc::SIGTERM);
        let status = self.wait_for(limit);
        assert!(
            status.is_some_and(|s| s.success()),
            "graceful exit: {status:?}\n{}",
            self.key_log_lines()
        );
    }
    /// Waits for exit up to `limit`; returns the exit status, or None if still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Relay {
    /// Kills the relay; in a failing test, first prints its log's key lines, since the test
    /// directory and so the log are deleted (a CI failure is then explained by its own output).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- key lines of {} (the relay's log) ---\n{}",
                self.log.display(),
                self.key_log_lines()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per-test relay settings; `write` renders the TOML.
#[derive(Clone)]
pub struct RelayConfig {
    pub topic: String,
    pub group: String,
    pub hdfs_path: String,
    pub channel: PathBuf,
    pub extra_kafka: String,
    pub extra_hdfs: String,
    pub session_timeout_ms: u64,
    /// `metrics.listen`; empty disables the HTTP endpoint.
    pub metrics_listen: String,
    /// `kafka.bootstrap_servers` when not the testbed's plain listener (e.g. its SASL_SSL one).
    pub kafka_bootstrap: Option<String>,
    /// More `[kafka.properties]` lines (TOML), e.g. a TLS and SASL login.
    pub extra_properties: String,
    /// `hdfs.url` when not the testbed's plain NameNode (e.g. its Kerberized one).
    pub hdfs_url: Option<String>,
}

impl RelayConfig {
    pub fn new(topic: &str, work: &Path) -> Self {
        Self {
            topic: topic.into(),
            group: unique("g"),
            hdfs_path: format!("/flumen-tests/{topic}/out"),
            channel: work.join("channel"),
            extra_kafka: String::new(),
            extra_hdfs: "roll_records_max = 500\nroll_interval_s = 2\n".into(),
            session_timeout_ms: 6000,
            metrics_listen: String::new(),
            kafka_bootstrap: None,
            extra_properties: String::new(),
            hdfs_url: None,
        }
    }

    pub fn state_dir(&self) -> String {
        format!("/flumen-tests/{}/out/_flumen", self.topic)
    }

    pub fn write(&self, tb: &Testbed, path: &Path) {
        let text = format!(
            r#"shutdown_timeout_ms = 20000
[kafka]
bootstrap_servers = "{kafka}"
topics = ["{topic}"]
group_id = "{group}"
session_timeout_ms = {session}
batch_records_max = 200
batch_duration_ms = 200
{extra_kafka}
[kafka.properties]
"heartbeat.interval.ms" = "1000"
"topic.metadata.refresh.interval.ms" = "2000"
{extra_properties}
[channel]
dir = "{channel}"
segment_bytes_max = 1048576
capacity_bytes_max = 268435456
resume_bytes = 134217728
disk_free_bytes_min = 1048576
[hdfs]
url = "{hdfs}"
path = "{path}"
file_prefix = "test-events"
format = "jsonl"
retry_backoff_max_ms = 2000
{extra_hdfs}
[metrics]
listen = "{metrics}"
"#,
            kafka = self.kafka_bootstrap.as_deref().unwrap_or(&tb.kafka),
            topic = self.topic,
            group = self.group,
            session = self.session_timeout_ms,
            extra_kafka = self.extra_kafka,
            extra_properties = self.extra_properties,
            channel = self.channel.display(),
            hdfs = self.hdfs_url.as_deref().unwrap_or(&tb.hdfs_url),
            path = self.hdfs_path,
            extra_hdfs = self.extra_hdfs,
            metrics = self.metrics_listen,
        );
        std::fs::write(path, text).unwrap();
    }
}

/// Starts `flumen run` with `config`, logging to `<config>.log.<n>`.
pub fn spawn_relay(config: &Path, failpoints: Option<&str>) -> Relay {
    spawn_relay_with(config, failpoints, &[])
}

/// [`spawn_relay`] with extra environment variables for the daemon.
pub fn spawn_relay_with(config: &Path, failpoints: Option<&str>, env: &[(&str, &str)]) -> Relay {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = config.with_extension(format!("log.{n}"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flumen"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info,flumen=debug,rdkafka=warn")
        .stdout(Stdio::null())
        .stderr(file);
    match failpoints {
        Some(f) => cmd.env("FAILPOINTS", f),
        None => cmd.env_remove("FAILPOINTS"),
    };
    cmd.envs(env.iter().copied());
    Relay {
        child: cmd.spawn().expect("spawn flumen"),
        log,
    }
}

/// The kill -9 loop: `cycles` times, produces the next `per_cycle` events and kills a fresh
/// relay at a repeatable pseudo-random moment 0.5-4.5 s after its start (xorshift), then
/// leaves one relay running. Returns it and how many events were produced.
pub fn kill9_cycles(p: &BaseProducer, topic: &str, config: &Path, cycles: u64) -> (Relay, u64) {
    let per_cycle = 800;
    let mut seed = 0x2545F4914F6CDD1Du64;
    for cycle in 0..cycles {
        produce(p, topic, cycle * per_cycle, (cycle + 1) * per_cycle);
        let mut relay = spawn_relay(config, None);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(500 + seed % 4000));
        relay.kill9();
    }
    (spawn_relay(config, None), cycles * per_cycle)
}

/// One crash site: 2,000 events, a relay that dies at failpoint `site` on its second hit
/// (so something is committed before the crash; abort is as abrupt as kill -9), then 1,000
/// more and a relay that runs clean. Returns it; 3,000 events must land exactly once.
pub fn crash_at_then_run_clean(p: &BaseProducer, topic: &str, config: &Path, site: &str) -> Relay {
    produce(p, topic, 0, 2000);
    relay_dies_at(config, site, Duration::from_secs(120));
    produce(p, topic, 2000, 3000);
    spawn_relay(config, None)
}

/// Runs a relay armed to die at failpoint `site` on its second hit and asserts, within
/// `limit`, that it died there.
pub fn relay_dies_at(config: &Path, site: &str, limit: Duration) {
    let mut relay = spawn_relay(config, Some(&format!("{site}=1*off->return")));
    let status = relay.wait_for(limit);
    let log = relay.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the relay should have died at {site}: {status:?}\n{log}"
    );
    assert!(log.contains(&format!("failpoint {site} hit")), "{log}");
}

/// One delivered event as read back from a final HDFS file.
#[derive(Debug, Clone)]
pub struct Landed {
    pub file: String,
    pub partition: i32,
    pub offset: i64,
    pub id: u64,
}

/// Reads every record of every final file under `dir` (see `read_final_files`).
pub async fn read_landed(client: &Client, dir: &str) -> Vec<Landed> {
    let mut out = Vec::new();
    for (file, bytes) in read_final_files(client, dir).await {
        for line in String::from_utf8(bytes).expect("utf8").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("jsonl line");
            let inner: serde_json::Value =
                serde_json::from_str(v["value"].as_str().expect("value")).expect("event json");
            out.push(Landed {
                file: file.clone(),
                partition: v["partition"].as_i64().unwrap() as i32,
                offset: v["offset"].as_i64().unwrap(),
                id: inner["id"].as_u64().unwrap(),
            });
        }
    }
    out
}

/// Polls HDFS until `expected` distinct ids landed or `limit` passes; returns what landed.
pub fn wait_landed(client: &Client, dir: &str, expected: usize, limit: Duration) -> Vec<Landed> {
    let rt = runtime();
    let t = Instant::now();
    loop {
        let landed = rt.block_on(read_landed(client, dir));
        let distinct: std::collections::HashSet<u64> = landed.iter().map(|l| l.id).collect();
        if distinct.len() >= expected || t.elapsed() > limit {
            return landed;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Asserts the exactly-once contract: ids `0..n` each exactly once, offsets strictly increasing
/// per partition within and across files, and final files' offset ranges never overlapping.
pub fn assert_exactly_once(landed: &[Landed], n: u64) {
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for l in landed {
        *count.entry(l.id).or_default() += 1;
    }
    let dups: Vec<_> = count.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(dups.is_empty(), "duplicated ids (id, copies): {dups:?}");
    let missing: Vec<u64> = (0..n).filter(|i| !count.contains_key(i)).take(10).collect();
    assert!(
        missing.is_empty(),
        "missing ids (first 10): {missing:?} of {n}; landed {}",
        landed.len()
    );
    assert_eq!(landed.len() as u64, n, "landed records");
    let mut by_part: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for l in landed {
        by_part.entry(l.partition).or_default().push(l.offset);
    }
    for (p, offsets) in by_part.iter_mut() {
        offsets.sort_unstable();
        for w in offsets.windows(2) {
            assert!(
                w[0] < w[1],
                "partition {p}: offset {} delivered twice",
                w[0]
            );
        }
    }
    // Ranges from the file names never overlap within a partition.
    let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    let mut files: Vec<&str> = landed.iter().map(|l| l.file.as_str()).collect();
    files.sort();
    files.dedup();
    for f in files {
        let name = f.rsplit('/').next().unwrap();
        let (_, p, first, last) = flumen::sink::parse_final_name(name).expect("final name parses");
        ranges.entry(p).or_default().push((first, last));
    }
    for (p, rs) in ranges.iter_mut() {
        rs.sort();
        for w in rs.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "partition {p}: file ranges {:?} and {:?} overlap",
                w[0],
                w[1]
            );
        }
    }
}

/// Data files left anywhere in the ledger: in-use files in a staging area, or claimed files not
/// yet renamed to their final names. Every other ledger entry is a directory.
pub async fn in_use_files(client: &Client, state_dir: &str) -> Vec<String> {
    match client
        .list_status(&format!("{state_dir}/ledger"), true)
        .await
    {
        Ok(l) => l.into_iter().filter(|s| !s.isdir).map(|s| s.path).collect(),
        Err(_) => Vec::new(),
    }
}

/// A scratch directory; kept after the test (and its path printed) with FLUMEN_KEEP_TEST_DIRS=1,
/// so relay logs can be read after a failure.
pub fn workdir() -> tempfile::TempDir {
    let keep = std::env::var_os("FLUMEN_KEEP_TEST_DIRS").is_some();
    let dir = tempfile::Builder::new()
        .prefix("flumen-test-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("test dir kept: {}", dir.path().display());
    }
    dir
}

/// Runs a `scripts/testbed` fault command against the fixture's testbed.
pub fn testbed_cmd(args: &[&str]) {
    let _ = testbed();
    let st = Command::new(repo().join("scripts/testbed"))
        .args(args)
        .status()
        .expect("scripts/testbed");
    assert!(st.success(), "scripts/testbed {args:?} failed");
}

/// One test's setup: a fresh 3-partition topic, a scratch directory and a relay config
/// written to `<work>/flumen.toml`.
pub struct Case {
    pub cfg: RelayConfig,
    pub config: PathBuf,
    pub work: tempfile::TempDir,
}

impl Case {
    pub fn new(prefix: &str) -> Case {
        let tb = testbed();
        let topic = unique(prefix);
        create_topic(tb, &topic, 3);
        let work = workdir();
        let cfg = RelayConfig::new(&topic, work.path());
        let config = work.path().join("flumen.toml");
        cfg.write(tb, &config);
        Case { cfg, config, work }
    }

    /// Serves /metrics and /health on a free loopback port; returns its address.
    pub fn with_metrics(&mut self) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        self.cfg.metrics_listen = addr.clone();
        self.rewrite();
        addr
    }

    /// Writes `cfg` again after a test changed it.
    pub fn rewrite(&self) {
        self.cfg.write(testbed(), &self.config);
    }
}

/// Creates a topic with topic-level configs, e.g. `max.message.bytes` for records above the
/// broker's default 1 MB limit.
pub fn create_topic_with(tb: &Testbed, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(tb);
    let rt = runtime();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let r = rt
        .block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| panic!("Kafka at {} did not answer create_topics: {e}", tb.kafka));
    for res in r {
        res.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// One record to produce to a given partition; header keys are raw bytes, so a test can send
/// keys that are not UTF-8 or that hold a NUL.
#[derive(Clone, Default)]
pub struct RawRecord {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl RawRecord {
    /// A record whose value is `{"id":N}`, as `produce` writes them.
    pub fn event(partition: i32, id: u64) -> Self {
        Self {
            partition,
            key: Some(format!("cell-{}", id % 97).into_bytes()),
            value: Some(format!("{{\"id\":{id}}}").into_bytes()),
            headers: Vec::new(),
        }
    }
}

/// Headers built through librdkafka's own `rd_kafka_header_add`, which takes a key with its
/// length: rdkafka's `Header` wants a `&str` key and so cannot send a non-UTF-8 one.
fn raw_headers(headers: &[(Vec<u8>, Option<Vec<u8>>)]) -> rdkafka::message::OwnedHeaders {
    let owned = rdkafka::message::OwnedHeaders::new();
    // `BorrowedHeaders` is a view whose address is the native headers object.
    let native = owned.as_borrowed() as *const rdkafka::message::BorrowedHeaders
        as *mut rdkafka::bindings::rd_kafka_headers_t;
    for (k, v) in headers {
        let (vp, vl) = match v {
            Some(v) => (v.as_ptr() as *const libc::c_void, v.len() as isize),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `native` is the live headers object owned by `owned`; librdkafka copies
        // the key and value bytes it is given with their lengths.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                native,
                k.as_ptr() as *const libc::c_char,
                k.len() as isize,
                vp,
                vl,
            )
        };
        assert_eq!(
            err,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
    }
    owned
}

/// Produces `records` in order (each to its partition) and waits for every delivery.
/// `extra` sets producer properties, e.g. a larger `message.max.bytes`.
pub fn produce_raw(tb: &Testbed, topic: &str, records: &[RawRecord], extra: &[(&str, &str)]) {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &tb.kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for (k, v) in extra {
        cc.set(*k, *v);
    }
    let p: BaseProducer = cc.create().expect("producer");
    for r in records {
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic).partition(r.partition);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if !r.headers.is_empty() {
            rec = rec.headers(raw_headers(&r.headers));
        }
        if let Err((e, _)) = p.send(rec) {
            panic!("produce: {e}");
        }
        // One at a time, so each record's offset is its place in `records` per partition.
        p.flush(Duration::from_secs(60)).expect("flush producer");
    }
}

/// Every final file under `dir` (recursively, skipping `_`/`.` names as Spark does), with its
/// bytes, sorted by path.
pub async fn read_final_files(client: &Client, dir: &str) -> Vec<(String, Vec<u8>)> {
    let listing = match client.list_status(dir, true).await {
        Ok(l) => l,
        Err(hdfs_native::HdfsError::FileNotFound(_)) => return Vec::new(),
        Err(e) => panic!("HDFS at list {dir}: {e}. Is `scripts/testbed up` running?"),
    };
    let mut out = Vec::new();
    for st in listing {
        let rel = st.path.strip_prefix(dir).unwrap_or(&st.path);
        if st.isdir
            || rel
                .split('/')
                .any(|c| c.starts_with('_') || c.starts_with('.'))
        {
            continue;
        }
        out.push((st.path.clone(), read_whole(client, &st.path).await));
    }
    out.sort();
    out
}

/// Reads a whole file, trying up to three times. hdfs-native's block reader fails now and then
/// with "All DataNodes failed" on a file that reads fine the next time (hdfs-native #227,
/// about 1 in 300 reads there; twice in some twenty CI runs here, with nothing in the
/// DataNode's log). flumen itself never reads data files, so this is the test's client only:
/// each failure is printed, and a file that fails every attempt still fails the test.
async fn read_whole(client: &Client, path: &str) -> Vec<u8> {
    let mut errors = Vec::new();
    for attempt in 1..=3 {
        let read = async {
            let reader = client.read(path).await?;
            reader.read_range(0, reader.file_length()).await
        };
        match read.await {
            Ok(bytes) => return bytes.to_vec(),
            Err(e) => {
                eprintln!("read of final file {path} failed (attempt {attempt} of 3): {e}");
                errors.push(e.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("read final file {path}: every attempt failed: {errors:?}");
}

/// Every name under `dir` (recursively), hidden ones included.
pub async fn list_names(client: &Client, dir: &str) -> Vec<String> {
    match client.list_status(dir, true).await {
        Ok(l) => l.into_iter().map(|s| s.path).collect(),
        Err(hdfs_native::HdfsError::FileNotFound(_)) => Vec::new(),
        Err(e) => panic!("HDFS at list {dir}: {e}. Is `scripts/testbed up` running?"),
    }
}

/// Polls /health until its body contains `needle` or `limit` passes; returns the last body.
pub fn wait_health(addr: &str, needle: &str, limit: Duration) -> String {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < limit {
        if let Some(b) = http_get(addr, "/health") {
            if b.contains(needle) {
                return b;
            }
            last = b;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("/health never said {needle:?} within {limit:?}; last answer:\n{last}");
}

/// Sets a space quota of `bytes` on HDFS directory `dir` (created if missing) through the
/// MiniHdfs control port. A new block needs replication x block size (16 MiB in the testbed) of
/// room, so any quota below that refuses the next block under `dir` with DSQuotaExceeded.
pub fn hdfs_quota(dir: &str, bytes: u64) {
    testbed_cmd(&["hdfs-ctl", "quota", dir, &bytes.to_string()]);
}

/// Removes the space quota of HDFS directory `dir`.
pub fn hdfs_quota_clear(dir: &str) {
    testbed_cmd(&["hdfs-ctl", "quota-clear", dir]);
}

/// Puts the NameNode into safe mode (`true`) by hand, or takes it out (`false`).
pub fn hdfs_safemode(enter: bool) {
    let cmd = if enter {
        "safemode-enter"
    } else {
        "safemode-leave"
    };
    testbed_cmd(&["hdfs-ctl", cmd]);
}

/// The value of an unlabelled metric in a Prometheus text body, if present.
pub fn metric_value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Moves a partition's log start to `before`, as retention would.
pub fn delete_records(tb: &Testbed, topic: &str, partition: i32, before: i64) {
    let admin = admin(tb);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(before))
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let r = runtime()
        .block_on(admin.delete_records(&tpl, &opts))
        .unwrap();
    for e in r.elements() {
        assert!(e.error().is_ok(), "delete records: {:?}", e.error());
    }
}

/// Deletes a topic and waits until the broker confirms it.
pub fn delete_topic(tb: &Testbed, topic: &str) {
    let admin = admin(tb);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let r = runtime()
        .block_on(admin.delete_topics(&[topic], &opts))
        .unwrap_or_else(|e| panic!("Kafka at {} did not answer delete_topics: {e}", tb.kafka));
    for res in r {
        res.unwrap_or_else(|(t, e)| panic!("delete topic {t}: {e}"));
    }
}

/// Runs the `flumen` binary with `args` (warnings only in its log, no failpoints).
pub fn flumen(args: &[&str]) -> std::process::Output {
    flumen_with(args, &[])
}

/// [`flumen`] with extra environment variables (e.g. a Kerberos credential cache).
pub fn flumen_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("FAILPOINTS")
        .envs(env.iter().copied())
        .output()
        .expect("run flumen")
}

/// A command's status, stdout and stderr, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
