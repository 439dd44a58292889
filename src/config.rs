//! The TOML configuration: a documented type parsed in two stages. Stage one (serde, with
//! `deny_unknown_fields`) rejects unknown keys and wrong types; stage two (`validate`) checks
//! values. Both report the key and its line. `config.example.toml` documents every key and is
//! parsed by a test so it cannot rot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: `{key}` {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

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
    /// librdkafka `group.instance.id`: makes this instance a static member of the group
    /// (KIP-345). A restart with the same id takes its partitions back at once instead of
    /// waiting `session_timeout_ms` for the dead member to expire; in exchange a stopped
    /// instance holds its partitions until `session_timeout_ms` passes. Unique per instance.
    /// Default: none (dynamic membership).
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// `read_committed` (default: skips aborted transactions) or `read_uncommitted`.
    #[serde(default = "default_isolation_level")]
    pub isolation_level: String,
    /// Where a partition the HDFS ledger has never seen starts (its genesis entry): `earliest`
    /// (the log start) or `latest` (the log end). Not librdkafka's `auto.offset.reset`, which
    /// flumen sets to `error` so that offsets lost to retention halt instead of being skipped.
    #[serde(default = "default_auto_offset_reset")]
    pub auto_offset_reset: String,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    #[serde(default = "default_max_poll_interval_ms")]
    pub max_poll_interval_ms: u64,
    /// Flume `batchSize`: a batch closes at this many records.
    #[serde(default = "default_batch_records_max")]
    pub batch_records_max: usize,
    /// Flume `batchDurationMillis`: a batch closes this long after its first record.
    #[serde(default = "default_batch_duration_ms")]
    pub batch_duration_ms: u64,
    /// A batch also closes at this many payload bytes.
    #[serde(default = "default_batch_bytes_max")]
    pub batch_bytes_max: usize,
    /// Records larger than this follow `oversized_record_policy`.
    /// Default: `batch_bytes_max` (see [`KafkaConfig::record_bytes_max`]).
    #[serde(default, rename = "record_bytes_max")]
    pub record_bytes_max_raw: Option<usize>,
    /// `fail` (stop with a clear error) or `dead_letter` (write to `hdfs.dead_letter_dir`).
    #[serde(default = "default_oversized_record_policy")]
    pub oversized_record_policy: String,
    /// librdkafka properties passed through verbatim (TLS, SASL, fetch tuning).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Directory of the local write-ahead channel.
    pub dir: PathBuf,
    #[serde(default = "default_segment_bytes_max")]
    pub segment_bytes_max: u64,
    /// Consumption pauses when the channel holds this many bytes...
    #[serde(default = "default_capacity_bytes_max")]
    pub capacity_bytes_max: u64,
    /// ...and resumes below this many.
    #[serde(default = "default_resume_bytes")]
    pub resume_bytes: u64,
    /// One fdatasync covers at most this many bytes of queued batches.
    #[serde(default = "default_group_commit_bytes_max")]
    pub group_commit_bytes_max: usize,
    /// Consumption pauses while the channel's filesystem has less free space than this.
    #[serde(default = "default_disk_free_bytes_min")]
    pub disk_free_bytes_min: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HdfsConfig {
    /// NameNode URL, e.g. hdfs://namenode:8020.
    pub url: String,
    /// Final directory; supports %Y %m %d %H %M %S %{topic} %{partition}.
    pub path: String,
    /// Where the claim ledger and in-use files live. Default: `<static prefix of path>/_flumen`.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// HDFS user; default: the process user.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// Appended after the offsets; default by format: `.txt` or `.jsonl`.
    #[serde(default)]
    pub file_suffix: Option<String>,
    /// `text` (event bytes, one per line; Flume DataStream) or `jsonl`.
    #[serde(default = "default_format")]
    pub format: String,
    /// `none`, `gzip` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Flume `rollCount`; 0 disables.
    #[serde(default = "default_roll_records_max")]
    pub roll_records_max: u64,
    /// Flume `rollSize`, uncompressed bytes; 0 disables.
    #[serde(default = "default_roll_bytes_max")]
    pub roll_bytes_max: u64,
    /// Flume `rollInterval`, applied even when no record arrives; 0 disables.
    #[serde(default = "default_roll_interval_s")]
    pub roll_interval_s: u64,
    /// Flume `idleTimeout`: close a file this long after its last record; 0 disables.
    #[serde(default)]
    pub idle_timeout_s: u64,
    /// Take path time from the local clock instead of the record timestamp.
    #[serde(default)]
    pub use_local_timestamp: bool,
    /// `UTC` or `local`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Directory for dead letters: records diverted by `kafka.oversized_record_policy` or
    /// `text_newline_policy = "dead_letter"`.
    #[serde(default)]
    pub dead_letter_dir: Option<String>,
    /// With `format = "text"`, a record whose value holds `\n` or `\r` (one record that Spark
    /// would read as two): `fail` (deliver what came before, halt the partition loudly),
    /// `dead_letter` (to `dead_letter_dir`) or `raw` (written as is, as Flume does; counted).
    #[serde(default = "default_text_newline_policy")]
    pub text_newline_policy: String,
    /// Cap for the exponential retry backoff against an unreachable NameNode.
    #[serde(default = "default_retry_backoff_max_ms")]
    pub retry_backoff_max_ms: u64,
    /// Rolled files being closed and committed at once, over all partitions; a partition has at
    /// most `files_closing_per_partition_max` of them. Each holds one HDFS writer.
    #[serde(default = "default_files_closing_max")]
    pub files_closing_max: usize,
    #[serde(default = "default_files_closing_per_partition_max")]
    pub files_closing_per_partition_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address for /metrics and /health; empty disables. Loopback by default.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
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
fn default_isolation_level() -> String {
    "read_committed".into()
}
fn default_auto_offset_reset() -> String {
    "earliest".into()
}
fn default_session_timeout_ms() -> u64 {
    45_000
}
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
fn default_oversized_record_policy() -> String {
    "fail".into()
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
fn default_file_prefix() -> String {
    "events".into()
}
fn default_format() -> String {
    "text".into()
}
/// Loud by default, like `kafka.oversized_record_policy`: a silently split record is damage.
fn default_text_newline_policy() -> String {
    "fail".into()
}
fn default_compression() -> String {
    "none".into()
}
fn default_roll_records_max() -> u64 {
    0
}
fn default_roll_bytes_max() -> u64 {
    128 << 20
}
fn default_roll_interval_s() -> u64 {
    300
}
fn default_time_zone() -> String {
    "UTC".into()
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
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_log_format() -> String {
    "text".into()
}

/// librdkafka properties that flumen always sets itself, with what to use instead. Setting one
/// in `[kafka.properties]` is an error rather than a value silently overridden (the source
/// applies the pass-through properties first). `source::tests` checks that this list covers
/// every property `SourceOptions::client_config` sets.
pub const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use kafka.bootstrap_servers"),
    ("group.id", "use kafka.group_id"),
    (
        "group.instance.id",
        "use kafka.group_instance_id (validated and documented)",
    ),
    ("isolation.level", "use kafka.isolation_level"),
    ("session.timeout.ms", "use kafka.session_timeout_ms"),
    ("max.poll.interval.ms", "use kafka.max_poll_interval_ms"),
    (
        "enable.auto.commit",
        "offsets are committed to Kafka (advisory) after each HDFS commit",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed to Kafka (advisory) after each HDFS commit",
    ),
    (
        "auto.offset.reset",
        "flumen sets \"error\" so that offsets lost to retention halt instead of being \
         skipped; kafka.auto_offset_reset picks where a new partition starts",
    ),
    (
        "enable.partition.eof",
        "the source does not use end-of-partition events",
    ),
];

impl KafkaConfig {
    /// Records above this many bytes follow `oversized_record_policy`; defaults to the batch
    /// limit, the largest record a batch can carry.
    pub fn record_bytes_max(&self) -> usize {
        self.record_bytes_max_raw.unwrap_or(self.batch_bytes_max)
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.span().map_or(0, |s| line_of_byte(text, s.start)),
            message: e.message().to_string(),
        })?;
        config.validate(text, path)?;
        Ok(config)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let invalid = |section: &str, key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of_key(text, section, key),
            key: format!("{section}.{key}"),
            message,
        };
        let one_of = |section: &str, key: &str, value: &str, allowed: &[&str]| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    section,
                    key,
                    format!("is {value:?}; expected one of {allowed:?}"),
                ))
            }
        };
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka", "bootstrap_servers", "is empty".into()));
        }
        if k.topics.is_empty() || k.topics.iter().any(|t| t.is_empty() || t.contains('+')) {
            return Err(invalid(
                "kafka",
                "topics",
                "must list at least one non-empty topic name without '+'".into(),
            ));
        }
        one_of(
            "kafka",
            "isolation_level",
            &k.isolation_level,
            &["read_committed", "read_uncommitted"],
        )?;
        one_of(
            "kafka",
            "auto_offset_reset",
            &k.auto_offset_reset,
            &["earliest", "latest"],
        )?;
        one_of(
            "kafka",
            "oversized_record_policy",
            &k.oversized_record_policy,
            &["fail", "dead_letter"],
        )?;
        if k.oversized_record_policy == "dead_letter" && self.hdfs.dead_letter_dir.is_none() {
            // Without a directory the record would have nowhere to go but silence.
            return Err(invalid(
                "kafka",
                "oversized_record_policy",
                "is \"dead_letter\" but hdfs.dead_letter_dir is not set".into(),
            ));
        }
        if k.batch_records_max == 0 || k.batch_records_max > 1_000_000 {
            return Err(invalid(
                "kafka",
                "batch_records_max",
                "must be 1..=1000000".into(),
            ));
        }
        if k.batch_bytes_max == 0 || k.batch_bytes_max > 32 << 20 {
            return Err(invalid(
                "kafka",
                "batch_bytes_max",
                "must be 1..=33554432 (a frame is at most 64 MiB)".into(),
            ));
        }
        if k.record_bytes_max() == 0 || k.record_bytes_max() > k.batch_bytes_max {
            return Err(invalid(
                "kafka",
                "record_bytes_max",
                "must be 1..=kafka.batch_bytes_max".into(),
            ));
        }
        for (reserved, instead) in RESERVED_PROPERTIES {
            if k.properties.contains_key(*reserved) {
                return Err(invalid(
                    "kafka.properties",
                    reserved,
                    format!("is set by flumen itself and cannot be overridden; {instead}"),
                ));
            }
        }
        if let Some(id) = &k.group_instance_id {
            check_group_instance_id(id).map_err(|m| invalid("kafka", "group_instance_id", m))?;
        }
        let c = &self.channel;
        if c.segment_bytes_max < 1 << 20 {
            return Err(invalid(
                "channel",
                "segment_bytes_max",
                "must be at least 1 MiB".into(),
            ));
        }
        if c.resume_bytes >= c.capacity_bytes_max {
            return Err(invalid(
                "channel",
                "resume_bytes",
                "must be below channel.capacity_bytes_max".into(),
            ));
        }
        if c.capacity_bytes_max < 2 * c.segment_bytes_max {
            return Err(invalid(
                "channel",
                "capacity_bytes_max",
                "must hold at least two segments".into(),
            ));
        }
        let h = &self.hdfs;
        if !h.url.starts_with("hdfs://") && !h.url.starts_with("viewfs://") {
            return Err(invalid(
                "hdfs",
                "url",
                format!("{:?} is not an hdfs:// URL", h.url),
            ));
        }
        if !h.path.starts_with('/') {
            return Err(invalid("hdfs", "path", "must be absolute".into()));
        }
        if let Err(e) = crate::sink::path::PathTemplate::parse(&h.path) {
            return Err(invalid("hdfs", "path", e));
        }
        if h.file_prefix.contains('/') || h.file_prefix.starts_with(['_', '.']) {
            return Err(invalid(
                "hdfs",
                "file_prefix",
                "must not contain '/' or start with '_' or '.' (readers would skip the files)"
                    .into(),
            ));
        }
        one_of("hdfs", "format", &h.format, &["text", "jsonl"])?;
        one_of(
            "hdfs",
            "compression",
            &h.compression,
            &["none", "gzip", "zstd"],
        )?;
        one_of("hdfs", "time_zone", &h.time_zone, &["UTC", "local"])?;
        if h.roll_records_max == 0 && h.roll_bytes_max == 0 && h.roll_interval_s == 0 {
            return Err(invalid(
                "hdfs",
                "roll_interval_s",
                "and roll_records_max and roll_bytes_max are all 0: files would never close".into(),
            ));
        }
        for (key, v) in [
            ("files_closing_max", h.files_closing_max),
            (
                "files_closing_per_partition_max",
                h.files_closing_per_partition_max,
            ),
        ] {
            if !(1..=4096).contains(&v) {
                return Err(invalid("hdfs", key, format!("is {v}; must be 1..=4096")));
            }
        }
        if k.oversized_record_policy == "dead_letter" && h.dead_letter_dir.is_none() {
            return Err(invalid(
                "hdfs",
                "dead_letter_dir",
                "is required when kafka.oversized_record_policy = \"dead_letter\"".into(),
            ));
        }
        one_of(
            "hdfs",
            "text_newline_policy",
            &h.text_newline_policy,
            &["fail", "dead_letter", "raw"],
        )?;
        if h.text_newline_policy == "dead_letter" && h.dead_letter_dir.is_none() {
            return Err(invalid(
                "hdfs",
                "text_newline_policy",
                "is \"dead_letter\" but hdfs.dead_letter_dir is not set".into(),
            ));
        }
        one_of("log", "format", &self.log.format, &["text", "json"])?;
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "metrics",
                "listen",
                "is not a host:port address".into(),
            ));
        }
        Ok(())
    }

    /// The directory holding claims and in-use files.
    pub fn state_dir(&self) -> String {
        match &self.hdfs.state_dir {
            Some(dir) => dir.trim_end_matches('/').to_string(),
            None => {
                let prefix = crate::sink::path::PathTemplate::parse(&self.hdfs.path)
                    .map(|t| t.static_prefix())
                    .unwrap_or_else(|_| "/".into());
                format!("{}/_flumen", prefix.trim_end_matches('/'))
            }
        }
    }

    pub fn file_suffix(&self) -> String {
        let base = self.hdfs.file_suffix.clone().unwrap_or_else(|| {
            match self.hdfs.format.as_str() {
                "jsonl" => ".jsonl",
                _ => ".txt",
            }
            .to_string()
        });
        match self.hdfs.compression.as_str() {
            "gzip" => format!("{base}.gz"),
            "zstd" => format!("{base}.zst"),
            _ => base,
        }
    }
}

/// Kafka's own rule for a `group.instance.id` (the Java client's
/// `JoinGroupRequest.validateGroupInstanceId`, the topic-name rule): 1 to 249 characters of
/// `[a-zA-Z0-9._-]`, and not `.` or `..`. librdkafka sends any string and the broker answers
/// a join with an error code that names no key, so flumen checks before it starts.
fn check_group_instance_id(id: &str) -> Result<(), String> {
    const LEN_MAX: usize = 249;
    if id.is_empty() {
        return Err("is empty; remove the key for dynamic membership".into());
    }
    if id == "." || id == ".." {
        return Err(format!("is {id:?}, which Kafka refuses"));
    }
    if id.len() > LEN_MAX {
        return Err(format!(
            "is {} characters long; Kafka allows at most {LEN_MAX}",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "is {id:?}: {bad:?} is not allowed (only ASCII letters, digits, '.', '_' and '-')"
        ));
    }
    Ok(())
}

fn line_of_byte(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// Finds the line that sets `key` inside `[section]`; 0 when the key is absent (a default or a
/// missing required key), in which case the message still names the key.
fn line_of_key(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        let Some((k, _)) = t.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        if current == section && k == key {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
topics = ["flume.txn"]

[channel]
dir = "/tmp/flumen-channel"

[hdfs]
url = "hdfs://127.0.0.1:9000"
path = "/user/flumen/%{topic}/%Y-%m-%d"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.kafka.batch_records_max, 1000);
        assert_eq!(c.kafka.isolation_level, "read_committed");
        assert_eq!(c.state_dir(), "/user/flumen/_flumen");
        assert_eq!(c.file_suffix(), ".txt");
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config.example.toml");
        parse(text).unwrap();
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("[channel]", "[channel]\nsegment_size = 5");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("segment_size"), "{err}");
        assert!(err.contains("test.toml:7"), "{err}");
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let text = MINIMAL.replace("[channel]", "[channel]\ncapacity_bytes_max = \"big\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("test.toml:7"), "{err}");
    }

    #[test]
    fn bad_value_is_named_with_key_and_line() {
        let text = MINIMAL.replace("path = \"/user", "format = \"parquet\"\npath = \"/user");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("`hdfs.format`"), "{err}");
        assert!(err.contains("test.toml:11"), "{err}");
    }

    /// Regression: with no directory, an oversized record was dropped while the file's range
    /// still covered it.
    #[test]
    fn dead_letter_policy_needs_a_directory() {
        let text = MINIMAL.replace(
            "topics = [\"flume.txn\"]",
            "topics = [\"flume.txn\"]\noversized_record_policy = \"dead_letter\"",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("kafka.oversized_record_policy"), "{err}");
        assert!(err.contains("dead_letter_dir"), "{err}");
        let ok = text.replace("[hdfs]", "[hdfs]\ndead_letter_dir = \"/dl\"");
        parse(&ok).unwrap();
    }

    #[test]
    fn text_newline_policy_defaults_to_fail_and_is_checked_naming_the_key() {
        assert_eq!(parse(MINIMAL).unwrap().hdfs.text_newline_policy, "fail");
        let with =
            |v: &str| MINIMAL.replace("[hdfs]", &format!("[hdfs]\ntext_newline_policy = {v:?}"));
        let err = parse(&with("escape")).unwrap_err().to_string();
        assert!(err.contains("`hdfs.text_newline_policy`"), "{err}");
        let err = parse(&with("dead_letter")).unwrap_err().to_string();
        assert!(err.contains("`hdfs.text_newline_policy`"), "{err}");
        assert!(err.contains("dead_letter_dir"), "{err}");
        parse(&with("raw")).unwrap();
        let ok = with("dead_letter").replace("[hdfs]", "[hdfs]\ndead_letter_dir = \"/dl\"");
        parse(&ok).unwrap();
    }

    #[test]
    fn group_instance_id_is_optional_and_checked_naming_the_key() {
        assert_eq!(parse(MINIMAL).unwrap().kafka.group_instance_id, None);
        let with = |id: &str| {
            MINIMAL.replace(
                "topics = [\"flume.txn\"]",
                &format!("topics = [\"flume.txn\"]\ngroup_instance_id = {id:?}"),
            )
        };
        let c = parse(&with("collector-07.dc1")).unwrap();
        assert_eq!(
            c.kafka.group_instance_id.as_deref(),
            Some("collector-07.dc1")
        );
        let long = "x".repeat(250);
        for bad in ["", "..", "host 1", "host/1", "hôte", long.as_str()] {
            let err = parse(&with(bad)).unwrap_err().to_string();
            assert!(err.contains("`kafka.group_instance_id`"), "{bad:?}: {err}");
            assert!(err.contains("test.toml:5"), "{bad:?}: {err}");
        }
    }

    /// Regression: a `group.instance.id` in `[kafka.properties]` would bypass the check above.
    #[test]
    fn group_instance_id_property_is_refused() {
        let text = format!("{MINIMAL}\n[kafka.properties]\n\"group.instance.id\" = \"a\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("group.instance.id"), "{err}");
    }

    /// Regression: `session.timeout.ms` here was accepted and then silently replaced by
    /// `kafka.session_timeout_ms`; now it is refused, pointing at the key to use.
    #[test]
    fn overridden_librdkafka_property_is_refused_naming_flumens_key() {
        let text = format!("{MINIMAL}\n[kafka.properties]\n\"session.timeout.ms\" = \"10000\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("`kafka.properties.session.timeout.ms`"),
            "{err}"
        );
        assert!(err.contains("kafka.session_timeout_ms"), "{err}");
    }

    #[test]
    fn reserved_librdkafka_property_is_refused() {
        let text = format!("{MINIMAL}\n[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("enable.auto.commit"), "{err}");
    }
}
