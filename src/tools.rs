//! Operator tools behind `flumen check`, `replay`, `wal check|dump` and `offsets`. They reuse
//! the channel scanner and the commit protocol; nothing here re-implements either.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::Settings;
use crate::health::Health;
use crate::relay::{self, RelayError};
use crate::sink::format::Format;
use crate::source::reports::LoginWatch;
use crate::source::SourceOptions;
use crate::wal::frame::Seed;
use crate::wal::log::{list_segments, segment_path, survey, Damage, Reading, WalError};
use crate::wal::survey::scan;
use crate::wal::{ChainHole, Gaps, MissingSegments, TopicPartition};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Channel(#[from] WalError),
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Commit(#[from] crate::commit::CommitError),
    #[error("kafka at {servers}: {reason}")]
    Kafka { servers: String, reason: String },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// The tools' Kafka client. Its context remembers a refused login or TLS handshake, which
/// [`kafka_failed`] puts in place of the bare timeout that librdkafka returns then.
pub(crate) type ToolConsumer = BaseConsumer<LoginWatch>;

pub(crate) fn kafka_client(config: &Settings) -> Result<ToolConsumer, ToolError> {
    let opts = SourceOptions::from_settings(config);
    let mut cc = opts.client_config();
    // Never join the group: the tools only read metadata and committed offsets.
    cc.set("group.id", &config.kafka.group_id);
    cc.create_with_context(LoginWatch::new(opts.redactor()))
        .map_err(|e| ToolError::Kafka {
            servers: config.kafka.bootstrap_servers.clone(),
            reason: opts.redact(&e.to_string()),
        })
}

/// A failed Kafka request of a tool: what the request got, and why, if Kafka refused the
/// login or the TLS handshake (the request itself only says it timed out).
pub(crate) fn kafka_failed(servers: &str, consumer: &ToolConsumer, what: String) -> ToolError {
    // Error events wait in the client's queue until a poll hands them to the context; the
    // tools never poll otherwise. Bounded: a few events, 50 ms each at most.
    for _ in 0..16 {
        if consumer.poll(Duration::from_millis(50)).is_none() {
            break;
        }
    }
    let reason = match consumer.context().refused() {
        Some(refused) => format!("{what}: {refused}"),
        None => what,
    };
    ToolError::Kafka {
        servers: servers.to_string(),
        reason,
    }
}

/// `flumen ledger skip`: records an operator's decision that `[from, through]` is lost.
pub async fn ledger_skip(
    config: &Settings,
    tp: &TopicPartition,
    from: i64,
    through: i64,
) -> Result<(), ToolError> {
    let ledger = relay::ledger(config, Arc::new(Health::default()))?;
    ledger.skip(tp, from, through).await?;
    tracing::warn!(partition = %tp, from, through, "skip recorded in the ledger");
    Ok(())
}

/// `flumen replay`: a progress bar on a terminal, plain lines otherwise.
pub async fn replay(config: &Settings, dry_run: bool) -> Result<(), ToolError> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let plain = !std::io::stderr().is_terminal();
    let rows = relay::replay(config, dry_run, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if plain && done % 1000 == 0 {
            eprintln!("replay: {done} batches read");
        }
    })
    .await?;
    bar.finish_and_clear();
    for (tp, before, after) in rows {
        if dry_run {
            println!(
                "{tp}: HDFS holds up to {before}; would write {}..={after}",
                before + 1
            );
        } else {
            println!("{tp}: HDFS held up to {before}; now holds up to {after}");
        }
    }
    Ok(())
}

pub struct CheckReport {
    pub text: String,
    /// Damage, or a missing segment: `wal check` exits 1.
    pub damaged: bool,
    pub damage: Vec<Damage>,
    pub gaps: Gaps,
}

/// `flumen wal check`: read-only scan of every segment, resynchronising after damage, then the
/// gaps: missing segment ids and holes in each partition's offset chain.
pub fn wal_check(dir: &Path) -> Result<CheckReport, ToolError> {
    let mut spans: BTreeMap<TopicPartition, (i64, i64)> = BTreeMap::new();
    let found = survey(dir, Reading::Live, |_, f| {
        let e = spans
            .entry(TopicPartition::new(f.batch.topic, f.batch.partition))
            .or_insert((f.batch.start_offset, f.batch.last_offset));
        e.0 = e.0.min(f.batch.start_offset);
        e.1 = e.1.max(f.batch.last_offset);
    })?;
    let gaps = found.gaps();
    let mut text = String::new();
    for (id, seg) in &found.segments {
        // A version 2 segment's data ends at its end marker; a reused file goes on past it.
        let ended = seg.seed != Seed::NONE && seg.damaged.is_empty();
        let rest = if ended && seg.file_len > seg.durable_len {
            "; the rest is unused, after its end marker"
        } else {
            ""
        };
        text += &format!(
            "segment {id:020}: {} bytes, intact frames up to byte {}{rest}\n",
            seg.file_len, seg.durable_len
        );
    }
    for id in &found.unfinished {
        text += &format!(
            "segment {id:020}: empty, left by a crash or a full disk during its creation \
             (not damage)\n"
        );
    }
    for id in &found.free {
        text += &format!("file {id:020}.free: a trimmed segment's file kept for reuse\n");
    }
    for id in &found.trimmed_while_read {
        text += &format!(
            "segment {id:020}: trimmed by the running relay while this check read it (its \
             batches are in HDFS; not damage)\n"
        );
    }
    text += &damage_lines(&found.damage, &found.segments);
    text += &gap_lines(&gaps);
    for (tp, (lo, hi)) in &spans {
        text += &format!("{tp}: offsets {lo}..={hi}\n");
    }
    let lost_holes = gaps.holes.iter().filter(|h| h.cause.is_loss()).count();
    text += &format!(
        "{} intact batches, {} damaged ranges, {} missing segments, {} holes ({} lost)\n",
        found.batches,
        found.damage.len(),
        gaps.missing
            .iter()
            .map(|m| m.last - m.first + 1)
            .sum::<u64>(),
        gaps.holes.len(),
        lost_holes,
    );
    Ok(CheckReport {
        damaged: !found.damage.is_empty() || gaps.lost(),
        text,
        damage: found.damage,
        gaps,
    })
}

fn damage_lines(
    damage: &[Damage],
    segments: &BTreeMap<u64, crate::wal::log::SegmentInfo>,
) -> String {
    let mut text = String::new();
    for d in damage {
        let after = d
            .after
            .as_ref()
            .map_or("segment start".to_string(), |(tp, o)| {
                format!("{tp} offset {o}")
            });
        let resumed = segments
            .get(&d.segment)
            .is_some_and(|s| d.byte_end < s.file_len);
        let resume = if resumed {
            format!("; intact frames resume at byte {}", d.byte_end)
        } else {
            String::new()
        };
        text += &format!(
            "DAMAGED segment {:020} bytes {}..{} (after {after}): {}{resume}\n",
            d.segment, d.byte_start, d.byte_end, d.reason
        );
    }
    text
}

fn gap_lines(gaps: &Gaps) -> String {
    let mut text = String::new();
    for m in &gaps.missing {
        let lost: Vec<String> = gaps
            .holes_across(m)
            .map(|h| format!("{} offsets {}..={}", h.tp, h.from, h.through))
            .collect();
        let lost = if lost.is_empty() {
            "offsets unknown: no partition continues after it".to_string()
        } else {
            lost.join(", ")
        };
        text += &format!(
            "MISSING segment {:020}..={:020} (deleted or lost outside flumen): {lost}\n",
            m.first, m.last
        );
    }
    for h in &gaps.holes {
        text += &format!(
            "HOLE {} offsets {}..={} between segments {:020} and {:020}: {}\n",
            h.tp,
            h.from,
            h.through,
            h.after_segment,
            h.before_segment,
            h.cause.describe()
        );
    }
    text
}

#[derive(Debug, Default, Clone)]
pub struct DumpFilter {
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub from_offset: Option<i64>,
    pub to_offset: Option<i64>,
}

/// `flumen wal dump` / `replay --to stdout`: records as JSON lines, in the sink's jsonl shape.
pub fn dump(dir: &Path, f: &DumpFilter, out: &mut impl Write) -> Result<(), ToolError> {
    let mut line = Vec::new();
    let mut result = Ok(());
    for id in list_segments(dir)? {
        scan(&segment_path(dir, id), id, Reading::Live, |frame| {
            let b = frame.batch;
            if f.topic.as_ref().is_some_and(|t| *t != b.topic)
                || f.partition.is_some_and(|p| p != b.partition)
            {
                return;
            }
            for r in b.records() {
                if f.from_offset.is_some_and(|o| r.offset < o)
                    || f.to_offset.is_some_and(|o| r.offset > o)
                {
                    continue;
                }
                line.clear();
                Format::JsonLines.encode(b.topic, b.partition, &r, &mut line);
                if result.is_ok() {
                    result = out.write_all(&line);
                }
            }
        })?;
    }
    Ok(result?)
}

/// One row of `flumen offsets`. `None` means "unknown" (the service did not answer).
#[derive(Debug, Clone, Serialize, Default)]
pub struct OffsetsRow {
    pub topic: String,
    pub partition: i32,
    pub kafka_log_start: Option<i64>,
    pub kafka_log_end: Option<i64>,
    pub group_committed: Option<i64>,
    pub channel_first: Option<i64>,
    pub channel_last: Option<i64>,
    pub channel_pending_bytes: u64,
    /// Holes in the partition's offset chain inside the channel, with their cause.
    pub channel_holes: Vec<ChainHole>,
    /// Segment ids missing from the channel (channel-wide, repeated on every row).
    pub channel_missing_segments: Vec<MissingSegments>,
    pub hdfs_last_committed: Option<i64>,
    /// Records in Kafka not yet in HDFS: log_end - 1 - hdfs_last_committed.
    pub lag_hdfs: Option<i64>,
    /// Records in Kafka beyond the group's committed offset.
    pub lag_group: Option<i64>,
    pub errors: Vec<String>,
}

/// `flumen offsets`: Kafka watermarks and group offsets (if reachable), the channel (read-only
/// scan, works while a daemon runs), and the HDFS ledger (read-only).
pub async fn offsets(config: &Settings) -> Result<(Vec<OffsetsRow>, Vec<String>), ToolError> {
    let mut rows: BTreeMap<TopicPartition, OffsetsRow> = BTreeMap::new();
    let mut errors = Vec::new();
    offsets_in_kafka(config, &mut rows, &mut errors).await;
    offsets_in_channel(config, &mut rows)?;
    offsets_in_hdfs(config, &mut rows, &mut errors).await;
    let rows = rows
        .into_iter()
        .map(|(tp, mut r)| {
            r.topic = tp.topic;
            r.partition = tp.partition;
            if let (Some(end), Some(h)) = (r.kafka_log_end, r.hdfs_last_committed) {
                r.lag_hdfs = Some((end - 1 - h).max(0));
            }
            if let (Some(end), Some(g)) = (r.kafka_log_end, r.group_committed) {
                r.lag_group = Some((end - g).max(0));
            }
            r.errors = errors.clone();
            r
        })
        .collect();
    Ok((rows, errors))
}

type Rows = BTreeMap<TopicPartition, OffsetsRow>;

/// Each partition's log start and end, and the group's committed offset.
async fn offsets_in_kafka(config: &Settings, rows: &mut Rows, errors: &mut Vec<String>) {
    let kafka = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || kafka_view(&config))
            .await
            .expect("kafka task")
    };
    match kafka {
        Ok(view) => {
            for (tp, (lo, hi, committed)) in view {
                let r = rows.entry(tp.clone()).or_default();
                r.kafka_log_start = Some(lo);
                r.kafka_log_end = Some(hi);
                r.group_committed = committed;
            }
        }
        Err(e) => errors.push(format!("kafka: {e}")),
    }
}

/// The offsets and bytes each partition has in the channel (read live: the relay may be
/// trimming it), its holes, and the channel's missing segments.
fn offsets_in_channel(config: &Settings, rows: &mut Rows) -> Result<(), ToolError> {
    if !config.channel.dir.exists() {
        return Ok(());
    }
    let found = survey(&config.channel.dir, Reading::Live, |_, f| {
        let r = rows
            .entry(TopicPartition::new(f.batch.topic, f.batch.partition))
            .or_default();
        r.channel_first = Some(
            r.channel_first
                .map_or(f.batch.start_offset, |v| v.min(f.batch.start_offset)),
        );
        r.channel_last = Some(
            r.channel_last
                .map_or(f.batch.last_offset, |v| v.max(f.batch.last_offset)),
        );
        r.channel_pending_bytes += f.len;
    })?;
    let gaps = found.gaps();
    for (tp, r) in rows.iter_mut() {
        r.channel_holes = gaps.holes.iter().filter(|h| &h.tp == tp).cloned().collect();
        r.channel_missing_segments = gaps.missing.clone();
    }
    Ok(())
}

/// The last offset the ledger has committed to HDFS, for every partition seen so far and
/// every partition the ledger knows; each call bounded to 20 s.
async fn offsets_in_hdfs(config: &Settings, rows: &mut Rows, errors: &mut Vec<String>) {
    let ledger = match relay::ledger(config, Arc::new(Health::default())) {
        Ok(ledger) => ledger,
        Err(e) => {
            errors.push(format!("hdfs: {e}"));
            return;
        }
    };
    let mut tps: Vec<TopicPartition> = rows.keys().cloned().collect();
    match tokio::time::timeout(Duration::from_secs(20), ledger.partitions()).await {
        Ok(Ok(more)) => tps.extend(more),
        Ok(Err(e)) => errors.push(format!("hdfs: {e}")),
        Err(_) => errors.push("hdfs: timed out".into()),
    }
    tps.sort();
    tps.dedup();
    for tp in tps {
        match tokio::time::timeout(Duration::from_secs(20), ledger.committed_end(&tp)).await {
            Ok(Ok(c)) => rows.entry(tp).or_default().hdfs_last_committed = Some(c.unwrap_or(-1)),
            Ok(Err(e)) => errors.push(format!("hdfs {tp}: {e}")),
            Err(_) => errors.push(format!("hdfs {tp}: timed out")),
        }
    }
}

type KafkaView = BTreeMap<TopicPartition, (i64, i64, Option<i64>)>;

fn kafka_view(config: &Settings) -> Result<KafkaView, ToolError> {
    let consumer = kafka_client(config)?;
    let servers = &config.kafka.bootstrap_servers;
    let err = |e: rdkafka::error::KafkaError| kafka_failed(servers, &consumer, e.to_string());
    let mut out = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for t in &config.kafka.topics {
        let md = consumer
            .fetch_metadata(Some(t), Duration::from_secs(5))
            .map_err(err)?;
        for topic in md.topics() {
            for p in topic.partitions() {
                let (lo, hi) = consumer
                    .fetch_watermarks(t, p.id(), Duration::from_secs(5))
                    .map_err(err)?;
                out.insert(TopicPartition::new(t, p.id()), (lo, hi, None));
                tpl.add_partition(t, p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .map_err(err)?;
    for e in committed.elements() {
        if let (Offset::Offset(o), Some(v)) = (
            e.offset(),
            out.get_mut(&TopicPartition::new(e.topic(), e.partition())),
        ) {
            v.2 = Some(o);
        }
    }
    Ok(out)
}

pub fn offsets_table(rows: &[OffsetsRow], errors: &[String]) -> String {
    let show = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
    let mut s = format!(
        "{:<24} {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10}\n",
        "topic",
        "part",
        "log_start",
        "log_end",
        "group",
        "chan_first",
        "chan_last",
        "chan_bytes",
        "hdfs_last",
        "lag_hdfs"
    );
    for r in rows {
        s += &format!(
            "{:<24} {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10}\n",
            r.topic,
            r.partition,
            show(r.kafka_log_start),
            show(r.kafka_log_end),
            show(r.group_committed),
            show(r.channel_first),
            show(r.channel_last),
            r.channel_pending_bytes,
            show(r.hdfs_last_committed),
            show(r.lag_hdfs)
        );
    }
    s += &channel_gap_lines(rows);
    for e in errors {
        s += &format!("unknown: {e}\n");
    }
    s
}

/// Missing segments and offset-chain holes of the channel, below the table. A hole HDFS
/// already holds is harmless and says so.
fn channel_gap_lines(rows: &[OffsetsRow]) -> String {
    let mut s = String::new();
    for m in rows
        .first()
        .map_or(&[][..], |r| &r.channel_missing_segments[..])
    {
        s += &format!(
            "channel: MISSING segment {:020}..={:020} (deleted or lost outside flumen)\n",
            m.first, m.last
        );
    }
    for r in rows {
        for h in &r.channel_holes {
            let held = r.hdfs_last_committed.is_some_and(|c| h.through <= c);
            s += &format!(
                "channel: HOLE {} offsets {}..={} between segments {} and {}: {}{}\n",
                h.tp,
                h.from,
                h.through,
                h.after_segment,
                h.before_segment,
                h.cause.describe(),
                if held { " (HDFS holds them)" } else { "" }
            );
        }
    }
    s
}
