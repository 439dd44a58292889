//! The TOML configuration, in two stages (ripgrep's `lowargs` → `hiargs`). Stage one
//! ([`raw`]) is the file as serde reads it: unknown keys, wrong types and unknown enum values
//! fail there. Stage two ([`settings`]) checks every value's range, including each value bound
//! for librdkafka, and builds [`Settings`]: enums, `Duration`s, the path template parsed once
//! and the derived values (state dir, file suffix) computed in one place. Every error names
//! the key and its line ([`locate`]). The WAL, source, sink and HDFS options are all built from
//! `Settings`; `config.example.toml` documents every key and is parsed by a test.

pub mod kerberos;
mod locate;
pub mod raw;
pub mod secret;
mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::sink::path::PathTemplate;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax error, or a type error whose key could not be found.
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

/// The validated configuration. Built only by [`Settings::load`] / [`Settings::parse`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub channel: ChannelSettings,
    pub hdfs: HdfsSettings,
    /// Address for /metrics and /health; `None` when `metrics.listen` is empty.
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// Upper bound on a graceful shutdown (SIGTERM/SIGINT) before the process exits anyway.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Comma-separated host:port list (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Topic names, each valid by Kafka's own rule.
    pub topics: Vec<String>,
    /// Consumer group id; instances with the same id share the partitions.
    pub group_id: String,
    /// librdkafka `group.instance.id` (KIP-345 static membership), unique per instance.
    pub group_instance_id: Option<String>,
    pub isolation_level: IsolationLevel,
    /// Where a partition the HDFS ledger has never seen starts (its genesis entry).
    pub auto_offset_reset: OffsetReset,
    pub session_timeout: Duration,
    pub max_poll_interval: Duration,
    /// Flume `batchSize`: a batch closes at this many records.
    pub batch_records_max: usize,
    /// Flume `batchDurationMillis`: a batch closes this long after its first record.
    pub batch_duration: Duration,
    /// A batch also closes at this many payload bytes.
    pub batch_bytes_max: usize,
    /// Records larger than this follow `oversized_record_policy`.
    pub record_bytes_max: usize,
    pub oversized_record_policy: OversizedRecordPolicy,
    /// Memory librdkafka's prefetch may hold (queued records and one fetch response, with
    /// librdkafka's per-record overhead); `source::budget` derives its properties from it.
    pub prefetch_memory_bytes_max: u64,
    /// librdkafka properties passed through verbatim, each accepted by librdkafka itself;
    /// secret values are hidden from `Debug`.
    pub properties: secret::Properties,
}

#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Directory of the local write-ahead channel.
    pub dir: PathBuf,
    pub segment_bytes_max: u64,
    /// Consumption pauses when the channel holds this many bytes...
    pub capacity_bytes_max: u64,
    /// ...and resumes below this many.
    pub resume_bytes: u64,
    /// One fdatasync covers at most this many bytes of queued batches.
    pub group_commit_bytes_max: usize,
    /// Free space the channel's filesystem always keeps; consumption pauses instead.
    pub disk_free_bytes_min: u64,
    /// The frame version written; 1 keeps the channel readable by binaries before version 2.
    pub frame_version: crate::wal::FrameVersion,
    /// The segment version written; 2 reuses trimmed segment files, 1 keeps the channel
    /// readable by binaries before version 2.
    pub segment_version: u32,
}

#[derive(Debug, Clone)]
pub struct HdfsSettings {
    /// NameNode URL, e.g. hdfs://namenode:8020.
    pub url: String,
    /// HDFS user; `None`: the process user.
    pub user: Option<String>,
    /// Final directory template (%Y %m %d %H %M %S %{topic} %{partition}).
    pub path: PathTemplate,
    /// Where the claim ledger and in-use files live, without a trailing '/'.
    pub state_dir: String,
    pub file_prefix: String,
    /// The whole suffix after the offsets, compression extension included.
    pub file_suffix: String,
    pub format: Format,
    pub compression: Compression,
    /// Flume `rollCount`; 0 disables.
    pub roll_records_max: u64,
    /// Flume `rollSize`, uncompressed bytes; 0 disables.
    pub roll_bytes_max: u64,
    /// Flume `rollInterval`, applied even when no record arrives; zero disables.
    pub roll_interval: Duration,
    /// Flume `idleTimeout`; zero disables.
    pub idle_timeout: Duration,
    /// Take path time from the local clock instead of the record timestamp.
    pub use_local_timestamp: bool,
    pub time_zone: TimeZone,
    /// Absolute directory for dead letters: records diverted by
    /// `kafka.oversized_record_policy` or `text_newline_policy = "dead_letter"`.
    pub dead_letter_dir: Option<String>,
    /// With `format = "text"`, what a record whose value holds a line break becomes.
    pub text_newline_policy: TextNewlinePolicy,
    /// Cap for the exponential retry backoff against an unreachable NameNode.
    pub retry_backoff_max: Duration,
    pub files_closing_max: usize,
    pub files_closing_per_partition_max: usize,
    /// `[hdfs.parquet]`; defaults when absent.
    pub parquet: ParquetSettings,
    /// Kerberos login; `None`: the cluster's simple authentication (or `HADOOP_CONF_DIR`'s).
    pub kerberos: Option<KerberosSettings>,
    /// Hadoop client keys for hdfs-native, `hadoop.security.authentication` included when
    /// `kerberos` is set.
    pub properties: std::collections::BTreeMap<String, String>,
    /// `[hdfs.completeness]`; `None` when disabled.
    pub completeness: Option<CompletenessSettings>,
}

/// `[hdfs.completeness]`, checked: markers in complete time buckets of `hdfs.path`.
#[derive(Debug, Clone)]
pub struct CompletenessSettings {
    /// File name of the marker, hidden from readers.
    pub marker: String,
    /// Bucket width (from `hdfs.path`) and allowed lateness.
    pub rule: crate::sink::bucket::Rule,
    /// Where late records go, rendered like `hdfs.path`.
    pub late_path: PathTemplate,
}

/// `[hdfs.parquet]`, for `format = "parquet"`.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    /// A row group is encoded once its buffered rows reach this many bytes; the memory an
    /// open Parquet file holds is bounded by it (ARCHITECTURE.md, Invariants).
    pub row_group_bytes_max: usize,
    /// The row groups of all open Parquet files together; above it the sink rolls the file
    /// buffering the most.
    pub buffers_bytes_max: usize,
    /// `value_schema` or `value_schema_file`, parsed: typed columns for JSON values.
    pub value_schema: Option<std::sync::Arc<crate::sink::value_schema::ValueSchema>>,
}

/// `hdfs.kerberos_principal` and `hdfs.kerberos_keytab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosSettings {
    /// The client principal, `_HOST` already replaced.
    pub principal: String,
    /// `None`: tickets come from the default credential cache, renewed by someone else.
    pub keytab: Option<std::path::PathBuf>,
}

/// `kafka.isolation_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// Skips aborted transactions (librdkafka's default too).
    #[default]
    ReadCommitted,
    ReadUncommitted,
}

/// `kafka.auto_offset_reset`: not librdkafka's `auto.offset.reset`, which flumen sets to
/// `error` so that offsets lost to retention halt instead of being skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// The log start (Flume's KafkaSource default).
    #[default]
    Earliest,
    /// The log end.
    Latest,
}

/// `kafka.oversized_record_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizedRecordPolicy {
    /// Stop with a clear error naming the record.
    #[default]
    Fail,
    /// Write it to `hdfs.dead_letter_dir`.
    DeadLetter,
}

/// `hdfs.text_newline_policy`: with `format = "text"`, a record whose value holds `\n` or
/// `\r` (one record that Spark would read as two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextNewlinePolicy {
    /// Loud by default, like `kafka.oversized_record_policy`: a silently split record is
    /// damage. Everything before it is delivered, then the partition halts.
    #[default]
    Fail,
    /// Write it whole to `hdfs.dead_letter_dir`.
    DeadLetter,
    /// Write it as it is, as Flume does; counted and warned about.
    Raw,
}

/// `hdfs.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Format {
    /// The event bytes, one per line (Flume's DataStream).
    #[default]
    #[serde(rename = "text")]
    Text,
    /// One JSON object per record with its Kafka metadata.
    #[serde(rename = "jsonl")]
    JsonLines,
    /// Parquet files: the record envelope as columns, plus typed columns of
    /// `[hdfs.parquet] value_schema` (`crate::sink::parquet`).
    #[serde(rename = "parquet")]
    Parquet,
}

/// `hdfs.compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
    /// Parquet's column codec only.
    Snappy,
}

/// `hdfs.time_zone` for the path escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TimeZone {
    #[default]
    #[serde(rename = "UTC")]
    Utc,
    #[serde(rename = "local")]
    Local,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl IsolationLevel {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}

impl Settings {
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "is not UTF-8: byte {:#04x} at byte offset {valid} (TOML files are UTF-8)",
                    bytes[valid]
                ),
            }
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        // Syntax first: its errors name a key only when they sit on that key's own line (a
        // duplicate key, a number too large), since a key found elsewhere would mislead.
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(toml_error(&e, text, path, locate::key_on_line));
        }
        let raw: raw::Config =
            toml::from_str(text).map_err(|e| toml_error(&e, text, path, locate::key_at_byte))?;
        settings::build(raw, text, path)
    }
}

/// A TOML error at its line, naming the key that `key_at` finds at the error's position.
fn toml_error(
    e: &toml::de::Error,
    text: &str,
    path: &Path,
    key_at: fn(&str, usize) -> Option<String>,
) -> ConfigError {
    let start = e.span().map(|s| s.start);
    let line = start.map_or(0, |b| locate::line_of_byte(text, b));
    let message = e.message().trim().to_string();
    match start.and_then(|b| key_at(text, b)) {
        Some(key) => ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            key,
            message,
        },
        None => ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        },
    }
}

/// librdkafka properties that flumen always sets itself, with what to use instead. Setting one
/// in `[kafka.properties]` is an error rather than a value silently overridden (the source
/// applies the pass-through properties first). `source::tests` checks that this list covers
/// every property `SourceOptions::client_config` sets.
pub const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use kafka.bootstrap_servers"),
    // librdkafka's aliases name the same setting: without them the check above is bypassed.
    (
        "metadata.broker.list",
        "an alias of bootstrap.servers; use kafka.bootstrap_servers",
    ),
    (
        "auto.commit.enable",
        "an alias of enable.auto.commit; offsets are committed to Kafka (advisory) after each \
         HDFS commit",
    ),
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

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.kafka.batch_records_max, 1000);
        assert_eq!(c.kafka.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(c.hdfs.state_dir, "/user/flumen/_flumen");
        assert_eq!(c.hdfs.file_suffix, ".txt");
        assert_eq!(c.kafka.session_timeout, Duration::from_secs(45));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn completeness_takes_its_bucket_from_the_path_and_defaults_the_late_path() {
        let text = MINIMAL.replace("%Y-%m-%d\"", "dt=%Y-%m-%d/hr=%H\"")
            + "[hdfs.completeness]\nenabled = true\n";
        let c = parse(&text).unwrap().hdfs.completeness.expect("enabled");
        assert_eq!(c.marker, "_COMPLETE");
        assert_eq!(c.rule.width, crate::sink::bucket::Width::Hour);
        assert_eq!(c.rule.lateness_ms, 300_000);
        assert_eq!(
            c.late_path.render("t", 0, 1_732_475_107_000, true),
            "/user/flumen/_late/t/dt=2024-11-24/hr=19"
        );
        assert!(parse(MINIMAL).unwrap().hdfs.completeness.is_none());
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../config.example.toml");
        parse(text).unwrap();
    }

    /// The example's commented `[hdfs.parquet]` block, switched on, is a valid config whose
    /// schema is gen_events.py's event model.
    #[test]
    fn example_parquet_block_parses() {
        let text = include_str!("../../config.example.toml")
            .replacen("format = \"text\"", "format = \"parquet\"", 1)
            .replace("compression = \"none\"", "compression = \"snappy\"")
            .replace("# dead_letter_dir =", "dead_letter_dir =");
        let (head, tail) = text.split_once("# [hdfs.parquet]").expect("the block");
        let (block, rest) = tail.split_once("\n\n").expect("the block ends");
        let block = block
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                let keys = ["value_schema =", "row_group_bytes_max", "buffers_bytes_max"];
                keys.iter().any(|k| l.starts_with(k)) || l.starts_with("  ")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("{head}[hdfs.parquet]\n{block}\n\n{rest}");
        let c = parse(&text).unwrap();
        let schema = c.hdfs.parquet.value_schema.expect("a schema");
        assert_eq!(schema.fields.len(), 11);
        assert!(schema.fields[10].nullable && !schema.fields[0].nullable);
        assert_eq!(c.hdfs.file_suffix, ".parquet");
        assert_eq!(c.hdfs.parquet.row_group_bytes_max, 16 << 20);
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
        let text = MINIMAL.replace("path = \"/user", "format = \"orc\"\npath = \"/user");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("`hdfs.format`"), "{err}");
        assert!(err.contains("test.toml:11"), "{err}");
    }

    /// The prefetch budget defaults to 16 MiB; a value out of range names its key and line.
    #[test]
    fn prefetch_memory_budget_defaults_and_is_range_checked() {
        assert_eq!(
            parse(MINIMAL).unwrap().kafka.prefetch_memory_bytes_max,
            16 << 20
        );
        let text = MINIMAL.replace("topics = [", "prefetch_memory_bytes_max = 1000\ntopics = [");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("`kafka.prefetch_memory_bytes_max`"), "{err}");
        assert!(err.contains("test.toml:4"), "{err}");
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
        assert_eq!(
            parse(MINIMAL).unwrap().hdfs.text_newline_policy,
            TextNewlinePolicy::Fail
        );
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
