//! The Kafka source: a consumer-group member that batches records per partition and hands
//! framed batches to the channel writer. It never imports `sink` or `commit`; what happens on
//! assignment (reconciling with HDFS) is behind the [`Ownership`] trait that the relay supplies.
//!
//! Offsets: auto commit and auto offset store are off. The position of every assigned
//! partition is set by `Ownership::assigned` (HDFS and channel state), never by the group's
//! committed offset, which is advisory.

mod batch;
mod budget;
mod headers;
pub mod reports;
mod run;
mod unreconciled;
mod unsubscribed;

use std::collections::VecDeque;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::secret::Redactor;
use crate::config::IsolationLevel;
use crate::events;
use crate::health::Health;
use crate::poison::{Poison, Rules};
use crate::wal::encoder::FrameBuilder;
use crate::wal::{frame::FrameError, BatchSender, EncodedBatch, FrameVersion};
use crate::wal::{TopicPartition, WalIndex};
use batch::{MessageQueue, Msg, PartitionQueue};

/// The poll thread's maps, keyed by partition: looked up per message, so foldhash rather than
/// SipHash (no untrusted keys: partitions come from the group's assignment).
type HashMap<K, V> = foldhash::HashMap<K, V>;
type HashSet<T> = foldhash::HashSet<T>;

/// How the source learns where to start a partition and reports losing one. Every method is
/// called from the poll thread and must not block on HDFS.
pub trait Ownership: Send + Sync + 'static {
    /// Asked about each newly assigned partition (every second) until it answers
    /// `Ok(Some(Start::Confirmed(next)))`; no record is fetched before it answers `Some`.
    /// `Ok(None)` means still working it out; an error is logged and asked again.
    fn assigned(&self, tp: &TopicPartition) -> Result<Option<Start>, String>;
    /// The partition was revoked or lost; stop writing it.
    fn revoked(&self, tp: &TopicPartition);
    /// Offsets from `from` on are gone from Kafka up to `low - 1` (retention moved the log
    /// start past them): the partition halts here until an operator records a skip.
    fn gone(&self, tp: &TopicPartition, from: i64, low: i64);
    /// A halted partition delivered a record again.
    fn resumed(&self, tp: &TopicPartition);
}

/// Where to fetch a newly assigned partition from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// HDFS has not answered yet: fetch from here into the channel, which keeps the data until
    /// the partition's ledger is read. A later `Confirmed` may move the position.
    Provisional(i64),
    /// The ledger was read: fetch from here.
    Confirmed(i64),
}

/// Why a partition is halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    /// Data gone from Kafka: reconciled again at this instant (an operator's skip ends it).
    Gone(Instant),
    /// A poison record at this offset under policy `fail`: until a restart or a new
    /// assignment, since only a configuration change lets it through. Not reconciled again,
    /// because a re-activation makes the sink drop and rewrite the partition's open file.
    Poison(i64),
}

/// How long a halted partition waits before it is reconciled again (to notice an operator's
/// skip entry in the ledger).
const HALT_RETRY: Duration = Duration::from_secs(10);

/// How long the poll loop waits for a busy channel writer before it pauses the partitions.
/// A pause makes librdkafka drop every record it prefetched for them (a whole queue) and fetch
/// it again: with 200 ms here and a writer slowed to 300 ms a group commit, librdkafka received
/// 2.28x the records delivered. So a slow writer (a slow fsync, a segment roll) is waited for,
/// and only a stuck one is paused for. Meanwhile rebalance callbacks wait too (heartbeats go
/// on in librdkafka's own thread); the wait is also capped at a quarter of
/// `max_poll_interval_ms`.
const WRITER_WAIT_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    /// Creating the client failed; the message has every secret value hidden.
    #[error("kafka client: {0}")]
    Client(String),
    #[error("encoding a batch of {tp}: {source}")]
    Encode {
        tp: TopicPartition,
        source: FrameError,
    },
    #[error("the channel writer stopped")]
    WriterGone,
    #[error(
        "another consumer joined group {group:?} with kafka.group_instance_id = {instance_id:?} \
         and the broker fenced this one ({reason}); give each instance its own \
         kafka.group_instance_id"
    )]
    InstanceFenced {
        group: String,
        instance_id: String,
        reason: String,
    },
    #[error("kafka client failed fatally: {code:?}: {reason}")]
    Fatal {
        code: RDKafkaErrorCode,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    /// librdkafka `group.instance.id` (static membership), if configured.
    pub group_instance_id: Option<String>,
    pub isolation_level: IsolationLevel,
    pub session_timeout: Duration,
    pub max_poll_interval: Duration,
    pub properties: Vec<(String, String)>,
    pub batch_records_max: usize,
    pub batch_duration: Duration,
    pub batch_bytes_max: usize,
    /// Poison records under policy `fail` halt their partition here, before the channel.
    pub poison: Rules,
    pub capacity_bytes_max: u64,
    pub resume_bytes: u64,
    /// librdkafka's prefetch memory (`kafka.prefetch_memory_bytes_max`, see `budget`).
    pub prefetch_memory_bytes_max: u64,
    /// The channel frame version to write (`channel.frame_version`).
    pub frame_version: FrameVersion,
}

impl SourceOptions {
    pub fn from_settings(c: &crate::config::Settings) -> Self {
        let k = &c.kafka;
        Self {
            bootstrap_servers: k.bootstrap_servers.clone(),
            topics: k.topics.clone(),
            group_id: k.group_id.clone(),
            group_instance_id: k.group_instance_id.clone(),
            isolation_level: k.isolation_level,
            session_timeout: k.session_timeout,
            max_poll_interval: k.max_poll_interval,
            properties: k.properties.0.clone().into_iter().collect(),
            batch_records_max: k.batch_records_max,
            batch_duration: k.batch_duration,
            batch_bytes_max: k.batch_bytes_max,
            poison: Rules::from_settings(c),
            capacity_bytes_max: c.channel.capacity_bytes_max,
            resume_bytes: c.channel.resume_bytes,
            prefetch_memory_bytes_max: k.prefetch_memory_bytes_max,
            frame_version: c.channel.frame_version,
        }
    }

    /// `text` with the secret values of the pass-through properties hidden.
    pub fn redact(&self, text: &str) -> String {
        self.redactor().apply(text)
    }

    /// What hides the secret values of the pass-through properties, for the client's callbacks.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// The librdkafka configuration, every property that matters set by name.
    pub fn client_config(&self) -> ClientConfig {
        let mut cc = ClientConfig::new();
        for (k, v) in &self.properties {
            cc.set(k, v);
        }
        cc.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", self.isolation_level.as_librdkafka())
            // Never jump silently: an offset that retention deleted must halt the partition
            // (see `Source::check_out_of_range`). `auto_offset_reset` only picks the genesis.
            .set("auto.offset.reset", "error")
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval.as_millis().to_string(),
            )
            .set("enable.partition.eof", "false");
        if let Some(id) = &self.group_instance_id {
            cc.set("group.instance.id", id);
        }
        let user = |key: &str| {
            let found = self.properties.iter().find(|(k, _)| k == key);
            found.map(|(_, v)| v.clone())
        };
        let user_set = |key: &str| user(key).is_some();
        // The prefetch's properties from its memory budget, each unless set by the user.
        for (k, v) in budget::derive(self.prefetch_memory_bytes_max, user).properties {
            cc.set(k, v);
        }
        if !user_set("partition.assignment.strategy") {
            // Incremental rebalances: a member joining or leaving moves only the partitions
            // that change owner; the others keep fetching and need no new reconciliation.
            // `SourceContext::rebalance` applies incremental assign and revoke lists.
            // librdkafka's default ("range,roundrobin") revokes every partition of every
            // member on each rebalance.
            cc.set("partition.assignment.strategy", "cooperative-sticky");
        }
        if !user_set("statistics.interval.ms") {
            // For `flumen_kafka_fetched_records_total` and `..._outdated_records_dropped_total`
            // (`SourceContext::stats`): what librdkafka fetched against what flumen took.
            cc.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        }
        cc
    }
}

/// How often librdkafka reports its statistics; parsing them costs about a millisecond per
/// hundred partitions.
const STATISTICS_INTERVAL_MS: &str = "10000";

/// rdkafka context: applies assignments paused, so no record is fetched before `Ownership`
/// has decided the start offset.
pub struct SourceContext {
    /// Set by the rebalance callback; lets the poll loop skip two locks per message.
    changed: std::sync::atomic::AtomicBool,
    /// Assignments applied so far, empty ones too (`unsubscribed` waits for one).
    assignments: std::sync::atomic::AtomicU64,
    /// Set on every client error, so the poll loop asks whether it was fatal (the client is
    /// unusable from then on). The callback's code is the cause (e.g. `FencedInstanceId`),
    /// not `Fatal`, so only `Client::fatal_error` tells.
    errored: std::sync::atomic::AtomicBool,
    pending: std::sync::Mutex<Vec<TopicPartition>>,
    revoked: std::sync::Mutex<Vec<TopicPartition>>,
    health: Arc<Health>,
    /// librdkafka's error texts and log lines pass through it: a refused value may be a secret.
    redactor: Redactor,
    /// When a refused login or TLS handshake was last logged (librdkafka retries every few
    /// seconds; the log says it once a minute, `/health` says it all along).
    refusal_logged: std::sync::Mutex<Option<Instant>>,
}

/// How often a refusal that goes on is logged again.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl ClientContext for SourceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        reports::fetch_statistics(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errored
            .store(true, std::sync::atomic::Ordering::Release);
        let reason = self.redactor.apply(reason);
        events::error(events::ErrorCode::KafkaFetch);
        match reports::refusal(error.rdkafka_error_code(), &reason) {
            Some(refused) => {
                self.log_refusal(&refused);
                self.health.set_kafka_refused(refused);
            }
            None => {
                tracing::warn!(%error, reason, "kafka client error");
                self.health.set_kafka_error(format!("{error}: {reason}"));
            }
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let message = self.redactor.apply(message);
        if fac == "ERROR" {
            // A partition's error op (e.g. "topic does not exist") met while a partition queue
            // is drained in a batch (`batch.rs`): with no error callback set, librdkafka logs
            // it under this facility, its only use (`rd_kafka_poll_cb`), where `poll` would
            // have raised it as an error event. Reported as `error` reports those.
            self.errored
                .store(true, std::sync::atomic::Ordering::Release);
            events::error(events::ErrorCode::KafkaFetch);
            tracing::warn!(reason = message, "kafka client error");
            self.health.set_kafka_error(message);
            return;
        }
        reports::log_librdkafka(level, fac, &message);
    }
}

impl SourceContext {
    fn log_refusal(&self, refused: &str) {
        let mut last = self.refusal_logged.lock().expect("lock");
        if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
            *last = Some(Instant::now());
            tracing::error!("{refused}");
        }
    }
}

/// Subscribes to `topics` (`kafka.topics`), at start and when rejoining the group.
fn subscribe(consumer: &KafkaConsumer, topics: &[String]) -> Result<(), KafkaError> {
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)
}

fn tps_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                events::rebalance("assign", tpl.count());
                // An explicit start, never the group's committed offset: with
                // `auto.offset.reset = error`, a partition without one would enter an error
                // state that refuses our seek. The real position is sought after reconciling.
                for tp in tps_of(tpl) {
                    if let Err(err) =
                        tpl.set_partition_offset(&tp.topic, tp.partition, Offset::Beginning)
                    {
                        tracing::error!(error = %err, "setting an assigned partition's start failed");
                    }
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r.and_then(|_| consumer.pause(tpl)) {
                    tracing::error!(error = %e, "applying an assignment failed");
                }
                self.pending.lock().expect("lock").extend(tps_of(tpl));
                self.assignments
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                self.changed
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                events::rebalance(if lost { "lost" } else { "revoke" }, tpl.count());
                let revoked = tps_of(tpl);
                // An assignment the poll loop has not applied yet must not outlive this
                // revocation (incremental rebalances can follow each other within one poll).
                self.pending
                    .lock()
                    .expect("lock")
                    .retain(|tp| !revoked.contains(tp));
                self.revoked.lock().expect("lock").extend(revoked);
                self.changed
                    .store(true, std::sync::atomic::Ordering::Release);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "applying a revocation failed");
                }
            }
            other => tracing::error!(?other, "rebalance error"),
        }
    }
}

pub type KafkaConsumer = BaseConsumer<SourceContext>;

struct PartState {
    /// Next offset expected.
    position: i64,
    /// The batch being built, if any.
    pending: Option<Pending>,
    /// Capacity for the next frame buffer: the last frame's size plus `FRAME_HEADROOM`, so a
    /// steady partition's buffer is allocated once per batch near its final size instead of
    /// growing by doubling (a frame a few bytes longer than the last, from longer keys, used
    /// to double: 2.9 MB of buffer for 1.44 MB of frame, in the writer's queue).
    frame_capacity: usize,
}

/// A batch being built: encoded record by record straight into its channel frame.
struct Pending {
    frame: FrameBuilder,
    /// Key and value bytes, for `batch_bytes_max` and the consumed-bytes metric.
    bytes: usize,
    opened: Instant,
}

/// The first frame buffer of a partition; later ones take the previous frame's size.
const FRAME_CAPACITY_FIRST: usize = 4096;
/// Room past the previous frame's size, as a fraction (1/16) of it.
const FRAME_HEADROOM: usize = 16;

/// `n` rounded up to one of four sizes per power of two (1, 1.25, 1.5 or 1.75 x 2^k), at
/// least `FRAME_CAPACITY_FIRST`. Frames of nearly the same length then take buffers of
/// exactly the same size, so the space a freed one leaves fits the next: with a size per
/// frame, malloc kept the holes as slack and a backlog instance's RSS grew by 20 MiB while
/// its heap in use stayed at 10-16 MB.
fn size_class(n: usize) -> usize {
    if n <= FRAME_CAPACITY_FIRST {
        return FRAME_CAPACITY_FIRST;
    }
    let step = (1usize << n.ilog2()) / 4;
    n.div_ceil(step) * step
}

/// The poll-thread state. `run` owns it on a dedicated OS thread.
pub struct Source {
    opts: SourceOptions,
    consumer: Arc<KafkaConsumer>,
    ownership: Arc<dyn Ownership>,
    index: Arc<WalIndex>,
    health: Arc<Health>,
    writer: BatchSender,
    /// Owned, reconciled partitions: the next offset expected and the batch being built.
    parts: HashMap<TopicPartition, PartState>,
    /// The previous message's partition, so a run of messages from one partition costs no
    /// allocation to look up.
    current: Option<TopicPartition>,
    /// When `flush_due` runs next; checking batch age per message showed up in profiles.
    next_flush_check: Instant,
    /// Assigned, waiting for `Ownership::assigned`, and since when.
    unreconciled: unreconciled::Unreconciled,
    outbox: VecDeque<EncodedBatch>,
    paused: Option<String>,
    /// Halted partitions and why.
    halted: HashMap<TopicPartition, Halt>,
    /// Halted partitions reconciled again and waiting for their first record.
    recovering: HashSet<TopicPartition>,
    /// Partitions fetched from a provisional start, waiting for their confirmed one.
    provisional: HashSet<TopicPartition>,
    /// Partitions whose fetcher stopped on an out-of-range offset: only a new assignment
    /// restarts them.
    stopped: HashSet<TopicPartition>,
    /// Where every assigned partition's fetch queue forwards to; drained in batches
    /// (`batch.rs`).
    messages: MessageQueue,
    /// The assigned partitions' fetch queues, forwarded again once a second.
    queues: Vec<(TopicPartition, PartitionQueue)>,
    next_forward: Instant,
    /// Messages taken from the queue; `None` only while they are being handled.
    batch: Option<batch::Batch>,
    /// Assigned partitions of topics not in `kafka.topics`: never fetched (see the module).
    unsubscribed: unsubscribed::Unsubscribed,
    /// `SourceContext::assignments` when the poll loop last applied rebalances.
    assignments_seen: u64,
}

/// Messages taken from the message queue per call.
const BATCH_MESSAGES_MAX: usize = 1000;
/// How long the loop waits on the message queue when it was empty (a record is taken the
/// moment it arrives): the upper bound on how late an event (a rebalance, an error) is served
/// while partitions are assigned.
const IDLE_WAIT: Duration = Duration::from_millis(10);

/// How soon the poll loop asks again for the starts of partitions being reconciled: often
/// while the tasks run (a check costs a lock and a look-up per partition, and every ms here
/// delays a rebalanced partition's first record), once a second after a failure, since each
/// check restarts a failed reconciliation and logs it.
fn reconcile_check_after(failed: bool) -> Duration {
    if failed {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(10)
    }
}

impl Source {
    pub fn new(
        opts: SourceOptions,
        ownership: Arc<dyn Ownership>,
        index: Arc<WalIndex>,
        health: Arc<Health>,
        writer: BatchSender,
    ) -> Result<Self, SourceError> {
        let ctx = SourceContext {
            changed: Default::default(),
            assignments: Default::default(),
            errored: Default::default(),
            pending: Default::default(),
            revoked: Default::default(),
            health: health.clone(),
            redactor: opts.redactor(),
            refusal_logged: Default::default(),
        };
        let consumer: KafkaConsumer = opts
            .client_config()
            .create_with_context(ctx)
            .map_err(|e| SourceError::Client(opts.redact(&e.to_string())))?;
        subscribe(&consumer, &opts.topics)?;
        let consumer = Arc::new(consumer);
        Ok(Self {
            messages: MessageQueue::new(&consumer),
            next_forward: Instant::now(),
            opts,
            consumer,
            ownership,
            index,
            health,
            writer,
            parts: HashMap::default(),
            current: None,
            next_flush_check: Instant::now(),
            unreconciled: unreconciled::Unreconciled::new(Instant::now()),
            outbox: VecDeque::new(),
            paused: None,
            halted: HashMap::default(),
            recovering: HashSet::default(),
            provisional: HashSet::default(),
            stopped: HashSet::default(),
            queues: Vec::new(),
            batch: Some(batch::Batch::new(BATCH_MESSAGES_MAX)),
            unsubscribed: Default::default(),
            assignments_seen: 0,
        })
    }

    /// The consumer, shared with the relay for the advisory offset commits.
    pub fn consumer(&self) -> Arc<KafkaConsumer> {
        self.consumer.clone()
    }

    /// Polls until `stop` returns true, then flushes buffered batches to the writer.
    pub fn run(mut self, stop: impl Fn() -> bool) -> Result<(), SourceError> {
        let mut next_reconcile_check = Instant::now();
        while !stop() {
            let errored = &self.consumer.context().errored;
            if errored.swap(false, std::sync::atomic::Ordering::AcqRel)
                && self.consumer.client().fatal_error().is_some()
            {
                return Err(self.fatal_error());
            }
            #[cfg(feature = "failpoints")]
            fail::fail_point!("kafka-thread-error", |_| Err(SourceError::Fatal {
                code: RDKafkaErrorCode::Fatal,
                reason: "failpoint kafka-thread-error".into(),
            }));
            self.apply_rebalances();
            if self.unsubscribed.rejoin_scheduled() {
                self.rejoin_if_due()?;
            }
            self.retry_halted();
            if !self.unreconciled.is_empty() && Instant::now() >= next_reconcile_check {
                let failed = self.reconcile_pending()?;
                next_reconcile_check = Instant::now() + reconcile_check_after(failed);
            }
            self.wait_for_writer()?;
            self.flow_control();
            let now = Instant::now();
            self.forward_due(now);
            self.unreconciled.report(&self.health, now);
            let mut taken = self.consume_batches(Duration::ZERO)?;
            if taken == 0 && !self.queues.is_empty() {
                // Records arrive on the message queue, not on the consumer queue `poll` waits
                // on: wait here, so a fetch is taken the moment it lands. Waiting in `poll`
                // slept the whole IDLE_WAIT each time the fetch pipeline ran dry, while
                // librdkafka's queue filled and its fetching stopped (issue 12). This call
                // returns at 1000 messages or after IDLE_WAIT: a busy partition's fetch fills
                // it at once, a trickle is taken at most IDLE_WAIT late, as before.
                taken = self.consume_batches(IDLE_WAIT)?;
            }
            // Events (rebalances, errors, stats) and any message still on the consumer queue.
            let wait = match (taken, self.queues.is_empty()) {
                (0, true) => Duration::from_millis(100),
                _ => Duration::ZERO,
            };
            let consumer = self.consumer.clone();
            if let Some(msg) = consumer.poll(wait) {
                match msg {
                    // SAFETY: `m` is live for this call.
                    Ok(m) => self.accept(&unsafe { Msg::from_raw(m.ptr()) })?,
                    Err(e) => self.consume_error(e)?,
                }
            }
            self.flush_due(false)?;
            self.drain_outbox(false)?;
        }
        self.flush_due(true)?;
        match self.drain_outbox(true) {
            // The writer gave up on a full disk during shutdown: nothing unwritten was
            // acknowledged, so Kafka still has it.
            Err(SourceError::WriterGone) => {
                tracing::warn!(
                    "channel writer stopped first; unwritten batches will be fetched again"
                );
                Ok(())
            }
            other => other,
        }
    }

    /// The client's fatal error as a `SourceError`, naming the config key when the cause is a
    /// duplicate `kafka.group_instance_id`.
    fn fatal_error(&self) -> SourceError {
        let (code, reason) = self.consumer.client().fatal_error().unwrap_or((
            RDKafkaErrorCode::Fatal,
            "librdkafka reported a fatal error without details".into(),
        ));
        events::error(events::ErrorCode::KafkaFetch);
        match (&self.opts.group_instance_id, code) {
            (Some(id), RDKafkaErrorCode::FencedInstanceId) => SourceError::InstanceFenced {
                group: self.opts.group_id.clone(),
                instance_id: id.clone(),
                reason,
            },
            _ => SourceError::Fatal { code, reason },
        }
    }

    /// A consume error, from `poll` or carried by a message of a partition queue.
    fn consume_error(&mut self, e: KafkaError) -> Result<(), SourceError> {
        match e {
            KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) => {
                self.check_out_of_range()?;
            }
            // The client stops for good (e.g. fenced by another member with the same
            // group.instance.id): end the thread so the process exits non-zero and
            // says why, instead of idling with its partitions.
            KafkaError::MessageConsumptionFatal(_) => return Err(self.fatal_error()),
            // A refused login or TLS handshake: the error callback, which has
            // librdkafka's reason, already reported it naming the key.
            e if reports::is_refusal(e.rdkafka_error_code()) => {}
            e => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::InconsistentGroupProtocol) {
                    // Joining a group whose members use the other kind of assignor
                    // (eager vs cooperative): retried until they have all left.
                    tracing::warn!(
                        group = %self.opts.group_id,
                        "the group's members use another kind of \
                         partition.assignment.strategy; this member joins when they \
                         have all left (see config.example.toml)"
                    );
                }
                tracing::warn!(error = %e, "kafka poll error");
                self.health.set_kafka_error(e.to_string());
                events::error(events::ErrorCode::KafkaFetch);
            }
        }
        Ok(())
    }

    /// Takes a batch from the message queue, waiting up to `wait` for its first message, and
    /// handles each message; returns how many it took. No clock is read per message.
    fn consume_batches(&mut self, wait: Duration) -> Result<usize, SourceError> {
        let mut batch = self.batch.take().expect("put back after every use");
        let taken = batch.take(&self.messages, wait);
        let r = self.accept_batch(&batch);
        batch.clear();
        self.batch = Some(batch);
        r.map(|()| taken)
    }

    /// Each message of `batch`, in order: a record, or an error such as out of range, mapped
    /// as rdkafka maps the errors `poll` returns. Records come in runs of one partition (a
    /// fetch's worth), and each run looks the partition up once.
    fn accept_batch(&mut self, batch: &batch::Batch) -> Result<(), SourceError> {
        let mut msgs = batch.iter().peekable();
        while let Some(m) = msgs.next() {
            if let Some(err) = m.error() {
                // As rdkafka's `BorrowedMessage::from_client` maps it for `poll`.
                self.consume_error(match err {
                    rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                        KafkaError::PartitionEOF(m.partition())
                    }
                    e => KafkaError::MessageConsumption(e.into()),
                })?;
                continue;
            }
            self.health.set_kafka_ok();
            // Two live messages (the batch holds them all) with the same topic handle have
            // the same topic.
            let id = (m.topic_handle(), m.partition());
            let same = |n: &Msg<'_>| n.error().is_none() && (n.topic_handle(), n.partition()) == id;
            let mut run = std::iter::once(m).chain(std::iter::from_fn(|| msgs.next_if(same)));
            let tp = TopicPartition::new(m.topic(), m.partition());
            self.accept_run(&tp, &mut run)?;
        }
        Ok(())
    }

    /// Forwards every assigned partition's fetch queue to the message queue again: a fetch
    /// stop clears a forward (see `batch.rs`). Once a second.
    fn forward_due(&mut self, now: Instant) {
        if now < self.next_forward {
            return;
        }
        self.next_forward = now + Duration::from_secs(1);
        for (_, q) in &self.queues {
            q.forward_to(&self.messages);
        }
    }

    fn apply_rebalances(&mut self) {
        let changed = &self.consumer.context().changed;
        if !changed.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let ctx = self.consumer.context().clone();
        let revoked: Vec<_> = std::mem::take(&mut *ctx.revoked.lock().expect("lock"));
        for tp in revoked {
            if self.unsubscribed.revoked(&tp) {
                continue; // never started: nothing to stop
            }
            self.parts.remove(&tp);
            self.current = None;
            self.unreconciled.remove(&tp);
            self.halted.remove(&tp);
            self.recovering.remove(&tp);
            self.provisional.remove(&tp);
            self.stopped.remove(&tp);
            self.outbox.retain(|b| b.tp != tp);
            self.queues.retain(|(q, _)| *q != tp);
            self.ownership.revoked(&tp);
        }
        let mut assigned: Vec<_> = std::mem::take(&mut *ctx.pending.lock().expect("lock"));
        assigned.retain(|tp| !self.unsubscribed.hold_if_foreign(&self.opts.topics, tp));
        for tp in &assigned {
            // Before the partition is sought and resumed (see `batch.rs`).
            self.queues.retain(|(q, _)| q != tp);
            match PartitionQueue::of(&self.consumer, tp) {
                Some(q) => {
                    q.forward_to(&self.messages);
                    self.queues.push((tp.clone(), q));
                }
                None => tracing::warn!(partition = %tp, "no fetch queue; polled one by one"),
            }
        }
        let now = Instant::now();
        for tp in assigned {
            self.unreconciled.insert(tp, now);
        }
        let assignments = ctx.assignments.load(std::sync::atomic::Ordering::Acquire);
        let fresh = assignments != self.assignments_seen;
        self.assignments_seen = assignments;
        if self.unsubscribed.after_rebalance(fresh, Instant::now()) {
            tracing::info!("the group's assignment matches kafka.topics again");
            self.health.set_stale_assignment(None);
        }
    }

    /// Leaves the group and joins again if partitions of other topics are held and the
    /// rejoin is due (see `unsubscribed`). The revocation and the new assignment arrive
    /// through the rebalance callback as usual.
    fn rejoin_if_due(&mut self) -> Result<(), SourceError> {
        let Some(held) = self.unsubscribed.take_due(Instant::now()) else {
            return Ok(());
        };
        let reason = unsubscribed::reason(
            &held,
            &self.opts.topics,
            self.opts.group_instance_id.as_deref(),
        );
        tracing::warn!("{reason}");
        self.health.set_stale_assignment(Some(reason));
        self.consumer.unsubscribe();
        subscribe(&self.consumer, &self.opts.topics)?;
        Ok(())
    }

    /// librdkafka reported a fetch offset out of range (it names no partition): every owned
    /// partition whose position is below its log start halts, loudly, rather than jumping.
    fn check_out_of_range(&mut self) -> Result<(), SourceError> {
        let owned: Vec<_> = self
            .parts
            .iter()
            .map(|(tp, st)| (tp.clone(), st.position))
            .collect();
        for (tp, position) in owned {
            let low = match self.consumer.fetch_watermarks(
                &tp.topic,
                tp.partition,
                Duration::from_secs(5),
            ) {
                Ok((low, _)) => low,
                Err(e) => {
                    tracing::warn!(partition = %tp, error = %e, "reading the log start failed");
                    continue;
                }
            };
            if position >= low {
                continue;
            }
            // Records already fetched are older than the hole: keep them.
            self.flush(&tp)?;
            let _ = self.consumer.pause(&single(&tp, None));
            self.parts.remove(&tp);
            self.current = None;
            self.stopped.insert(tp.clone());
            if self.provisional.contains(&tp) {
                // Only a guess was out of range: wait, paused, for the ledger's answer.
                continue;
            }
            self.recovering.remove(&tp);
            self.halted
                .insert(tp.clone(), Halt::Gone(Instant::now() + HALT_RETRY));
            self.ownership.gone(&tp, position, low);
        }
        Ok(())
    }

    /// Reconciles halted partitions again once their wait is over.
    fn retry_halted(&mut self) {
        if self.halted.is_empty() {
            return;
        }
        let now = Instant::now();
        let due: Vec<_> = self
            .halted
            .iter()
            .filter(|(_, h)| matches!(h, Halt::Gone(at) if *at <= now))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.halted.remove(&tp);
            self.recovering.insert(tp.clone());
            self.unreconciled.insert(tp, now);
        }
    }

    /// Asks for the start of every partition still unreconciled; returns whether a
    /// reconciliation failed (and is started again on the next check).
    fn reconcile_pending(&mut self) -> Result<bool, SourceError> {
        let tps = self.unreconciled.partitions();
        let mut failed = false;
        for tp in tps {
            match self.ownership.assigned(&tp) {
                Ok(None) => {}
                Ok(Some(Start::Provisional(at))) => {
                    if !self.provisional.contains(&tp) && self.start_fetching(&tp, at) {
                        tracing::info!(partition = %tp, at, "HDFS has not answered yet; consuming into the channel until it does");
                        self.provisional.insert(tp);
                    }
                }
                Ok(Some(Start::Confirmed(next))) => {
                    let fetching_there = self.parts.get(&tp).is_some_and(|st| st.position == next);
                    if !(self.provisional.contains(&tp) && fetching_there) {
                        // Keep what a provisional start already fetched: the channel holds it
                        // and the sink skips what HDFS has.
                        self.flush(&tp)?;
                        if !self.start_fetching(&tp, next) {
                            continue;
                        }
                    }
                    tracing::info!(partition = %tp, next, "partition reconciled; consuming");
                    self.provisional.remove(&tp);
                    self.unreconciled.remove(&tp);
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(partition = %tp, error = %e, "reconciling failed; retrying")
                }
            }
        }
        Ok(failed)
    }

    /// Seeks `tp` to `at` and resumes it (unless consumption is paused); false if the seek
    /// failed (retried on the next turn).
    fn start_fetching(&mut self, tp: &TopicPartition, at: i64) -> bool {
        // Seek then resume; librdkafka applies the seek to the paused fetcher. A partition
        // whose fetch stopped on an out-of-range offset refuses seeks: assign it afresh.
        let moved = if self.stopped.contains(tp) {
            // The stop cleared the partition's forward (see `batch.rs`): renew it soon.
            self.next_forward = Instant::now();
            self.reassign(tp, at)
        } else {
            self.consumer
                .seek(
                    &tp.topic,
                    tp.partition,
                    Offset::Offset(at),
                    Duration::from_secs(10),
                )
                .map(|_| ())
        };
        if let Err(e) = moved {
            tracing::warn!(partition = %tp, error = %e, "seek failed; retrying");
            return false;
        }
        self.stopped.remove(tp);
        self.current = None;
        self.parts.insert(
            tp.clone(),
            PartState {
                position: at,
                pending: None,
                frame_capacity: FRAME_CAPACITY_FIRST,
            },
        );
        if self.paused.is_none() {
            let _ = self.consumer.resume(&single(tp, Some(at)));
        }
        true
    }

    /// Restarts a stopped partition's fetcher at `at` by assigning it again. Eager protocol:
    /// the whole assignment is re-applied with each partition's own position, and what was
    /// paused is paused again.
    fn reassign(&self, tp: &TopicPartition, at: i64) -> Result<(), KafkaError> {
        let c = &self.consumer;
        if matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative) {
            c.incremental_unassign(&single(tp, None))?;
            c.incremental_assign(&single(tp, Some(at)))?;
            return c.pause(&single(tp, None));
        }
        let mut tpl = TopicPartitionList::new();
        let mut paused = TopicPartitionList::new();
        for other in tps_of(&c.assignment()?) {
            let offset = match self.parts.get(&other) {
                _ if other == *tp => Offset::Offset(at),
                Some(st) => Offset::Offset(st.position),
                None => Offset::Beginning,
            };
            tpl.add_partition_offset(&other.topic, other.partition, offset)?;
            if other == *tp || !self.parts.contains_key(&other) || self.paused.is_some() {
                paused.add_partition(&other.topic, other.partition);
            }
        }
        c.assign(&tpl)?;
        c.pause(&paused)
    }

    /// Pauses every owned partition while the channel is over capacity, the disk is full or the
    /// writer is behind; resumes below the low-water mark.
    fn flow_control(&mut self) {
        let bytes = self.index.bytes_total();
        let reason = if self.index.disk_full() {
            Some("channel disk full".to_string())
        } else if bytes >= self.opts.capacity_bytes_max
            || (self.paused.is_some() && bytes > self.opts.resume_bytes)
        {
            Some(format!(
                "channel holds {bytes} bytes (capacity {})",
                self.opts.capacity_bytes_max
            ))
        } else if !self.outbox.is_empty() {
            Some("channel writer busy".to_string())
        } else {
            None
        };
        match (&self.paused, reason) {
            (None, Some(r)) => {
                events::paused(&r);
                let _ = self.consumer.pause(&self.owned_tpl());
                self.health.set_paused(Some(r.clone()));
                self.paused = Some(r);
            }
            (Some(_), None) => {
                tracing::info!("resuming consumption");
                let _ = self.consumer.resume(&self.owned_tpl());
                self.health.set_paused(None);
                self.paused = None;
            }
            (Some(_), Some(r)) => self.paused = Some(r),
            (None, None) => {}
        }
    }

    fn owned_tpl(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for tp in self.parts.keys() {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        tpl
    }

    fn accept(&mut self, m: &Msg<'_>) -> Result<(), SourceError> {
        self.health.set_kafka_ok();
        let same = self
            .current
            .as_ref()
            .is_some_and(|t| t.partition == m.partition() && t.topic == m.topic());
        // Taken out of `self` while the message is handled, so it can be borrowed beside
        // `self`; it only names the previous message's partition, so putting it back after a
        // halt (which clears it) is harmless.
        let tp = match self.current.take() {
            Some(tp) if same => tp,
            _ => TopicPartition::new(m.topic(), m.partition()),
        };
        let r = self.accept_run(&tp, &mut std::iter::once(*m));
        self.current = Some(tp);
        r
    }

    /// Messages of partition `tp`, in order. The partition's state is looked up once for the
    /// run, and again only after a flush, which needs all of `self`.
    fn accept_run<'b>(
        &mut self,
        tp: &TopicPartition,
        run: &mut impl Iterator<Item = Msg<'b>>,
    ) -> Result<(), SourceError> {
        let mut retry = None;
        loop {
            let Some(st) = self.parts.get_mut(tp) else {
                // Fetched before reconciliation, after a revoke or a halt: fetched again from
                // the partition's position once it is owned again.
                run.for_each(drop);
                return Ok(());
            };
            let cx = run::RunCtx {
                opts: &self.opts,
                recovering: &mut self.recovering,
                ownership: &*self.ownership,
            };
            match run::encode_run(st, cx, tp, retry.take(), run)? {
                run::RunStop::Done => return Ok(()),
                run::RunStop::Flush => self.flush(tp)?,
                run::RunStop::Retry(m) => {
                    // The frame would pass the payload limit: the batch so far goes first.
                    self.flush(tp)?;
                    retry = Some(m);
                }
                run::RunStop::Poison(offset, poison) => {
                    return self.halt_poisoned(tp, offset, poison)
                }
            }
        }
    }

    /// A poison record under policy `fail` at `offset`: the batch before it goes to the
    /// channel (so everything before it is delivered), then the partition halts, loudly, until
    /// a restart or a new assignment. The other partitions go on.
    fn halt_poisoned(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        poison: Poison,
    ) -> Result<(), SourceError> {
        self.flush_through(tp, Some(offset - 1))?;
        let _ = self.consumer.pause(&single(tp, None));
        self.parts.remove(tp);
        self.current = None;
        self.recovering.remove(tp);
        let again = self.halted.insert(tp.clone(), Halt::Poison(offset));
        if again == Some(Halt::Poison(offset)) {
            // Fetched again from a confirmed start after halting on a provisional one.
            tracing::debug!(partition = %tp, offset, "halted on the same poison record again");
            return Ok(());
        }
        events::poison_halted(tp, offset, poison);
        // Keyed by the partition, as `Ownership::gone` keys its halt: a revocation clears it.
        self.health.set_halted(
            tp.to_string(),
            Some(format!(
                "partition {tp} halted at offset {offset}: the record {poison}; everything \
                 before it is delivered. To go on, {}, then restart",
                poison.fix()
            )),
        );
        Ok(())
    }

    fn flush(&mut self, tp: &TopicPartition) -> Result<(), SourceError> {
        self.flush_through(tp, None)
    }

    /// Hands the partition's pending batch to the writer; with `through`, its range covers
    /// the offsets up to there (consumed without a record: markers, compaction), so the next
    /// batch, or the ledger's next offset, starts right after.
    fn flush_through(
        &mut self,
        tp: &TopicPartition,
        through: Option<i64>,
    ) -> Result<(), SourceError> {
        let Some(st) = self.parts.get_mut(tp) else {
            return Ok(());
        };
        let Some(p) = st.pending.take() else {
            return Ok(());
        };
        let frame = p
            .frame
            .finish(through)
            .map_err(|source| SourceError::Encode {
                tp: tp.clone(),
                source,
            })?;
        let len = frame.bytes.len();
        st.frame_capacity = size_class(len + len / FRAME_HEADROOM);
        events::records_consumed(tp, frame.records, p.bytes as u64);
        self.outbox.push_back(EncodedBatch {
            tp: tp.clone(),
            start_offset: frame.start_offset,
            last_offset: frame.last_offset,
            frame: frame.bytes,
        });
        Ok(())
    }

    /// Flushes batches older than `batch_duration_ms` (all of them with `all`). Looks at the
    /// clock at most every 5 ms, not per message.
    fn flush_due(&mut self, all: bool) -> Result<(), SourceError> {
        const CHECK_EVERY: Duration = Duration::from_millis(5);
        let now = Instant::now();
        if !all && now < self.next_flush_check {
            return Ok(());
        }
        self.next_flush_check = now + CHECK_EVERY;
        let due: Vec<_> = self
            .parts
            .iter()
            .filter(|(_, st)| {
                st.pending.as_ref().is_some_and(|p| {
                    all || now.duration_since(p.opened) >= self.opts.batch_duration
                })
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.flush(&tp)?;
        }
        Ok(())
    }

    /// Hands batches to the writer without blocking the poll loop (unless `block`).
    /// Hands queued batches to the writer, waiting up to `WRITER_WAIT_MAX` while it is busy;
    /// not at all while the disk is full (that pauses at once).
    fn wait_for_writer(&mut self) -> Result<(), SourceError> {
        if self.outbox.is_empty() {
            return Ok(()); // the usual case: no clock read
        }
        let t = Instant::now();
        let limit = WRITER_WAIT_MAX.min(self.opts.max_poll_interval / 4);
        let disk_full = |s: &Self| s.index.disk_full();
        while !self.outbox.is_empty() && t.elapsed() < limit && !disk_full(self) {
            std::thread::sleep(Duration::from_millis(1));
            self.drain_outbox(false)?;
        }
        Ok(())
    }

    fn drain_outbox(&mut self, block: bool) -> Result<(), SourceError> {
        while let Some(b) = self.outbox.pop_front() {
            if block {
                self.writer.send(b).map_err(|_| SourceError::WriterGone)?;
                continue;
            }
            match self.writer.try_send(b) {
                Ok(()) => {}
                Err(TrySendError::Full(b)) => {
                    self.outbox.push_front(b);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return Err(SourceError::WriterGone),
            }
        }
        Ok(())
    }
}

fn single(tp: &TopicPartition, offset: Option<i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    match offset {
        Some(o) => {
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(o));
        }
        None => {
            tpl.add_partition(&tp.topic, tp.partition);
        }
    }
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_buffers_come_in_four_sizes_per_power_of_two() {
        assert_eq!(size_class(1), FRAME_CAPACITY_FIRST);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 5120);
        // Frames of 1.44-1.5 MB plus headroom all take 1.5 MiB or 1.75 MiB.
        assert_eq!(size_class(1_530_000), 3 << 19);
        assert_eq!(size_class(3 << 19), 3 << 19);
        assert_eq!(size_class((3 << 19) + 1), 7 << 18);
        for n in [4097, 100_000, 1_530_000, 70_000_000] {
            let c = size_class(n);
            assert!(c >= n && c - n <= n / 4, "{n} -> {c}");
        }
    }

    fn opts(properties: &[(&str, &str)], group_instance_id: Option<&str>) -> SourceOptions {
        SourceOptions {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topics: vec!["t".into()],
            group_id: "g".into(),
            group_instance_id: group_instance_id.map(str::to_string),
            isolation_level: IsolationLevel::ReadCommitted,
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            batch_records_max: 1000,
            batch_duration: Duration::from_secs(1),
            batch_bytes_max: 1 << 20,
            poison: Rules {
                record_bytes_max: 1 << 20,
                oversized: crate::poison::Policy::Fail,
                text_line_break: None,
            },
            capacity_bytes_max: 1 << 30,
            resume_bytes: 1 << 29,
            prefetch_memory_bytes_max: 16 << 20,
            frame_version: FrameVersion::V2,
        }
    }

    /// Defaults that `[kafka.properties]` may override on purpose, besides every property the
    /// prefetch budget derives (`budget::PROPERTIES`).
    const OVERRIDABLE: [&str; 2] = ["partition.assignment.strategy", "statistics.interval.ms"];

    /// Regression: `session.timeout.ms` in `[kafka.properties]` (as `import-flume` wrote it
    /// from a Flume agent) was silently replaced by `kafka.session_timeout_ms`, and so were
    /// `max.poll.interval.ms` and `enable.partition.eof`. Every property set here must be
    /// refused by the config (`RESERVED_PROPERTIES`) or be a default the user may override.
    #[test]
    fn every_property_flumen_sets_is_reserved_or_overridable() {
        let cc = opts(&[], Some("a")).client_config();
        for key in cc.config_map().keys() {
            let reserved = crate::config::RESERVED_PROPERTIES
                .iter()
                .any(|(k, _)| k == key);
            assert!(
                reserved || OVERRIDABLE.contains(key) || budget::PROPERTIES.contains(key),
                "{key} is set by flumen but neither reserved nor overridable"
            );
        }
    }

    /// Regression (issue 11): the build had no OpenSSL and no SASL library, so a client with
    /// SASL_SSL failed with "OpenSSL not available at build time" and SCRAM or GSSAPI with "No
    /// provider for SASL mechanism". librdkafka checks both when the client is created, before
    /// it connects, so this needs no broker.
    #[test]
    fn a_client_with_tls_and_each_sasl_mechanism_is_created() {
        for (protocol, mechanism) in [
            ("SSL", None),
            ("SASL_SSL", Some("SCRAM-SHA-512")),
            ("SASL_SSL", Some("SCRAM-SHA-256")),
            ("SASL_SSL", Some("GSSAPI")),
            ("SASL_PLAINTEXT", Some("PLAIN")),
        ] {
            let mut props = vec![("security.protocol", protocol)];
            props.extend(mechanism.map(|m| ("sasl.mechanism", m)));
            if mechanism == Some("GSSAPI") {
                // librdkafka's kinit command needs a keytab; 0 keeps it from running kinit.
                props.extend([
                    ("sasl.kerberos.keytab", "/nonexistent/flumen.keytab"),
                    ("sasl.kerberos.principal", "flumen@EXAMPLE.COM"),
                    ("sasl.kerberos.min.time.before.relogin", "0"),
                ]);
            } else if mechanism.is_some() {
                props.extend([("sasl.username", "u"), ("sasl.password", "p4ssword")]);
            }
            let created: Result<BaseConsumer, _> = opts(&props, None).client_config().create();
            if let Err(e) = created {
                panic!("{protocol} {mechanism:?}: {e}");
            }
        }
    }

    #[test]
    fn group_instance_id_is_passed_only_when_configured() {
        assert_eq!(
            opts(&[], None).client_config().get("group.instance.id"),
            None
        );
        let cc = opts(&[], Some("c-1")).client_config();
        assert_eq!(cc.get("group.instance.id"), Some("c-1"));
    }

    /// The prefetch budget's properties reach the client, librdkafka accepts them (it refuses
    /// `fetch.max.bytes` below `message.max.bytes` at creation), and a property the user set
    /// keeps the user's value while the others adapt to it.
    #[test]
    fn the_prefetch_budget_sets_its_properties_unless_the_user_did() {
        let cc = opts(&[], None).client_config();
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("1638"));
        assert_eq!(cc.get("fetch.max.bytes"), Some("209715"));
        assert_eq!(cc.get("message.max.bytes"), Some("209715"));
        assert_eq!(cc.get("fetch.queue.backoff.ms"), Some("4"));
        let created: Result<BaseConsumer, _> = cc.create();
        assert!(created.is_ok(), "{:?}", created.err());
        let props = [
            ("message.max.bytes", "1000000"),
            ("queued.max.messages.kbytes", "8192"),
        ];
        let cc = opts(&props, None).client_config();
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("8192"));
        assert_eq!(cc.get("message.max.bytes"), Some("1000000"));
        assert_eq!(cc.get("fetch.max.bytes"), Some("1000000"));
        let created: Result<BaseConsumer, _> = cc.create();
        assert!(created.is_ok(), "{:?}", created.err());
    }

    #[test]
    fn cooperative_sticky_is_the_default_and_the_user_may_override_it() {
        let cc = opts(&[], None).client_config();
        assert_eq!(
            cc.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        let cc = opts(&[("partition.assignment.strategy", "range")], None).client_config();
        assert_eq!(cc.get("partition.assignment.strategy"), Some("range"));
    }
}
