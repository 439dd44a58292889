//! The HDFS sink: follows the channel, writes each partition's records into an in-use file,
//! rolls files on count, size, age, idleness or a change of target directory, and hands each
//! closed file to `commit`. It never talks to Kafka; committing the advisory Kafka offset is a
//! callback the relay provides.

pub mod bucket;
pub mod dead_letter;
pub mod format;
pub mod late;
pub mod parquet;
pub mod path;
mod roll;
pub mod value_schema;
pub mod watchdog;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::commit::{CommitError, Ledger};
use crate::events;
use crate::hdfs::{HdfsWriter, NativeHdfs, NativeWriter};
use crate::poison::{Poison, Policy, Rules};
use crate::wal::{BatchView, RecordView, TopicPartition, WalIndex, WalReader};
use dead_letter::{dead_letter_body, dead_letter_path, write_dead_letter, Written};
use format::{Compression, FileEncoder, Format, PushError};
use path::PathTemplate;
use roll::{Done, Link, Outcome, Roll};

/// Encoded bytes buffered per open file before a write to HDFS, at most and at least; between
/// the two, `WRITE_BUFFERS_BYTES` shared by the open files. Bounds the chunks being filled to
/// max(`WRITE_BUFFERS_BYTES`, open files x `WRITE_CHUNK_MIN`). A chunk handed to HDFS stays
/// alive until the DataNodes acknowledge its last packet (hdfs-native keeps slices of it, up
/// to 100 queued and 100 unacknowledged 64 KiB packets per writer), so what is in flight is
/// hdfs-native's window, not ours: smaller chunks only round it up less. 256 KiB is 4 packets
/// per write call (issue 12: no measurable throughput loss against 1 MiB, see the note).
const WRITE_CHUNK_MAX: usize = 256 << 10;
const WRITE_CHUNK_MIN: usize = 64 << 10;
const WRITE_BUFFERS_BYTES: usize = 8 << 20;
/// Room past a chunk's size for the line that crosses it, so the chunk's buffer does not
/// double (a doubled buffer stays pinned, half empty, until HDFS acknowledges it).
const WRITE_CHUNK_SLACK: usize = 16 << 10;
/// How long an abandoned file may take to close before we delete it regardless.
const ABANDON_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Batches processed between checks of commands and timers.
const BATCHES_PER_TURN: usize = 256;
/// How often the ledger ends of partitions this member does not write are re-read, so their
/// channel data can be trimmed once their new owner has committed it.
const FOREIGN_ENDS_REFRESH: Duration = Duration::from_secs(30);
/// How long one such read may take before the refresh gives up until next time.
const FOREIGN_END_READ_MAX: Duration = Duration::from_secs(5);
/// How often the time-based roll rules run (whatever the backlog).
const ROLL_TIMER: Duration = Duration::from_millis(100);
/// How often the channel is trimmed and its level reported.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How long a stopped partition's closing files may take to end before they are abandoned
/// (a later reconciliation then finishes or rewrites them).
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// After an HDFS write or close failure a partition waits before it writes again, from the
/// least to the most (doubling per failure in a row, reset by a commit), so a refused block
/// allocation (a quota) does not become a tight restart loop against the NameNode. Hard-coded:
/// `hdfs.retry_backoff_max_ms` would be the natural setting, but the sink options do not carry
/// it yet.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often graceful shutdown drains the channel again after a partition restarted during
/// its final commits, before leaving the rest in the channel for the next start.
const FINAL_DRAINS_MAX: usize = 3;

#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub path: PathTemplate,
    pub file_prefix: String,
    pub file_suffix: String,
    pub format: Format,
    pub compression: Compression,
    /// Row groups and the value schema of `format = "parquet"`.
    pub parquet: parquet::ParquetOptions,
    pub roll_records_max: u64,
    pub roll_bytes_max: u64,
    pub roll_interval: Duration,
    pub idle_timeout: Duration,
    pub use_local_timestamp: bool,
    pub utc: bool,
    /// Which records are poison and what to do with them; shared with the source.
    pub poison: Rules,
    pub dead_letter_dir: Option<String>,
    pub files_closing_max: usize,
    pub files_closing_per_partition_max: usize,
    /// Completeness markers: late records and the watermark each commit carries.
    pub completeness: Option<late::Completeness>,
}

impl SinkOptions {
    pub fn from_settings(c: &crate::config::Settings) -> Self {
        let h = &c.hdfs;
        Self {
            path: h.path.clone(),
            file_prefix: h.file_prefix.clone(),
            file_suffix: h.file_suffix.clone(),
            format: h.format,
            compression: h.compression,
            parquet: h.parquet.clone(),
            roll_records_max: h.roll_records_max,
            roll_bytes_max: h.roll_bytes_max,
            roll_interval: h.roll_interval,
            idle_timeout: h.idle_timeout,
            use_local_timestamp: h.use_local_timestamp,
            utc: h.time_zone == crate::config::TimeZone::Utc,
            poison: Rules::from_settings(c),
            dead_letter_dir: h.dead_letter_dir.clone(),
            files_closing_max: h.files_closing_max,
            files_closing_per_partition_max: h.files_closing_per_partition_max,
            completeness: late::Completeness::from_settings(c),
        }
    }

    /// `<prefix>+<topic>+<partition>+<first:020>+<last:020><suffix>`; Kafka topic names cannot
    /// contain `+`, so the name parses back unambiguously.
    pub fn final_name(&self, tp: &TopicPartition, start: i64, last: i64) -> String {
        format!(
            "{}+{}+{}+{start:020}+{last:020}{}",
            self.file_prefix, tp.topic, tp.partition, self.file_suffix
        )
    }
}

/// Parses a final file name back into (topic, partition, first, last).
pub fn parse_final_name(name: &str) -> Option<(String, i32, i64, i64)> {
    let mut parts = name.split('+');
    let _prefix = parts.next()?;
    let topic = parts.next()?.to_string();
    let partition = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last_and_suffix = parts.next()?;
    let digits: String = last_and_suffix
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((topic, partition, first, digits.parse().ok()?))
}

#[derive(Debug)]
pub enum SinkCommand {
    /// Start writing `tp`; HDFS already holds everything up to `committed_end`, and its
    /// ledger's event-time watermark is `watermark`.
    Activate {
        tp: TopicPartition,
        committed_end: i64,
        watermark: Option<i64>,
    },
    /// Stop writing `tp` (revoked or lost) and drop its open file.
    Deactivate { tp: TopicPartition },
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("reading the channel: {0}")]
    Channel(#[from] std::io::Error),
    #[error("channel trim: {0}")]
    Trim(#[from] crate::wal::WalError),
}

struct OpenFile {
    writer: NativeWriter,
    /// The staging token and path of the in-use file.
    token: String,
    temp: String,
    dir: String,
    start: i64,
    last: i64,
    records: u64,
    bytes_raw: u64,
    encoder: FileEncoder,
    opened: Instant,
    last_write: Instant,
    /// Late file or bucket file, and its horizon (`late.rs`).
    route: late::Route,
    /// The partition's watermark when the file opened, and the file's greatest record time.
    before_ms: Option<i64>,
    max_ms: Option<i64>,
}

impl OpenFile {
    /// Counts a record just pushed (`added` bytes) into the file's range and size, the late
    /// count and the event-time marks of the file and of its partition (`watermark`). The fast
    /// and the slow write path both end here, so they cannot count differently.
    fn note_written(
        &mut self,
        tp: &TopicPartition,
        watermark: &mut Option<i64>,
        added: u64,
        offset: i64,
        time_ms: i64,
    ) {
        self.records += 1;
        self.bytes_raw += added;
        self.last = offset;
        late::note_late(tp, self.route);
        self.max_ms = self.max_ms.max(Some(time_ms));
        *watermark = (*watermark).max(Some(time_ms));
    }
}

/// A roll in flight: its task, and the staging token to delete should the task be abandoned.
struct Closing {
    seq: u64,
    token: String,
    task: JoinHandle<()>,
}

struct PartState {
    /// Changes each time the partition is (re)activated, so a loop over a batch notices that
    /// a failure in its middle restarted the partition.
    epoch: u64,
    /// The rendered target directory and the second it was rendered for.
    dir_cache: Option<(i64, String)>,
    /// Last offset in HDFS.
    committed_end: i64,
    /// Last offset handed to a roll (closing or committed); the next file starts after it.
    rolled_end: i64,
    /// Rolls still closing or committing, oldest first.
    closing: VecDeque<Closing>,
    /// Resolves when the newest roll committed; the next roll commits only after it.
    link: Option<Link>,
    /// The open file is due to roll but the partition has `files_closing_per_partition_max`
    /// rolls in flight: the partition reads nothing until one ends.
    blocked: bool,
    /// Restarted after an HDFS failure: reads nothing until then (see `RESTART_BACKOFF_MIN`).
    held_until: Option<Instant>,
    /// Next offset to write; records below it are already in the open file or in HDFS.
    next_expected: i64,
    /// Event-time watermark: the greatest record time written before `next_expected`, or the
    /// ledger's at activation (which includes idle advances). Decides which records are late.
    watermark: Option<i64>,
    open: Option<OpenFile>,
}

/// Called after each commit with the partition and the last committed offset.
pub type OnCommit = Box<dyn Fn(&TopicPartition, i64) + Send + Sync>;

pub struct Sink {
    opts: SinkOptions,
    ledger: Arc<Ledger<NativeHdfs>>,
    index: Arc<WalIndex>,
    reader: WalReader,
    /// The frame being written: it leaves `self` while its records are (see `pump`).
    frame: Vec<u8>,
    parts: HashMap<TopicPartition, PartState>,
    /// The last ledger end seen for partitions this member does not write (revoked, or never
    /// assigned): their channel data is kept until HDFS holds it.
    foreign_ends: HashMap<TopicPartition, i64>,
    foreign_ends_read: Option<Instant>,
    on_commit: OnCommit,
    next_epoch: u64,
    /// Reused encoding buffer for one record's line.
    line: Vec<u8>,
    /// Commands from the source's poll thread, once `run` drives this sink.
    pending_commands: Option<mpsc::Receiver<SinkCommand>>,
    /// Roll tasks report here; bounded by the number of rolls allowed in flight.
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    next_roll: u64,
    /// The reader went back for a partition that had to wait: a drain must pump again.
    rewound: bool,
    /// Encoded bytes an open file buffers before it writes them (see `WRITE_CHUNK_MAX`).
    write_chunk: usize,
    last_timers: Instant,
    last_housekeeping: Instant,
    /// Commit progress per partition, read by the watchdog (see `watchdog.rs`).
    progress: Arc<watchdog::Progress>,
    /// The next wait of partitions whose last HDFS write or close failed.
    restart_backoff: HashMap<TopicPartition, Duration>,
}

impl Sink {
    pub fn new(
        opts: SinkOptions,
        ledger: Arc<Ledger<NativeHdfs>>,
        index: Arc<WalIndex>,
        on_commit: OnCommit,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            reader: WalReader::new(index.clone()),
            frame: Vec::new(),
            opts,
            ledger,
            index,
            parts: HashMap::new(),
            foreign_ends: HashMap::new(),
            foreign_ends_read: None,
            on_commit,
            next_epoch: 0,
            line: Vec::new(),
            pending_commands: None,
            done_tx,
            done_rx,
            next_roll: 0,
            rewound: false,
            write_chunk: WRITE_CHUNK_MAX,
            last_timers: Instant::now(),
            last_housekeeping: Instant::now(),
            progress: Arc::default(),
            restart_backoff: HashMap::new(),
        }
    }

    pub fn committed_ends(&self) -> HashMap<TopicPartition, i64> {
        self.parts
            .iter()
            .map(|(tp, s)| (tp.clone(), s.committed_end))
            .collect()
    }

    pub async fn handle(&mut self, cmd: SinkCommand) -> Result<(), SinkError> {
        tracing::debug!(?cmd, "sink command");
        match cmd {
            SinkCommand::Activate {
                tp,
                committed_end,
                watermark,
            } => {
                // A halted partition is reconciled again every few seconds. When the ledger
                // still agrees with what this sink holds, its work goes on: dropping the open
                // file each time kept the records before the halt from ever committing once
                // the retry came sooner than the roll interval.
                if self
                    .parts
                    .get(&tp)
                    .is_some_and(|st| st.committed_end == committed_end)
                {
                    return Ok(());
                }
                // Otherwise start from the ledger: an open file of the old activation is
                // dropped, its range rewritten.
                self.drop_work(&tp).await;
                self.activate(tp, committed_end, watermark)
            }
            SinkCommand::Deactivate { tp } => {
                self.drop_work(&tp).await;
                self.progress.removed(&tp);
                self.restart_backoff.remove(&tp);
                if let Some(st) = self.parts.remove(&tp) {
                    // Rolls that committed meanwhile report later and move this end on.
                    self.foreign_ends.insert(tp, st.committed_end);
                }
            }
        }
        Ok(())
    }

    fn activate(&mut self, tp: TopicPartition, committed_end: i64, watermark: Option<i64>) {
        if let Some(seg) = self.index.first_segment_after(&tp, committed_end) {
            self.reader.rewind_to(seg);
        }
        self.next_epoch += 1;
        self.progress.activated(&tp, committed_end);
        let old = self.parts.insert(
            tp,
            PartState {
                epoch: self.next_epoch,
                dir_cache: None,
                committed_end,
                rolled_end: committed_end,
                next_expected: committed_end + 1,
                watermark,
                open: None,
                closing: VecDeque::new(),
                link: None,
                blocked: false,
                held_until: None,
            },
        );
        debug_assert!(old.is_none_or(|o| o.closing.is_empty() && o.open.is_none()));
    }

    /// Drops the partition's open file and lets its closing rolls end (bounded): what they
    /// did not commit is written again after the partition's position is re-derived.
    async fn drop_work(&mut self, tp: &TopicPartition) {
        let Some(st) = self.parts.get_mut(tp) else {
            return;
        };
        let closing = std::mem::take(&mut st.closing);
        st.link = None;
        let open = st.open.take();
        if let Some(f) = open {
            self.abandon(tp, f).await;
        }
        self.settle(tp, closing).await;
    }

    /// Waits, up to `SETTLE_MAX`, for a partition's rolls in flight to end: commits they make
    /// are valid, and the rolls after a failed one discard themselves. Rolls still running
    /// then are aborted, which the ledger survives like a crash, and their staging deleted.
    /// Their reports arrive later and are ignored as stale.
    async fn settle(&self, tp: &TopicPartition, closing: VecDeque<Closing>) {
        let deadline = tokio::time::Instant::now() + SETTLE_MAX;
        for mut c in closing {
            if tokio::time::timeout_at(deadline, &mut c.task)
                .await
                .is_err()
            {
                c.task.abort();
                if let Err(e) = self.ledger.discard(tp, &c.token).await {
                    tracing::warn!(partition = %tp, token = %c.token, error = %e, "could not delete an abandoned in-use file; the next reconciliation will");
                }
            }
        }
    }

    /// Processes up to `BATCHES_PER_TURN` durable batches; returns how many were read.
    pub async fn pump(&mut self) -> Result<usize, SinkError> {
        self.unblock_ready().await?;
        // The records borrow the frame while `write_batch` needs `&mut self`.
        let mut frame = std::mem::take(&mut self.frame);
        let read = self.pump_frames(&mut frame).await;
        self.frame = frame;
        read
    }

    async fn pump_frames(&mut self, frame: &mut Vec<u8>) -> Result<usize, SinkError> {
        let mut n = 0;
        while n < BATCHES_PER_TURN {
            let Some((_, shape)) = self.reader.next_frame(frame)? else {
                break;
            };
            n += 1;
            self.write_batch(shape.view(frame)).await?;
            self.bound_row_groups().await?;
        }
        Ok(n)
    }

    /// With `format = "parquet"`, rolls the open file buffering the most rows while the open
    /// files together buffer more than `hdfs.parquet.buffers_bytes_max`, so the row groups
    /// being filled stay within it, give or take one batch (ARCHITECTURE.md, Invariants).
    /// A file that cannot roll yet (its partition is blocked) reads nothing until it does.
    async fn bound_row_groups(&mut self) -> Result<(), SinkError> {
        if self.opts.format != Format::Parquet {
            return Ok(());
        }
        loop {
            let buffered = self.parts.iter().filter_map(|(tp, st)| {
                let f = st.open.as_ref().filter(|_| !st.blocked)?;
                Some((f.encoder.buffered_bytes(), tp))
            });
            let (total, largest) = buffered.fold((0, None), |(sum, max), (b, tp)| {
                (sum + b, max.max(Some((b, tp))))
            });
            let Some((_, tp)) = largest.filter(|_| total > self.opts.parquet.buffers_bytes_max)
            else {
                return Ok(());
            };
            let tp = tp.clone();
            tracing::debug!(partition = %tp, total, "rolling early: Parquet row groups above hdfs.parquet.buffers_bytes_max");
            self.roll(&tp).await?;
        }
    }

    async fn write_batch(&mut self, batch: BatchView<'_>) -> Result<(), SinkError> {
        let tp = TopicPartition::new(batch.topic, batch.partition);
        let Some(st) = self.parts.get(&tp) else {
            return Ok(()); // not ours (yet); kept in the channel until ownership is known
        };
        if st.blocked || st.held_until.is_some() {
            return Ok(()); // read again once the partition can roll, or its wait is over
        }
        if batch.last_offset < st.next_expected {
            return Ok(()); // already written
        }
        if batch.start_offset > st.next_expected {
            // Beyond a hole (a damaged channel range): the source re-fetches it from Kafka and
            // the refetched batch arrives later in the channel.
            tracing::debug!(partition = %tp, expected = st.next_expected, batch_start = batch.start_offset,
                "skipping a batch beyond a hole");
            return Ok(());
        }
        let from = st.next_expected;
        let epoch = st.epoch;
        // The partition was restarted (a failed write, a fence) or revoked: its position was
        // re-derived and the channel rewound, so the rest of this batch is stale.
        let stale = |sink: &Self| sink.parts.get(&tp).is_none_or(|s| s.epoch != epoch);
        // Offsets increase within a batch (checked when the frame was read).
        let mut records = batch.records().skip_while(|r| r.offset < from);
        loop {
            let record = match self.write_run(&tp, &mut records) {
                Run::End => break,
                Run::Failed(e) => return Err(SinkError::Channel(e)),
                Run::Due => {
                    self.flush_chunk(&tp).await?;
                    if stale(self) {
                        return Ok(());
                    }
                    self.maybe_roll(&tp, false).await?;
                    if stale(self) {
                        return Ok(());
                    }
                    continue;
                }
                Run::Slow(record) => record,
            };
            let written = !self.parts[&tp].blocked && self.write_record(&tp, &record).await?;
            if stale(self) {
                return Ok(());
            }
            if !written {
                // Too many of its files are closing: the partition waits, and reads the channel
                // again from this record once one has committed. The others go on.
                self.parts.get_mut(&tp).expect("not stale").next_expected = record.offset;
                return Ok(());
            }
            // Count and size limits hold per record, not per batch.
            self.maybe_roll(&tp, false).await?;
            if stale(self) {
                return Ok(());
            }
        }
        let st = self.parts.get_mut(&tp).expect("checked above");
        st.next_expected = batch.last_offset + 1;
        if let Some(f) = st.open.as_mut() {
            f.last = batch.last_offset; // the range covers trailing gaps (markers, compaction)
            f.last_write = Instant::now();
        }
        self.maybe_roll(&tp, false).await
    }

    /// The common case with one map look-up for many records: writes records into the
    /// partition's open file while that needs nothing but encoding. Stops at the end of
    /// `records`, after a record that makes a chunk or a count or size roll due (`Due`), or
    /// before a record that needs `write_record` (`Slow`: no open file, another directory,
    /// poison, the partition blocked). Each record written here is exactly what
    /// `write_record` would write.
    fn write_run<'a>(
        &mut self,
        tp: &TopicPartition,
        records: &mut impl Iterator<Item = RecordView<'a>>,
    ) -> Run<'a> {
        let Self {
            parts,
            opts,
            line,
            write_chunk,
            ..
        } = self;
        let st = parts.get_mut(tp).expect("the caller checked it is active");
        for record in records {
            let Some(f) = st.open.as_mut().filter(|_| !st.blocked) else {
                return Run::Slow(record);
            };
            if opts.poison.judge(record.value).is_some() {
                return Run::Slow(record);
            }
            let time_ms = record_time_ms(opts, &record);
            let second = time_ms.div_euclid(1000);
            if !st
                .dir_cache
                .as_ref()
                .is_some_and(|(s, dir)| *s == second && *dir == f.dir)
                || late::passed(f.route, st.watermark)
            {
                return Run::Slow(record);
            }
            if opts.format == Format::Text && record.value.is_none() {
                events::text_tombstone();
            }
            let added = match f.encoder.push(tp, &record, line) {
                Ok(n) => n,
                // Dead-lettered by `write_record`, which pushes it again (nothing was added).
                Err(PushError::Misfit(_)) => return Run::Slow(record),
                Err(PushError::Io(e)) => return Run::Failed(e),
            };
            f.note_written(tp, &mut st.watermark, added, record.offset, time_ms);
            if f.encoder.pending_output_bytes() >= *write_chunk || roll_full(opts, f) {
                return Run::Due;
            }
        }
        Run::End
    }

    /// Writes one record into the partition's open file (opening one first if needed). Returns
    /// false if the record was not written because the file it needs cannot roll yet.
    async fn write_record(
        &mut self,
        tp: &TopicPartition,
        record: &RecordView<'_>,
    ) -> Result<bool, SinkError> {
        if let Some(poison) = self.divert(tp, record) {
            return self
                .dead_letter(tp, record, poison, None)
                .await
                .map(|()| true);
        }
        // Before a file is opened for it: a file never starts at a record it will not hold.
        if let Some(schema) = &self.opts.parquet.value_schema {
            if let Err(m) = schema.check(record.value) {
                let (poison, detail) = (Poison::ValueSchemaMisfit, m.to_string());
                return self
                    .dead_letter(tp, record, poison, Some(&detail))
                    .await
                    .map(|()| true);
            }
        }
        let time_ms = record_time_ms(&self.opts, record);
        // Paths resolve to the second at most, so render once per partition per second.
        let second = time_ms.div_euclid(1000);
        let st = self.parts.get_mut(tp).expect("active");
        let c = self.opts.completeness.as_ref();
        let route = late::route(c, time_ms, st.watermark);
        // With completeness the route may change within a second (the watermark rose), so the
        // directory is rendered again; this path runs per file, not per record.
        if c.is_some() || st.dir_cache.as_ref().is_none_or(|(s, _)| *s != second) {
            let dir = late::render(&self.opts.path, c, route, tp, time_ms, self.opts.utc);
            st.dir_cache = Some((second, dir));
        }
        let dir = &st.dir_cache.as_ref().expect("set above").1;
        match &st.open {
            Some(f) if f.dir != *dir => {
                let dir = dir.clone();
                let epoch = st.epoch;
                self.roll(tp).await?;
                match self.parts.get(tp) {
                    // The roll restarted the partition; the caller stops.
                    Some(s) if s.epoch != epoch => return Ok(true),
                    None => return Ok(true),
                    Some(s) if s.blocked => return Ok(false),
                    Some(_) => {}
                }
                self.open_file(tp, dir, route).await?;
            }
            None => {
                let dir = dir.clone();
                self.open_file(tp, dir, route).await?;
            }
            Some(_) => {}
        }
        let st = self.parts.get_mut(tp).expect("active");
        let f = st.open.as_mut().expect("opened above");
        let added = match f.encoder.push(tp, record, &mut self.line) {
            Ok(n) => n,
            // `check` above refused what `push` refuses; should they ever disagree, the record
            // is still dead-lettered, never dropped.
            Err(PushError::Misfit(m)) => {
                let (poison, detail) = (Poison::ValueSchemaMisfit, m.to_string());
                return self
                    .dead_letter(tp, record, poison, Some(&detail))
                    .await
                    .map(|()| true);
            }
            Err(PushError::Io(e)) => return Err(SinkError::Channel(e)),
        };
        f.note_written(tp, &mut st.watermark, added, record.offset, time_ms);
        self.flush_chunk(tp).await?;
        Ok(true)
    }

    /// Hands the open file's encoded bytes to HDFS once they fill a chunk. A failed write
    /// restarts the partition (the caller sees it as stale).
    async fn flush_chunk(&mut self, tp: &TopicPartition) -> Result<(), SinkError> {
        let chunk = self.write_chunk;
        let Some(f) = self.parts.get_mut(tp).and_then(|s| s.open.as_mut()) else {
            return Ok(());
        };
        if f.encoder.pending_output_bytes() < chunk {
            return Ok(());
        }
        f.last_write = Instant::now();
        let chunk = Bytes::from(f.encoder.take_output(chunk + WRITE_CHUNK_SLACK));
        if let Err(e) = f.writer.write(chunk).await {
            // Debug: the writer reported the failure to /health and logged it, rate-limited.
            let error = crate::hdfs_fault::Brief(&e);
            tracing::debug!(partition = %tp, %error, "HDFS write failed; rewriting the file from the channel");
            events::error(events::ErrorCode::HdfsIo);
            self.restart_partition(tp, true).await?;
        }
        Ok(())
    }

    async fn open_file(
        &mut self,
        tp: &TopicPartition,
        dir: String,
        route: late::Route,
    ) -> Result<(), SinkError> {
        let start = self.parts[tp].rolled_end + 1;
        let staged = self.ledger.open(tp).await?;
        let now = Instant::now();
        tracing::debug!(partition = %tp, temp = %staged.path, start, "opened in-use file");
        let st = self.parts.get_mut(tp).expect("active");
        st.open = Some(OpenFile {
            writer: staged.writer,
            token: staged.token,
            temp: staged.path,
            dir,
            start,
            last: start,
            records: 0,
            bytes_raw: 0,
            encoder: FileEncoder::new(
                self.opts.format,
                self.opts.compression,
                &self.opts.parquet,
                &tp.topic,
            )
            .map_err(SinkError::Channel)?,
            opened: now,
            last_write: now,
            route,
            before_ms: st.watermark,
            max_ms: None,
        });
        Ok(())
    }

    /// Rolls the partition's file if a size, count or (with `timers`) time limit is reached.
    async fn maybe_roll(&mut self, tp: &TopicPartition, timers: bool) -> Result<(), SinkError> {
        let Some(f) = self.parts.get(tp).and_then(|s| s.open.as_ref()) else {
            return Ok(());
        };
        let o = &self.opts;
        let due = roll_full(o, f)
            || (timers && !o.roll_interval.is_zero() && f.opened.elapsed() >= o.roll_interval)
            || (timers && !o.idle_timeout.is_zero() && f.last_write.elapsed() >= o.idle_timeout);
        if due {
            self.roll(tp).await?;
        }
        Ok(())
    }

    /// Runs what is due of the time-based roll rules (every open file, records or not) and of
    /// the housekeeping (channel level, trimming); called whatever the backlog.
    pub async fn timers(&mut self) -> Result<(), SinkError> {
        if self.last_timers.elapsed() >= ROLL_TIMER {
            self.last_timers = Instant::now();
            let open = self.parts.values().filter(|s| s.open.is_some()).count();
            self.write_chunk =
                (WRITE_BUFFERS_BYTES / open.max(1)).clamp(WRITE_CHUNK_MIN, WRITE_CHUNK_MAX);
            let tps: Vec<_> = self.parts.keys().cloned().collect();
            for tp in tps {
                self.maybe_roll(&tp, true).await?;
            }
        }
        self.drain_done().await?;
        if self.last_housekeeping.elapsed() >= HOUSEKEEPING {
            self.last_housekeeping = Instant::now();
            // The channel level is reported by the watchdog, which runs while HDFS calls wait.
            self.refresh_foreign_ends().await?;
            self.trim()?;
        }
        Ok(())
    }

    /// Closes and commits every open file and waits for every closing one (shutdown, replay).
    /// Returns false if a partition restarted meanwhile: part of its range is in the channel
    /// only, and a caller that wants it in HDFS pumps again.
    pub async fn roll_all(&mut self) -> Result<bool, SinkError> {
        let epochs: Vec<_> = self
            .parts
            .iter()
            .map(|(tp, s)| (tp.clone(), s.epoch))
            .collect();
        loop {
            self.unblock_ready().await?;
            let tps: Vec<_> = self.parts.keys().cloned().collect();
            for tp in &tps {
                self.roll(tp).await?;
            }
            if self.closing_total() == 0 {
                break; // and so nothing is blocked: every open file rolled
            }
            let done = self.done_rx.recv().await.expect("the sink holds a sender");
            self.on_done(done).await?;
        }
        self.trim()?;
        Ok(epochs
            .iter()
            .all(|(tp, e)| self.parts.get(tp).is_none_or(|s| s.epoch == *e)))
    }

    /// Graceful end: writes everything durable in the channel to HDFS and commits it.
    pub async fn finish(&mut self) -> Result<(), SinkError> {
        let mut restarts = 0;
        loop {
            while self.pump().await? > 0 {}
            let clean = self.roll_all().await?;
            let rewound = std::mem::take(&mut self.rewound);
            if clean && !rewound {
                return Ok(());
            }
            if !clean {
                restarts += 1;
                if restarts == FINAL_DRAINS_MAX {
                    tracing::warn!("partitions kept restarting during shutdown; the channel keeps the rest for the next start");
                    return Ok(());
                }
            }
        }
    }

    /// Hands the partition's open file to a roll task (close, then commit after the previous
    /// roll). If the partition has `files_closing_per_partition_max` rolls in flight it is
    /// blocked instead, and rolls when one ends; if the sink has `files_closing_max`, this
    /// waits for one to end.
    async fn roll(&mut self, tp: &TopicPartition) -> Result<(), SinkError> {
        let began = Instant::now();
        let Some(st) = self.parts.get_mut(tp).filter(|s| s.open.is_some()) else {
            return Ok(());
        };
        if st.closing.len() >= self.opts.files_closing_per_partition_max {
            if !st.blocked {
                tracing::debug!(partition = %tp, closing = st.closing.len(), "file due to roll waits for the partition's closing files");
            }
            st.blocked = true;
            return Ok(());
        }
        let epoch = st.epoch;
        self.make_room().await?;
        let Some(st) = self.parts.get_mut(tp).filter(|s| s.epoch == epoch) else {
            return Ok(()); // restarted while waiting: the file was dropped with it
        };
        let Some(f) = st.open.take() else {
            return Ok(());
        };
        tracing::debug!(partition = %tp, "rolling");
        st.rolled_end = f.last;
        let final_path = format!("{}/{}", f.dir, self.opts.final_name(tp, f.start, f.last));
        let c = self.opts.completeness.as_ref();
        let marks = late::marks(c, f.route, f.before_ms, f.max_ms);
        let pending = late::pending_note(c, f.route, &f.dir);
        self.next_roll += 1;
        let token = f.token.clone();
        let roll = Roll {
            tp: tp.clone(),
            epoch,
            seq: self.next_roll,
            writer: f.writer,
            encoder: f.encoder,
            token: f.token,
            temp: f.temp,
            start: f.start,
            last: f.last,
            records: f.records,
            final_path,
            began,
            marks,
            pending,
        };
        let (task, link) = roll::spawn(
            roll,
            self.ledger.clone(),
            st.link.take(),
            self.done_tx.clone(),
        );
        st.closing.push_back(Closing {
            seq: self.next_roll,
            token,
            task,
        });
        st.link = Some(link);
        Ok(())
    }

    /// Makes a partition restarted after an HDFS failure wait before it writes again.
    fn hold(&mut self, tp: &TopicPartition) {
        let wait = self
            .restart_backoff
            .get(tp)
            .copied()
            .unwrap_or(RESTART_BACKOFF_MIN);
        self.restart_backoff
            .insert(tp.clone(), (wait * 2).min(RESTART_BACKOFF_MAX));
        let st = self.parts.get_mut(tp).expect("just activated");
        st.held_until = Some(Instant::now() + wait);
        tracing::debug!(partition = %tp, wait_ms = wait.as_millis() as u64, "waiting before rewriting after an HDFS failure");
    }

    /// Ends the waits that are over and sends the reader back to where those partitions start.
    fn release_held(&mut self) {
        let now = Instant::now();
        for (tp, st) in self.parts.iter_mut() {
            if st.held_until.is_none_or(|t| t > now) {
                continue;
            }
            st.held_until = None;
            if let Some(seg) = self.index.first_segment_after(tp, st.next_expected - 1) {
                self.reader.rewind_to(seg);
                self.rewound = true;
            }
        }
    }

    /// Rolls the waiting file of every blocked partition that has room again, and sends the
    /// reader back to where the partition stopped reading. Releases partitions whose wait after
    /// an HDFS failure is over.
    async fn unblock_ready(&mut self) -> Result<(), SinkError> {
        self.release_held();
        let per_partition = self.opts.files_closing_per_partition_max;
        let ready: Vec<_> = self
            .parts
            .iter()
            .filter(|(_, s)| s.blocked && s.closing.len() < per_partition)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in ready {
            let st = self.parts.get_mut(&tp).expect("listed above");
            st.blocked = false;
            let (epoch, next) = (st.epoch, st.next_expected);
            self.roll(&tp).await?;
            if self.parts.get(&tp).is_none_or(|s| s.epoch != epoch) {
                continue; // restarted: it was rewound for its new position
            }
            if let Some(seg) = self.index.first_segment_after(&tp, next - 1) {
                self.reader.rewind_to(seg);
                self.rewound = true;
            }
        }
        Ok(())
    }

    fn closing_total(&self) -> usize {
        self.parts.values().map(|s| s.closing.len()).sum()
    }

    /// Waits for rolls to end while the sink has `files_closing_max` in flight.
    async fn make_room(&mut self) -> Result<(), SinkError> {
        while self.closing_total() >= self.opts.files_closing_max {
            let done = self.done_rx.recv().await.expect("the sink holds a sender");
            self.on_done(done).await?;
        }
        Ok(())
    }

    /// Applies the results of rolls that ended, without waiting.
    async fn drain_done(&mut self) -> Result<(), SinkError> {
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(done).await?;
        }
        Ok(())
    }

    /// Applies one roll's result: a commit moves the partition's end; any failure restarts the
    /// partition from its ledger (the channel still holds the range).
    async fn on_done(&mut self, d: Done) -> Result<(), SinkError> {
        let Some(st) = self.parts.get_mut(&d.tp).filter(|s| s.epoch == d.epoch) else {
            // A roll of an earlier activation, or of a revoked partition.
            if matches!(d.outcome, Outcome::Committed) {
                if let Some(end) = self.foreign_ends.get_mut(&d.tp) {
                    *end = (*end).max(d.last);
                }
            }
            return Ok(());
        };
        st.closing.retain(|c| c.seq != d.seq);
        match d.outcome {
            Outcome::Committed => {
                st.committed_end = st.committed_end.max(d.last);
                self.progress.committed(&d.tp, d.last);
                self.restart_backoff.remove(&d.tp);
                (self.on_commit)(&d.tp, d.last);
            }
            Outcome::Fenced => {
                events::fenced(&d.tp, d.start);
                self.restart_partition(&d.tp, false).await?;
            }
            Outcome::Late => {
                events::file_late_at_claim(&d.tp, d.start);
                self.restart_partition(&d.tp, false).await?;
            }
            Outcome::CloseFailed | Outcome::Cancelled => {
                events::error(events::ErrorCode::HdfsIo);
                self.restart_partition(&d.tp, true).await?;
            }
            Outcome::Failed(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Drops the partition's open file and closing rolls and re-derives its position from
    /// HDFS, then rewinds the channel so the range is written again from the channel's copy.
    /// After an HDFS failure (`failed`) the partition first waits out its backoff.
    async fn restart_partition(
        &mut self,
        tp: &TopicPartition,
        failed: bool,
    ) -> Result<(), SinkError> {
        self.drop_work(tp).await;
        // A fence or a failed close often means the partition moved to another member: apply
        // any revocation that already arrived rather than reconciling (and fencing the new
        // owner's in-use file) on behalf of a partition we no longer own.
        self.drain_commands().await?;
        if !self.parts.contains_key(tp) {
            return Ok(());
        }
        // Not cleaning the staging area: if we were fenced, the in-use files there may be the
        // new owner's, and deleting them would only make it rewrite them.
        let pos = self.ledger.reconcile(tp, false).await?;
        let next = pos.next.ok_or_else(|| CommitError::Refused {
            tp: tp.clone(),
            reason: "the genesis entry of an active partition is gone".into(),
        })?;
        self.parts.remove(tp);
        self.activate(tp.clone(), next - 1, pos.watermark);
        if failed {
            self.hold(tp);
        }
        Ok(())
    }

    async fn abandon(&self, tp: &TopicPartition, mut f: OpenFile) {
        tracing::debug!(temp = %f.temp, "abandoning in-use file");
        // Bounded: a writer whose file was deleted under it may never complete its close.
        let _ = tokio::time::timeout(ABANDON_CLOSE_TIMEOUT, f.writer.close()).await;
        if let Err(e) = self.ledger.discard(tp, &f.token).await {
            tracing::warn!(temp = %f.temp, error = %e, "could not delete abandoned in-use file; the next reconciliation will");
        }
    }

    /// Why `record` goes to the dead-letter directory rather than into the file, if it does;
    /// counts
    /// what is written as is. Policy `fail` is enforced by the source before the channel, so
    /// a `fail` poison here reached the channel under an earlier configuration (a lowered
    /// limit, another policy): it is diverted if there is a directory, else written as is,
    /// since dropping it would leave it inside the file's range.
    fn divert(&self, tp: &TopicPartition, record: &RecordView<'_>) -> Option<Poison> {
        if self.opts.format == Format::Text && record.value.is_none() {
            events::text_tombstone();
        }
        let (poison, policy) = self.opts.poison.judge(record.value)?;
        let divert = match policy {
            Policy::DeadLetter => true,
            Policy::Fail => self.opts.dead_letter_dir.is_some(),
            Policy::Raw => false,
        };
        if !divert {
            events::poison_written_raw(tp, record.offset, poison);
            return None;
        }
        Some(poison)
    }

    async fn dead_letter(
        &mut self,
        tp: &TopicPartition,
        record: &RecordView<'_>,
        poison: Poison,
        detail: Option<&str>,
    ) -> Result<(), SinkError> {
        let Some(dir) = &self.opts.dead_letter_dir else {
            unreachable!("the config requires hdfs.dead_letter_dir for a dead_letter policy")
        };
        let path = dead_letter_path(dir, tp, record.offset);
        let body = Bytes::from(dead_letter_body(tp, record, poison, detail));
        let written = write_dead_letter(self.ledger.hdfs().as_ref(), &path, body)
            .await
            .map_err(|source| CommitError::Hdfs {
                op: "write dead letter",
                path: path.clone(),
                source,
            })?;
        match written {
            Written::New => events::dead_lettered(tp, record.offset, &path, poison),
            Written::Existing => events::dead_letter_exists(tp, record.offset, &path),
        }
        Ok(())
    }

    /// Deletes channel segments whose every batch HDFS holds: for partitions we write, up to
    /// their committed end; for others, up to the end their ledger showed when last read.
    /// Data of a partition whose ledger we never read is kept, so nothing assigned but not yet
    /// activated is ever trimmed.
    fn trim(&mut self) -> Result<(), SinkError> {
        let below = self.reader.position().segment;
        let (parts, foreign) = (&self.parts, &self.foreign_ends);
        self.index.trim(below, |tp, last| {
            let end = parts
                .get(tp)
                .map(|st| st.committed_end)
                .or_else(|| foreign.get(tp).copied());
            end.is_some_and(|end| last <= end)
        })?;
        Ok(())
    }

    /// Re-reads the ledger end of every partition in the channel that we do not write, at most
    /// every `FOREIGN_ENDS_REFRESH`. Read-only, one or two listings per partition.
    async fn refresh_foreign_ends(&mut self) -> Result<(), SinkError> {
        if self
            .foreign_ends_read
            .is_some_and(|t| t.elapsed() < FOREIGN_ENDS_REFRESH)
        {
            return Ok(());
        }
        self.foreign_ends_read = Some(Instant::now());
        for tp in self.index.partitions() {
            if self.parts.contains_key(&tp) {
                continue;
            }
            // Bounded: during an HDFS outage the sink must keep serving its commands and
            // timers; the data simply stays until a later refresh gets an answer.
            match tokio::time::timeout(FOREIGN_END_READ_MAX, self.ledger.committed_end(&tp)).await {
                Ok(Ok(Some(end))) => {
                    self.foreign_ends.insert(tp, end);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }
}

/// What `Sink::write_run` stopped at.
enum Run<'a> {
    /// Every record was written.
    End,
    /// The last record written filled a chunk or made a count or size roll due.
    Due,
    /// This record (not written) needs `write_record`.
    Slow(RecordView<'a>),
    Failed(std::io::Error),
}

/// The time a record's path is rendered for: its Kafka timestamp, or now.
fn record_time_ms(opts: &SinkOptions, record: &RecordView<'_>) -> i64 {
    match (opts.use_local_timestamp, record.timestamp_ms) {
        (false, Some(ts)) => ts,
        _ => chrono::Utc::now().timestamp_millis(),
    }
}

/// The file holds `hdfs.roll_records_max` records or `hdfs.roll_bytes_max` bytes, or all
/// its format allows.
fn roll_full(o: &SinkOptions, f: &OpenFile) -> bool {
    f.encoder.full()
        || (o.roll_records_max > 0 && f.records >= o.roll_records_max)
        || (o.roll_bytes_max > 0 && f.bytes_raw >= o.roll_bytes_max)
}

/// Drives a sink until `shutdown` fires: reads whenever the writer publishes, applies commands
/// and roll results, runs the timers whatever the backlog. On shutdown it drains the channel
/// and commits every open file.
pub async fn run(
    mut sink: Sink,
    commands: mpsc::Receiver<SinkCommand>,
    appended: Arc<Notify>,
    mut shutdown: crate::shutdown::Shutdown,
) -> Result<(), SinkError> {
    sink.pending_commands = Some(commands);
    let watchdog = watchdog::spawn(
        sink.index.clone(),
        sink.progress.clone(),
        sink.ledger.hdfs().health().clone(),
        sink.opts.roll_interval,
    );
    let _watchdog = AbortOnDrop(watchdog);
    let mut ticker = tokio::time::interval(ROLL_TIMER);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Runs until shutdown; every wait below is also woken by the ticker.
    loop {
        sink.drain_commands().await?;
        sink.timers().await?;
        if shutdown.check() {
            break;
        }
        if sink.pump().await? > 0 {
            continue;
        }
        let rx = sink.pending_commands.as_mut().expect("set above");
        tokio::select! {
            _ = appended.notified() => {}
            c = rx.recv() => if let Some(cmd) = c { sink.handle(cmd).await? },
            d = sink.done_rx.recv() => if let Some(d) = d { sink.on_done(d).await? },
            _ = ticker.tick() => {}
            _ = shutdown.recv() => {}
        }
    }
    // Graceful: everything durable in the channel goes to HDFS before we exit.
    sink.drain_commands().await?;
    sink.finish().await
}

/// Aborts a background task when dropped, however the function holding it returns.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Sink {
    async fn drain_commands(&mut self) -> Result<(), SinkError> {
        while let Some(cmd) = self
            .pending_commands
            .as_mut()
            .and_then(|rx| rx.try_recv().ok())
        {
            self.handle(cmd).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_names_round_trip() {
        let o = SinkOptions {
            path: PathTemplate::parse("/x").unwrap(),
            file_prefix: "test-events".into(),
            file_suffix: ".jsonl.gz".into(),
            format: Format::JsonLines,
            compression: Compression::Gzip,
            parquet: parquet::ParquetOptions {
                row_group_bytes_max: 1 << 20,
                buffers_bytes_max: 1 << 30,
                value_schema: None,
            },
            roll_records_max: 0,
            roll_bytes_max: 0,
            roll_interval: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            use_local_timestamp: false,
            utc: true,
            poison: Rules {
                record_bytes_max: 1,
                oversized: Policy::Fail,
                text_line_break: None,
            },
            dead_letter_dir: None,
            files_closing_max: 1,
            files_closing_per_partition_max: 1,
            completeness: None,
        };
        let tp = TopicPartition::new("flume.txn", 2);
        let name = o.final_name(&tp, 100, 199);
        assert_eq!(
            name,
            "test-events+flume.txn+2+00000000000000000100+00000000000000000199.jsonl.gz"
        );
        assert_eq!(
            parse_final_name(&name),
            Some(("flume.txn".into(), 2, 100, 199))
        );
    }
}
