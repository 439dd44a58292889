//! Internal events: each function is one occurrence and emits both its log line and its
//! metrics, so logs and `/metrics` never disagree. Metric names follow
//! `flumen_<name>_<unit>_total`; label values come from small fixed sets (error codes) or from
//! the configured topics and their partitions.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::poison::Poison;
use crate::wal::TopicPartition;

/// The fixed set of error codes used as the `code` label.
#[derive(Debug, Clone, Copy)]
pub enum ErrorCode {
    KafkaFetch,
    KafkaCommit,
    HdfsIo,
    HdfsFenced,
    ChannelIo,
    ChannelFull,
    DiskFull,
    OversizedRecord,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::KafkaFetch => "kafka_fetch",
            ErrorCode::KafkaCommit => "kafka_commit",
            ErrorCode::HdfsIo => "hdfs_io",
            ErrorCode::HdfsFenced => "hdfs_fenced",
            ErrorCode::ChannelIo => "channel_io",
            ErrorCode::ChannelFull => "channel_full",
            ErrorCode::DiskFull => "disk_full",
            ErrorCode::OversizedRecord => "oversized_record",
        }
    }
}

pub fn error(code: ErrorCode) {
    counter!("flumen_errors_total", "code" => code.as_str()).increment(1);
}

/// Assigned partitions waiting for their start from HDFS (their reconciliation with the
/// ledger), those consuming from a provisional start included: with HDFS down, a partition
/// the ledger has never seen cannot start at all.
pub fn partitions_unreconciled(n: usize) {
    gauge!("flumen_partitions_unreconciled").set(n as f64);
}

pub fn records_consumed(tp: &TopicPartition, records: u64, bytes: u64) {
    let labels = [
        ("topic", tp.topic.clone()),
        ("partition", tp.partition.to_string()),
    ];
    counter!("flumen_records_consumed_total", &labels).increment(records);
    counter!("flumen_bytes_consumed_total", &labels).increment(bytes);
}

pub fn channel_appended(batches: usize, bytes: usize, sync: Duration) {
    counter!("flumen_channel_batches_appended_total").increment(batches as u64);
    counter!("flumen_channel_bytes_appended_total").increment(bytes as u64);
    histogram!("flumen_channel_fsync_seconds").record(sync.as_secs_f64());
}

pub fn channel_level(bytes: u64, segments: usize) {
    gauge!("flumen_channel_pending_bytes").set(bytes as f64);
    gauge!("flumen_channel_segments").set(segments as f64);
}

pub fn file_committed(
    tp: &TopicPartition,
    path: &str,
    start: i64,
    last: i64,
    records: u64,
    latency: Duration,
) {
    let latency_ms = latency.as_millis() as u64;
    tracing::info!(partition = %tp, path, start, last, records, latency_ms, "committed HDFS file");
    counter!("flumen_files_committed_total").increment(1);
    counter!("flumen_records_committed_total").increment(records);
    histogram!("flumen_commit_latency_seconds").record(latency.as_secs_f64());
    gauge!("flumen_hdfs_committed_offset", "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
        .set(last as f64);
}

/// One HDFS call (an RPC, or a writer's write, hsync or close) took `took`.
pub fn hdfs_call(op: &str, took: Duration) {
    histogram!("flumen_hdfs_call_seconds", "op" => op.to_string()).record(took.as_secs_f64());
}

/// A write waited its whole patience for the file's earlier bytes to be acknowledged, then
/// went ahead: a pipeline that acknowledges nothing, or bytes held back by our own chunking.
pub fn hdfs_write_window_expired() {
    counter!("flumen_hdfs_write_window_expired_total").increment(1);
}

pub fn lag(tp: &TopicPartition, high_watermark: i64, committed_end: i64) {
    gauge!("flumen_end_to_end_lag_records", "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
        .set((high_watermark - 1 - committed_end).max(0) as f64);
}

pub fn fenced(tp: &TopicPartition, start: i64) {
    tracing::warn!(partition = %tp, start, "another writer holds this range; dropped our file and reconciling");
    error(ErrorCode::HdfsFenced);
}

pub fn rebalance(kind: &'static str, partitions: usize) {
    tracing::info!(kind, partitions, "rebalance");
    counter!("flumen_rebalances_total", "kind" => kind).increment(1);
}

/// One retry of a failed HDFS call. Debug only: the failure itself is reported, rate-limited,
/// by [`hdfs_fault`].
pub fn hdfs_retry(what: &str, path: &str, e: &hdfs_native::HdfsError, backoff: Duration) {
    let brief = crate::hdfs_fault::Brief(e);
    tracing::debug!(op = what, path, error = %brief, backoff_ms = backoff.as_millis() as u64, "HDFS call failed; retrying");
    error(ErrorCode::HdfsIo);
}

/// librdkafka's running totals: records fetched, and fetched records dropped as outdated.
pub fn kafka_fetched(fetched: u64, outdated_dropped: u64) {
    counter!("flumen_kafka_fetched_records_total").absolute(fetched);
    counter!("flumen_kafka_outdated_records_dropped_total").absolute(outdated_dropped);
}

pub fn paused(reason: &str) {
    tracing::warn!(reason, "pausing consumption");
    counter!("flumen_pauses_total").increment(1);
}

/// A partition cannot go on: `[from, through]` is gone from the channel and from Kafka.
pub fn partition_halted(tp: &TopicPartition, from: i64, through: i64) {
    tracing::error!(partition = %tp, from, through,
        "offsets are gone from the channel and from Kafka (retention); the partition halts until \
         an operator records the skip with `flumen ledger skip`");
    gauge!("flumen_partition_halted", "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
        .set(1.0);
    counter!("flumen_partition_halts_total").increment(1);
}

/// A poison record under policy `fail`: everything before it is delivered, and its partition
/// halts until a restart (or a new assignment) with a policy that lets it through.
pub fn poison_halted(tp: &TopicPartition, offset: i64, poison: Poison) {
    tracing::error!(partition = %tp, offset, reason = poison.label(),
        "the record {poison}; everything before it is delivered and the partition halts here: \
         {}, then restart", poison.fix());
    poison_counted(poison, "halt");
    gauge!("flumen_partition_halted", "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
        .set(1.0);
    counter!("flumen_partition_halts_total").increment(1);
}

/// A poison record was written whole to the dead-letter directory (by this run).
pub fn dead_lettered(tp: &TopicPartition, offset: i64, path: &str, poison: Poison) {
    tracing::warn!(partition = %tp, offset, path, reason = poison.label(),
        "the record {poison}; written to the dead-letter directory");
    poison_counted(poison, "dead_letter");
}

/// A dead letter was found in place: an earlier run (or a zombie) wrote it, and it wins.
pub fn dead_letter_exists(tp: &TopicPartition, offset: i64, path: &str) {
    tracing::info!(partition = %tp, offset, path,
        "dead letter already written by an earlier run; keeping that one");
}

/// How often at most a poison record written as is logs a warning; the metric counts each.
const RAW_WARN_EVERY: Duration = Duration::from_secs(60);

/// A poison record written as is (`text_newline_policy = "raw"`, or a record the source would
/// now halt on that reached the channel under an earlier configuration).
pub fn poison_written_raw(tp: &TopicPartition, offset: i64, poison: Poison) {
    poison_counted(poison, "raw");
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| t.elapsed() < RAW_WARN_EVERY) {
        return;
    }
    *last = Some(std::time::Instant::now());
    tracing::warn!(partition = %tp, offset, reason = poison.label(),
        "the record {poison}; written as is (at most one such warning a minute; \
         flumen_poison_records_total{{action=\"raw\"}} counts them all)");
}

/// A tombstone (null value) written by `format = "text"` as an empty line, which an empty value
/// also becomes: only `jsonl` tells them apart.
pub fn text_tombstone() {
    counter!("flumen_text_tombstone_records_total").increment(1);
}

fn poison_counted(poison: Poison, action: &'static str) {
    if matches!(poison, Poison::Oversized { .. }) {
        error(ErrorCode::OversizedRecord);
    }
    counter!("flumen_poison_records_total", "reason" => poison.label(), "action" => action)
        .increment(1);
}

/// A halted partition delivers again.
pub fn partition_resumed(tp: &TopicPartition) {
    tracing::info!(partition = %tp, "halted partition is consuming again");
    gauge!("flumen_partition_halted", "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
        .set(0.0);
}

/// A partition's ledger was read (and its tip delivered if it waited) on assignment.
pub fn reconciled(
    tp: &TopicPartition,
    committed_end: i64,
    channel_end: i64,
    pos: &crate::commit::Position,
) {
    tracing::info!(partition = %tp, committed_end, channel_end, rolled_forward = pos.rolled_forward,
        staging_deleted = pos.staging_deleted, "reconciled");
}

/// The channel was opened: what recovery found, as gauges an alert can watch (the error lines
/// themselves come from the relay and from `Wal::open`, which names each missing segment).
pub fn channel_recovered(damage: &[crate::wal::Damage], gaps: &crate::wal::Gaps) {
    let missing: u64 = gaps.missing.iter().map(|m| m.last - m.first + 1).sum();
    let lost = gaps.holes.iter().filter(|h| h.cause.is_loss()).count();
    gauge!("flumen_channel_damaged_ranges").set(damage.len() as f64);
    gauge!("flumen_channel_missing_segments").set(missing as f64);
    gauge!("flumen_channel_lost_offset_ranges").set(lost as f64);
}

/// An HDFS call failed with a fault of `kind` (`reason` names cause and path, as /health does).
/// Counted every time; logged only when the per-kind rate limit lets `line` through, and never
/// with the Java stack trace (`error` is the brief form).
pub fn hdfs_fault(
    kind: crate::hdfs_fault::FaultKind,
    reason: &str,
    line: Option<crate::hdfs_fault::FaultLine>,
    op: &str,
    path: &str,
    error: &dyn std::fmt::Display,
) {
    use crate::hdfs_fault::{FaultLine, FAULT_LOG_INTERVAL};
    let k = kind.as_str();
    counter!("flumen_hdfs_faults_total", "kind" => k).increment(1);
    gauge!("flumen_hdfs_fault_active", "kind" => k).set(1.0);
    let every_s = FAULT_LOG_INTERVAL.as_secs();
    match line {
        Some(FaultLine::Began) => tracing::warn!(kind = k, op, path, %error,
            "{reason}; the channel keeps the data and flumen retries; repeats are logged at most every {every_s} s"),
        Some(FaultLine::Continues { suppressed, lasted }) => tracing::warn!(kind = k, op, path,
            %error, suppressed, lasted_s = lasted.as_secs(), "{reason}; still failing"),
        Some(FaultLine::Cleared { .. }) | None => {}
    }
}

/// An HDFS fault of `kind` is over: a call that proves it succeeded.
pub fn hdfs_fault_cleared(
    kind: crate::hdfs_fault::FaultKind,
    reason: &str,
    line: Option<crate::hdfs_fault::FaultLine>,
) {
    gauge!("flumen_hdfs_fault_active", "kind" => kind.as_str()).set(0.0);
    if let Some(crate::hdfs_fault::FaultLine::Cleared { lasted }) = line {
        tracing::info!(
            kind = kind.as_str(),
            lasted_s = lasted.as_secs(),
            "over: {reason}"
        );
    }
}

/// A partition's channel data waits and its commits have made no progress past the bound.
pub fn partition_stuck(tp: &TopicPartition, reason: &str) {
    tracing::warn!(partition = %tp, "{reason}");
    gauge!("flumen_partition_stuck", "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
        .set(1.0);
}

/// A stuck partition committed again (or has nothing left waiting).
pub fn partition_unstuck(tp: &TopicPartition) {
    tracing::info!(partition = %tp, "partition is committing again");
    gauge!("flumen_partition_stuck", "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
        .set(0.0);
}

/// A new Kerberos ticket for the HDFS login (the first, or a renewal from the keytab).
pub fn kerberos_ticket(principal: &str, lifetime: Duration, end: std::time::SystemTime) {
    let end_s = end
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    tracing::info!(
        principal,
        lifetime_s = lifetime.as_secs(),
        "kerberos ticket obtained"
    );
    counter!("flumen_kerberos_tickets_total").increment(1);
    gauge!("flumen_kerberos_ticket_end_timestamp_seconds").set(end_s);
}

/// The HDFS login's ticket passed half its life without a new one; logged once per ticket.
pub fn kerberos_renewal_overdue(reason: &str) {
    tracing::warn!(reason, "kerberos ticket renewal overdue");
}

pub fn kerberos_login_failed(reason: &str, retry: Duration) {
    tracing::warn!(
        reason,
        retry_s = retry.as_secs(),
        "kerberos login failed; retrying"
    );
    counter!("flumen_kerberos_login_failures_total").increment(1);
}

/// A record whose time bucket its partition's watermark has passed went to the late path
/// (`hdfs.completeness.late_path`). Counted per record written; a range written again after
/// an HDFS failure counts again. Debug: the count is what an operator watches.
pub fn late_record(tp: &TopicPartition) {
    let labels = [
        ("topic", tp.topic.clone()),
        ("partition", tp.partition.to_string()),
    ];
    counter!("flumen_late_records_total", &labels).increment(1);
}

/// A file's bucket was passed by its partition's watermark (an idle advance) between its
/// writing and its claim: it is written again, its records to the late path.
pub fn file_late_at_claim(tp: &TopicPartition, start: i64) {
    tracing::info!(partition = %tp, start, "the partition's watermark passed this file's time bucket before its claim; writing the range again with late records to the late path");
    counter!("flumen_files_late_at_claim_total").increment(1);
}

/// A completeness marker was created in a bucket directory (by this instance).
pub fn marker_written(path: &str, end_ms: i64) {
    tracing::info!(
        path,
        bucket_end_ms = end_ms,
        "time bucket complete: marker written"
    );
    counter!("flumen_completeness_markers_total").increment(1);
}

/// The least watermark over every partition of the configured topics, as the marker task
/// last read it (ms since the epoch).
pub fn completeness_watermark(min_ms: i64) {
    gauge!("flumen_completeness_watermark_ms").set(min_ms as f64);
}

/// An idle partition's watermark was advanced to the time before its log end was read.
pub fn watermark_advanced(tp: &TopicPartition, to_ms: i64) {
    tracing::debug!(partition = %tp, to_ms, "idle partition: watermark advanced");
    counter!("flumen_watermark_advances_total").increment(1);
}
