//! Malformed configs, table-driven: each must fail with an error that names its key (and the
//! key's line when the key is in the file), or the line for a syntax error, and never panic.
//! Regression: 27 of 68 malformed files tried for issue 10 got an error with no key (type
//! errors, `duplicate key`, librdkafka's wrapped-around ranges, `hdfs://`), or none at all
//! (`retry_backoff_max_ms = 0`, an unclosed `%{topic`, `..` in `hdfs.path`, ...).

use std::path::Path;

use flumen::config::{ConfigError, Settings};

const BASE: &str = r#"shutdown_timeout_ms = 30000

[kafka]
bootstrap_servers = "127.0.0.1:9092"
topics = ["flume.txn"]

[channel]
dir = "/var/lib/flumen/channel"

[hdfs]
url = "hdfs://127.0.0.1:9000"
path = "/user/flumen/%{topic}/%Y-%m-%d"

[metrics]
listen = "127.0.0.1:9464"

[log]
format = "text"
"#;

/// How a case changes `BASE`.
enum Edit {
    /// Adds `line` right after the `[section]` header (or at the top for "").
    Add(&'static str, &'static str),
    /// Replaces the first `from` with `to`.
    Replace(&'static str, &'static str),
}

/// What the error must say: `Key(k)` → contains `` `k` `` and, when `k`'s last part is set in
/// the file, that line; `Line(n)` → a syntax error at line `n`.
enum Expect {
    Key(&'static str),
    Line(usize),
}

use Edit::{Add, Replace};
use Expect::{Key, Line};

const CASES: &[(Edit, Expect)] = &[
    // Unknown keys and tables.
    (Add("", "foo = 1"), Key("foo")),
    (Add("kafka", "batch_size = 5"), Key("kafka.batch_size")),
    (
        Add("channel", "segment_size = 5"),
        Key("channel.segment_size"),
    ),
    (Add("hdfs", "rollCount = 100"), Key("hdfs.rollCount")),
    (Add("metrics", "port = 9464"), Key("metrics.port")),
    (Replace("[log]", "[logging]"), Key("logging")),
    // Wrong types.
    (
        Add("channel", "capacity_bytes_max = \"big\""),
        Key("channel.capacity_bytes_max"),
    ),
    (
        Add("kafka", "batch_records_max = 1.5"),
        Key("kafka.batch_records_max"),
    ),
    (
        Replace("topics = [\"flume.txn\"]", "topics = \"flume.txn\""),
        Key("kafka.topics"),
    ),
    (
        Add("hdfs", "use_local_timestamp = \"yes\""),
        Key("hdfs.use_local_timestamp"),
    ),
    (
        Add("kafka", "session_timeout_ms = -1"),
        Key("kafka.session_timeout_ms"),
    ),
    (
        Add("channel", "disk_free_bytes_min = 18446744073709551616"),
        Key("channel.disk_free_bytes_min"),
    ),
    (
        Add("", "shutdown_timeout_ms = \"30s\""),
        Key("shutdown_timeout_ms"),
    ),
    (
        Add("kafka", "group_instance_id = 7"),
        Key("kafka.group_instance_id"),
    ),
    (
        Add("kafka.properties", "\"fetch.min.bytes\" = 1024"),
        Key("kafka.properties.fetch.min.bytes"),
    ),
    // Duplicates and missing keys.
    (Add("kafka", "topics = [\"other\"]"), Key("kafka.topics")),
    (
        Replace("bootstrap_servers = \"127.0.0.1:9092\"\n", ""),
        Key("kafka"),
    ),
    (
        Replace("dir = \"/var/lib/flumen/channel\"\n", ""),
        Key("channel"),
    ),
    (Replace("[hdfs]\nurl", "[hdfx]\nurl"), Key("hdfx")),
    // Syntax.
    (Replace("[kafka]", "[kafka"), Line(3)),
    // TOML finds the unclosed array where the next table starts.
    (
        Replace("topics = [\"flume.txn\"]", "topics = [\"flume.txn\""),
        Line(7),
    ),
    (Replace("[channel]", "[channel]\n= 5"), Line(8)),
    (Replace("dir = \"/var", "dir = '/var"), Line(8)),
    // Enum values.
    (
        Add("kafka", "isolation_level = \"read_uncommited\""),
        Key("kafka.isolation_level"),
    ),
    (
        Add("kafka", "auto_offset_reset = \"smallest\""),
        Key("kafka.auto_offset_reset"),
    ),
    (
        Add("kafka", "oversized_record_policy = \"skip\""),
        Key("kafka.oversized_record_policy"),
    ),
    (Add("hdfs", "format = \"orc\""), Key("hdfs.format")),
    (
        Add("hdfs", "compression = \"snappy\""),
        Key("hdfs.compression"),
    ),
    (
        Add("hdfs", "time_zone = \"Europe/Paris\""),
        Key("hdfs.time_zone"),
    ),
    (
        Replace("format = \"text\"", "format = \"xml\""),
        Key("log.format"),
    ),
    // Kafka values.
    (
        Replace("\"127.0.0.1:9092\"", "\"\""),
        Key("kafka.bootstrap_servers"),
    ),
    (
        Replace("\"127.0.0.1:9092\"", "\"broker:port\""),
        Key("kafka.bootstrap_servers"),
    ),
    (
        Replace("\"127.0.0.1:9092\"", "\"a:9092,,b:9092\""),
        Key("kafka.bootstrap_servers"),
    ),
    (Replace("[\"flume.txn\"]", "[]"), Key("kafka.topics")),
    (Replace("[\"flume.txn\"]", "[\"\"]"), Key("kafka.topics")),
    (Replace("[\"flume.txn\"]", "[\"a+b\"]"), Key("kafka.topics")),
    (
        Replace("[\"flume.txn\"]", "[\"bad topic\"]"),
        Key("kafka.topics"),
    ),
    (
        Replace("[\"flume.txn\"]", "[\"a\", \"a\"]"),
        Key("kafka.topics"),
    ),
    (Add("kafka", "group_id = \"\""), Key("kafka.group_id")),
    (
        Add("kafka", "group_instance_id = \"host 1\""),
        Key("kafka.group_instance_id"),
    ),
    (
        Add("kafka", "session_timeout_ms = 0"),
        Key("kafka.session_timeout_ms"),
    ),
    (
        Add("kafka", "session_timeout_ms = 999999999999"),
        Key("kafka.session_timeout_ms"),
    ),
    (
        Add("kafka", "max_poll_interval_ms = 999999999999"),
        Key("kafka.max_poll_interval_ms"),
    ),
    (
        Add("kafka", "max_poll_interval_ms = 1000"),
        Key("kafka.max_poll_interval_ms"),
    ),
    (
        Add("kafka", "batch_records_max = 0"),
        Key("kafka.batch_records_max"),
    ),
    (
        Add("kafka", "batch_records_max = 2000000"),
        Key("kafka.batch_records_max"),
    ),
    (
        Add("kafka", "batch_duration_ms = 0"),
        Key("kafka.batch_duration_ms"),
    ),
    (
        Add("kafka", "batch_bytes_max = 0"),
        Key("kafka.batch_bytes_max"),
    ),
    (
        Add("kafka", "batch_bytes_max = 100000000"),
        Key("kafka.batch_bytes_max"),
    ),
    (
        Add("kafka", "record_bytes_max = 0"),
        Key("kafka.record_bytes_max"),
    ),
    (
        Add("kafka", "record_bytes_max = 9000000"),
        Key("kafka.record_bytes_max"),
    ),
    (
        Add("kafka", "oversized_record_policy = \"dead_letter\""),
        Key("hdfs.dead_letter_dir"),
    ),
    (
        Add("kafka.properties", "\"group.id\" = \"x\""),
        Key("kafka.properties.group.id"),
    ),
    (
        Add(
            "kafka.properties",
            "\"metadata.broker.list\" = \"evil:9092\"",
        ),
        Key("kafka.properties.metadata.broker.list"),
    ),
    (
        Add("kafka.properties", "\"auto.commit.enable\" = \"true\""),
        Key("kafka.properties.auto.commit.enable"),
    ),
    (
        Add("kafka.properties", "\"fetch.min.byte\" = \"1\""),
        Key("kafka.properties.fetch.min.byte"),
    ),
    (
        Add("kafka.properties", "\"fetch.min.bytes\" = \"-5\""),
        Key("kafka.properties.fetch.min.bytes"),
    ),
    (
        Add(
            "kafka.properties",
            "\"queued.max.messages.kbytes\" = \"lots\"",
        ),
        Key("kafka.properties.queued.max.messages.kbytes"),
    ),
    // Channel values.
    (
        Replace("dir = \"/var/lib/flumen/channel\"", "dir = \"\""),
        Key("channel.dir"),
    ),
    (
        Add("channel", "segment_bytes_max = 1000"),
        Key("channel.segment_bytes_max"),
    ),
    (
        Add("channel", "segment_bytes_max = 1099511627776"),
        Key("channel.segment_bytes_max"),
    ),
    (
        Add("channel", "capacity_bytes_max = 1"),
        Key("channel.capacity_bytes_max"),
    ),
    (
        Add("channel", "resume_bytes = 10737418240"),
        Key("channel.resume_bytes"),
    ),
    (
        Add("channel", "group_commit_bytes_max = 0"),
        Key("channel.group_commit_bytes_max"),
    ),
    (
        Add("channel", "frame_version = 3"),
        Key("channel.frame_version"),
    ),
    (
        Add("channel", "frame_version = 0"),
        Key("channel.frame_version"),
    ),
    // HDFS values.
    (
        Replace("\"hdfs://127.0.0.1:9000\"", "\"hdfs://\""),
        Key("hdfs.url"),
    ),
    (
        Replace("\"hdfs://127.0.0.1:9000\"", "\"http://nn:9870\""),
        Key("hdfs.url"),
    ),
    (
        Replace("\"hdfs://127.0.0.1:9000\"", "\"hdfs://nn:port\""),
        Key("hdfs.url"),
    ),
    (
        Replace("\"hdfs://127.0.0.1:9000\"", "\"hdfs://nn:8020/user\""),
        Key("hdfs.url"),
    ),
    (
        Replace("\"hdfs://127.0.0.1:9000\"", "\"nn:8020\""),
        Key("hdfs.url"),
    ),
    (Replace("path = \"/user", "path = \"user"), Key("hdfs.path")),
    (
        Replace("/user/flumen/%{topic}", "/user/../flumen/%{topic}"),
        Key("hdfs.path"),
    ),
    (
        Replace("/user/flumen/%{topic}", "/user//flumen/%{topic}"),
        Key("hdfs.path"),
    ),
    (Replace("%{topic}/%Y-%m-%d", "%{topic"), Key("hdfs.path")),
    (Replace("%{topic}", "%{host}"), Key("hdfs.path")),
    (Replace("%Y-%m-%d", "%q"), Key("hdfs.path")),
    (
        Add("hdfs", "state_dir = \"flumen-state\""),
        Key("hdfs.state_dir"),
    ),
    (Add("hdfs", "state_dir = \"/a/./b\""), Key("hdfs.state_dir")),
    (Add("hdfs", "user = \"\""), Key("hdfs.user")),
    (
        Add("hdfs", "file_prefix = \"_hidden\""),
        Key("hdfs.file_prefix"),
    ),
    (
        Add("hdfs", "file_prefix = \"a/b\""),
        Key("hdfs.file_prefix"),
    ),
    (Add("hdfs", "file_prefix = \"\""), Key("hdfs.file_prefix")),
    (Add("hdfs", "file_suffix = \"/x\""), Key("hdfs.file_suffix")),
    (
        Add("hdfs", "file_suffix = \".txt\\n\""),
        Key("hdfs.file_suffix"),
    ),
    (
        Add("hdfs", "dead_letter_dir = \"dl\""),
        Key("hdfs.dead_letter_dir"),
    ),
    (
        Add("hdfs", "dead_letter_dir = \"/dl/../x\""),
        Key("hdfs.dead_letter_dir"),
    ),
    (
        Add(
            "hdfs",
            "roll_records_max = 0\nroll_bytes_max = 0\nroll_interval_s = 0",
        ),
        Key("hdfs.roll_interval_s"),
    ),
    (
        Add("hdfs", "roll_interval_s = 99999999"),
        Key("hdfs.roll_interval_s"),
    ),
    (
        Add("hdfs", "idle_timeout_s = 99999999"),
        Key("hdfs.idle_timeout_s"),
    ),
    (
        Add("hdfs", "retry_backoff_max_ms = 0"),
        Key("hdfs.retry_backoff_max_ms"),
    ),
    (
        Add("hdfs", "files_closing_max = 0"),
        Key("hdfs.files_closing_max"),
    ),
    (
        Add("hdfs", "files_closing_per_partition_max = 5000"),
        Key("hdfs.files_closing_per_partition_max"),
    ),
    (
        Add("hdfs", "text_newline_policy = \"escape\""),
        Key("hdfs.text_newline_policy"),
    ),
    (
        Add("hdfs", "text_newline_policy = \"dead_letter\""),
        Key("hdfs.text_newline_policy"),
    ),
    // Parquet (`format = "parquet"`, `[hdfs.parquet]`).
    (
        Add("hdfs", "format = \"parquet\"\ncompression = \"gzip\""),
        Key("hdfs.compression"),
    ),
    (Add("hdfs", "compression = \"snappy\""), Key("hdfs.compression")),
    (
        Add("hdfs.parquet", "row_group_bytes_max = 1048576"),
        Key("hdfs.parquet"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\n\n[hdfs.parquet]\nrow_group_bytes_max = 1\n\n[metrics]",
        ),
        Key("hdfs.parquet.row_group_bytes_max"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\n\n[hdfs.parquet]\nrow_groups = 1\n\n[metrics]",
        ),
        Key("hdfs.parquet.row_groups"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\n\n[hdfs.parquet]\nrow_group_bytes_max = 8388608\nbuffers_bytes_max = 1048576\n\n[metrics]",
        ),
        Key("hdfs.parquet.buffers_bytes_max"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\ndead_letter_dir = \"/dl\"\n\n[hdfs.parquet]\nvalue_schema = \"seq int\"\n\n[metrics]",
        ),
        Key("hdfs.parquet.value_schema"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\ndead_letter_dir = \"/dl\"\n\n[hdfs.parquet]\nvalue_schema = \"offset long\"\n\n[metrics]",
        ),
        Key("hdfs.parquet.value_schema"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\n\n[hdfs.parquet]\nvalue_schema = \"seq long\"\n\n[metrics]",
        ),
        Key("hdfs.dead_letter_dir"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\ndead_letter_dir = \"/dl\"\n\n[hdfs.parquet]\nvalue_schema = \"seq long\"\nvalue_schema_file = \"/etc/s\"\n\n[metrics]",
        ),
        Key("hdfs.parquet.value_schema_file"),
    ),
    (
        Replace(
            "\n[metrics]",
            "format = \"parquet\"\ndead_letter_dir = \"/dl\"\n\n[hdfs.parquet]\nvalue_schema_file = \"/nonexistent/schema\"\n\n[metrics]",
        ),
        Key("hdfs.parquet.value_schema_file"),
    ),
    // The rest.
    (
        Replace("shutdown_timeout_ms = 30000", "shutdown_timeout_ms = 0"),
        Key("shutdown_timeout_ms"),
    ),
    (
        Replace("listen = \"127.0.0.1:9464\"", "listen = \"localhost\""),
        Key("metrics.listen"),
    ),
    (
        Replace(
            "listen = \"127.0.0.1:9464\"",
            "listen = \"127.0.0.1:99999\"",
        ),
        Key("metrics.listen"),
    ),
    // [hdfs.completeness]: each bad value names its key.
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}\"\n[hdfs.completeness]\nenabled = true",
        ),
        Key("hdfs.completeness.enabled"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y/%d\"\n[hdfs.completeness]\nenabled = true",
        ),
        Key("hdfs.completeness.enabled"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\ntime_zone = \"local\"\n[hdfs.completeness]\nenabled = true",
        ),
        Key("hdfs.completeness.enabled"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nmarker = \"COMPLETE\"",
        ),
        Key("hdfs.completeness.marker"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nmarker = \"_a/b\"",
        ),
        Key("hdfs.completeness.marker"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nallowed_lateness_s = 10000000",
        ),
        Key("hdfs.completeness.allowed_lateness_s"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nallowed_lateness_s = -1",
        ),
        Key("hdfs.completeness.allowed_lateness_s"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nlate_path = \"late/%Y\"",
        ),
        Key("hdfs.completeness.late_path"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nlate_path = \"/x/%q\"",
        ),
        Key("hdfs.completeness.late_path"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nlate_path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
        ),
        Key("hdfs.completeness.late_path"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = true\nlateness_s = 5",
        ),
        Key("hdfs.completeness.lateness_s"),
    ),
    (
        Replace(
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"",
            "path = \"/user/flumen/%{topic}/%Y-%m-%d\"\n[hdfs.completeness]\nenabled = \"yes\"",
        ),
        Key("hdfs.completeness.enabled"),
    ),
];

fn apply(edit: &Edit) -> String {
    match edit {
        Replace(from, to) => {
            assert!(BASE.contains(from), "case does not apply: {from:?}");
            BASE.replacen(from, to, 1)
        }
        Add("", line) => format!("{line}\n{BASE}"),
        Add(section, line) => {
            let header = format!("[{section}]\n");
            if BASE.contains(&header) {
                BASE.replacen(&header, &format!("{header}{line}\n"), 1)
            } else {
                format!("{BASE}\n{header}{line}\n")
            }
        }
    }
}

/// The 1-based line that sets `key` (`section.name`) in `text`, if any: the last one, since a
/// duplicate is reported where it repeats.
fn line_setting(text: &str, key: &str) -> Option<usize> {
    let (section, name) = match key.strip_prefix("kafka.properties.") {
        Some(name) => ("kafka.properties", name),
        None => key.rsplit_once('.').unwrap_or(("", key)),
    };
    let mut current = "";
    let mut found = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            current = h;
        } else if current == section
            && t.split_once('=').map(|(k, _)| k.trim().trim_matches('"')) == Some(name)
        {
            found = Some(i + 1);
        }
    }
    found
}

#[test]
fn the_base_config_is_valid() {
    Settings::parse(BASE, Path::new("test.toml")).unwrap();
}

#[test]
fn every_malformed_config_names_its_key_or_line() {
    assert!(CASES.len() >= 60, "the issue asks for at least 60 cases");
    let mut failures = Vec::new();
    for (i, (edit, expect)) in CASES.iter().enumerate() {
        let text = apply(edit);
        let result = std::panic::catch_unwind(|| Settings::parse(&text, Path::new("test.toml")));
        let err = match result {
            Err(_) => {
                failures.push(format!("case {i}: panicked\n{text}"));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("case {i}: accepted\n{text}"));
                continue;
            }
            Ok(Err(e)) => e.to_string(),
        };
        if let Some(problem) = check(&text, &err, expect) {
            failures.push(format!("case {i}: {problem}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn check(text: &str, err: &str, expect: &Expect) -> Option<String> {
    match expect {
        Line(n) => (!err.starts_with(&format!("test.toml:{n}:")))
            .then(|| format!("expected a syntax error at line {n}")),
        Key(key) => {
            if !err.contains(&format!("`{key}`")) {
                return Some(format!("does not name `{key}`"));
            }
            let line = line_setting(text, key)?;
            (!err.starts_with(&format!("test.toml:{line}:")))
                .then(|| format!("does not give line {line}"))
        }
    }
}

/// Regression: a config that is not UTF-8 got "stream did not contain valid UTF-8" with no line.
#[test]
fn a_config_that_is_not_utf8_gets_its_line() {
    let dir = std::env::temp_dir().join(format!("flumen-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.toml");
    let mut bytes = BASE.as_bytes().to_vec();
    let at = BASE.find("/var/lib").unwrap();
    bytes.insert(at + 1, 0xe9); // 'é' in Latin-1
    std::fs::write(&path, &bytes).unwrap();
    let err = Settings::load(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).ok();
    assert!(matches!(err, ConfigError::Parse { line: 8, .. }), "{err}");
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}

/// A secret passed through to librdkafka is never echoed in the error librdkafka gives.
#[test]
fn a_refused_property_value_is_not_printed() {
    let text = BASE.replacen(
        "[metrics]",
        "[kafka.properties]\n\"security.protocol\" = \"hunter2-secret\"\n\n[metrics]",
        1,
    );
    let err = Settings::parse(&text, Path::new("test.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`kafka.properties.security.protocol`"),
        "{err}"
    );
    assert!(!err.contains("hunter2-secret"), "{err}");
}
