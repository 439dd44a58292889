//! Stage one: the TOML file as written, parsed by serde. `deny_unknown_fields` rejects unknown
//! keys and serde rejects wrong types and unknown enum values; `super::locate` turns serde's
//! byte span into the key and line. Each default is a named function that says where the value
//! comes from. Nothing here checks a value's range: that is stage two (`super::settings`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{
    Compression, Format, IsolationLevel, LogFormat, OffsetReset, OversizedRecordPolicy,
    TextNewlinePolicy, TimeZone,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub channel: ChannelConfig,
    pub hdfs: HdfsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Upper bound on a graceful shutdown (SIGTERM/SIGINT) before the process exits anyway.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated host:port list (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group id; instances with the same id share the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// librdkafka `group.instance.id`: static membership (KIP-345). Default: none.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    #[serde(default)]
    pub isolation_level: IsolationLevel,
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    #[serde(default = "default_max_poll_interval_ms")]
    pub max_poll_interval_ms: u64,
    #[serde(default = "default_batch_records_max")]
    pub batch_records_max: usize,
    #[serde(default = "default_batch_duration_ms")]
    pub batch_duration_ms: u64,
    #[serde(default = "default_batch_bytes_max")]
    pub batch_bytes_max: usize,
    /// Default: `batch_bytes_max`, the largest record a batch can carry.
    #[serde(default)]
    pub record_bytes_max: Option<usize>,
    #[serde(default)]
    pub oversized_record_policy: OversizedRecordPolicy,
    /// Memory librdkafka's prefetch may hold, bytes (`source::budget`).
    #[serde(default = "default_prefetch_memory_bytes_max")]
    pub prefetch_memory_bytes_max: u64,
    /// librdkafka properties passed through verbatim (TLS, SASL, fetch tuning); a value may
    /// come from a file or an environment variable instead (`super::secret`).
    #[serde(default)]
    pub properties: BTreeMap<String, super::secret::RawValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub dir: PathBuf,
    #[serde(default = "default_segment_bytes_max")]
    pub segment_bytes_max: u64,
    #[serde(default = "default_capacity_bytes_max")]
    pub capacity_bytes_max: u64,
    #[serde(default = "default_resume_bytes")]
    pub resume_bytes: u64,
    #[serde(default = "default_group_commit_bytes_max")]
    pub group_commit_bytes_max: usize,
    #[serde(default = "default_disk_free_bytes_min")]
    pub disk_free_bytes_min: u64,
    #[serde(default = "default_frame_version")]
    pub frame_version: u8,
    #[serde(default = "default_segment_version")]
    pub segment_version: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HdfsConfig {
    pub url: String,
    pub path: String,
    /// Default: `<static prefix of path>/_flumen`.
    #[serde(default)]
    pub state_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// Default by format: `.txt` or `.jsonl`.
    #[serde(default)]
    pub file_suffix: Option<String>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "default_roll_records_max")]
    pub roll_records_max: u64,
    #[serde(default = "default_roll_bytes_max")]
    pub roll_bytes_max: u64,
    #[serde(default = "default_roll_interval_s")]
    pub roll_interval_s: u64,
    #[serde(default)]
    pub idle_timeout_s: u64,
    #[serde(default)]
    pub use_local_timestamp: bool,
    #[serde(default)]
    pub time_zone: TimeZone,
    #[serde(default)]
    pub dead_letter_dir: Option<String>,
    #[serde(default)]
    pub text_newline_policy: TextNewlinePolicy,
    #[serde(default = "default_retry_backoff_max_ms")]
    pub retry_backoff_max_ms: u64,
    #[serde(default = "default_files_closing_max")]
    pub files_closing_max: usize,
    #[serde(default = "default_files_closing_per_partition_max")]
    pub files_closing_per_partition_max: usize,
    /// Kerberos client principal (`_HOST` is replaced by this host's name). Default: none.
    #[serde(default)]
    pub kerberos_principal: Option<String>,
    /// Keytab holding `kerberos_principal`'s keys; without it, tickets come from the
    /// process's default credential cache (kept fresh by someone else, e.g. k5start).
    #[serde(default)]
    pub kerberos_keytab: Option<std::path::PathBuf>,
    /// `[hdfs.parquet]`: only with `format = "parquet"`.
    #[serde(default)]
    pub parquet: Option<ParquetConfig>,
    /// Hadoop client configuration passed to hdfs-native (data transfer protection, HA
    /// name services, ...), over whatever `HADOOP_CONF_DIR` holds.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `[hdfs.completeness]`: markers in complete time buckets (off by default).
    #[serde(default)]
    pub completeness: CompletenessConfig,
}

/// `[hdfs.completeness]`: an empty marker file in each time bucket once every partition has
/// committed past its end plus the allowed lateness; later records go to `late_path`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletenessConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Name of the marker file; hidden (`_` or `.` first) so readers skip it.
    #[serde(default = "default_marker")]
    pub marker: String,
    #[serde(default = "default_allowed_lateness_s")]
    pub allowed_lateness_s: u64,
    /// Template for late records. Default: `hdfs.path` with `/_late` after its static prefix.
    #[serde(default)]
    pub late_path: Option<String>,
}

impl Default for CompletenessConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            marker: default_marker(),
            allowed_lateness_s: default_allowed_lateness_s(),
            late_path: None,
        }
    }
}

/// Hadoop's `_SUCCESS` convention, named for what it says here.
fn default_marker() -> String {
    "_COMPLETE".into()
}

/// Five minutes: producers' batching and clock skew, well inside an hour bucket.
fn default_allowed_lateness_s() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// Typed columns for JSON values, e.g. "seq long, region string, lat double nullable"
    /// (`crate::sink::value_schema`). Default: none, the envelope only.
    #[serde(default)]
    pub value_schema: Option<String>,
    /// The same, read from a file; not together with `value_schema`.
    #[serde(default)]
    pub value_schema_file: Option<PathBuf>,
    /// Buffered bytes at which a row group is encoded, per open file.
    #[serde(default = "default_row_group_bytes_max")]
    pub row_group_bytes_max: u64,
    /// Buffered bytes of all open files' row groups together; above it the largest file
    /// rolls early.
    #[serde(default = "default_buffers_bytes_max")]
    pub buffers_bytes_max: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address for /metrics and /health; empty disables.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

// Defaults. Flume's own defaults (rollCount=10, rollSize=1024) make tiny files, so the
// roll defaults follow HDFS block-sized files instead; import-flume carries explicit values.
fn default_shutdown_timeout_ms() -> u64 {
    30_000
}
fn default_group_id() -> String {
    "flumen".into()
}
/// The Java consumer's default (`session.timeout.ms`, Kafka 3.0+).
fn default_session_timeout_ms() -> u64 {
    45_000
}
/// The Java consumer's and librdkafka's default.
fn default_max_poll_interval_ms() -> u64 {
    300_000
}
/// Flume KafkaSource `batchSize` default.
fn default_batch_records_max() -> usize {
    1000
}
/// Flume KafkaSource `batchDurationMillis` default.
fn default_batch_duration_ms() -> u64 {
    1000
}
fn default_batch_bytes_max() -> usize {
    8 << 20
}
fn default_prefetch_memory_bytes_max() -> u64 {
    16 << 20
}
fn default_segment_bytes_max() -> u64 {
    64 << 20
}
fn default_capacity_bytes_max() -> u64 {
    10 << 30
}
fn default_resume_bytes() -> u64 {
    8 << 30
}
fn default_group_commit_bytes_max() -> usize {
    4 << 20
}
fn default_disk_free_bytes_min() -> u64 {
    512 << 20
}
fn default_segment_version() -> u32 {
    crate::wal::log::SEGMENT_VERSION
}
fn default_frame_version() -> u8 {
    2
}
/// Flume HDFS sink `hdfs.filePrefix` is `FlumeData`; ours names what the files hold.
fn default_file_prefix() -> String {
    "events".into()
}
fn default_roll_records_max() -> u64 {
    0
}
/// One HDFS block (`dfs.blocksize` default), so Spark reads a file per task.
fn default_roll_bytes_max() -> u64 {
    128 << 20
}
fn default_roll_interval_s() -> u64 {
    300
}
/// Big enough for Spark's column reads to be long runs (pages of 1 MiB, several per column),
/// small enough to fill within a roll interval at a few MB/s per partition.
pub(super) fn default_row_group_bytes_max() -> u64 {
    16 << 20
}
/// Sixteen full row groups: a member writing more partitions than that at full size rolls
/// its largest files early rather than grow (ARCHITECTURE.md, Invariants).
pub(super) fn default_buffers_bytes_max() -> u64 {
    256 << 20
}
fn default_files_closing_max() -> usize {
    64
}
fn default_files_closing_per_partition_max() -> usize {
    16
}
fn default_retry_backoff_max_ms() -> u64 {
    30_000
}
/// Prometheus' default port range neighbourhood, loopback only.
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}
