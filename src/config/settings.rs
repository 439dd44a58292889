//! Stage two: every value of the raw config checked and turned into [`Settings`]. Each check
//! names its key; ranges bound for librdkafka are flumen's own, so an out-of-range value never
//! reaches librdkafka to come back as a wrapped-around number with no key.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use super::raw;
use super::{
    locate, ChannelSettings, CompletenessSettings, ConfigError, HdfsSettings, KafkaSettings,
    OversizedRecordPolicy, Settings, TextNewlinePolicy, RESERVED_PROPERTIES,
};
use crate::sink::bucket::{Rule, Width};
use crate::sink::path::PathTemplate;
use crate::wal::FrameVersion;

/// The limits flumen puts on values. librdkafka's own ranges (CONFIGURATION.md) where a value
/// is passed to it; otherwise the largest value that is still a sane setting.
const SESSION_TIMEOUT_MS: RangeInclusive<u64> = 1..=3_600_000;
const MAX_POLL_INTERVAL_MS: RangeInclusive<u64> = 1..=86_400_000;
const BATCH_RECORDS: RangeInclusive<usize> = 1..=1_000_000;
const BATCH_DURATION_MS: RangeInclusive<u64> = 1..=600_000;
/// A channel frame is at most 64 MiB; a batch of 32 MiB leaves room for its framing.
const BATCH_BYTES: RangeInclusive<usize> = 1..=32 << 20;
const SEGMENT_BYTES: RangeInclusive<u64> = 1 << 20..=1 << 30;
const GROUP_COMMIT_BYTES: RangeInclusive<usize> = 1..=1 << 30;
/// A week: anything longer is a typo for a smaller unit.
const ROLL_SECONDS: RangeInclusive<u64> = 0..=604_800;
/// Below 100 ms a NameNode outage becomes a retry storm; above 10 min recovery is too slow.
const RETRY_BACKOFF_MAX_MS: RangeInclusive<u64> = 100..=600_000;
/// Zero would cut every graceful shutdown (and its final commits) short.
const SHUTDOWN_TIMEOUT_MS: RangeInclusive<u64> = 1_000..=3_600_000;
const FILES_CLOSING: RangeInclusive<usize> = 1..=4096;
/// Below 1 MiB a fetch response holds a handful of records; above 16 GiB the derived queue
/// exceeds librdkafka's `queued.max.messages.kbytes` limit.
const PREFETCH_MEMORY_BYTES: RangeInclusive<u64> = 1 << 20..=16 << 30;
/// Below 64 KiB a row group holds a handful of pages; above 1 GiB one open file's buffer
/// alone is a memory problem (and the value columns' offsets are `usize`, well within it).
const ROW_GROUP_BYTES: RangeInclusive<u64> = 64 << 10..=1 << 30;
/// Up to 64 GiB; at least one row group (checked against `row_group_bytes_max`).
const BUFFERS_BYTES: RangeInclusive<u64> = 64 << 10..=64 << 30;

/// Where errors point: the text (for line numbers) and the file's path.
struct At<'a> {
    text: &'a str,
    path: &'a Path,
}

impl At<'_> {
    fn err(&self, section: &str, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: locate::line_of_key(self.text, section, key),
            key: if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            },
            message: message.into(),
        }
    }

    fn range<T: PartialOrd + Display>(
        &self,
        section: &str,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        if range.contains(&value) {
            return Ok(value);
        }
        let (lo, hi) = range.into_inner();
        Err(self.err(section, key, format!("is {value}; must be {lo}..={hi}")))
    }

    fn ms(
        &self,
        section: &str,
        key: &str,
        value: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.range(section, key, value, range)
            .map(Duration::from_millis)
    }
}

pub(super) fn build(raw: raw::Config, text: &str, path: &Path) -> Result<Settings, ConfigError> {
    let at = At { text, path };
    let kafka = kafka(&at, raw.kafka)?;
    let channel = channel(&at, raw.channel)?;
    let hdfs = hdfs(&at, raw.hdfs, kafka.oversized_record_policy)?;
    let metrics_listen = match raw.metrics.listen.as_str() {
        "" => None,
        s => Some(s.parse().map_err(|_| {
            at.err(
                "metrics",
                "listen",
                format!(
                    "is {s:?}, not a host:port address (e.g. \"127.0.0.1:9464\"); \"\" disables"
                ),
            )
        })?),
    };
    Ok(Settings {
        kafka,
        channel,
        hdfs,
        metrics_listen,
        log_format: raw.log.format,
        shutdown_timeout: at.ms(
            "",
            "shutdown_timeout_ms",
            raw.shutdown_timeout_ms,
            SHUTDOWN_TIMEOUT_MS,
        )?,
    })
}

fn kafka(at: &At, k: raw::KafkaConfig) -> Result<KafkaSettings, ConfigError> {
    const S: &str = "kafka";
    check_bootstrap_servers(&k.bootstrap_servers).map_err(|m| at.err(S, "bootstrap_servers", m))?;
    if k.topics.is_empty() {
        return Err(at.err(S, "topics", "is empty; list at least one topic"));
    }
    for (i, t) in k.topics.iter().enumerate() {
        check_kafka_name(t, "topic").map_err(|m| at.err(S, "topics", format!("[{i}] {m}")))?;
        if k.topics[..i].contains(t) {
            return Err(at.err(S, "topics", format!("lists {t:?} twice")));
        }
    }
    if k.group_id.trim().is_empty() {
        return Err(at.err(S, "group_id", "is empty"));
    }
    if let Some(id) = &k.group_instance_id {
        check_kafka_name(id, "group instance id").map_err(|m| at.err(S, "group_instance_id", m))?;
    }
    let session_timeout = at.ms(
        S,
        "session_timeout_ms",
        k.session_timeout_ms,
        SESSION_TIMEOUT_MS,
    )?;
    let max_poll_interval = at.ms(
        S,
        "max_poll_interval_ms",
        k.max_poll_interval_ms,
        MAX_POLL_INTERVAL_MS,
    )?;
    if max_poll_interval < session_timeout {
        // librdkafka refuses this pair when the consumer is created, naming neither key.
        return Err(at.err(
            S,
            "max_poll_interval_ms",
            "must be at least kafka.session_timeout_ms",
        ));
    }
    let batch_bytes_max = at.range(S, "batch_bytes_max", k.batch_bytes_max, BATCH_BYTES)?;
    let record_bytes_max = match k.record_bytes_max {
        None => batch_bytes_max,
        Some(v) => at.range(S, "record_bytes_max", v, 1..=batch_bytes_max)?,
    };
    let properties = resolve_properties(at, &k.properties)?;
    check_properties(at, &properties)?;
    Ok(KafkaSettings {
        bootstrap_servers: k.bootstrap_servers,
        topics: k.topics,
        group_id: k.group_id,
        group_instance_id: k.group_instance_id,
        isolation_level: k.isolation_level,
        auto_offset_reset: k.auto_offset_reset,
        session_timeout,
        max_poll_interval,
        batch_records_max: at.range(S, "batch_records_max", k.batch_records_max, BATCH_RECORDS)?,
        batch_duration: at.ms(
            S,
            "batch_duration_ms",
            k.batch_duration_ms,
            BATCH_DURATION_MS,
        )?,
        batch_bytes_max,
        record_bytes_max,
        oversized_record_policy: k.oversized_record_policy,
        prefetch_memory_bytes_max: at.range(
            S,
            "prefetch_memory_bytes_max",
            k.prefetch_memory_bytes_max,
            PREFETCH_MEMORY_BYTES,
        )?,
        properties: super::secret::Properties(properties),
    })
}

/// Each property's value, read from its file or environment variable where it names one.
fn resolve_properties(
    at: &At,
    raw: &std::collections::BTreeMap<String, super::secret::RawValue>,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    raw.iter()
        .map(|(name, value)| {
            let v = value
                .resolve()
                .map_err(|m| at.err("kafka.properties", name, m))?;
            Ok((name.clone(), v))
        })
        .collect()
}

/// Each pass-through property: not one flumen sets itself, and accepted by librdkafka (its
/// name exists and its value parses and is in range), checked now so the error names the key.
fn check_properties(
    at: &At,
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    const S: &str = "kafka.properties";
    for (name, value) in properties {
        if let Some((_, instead)) = RESERVED_PROPERTIES.iter().find(|(r, _)| r == name) {
            return Err(at.err(
                S,
                name,
                format!("is set by flumen itself and cannot be overridden; {instead}"),
            ));
        }
        let mut one = rdkafka::ClientConfig::new();
        one.set(name, value);
        if let Err(e) = one.create_native_config() {
            let reason = match e {
                rdkafka::error::KafkaError::ClientConfig(_, desc, _, _) => desc,
                other => other.to_string(),
            };
            return Err(at.err(
                S,
                name,
                format!(
                    "is refused by librdkafka: {}",
                    super::secret::hide(&reason, value)
                ),
            ));
        }
    }
    Ok(())
}

fn channel(at: &At, c: raw::ChannelConfig) -> Result<ChannelSettings, ConfigError> {
    const S: &str = "channel";
    if c.dir.as_os_str().is_empty() {
        return Err(at.err(S, "dir", "is empty"));
    }
    let segment_bytes_max = at.range(S, "segment_bytes_max", c.segment_bytes_max, SEGMENT_BYTES)?;
    if c.capacity_bytes_max < 2 * segment_bytes_max {
        return Err(at.err(
            S,
            "capacity_bytes_max",
            "must hold at least two segments (2 × channel.segment_bytes_max)",
        ));
    }
    if c.resume_bytes >= c.capacity_bytes_max {
        return Err(at.err(
            S,
            "resume_bytes",
            "must be below channel.capacity_bytes_max",
        ));
    }
    Ok(ChannelSettings {
        dir: c.dir,
        segment_bytes_max,
        capacity_bytes_max: c.capacity_bytes_max,
        resume_bytes: c.resume_bytes,
        group_commit_bytes_max: at.range(
            S,
            "group_commit_bytes_max",
            c.group_commit_bytes_max,
            GROUP_COMMIT_BYTES,
        )?,
        disk_free_bytes_min: c.disk_free_bytes_min,
        frame_version: FrameVersion::from_byte(at.range(
            S,
            "frame_version",
            c.frame_version,
            1..=2,
        )?)
        .expect("1 and 2 are versions"),
        segment_version: at.range(S, "segment_version", c.segment_version, 1..=2)?,
    })
}

fn hdfs(
    at: &At,
    h: raw::HdfsConfig,
    oversized: OversizedRecordPolicy,
) -> Result<HdfsSettings, ConfigError> {
    const S: &str = "hdfs";
    check_url(&h.url).map_err(|m| at.err(S, "url", m))?;
    check_hdfs_dir(&h.path).map_err(|m| at.err(S, "path", m))?;
    let path = PathTemplate::parse(&h.path).map_err(|m| at.err(S, "path", m))?;
    let state_dir = match &h.state_dir {
        Some(dir) => {
            check_hdfs_dir(dir).map_err(|m| at.err(S, "state_dir", m))?;
            dir.trim_end_matches('/').to_string()
        }
        None => format!("{}/_flumen", path.static_prefix().trim_end_matches('/')),
    };
    if h.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
        return Err(at.err(
            S,
            "user",
            "is empty; remove the key to use the process user",
        ));
    }
    check_file_part(&h.file_prefix, true).map_err(|m| at.err(S, "file_prefix", m))?;
    if let Some(suffix) = &h.file_suffix {
        check_file_part(suffix, false).map_err(|m| at.err(S, "file_suffix", m))?;
    }
    check_codec(at, &h)?;
    if let Some(dir) = &h.dead_letter_dir {
        check_hdfs_dir(dir).map_err(|m| at.err(S, "dead_letter_dir", m))?;
    } else if oversized == OversizedRecordPolicy::DeadLetter {
        // Without a directory the record would have nowhere to go but silence.
        return Err(at.err(
            S,
            "dead_letter_dir",
            "is required when kafka.oversized_record_policy = \"dead_letter\"",
        ));
    } else if h.text_newline_policy == TextNewlinePolicy::DeadLetter {
        return Err(at.err(
            S,
            "text_newline_policy",
            "is \"dead_letter\" but hdfs.dead_letter_dir is not set",
        ));
    }
    let roll_interval_s = at.range(S, "roll_interval_s", h.roll_interval_s, ROLL_SECONDS)?;
    if h.roll_records_max == 0 && h.roll_bytes_max == 0 && roll_interval_s == 0 {
        return Err(at.err(
            S,
            "roll_interval_s",
            "and roll_records_max and roll_bytes_max are all 0: files would never close",
        ));
    }
    let kerberos =
        super::kerberos::login(h.kerberos_principal.as_deref(), h.kerberos_keytab.as_ref())
            .map_err(|(key, m)| at.err(S, &key, m))?;
    let properties = super::kerberos::properties(&h.properties, kerberos.as_ref())
        .map_err(|(key, m)| at.err(S, &key, m))?;
    let completeness = completeness(at, &h, &path)?;
    let parquet = parquet(at, &h)?;
    Ok(HdfsSettings {
        completeness,
        parquet,
        kerberos,
        properties,
        file_suffix: file_suffix(&h),
        url: h.url,
        user: h.user,
        path,
        state_dir,
        file_prefix: h.file_prefix,
        format: h.format,
        compression: h.compression,
        roll_records_max: h.roll_records_max,
        roll_bytes_max: h.roll_bytes_max,
        roll_interval: Duration::from_secs(roll_interval_s),
        idle_timeout: Duration::from_secs(at.range(
            S,
            "idle_timeout_s",
            h.idle_timeout_s,
            ROLL_SECONDS,
        )?),
        use_local_timestamp: h.use_local_timestamp,
        time_zone: h.time_zone,
        dead_letter_dir: h
            .dead_letter_dir
            .map(|d| d.trim_end_matches('/').to_string()),
        text_newline_policy: h.text_newline_policy,
        retry_backoff_max: at.ms(
            S,
            "retry_backoff_max_ms",
            h.retry_backoff_max_ms,
            RETRY_BACKOFF_MAX_MS,
        )?,
        files_closing_max: at.range(S, "files_closing_max", h.files_closing_max, FILES_CLOSING)?,
        files_closing_per_partition_max: at.range(
            S,
            "files_closing_per_partition_max",
            h.files_closing_per_partition_max,
            FILES_CLOSING,
        )?,
    })
}

/// `[hdfs.completeness]`: `None` unless enabled. Needs a time-bucketed `hdfs.path` in UTC.
fn completeness(
    at: &At,
    h: &raw::HdfsConfig,
    path: &PathTemplate,
) -> Result<Option<CompletenessSettings>, ConfigError> {
    const S: &str = "hdfs.completeness";
    let c = &h.completeness;
    if !c.enabled {
        return Ok(None);
    }
    let width = Width::of(path)
        .map_err(|m| at.err(S, "enabled", format!("needs time buckets: hdfs.path {m}")))?;
    if h.time_zone != super::TimeZone::Utc {
        return Err(at.err(
            S,
            "enabled",
            "needs hdfs.time_zone = \"UTC\": in local time an hour repeats when daylight \
             saving ends, and its directory would receive records after its marker",
        ));
    }
    if c.marker.is_empty()
        || c.marker.contains('/')
        || c.marker.chars().any(char::is_control)
        || !c.marker.starts_with(['_', '.'])
    {
        return Err(at.err(
            S,
            "marker",
            format!(
                "is {:?}: a file name starting with '_' or '.' (readers then skip it), without \
                 '/' or control characters",
                c.marker
            ),
        ));
    }
    let lateness_s = at.range(S, "allowed_lateness_s", c.allowed_lateness_s, ROLL_SECONDS)?;
    let late_text = match &c.late_path {
        Some(p) => p.clone(),
        None => default_late_path(&h.path, path),
    };
    check_hdfs_dir(&late_text).map_err(|m| at.err(S, "late_path", m))?;
    let late_path = PathTemplate::parse(&late_text).map_err(|m| at.err(S, "late_path", m))?;
    if late_path == *path {
        return Err(at.err(
            S,
            "late_path",
            "is hdfs.path itself: late records must go elsewhere than the complete buckets",
        ));
    }
    Ok(Some(CompletenessSettings {
        marker: c.marker.clone(),
        rule: Rule {
            width,
            lateness_ms: lateness_s as i64 * 1000,
        },
        late_path,
    }))
}

/// `hdfs.path` with `_late` inserted after its static prefix: `/data/t/_late/dt=%Y-%m-%d/hr=%H`
/// for `/data/t/dt=%Y-%m-%d/hr=%H`. Spark, Hive and MapReduce skip the `_late` tree when they
/// read the prefix.
fn default_late_path(text: &str, path: &PathTemplate) -> String {
    let prefix = path.static_prefix();
    let rest = text.strip_prefix(prefix.as_str()).unwrap_or(text);
    format!(
        "{}/_late/{}",
        prefix.trim_end_matches('/'),
        rest.trim_start_matches('/')
    )
}

/// `hdfs.compression` against `hdfs.format`: text and jsonl are wrapped in a gzip or zstd
/// stream; Parquet compresses its pages with snappy or zstd (gzip is refused, to keep one
/// fast codec family and the crate's build small).
fn check_codec(at: &At, h: &raw::HdfsConfig) -> Result<(), ConfigError> {
    use super::{Compression, Format};
    match (h.format, h.compression) {
        (Format::Parquet, Compression::Gzip) => Err(at.err(
            "hdfs",
            "compression",
            "is \"gzip\", which format = \"parquet\" does not offer; use \"snappy\" or \"zstd\"",
        )),
        (Format::Text | Format::JsonLines, Compression::Snappy) => Err(at.err(
            "hdfs",
            "compression",
            "is \"snappy\", a Parquet codec only; text and jsonl take \"gzip\" or \"zstd\"",
        )),
        _ => Ok(()),
    }
}

/// `[hdfs.parquet]`: only with `format = "parquet"`; one schema source at most, parsed now so
/// a bad schema names its key; a schema needs `hdfs.dead_letter_dir` for values that misfit.
fn parquet(at: &At, h: &raw::HdfsConfig) -> Result<super::ParquetSettings, ConfigError> {
    const S: &str = "hdfs.parquet";
    let Some(p) = &h.parquet else {
        return Ok(super::ParquetSettings {
            row_group_bytes_max: raw::default_row_group_bytes_max() as usize,
            buffers_bytes_max: raw::default_buffers_bytes_max() as usize,
            value_schema: None,
        });
    };
    if h.format != super::Format::Parquet {
        return Err(at.err(
            "hdfs",
            "parquet",
            "is set but hdfs.format is not \"parquet\"",
        ));
    }
    let (key, text) = match (&p.value_schema, &p.value_schema_file) {
        (Some(_), Some(_)) => {
            return Err(at.err(
                S,
                "value_schema_file",
                "and value_schema are both set; keep one",
            ))
        }
        (Some(t), None) => ("value_schema", Some(t.clone())),
        (None, Some(f)) => {
            let t = std::fs::read_to_string(f).map_err(|e| {
                at.err(
                    S,
                    "value_schema_file",
                    format!("cannot be read ({}): {e}", f.display()),
                )
            })?;
            ("value_schema_file", Some(t))
        }
        (None, None) => ("value_schema", None),
    };
    let value_schema = match text {
        None => None,
        Some(t) => {
            let schema =
                crate::sink::value_schema::ValueSchema::parse(&t).map_err(|m| at.err(S, key, m))?;
            if h.dead_letter_dir.is_none() {
                return Err(at.err(
                    "hdfs",
                    "dead_letter_dir",
                    format!(
                        "is required with hdfs.parquet.{key}: a value that does not fit goes there"
                    ),
                ));
            }
            Some(std::sync::Arc::new(schema))
        }
    };
    let row_group_bytes_max = at.range(
        S,
        "row_group_bytes_max",
        p.row_group_bytes_max,
        ROW_GROUP_BYTES,
    )?;
    let buffers_bytes_max = at.range(S, "buffers_bytes_max", p.buffers_bytes_max, BUFFERS_BYTES)?;
    if buffers_bytes_max < row_group_bytes_max {
        return Err(at.err(
            S,
            "buffers_bytes_max",
            "must be at least hdfs.parquet.row_group_bytes_max (one full row group)",
        ));
    }
    Ok(super::ParquetSettings {
        row_group_bytes_max: row_group_bytes_max as usize,
        buffers_bytes_max: buffers_bytes_max as usize,
        value_schema,
    })
}

/// The configured suffix (or the format's) plus the compression's extension (none for
/// Parquet, whose codec is inside the file).
fn file_suffix(h: &raw::HdfsConfig) -> String {
    use super::{Compression, Format};
    let base = h.file_suffix.clone().unwrap_or_else(|| {
        match h.format {
            Format::Text => ".txt",
            Format::JsonLines => ".jsonl",
            Format::Parquet => ".parquet",
        }
        .to_string()
    });
    match (h.format, h.compression) {
        (Format::Parquet, _) | (_, Compression::None) => base,
        (_, Compression::Gzip) => format!("{base}.gz"),
        (_, Compression::Zstd) => format!("{base}.zst"),
        (_, Compression::Snappy) => unreachable!("check_codec refuses snappy outside parquet"),
    }
}

/// `host:port[,host:port...]`, each entry optionally with a `proto://` prefix as librdkafka
/// allows; a port, when given, is a number.
fn check_bootstrap_servers(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("is empty".into());
    }
    for entry in s.split(',').map(str::trim) {
        let hostport = entry.rsplit_once("://").map_or(entry, |(_, hp)| hp);
        let port = hostport.rsplit_once(':').map(|(_, p)| p);
        if hostport.is_empty() || port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
            return Err(format!("has {entry:?}, not a host:port address"));
        }
    }
    Ok(())
}

/// Kafka's own rule for topic names and `group.instance.id` (the Java client's
/// `Topic.validate` / `JoinGroupRequest.validateGroupInstanceId`): 1 to 249 characters of
/// `[a-zA-Z0-9._-]`, and not `.` or `..`. librdkafka sends any string and the broker answers
/// with an error code that names no key, so flumen checks before it starts.
fn check_kafka_name(id: &str, what: &str) -> Result<(), String> {
    const LEN_MAX: usize = 249;
    if id.is_empty() {
        return Err(format!("is an empty {what}"));
    }
    if id == "." || id == ".." {
        return Err(format!("is {id:?}, which Kafka refuses as a {what}"));
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
            "is {id:?}: {bad:?} is not allowed in a {what} (only ASCII letters, digits, '.', '_' and '-')"
        ));
    }
    Ok(())
}

/// `hdfs://host[:port][/]` or `viewfs://cluster[/]`: hdfs-native needs the authority.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("is {url:?}, not an hdfs:// or viewfs:// URL"));
    };
    if scheme != "hdfs" && scheme != "viewfs" {
        return Err(format!("is {url:?}: the scheme must be hdfs or viewfs"));
    }
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if authority.is_empty() {
        return Err(format!(
            "is {url:?}: it names no NameNode (e.g. hdfs://namenode:8020)"
        ));
    }
    if !path.is_empty() {
        return Err(format!(
            "is {url:?}: put the directory in hdfs.path, not in the URL"
        ));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if scheme == "hdfs" => {
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("is {url:?}: {authority:?} is not host:port"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An absolute HDFS directory with no empty, `.` or `..` component (HDFS refuses those, and
/// `..` would make the final directory escape the prefix flumen reconciles).
fn check_hdfs_dir(dir: &str) -> Result<(), String> {
    if !dir.starts_with('/') {
        return Err(format!("is {dir:?}; must be an absolute path"));
    }
    let trimmed = dir.trim_end_matches('/');
    if let Some(bad) = trimmed
        .split('/')
        .skip(1)
        .find(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(format!("is {dir:?}: the component {bad:?} is not allowed"));
    }
    if dir.chars().any(char::is_control) {
        return Err(format!("is {dir:?}: control characters are not allowed"));
    }
    Ok(())
}

/// A part of a file name: no '/', no control character; a prefix also may not start with '_'
/// or '.', which would hide the files from Spark, Hive and MapReduce.
fn check_file_part(s: &str, prefix: bool) -> Result<(), String> {
    if s.contains('/') || s.chars().any(char::is_control) {
        return Err(format!(
            "is {s:?}: it must not contain '/' or control characters"
        ));
    }
    if prefix && (s.is_empty() || s.starts_with(['_', '.'])) {
        return Err(format!(
            "is {s:?}: it must not be empty or start with '_' or '.' (readers would skip the files)"
        ));
    }
    Ok(())
}
