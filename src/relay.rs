//! Wires source -> channel writer -> sink -> commit into the `flumen run` daemon, and the
//! channel-only `replay`. Threads: the Kafka poll loop and the channel writer run on their own
//! OS threads (both block); the sink and HDFS I/O run on tokio.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch, Notify};

use crate::commit::{CommitError, Ledger, Position};
use crate::config::{OffsetReset, Settings};
use crate::events;
use crate::hdfs::{self, NativeHdfs};
use crate::health::Health;
use crate::kerberos;
use crate::repair::ChannelRepair;
use crate::sink::{self, Sink, SinkCommand, SinkOptions};
use crate::source::{KafkaConsumer, Ownership, Source, SourceError, SourceOptions, Start};
use crate::wal::{ChannelWriter, TopicPartition, Wal, WalError, WalIndex, WalOptions};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Channel(#[from] WalError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(
        "metrics.listen = {addr:?}: cannot listen there: {source} (each instance on a host \
         needs its own metrics.listen address, or \"\" to disable the endpoint)"
    )]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("a relay thread panicked")]
    Panic,
    #[error("the {0} thread stopped before shutdown")]
    ThreadStopped(&'static str),
}

pub fn wal_options(c: &Settings) -> WalOptions {
    WalOptions {
        dir: c.channel.dir.clone(),
        segment_bytes_max: c.channel.segment_bytes_max,
        group_commit_bytes_max: c.channel.group_commit_bytes_max,
    }
}

/// The production HDFS client with the config's retry policy.
pub fn native_hdfs(c: &Settings, health: Arc<Health>) -> Result<NativeHdfs, CommitError> {
    let client = hdfs::connect(&c.hdfs).map_err(|source| CommitError::Connect {
        url: c.hdfs.url.clone(),
        source,
    })?;
    Ok(NativeHdfs::new(
        Arc::new(client),
        c.hdfs.retry_backoff_max,
        health,
    ))
}

/// The ledger under the config's state directory.
pub fn ledger(c: &Settings, health: Arc<Health>) -> Result<Arc<Ledger<NativeHdfs>>, CommitError> {
    Ok(Arc::new(Ledger::new(
        Arc::new(native_hdfs(c, health)?),
        &c.hdfs.state_dir,
    )))
}

/// A reconciliation that has not answered this long offers a provisional start, so an HDFS
/// outage (even one that began before flumen started) fills the channel instead of idling.
const PROVISIONAL_AFTER: Duration = Duration::from_secs(2);

/// One partition's reconciliation in flight.
struct Reconciling {
    task: tokio::task::JoinHandle<Result<Position, String>>,
    since: Instant,
    /// The group's committed offset, once Kafka answered: never ahead of HDFS, because it is
    /// committed only after a file is renamed.
    group_offset: Arc<Mutex<Option<i64>>>,
}

/// Reconciles assigned partitions with HDFS and the channel for the source's poll thread, on
/// tokio tasks, so the poll loop keeps serving the group however long HDFS takes.
struct RelayOwnership {
    ledger: Arc<Ledger<NativeHdfs>>,
    index: Arc<WalIndex>,
    health: Arc<Health>,
    sink: mpsc::Sender<SinkCommand>,
    runtime: tokio::runtime::Handle,
    consumer: OnceLock<Arc<KafkaConsumer>>,
    earliest: bool,
    /// One reconciliation task per assigned partition still working out its start.
    tasks: Mutex<HashMap<TopicPartition, Reconciling>>,
    /// Partitions whose staging area was cleaned since they were assigned: a halted
    /// partition's later reconciliations must not delete this member's own in-use files.
    cleaned: Mutex<std::collections::HashSet<TopicPartition>>,
    /// Offsets the channel lost at open, on `/health` until HDFS holds them.
    repair: Arc<ChannelRepair>,
}

impl RelayOwnership {
    fn start_reconciling(&self, tp: &TopicPartition) -> Reconciling {
        let group_offset = Arc::new(Mutex::new(None));
        if let Some(consumer) = self.consumer.get().cloned() {
            let (slot, tp) = (group_offset.clone(), tp.clone());
            self.runtime.spawn_blocking(move || {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&tp.topic, tp.partition);
                if let Ok(c) = consumer.committed_offsets(tpl, Duration::from_secs(10)) {
                    if let Some(Offset::Offset(o)) = c
                        .find_partition(&tp.topic, tp.partition)
                        .map(|e| e.offset())
                    {
                        *slot.lock().expect("lock") = Some(o);
                    }
                }
            });
        }
        Reconciling {
            task: self.spawn_reconcile(tp),
            since: Instant::now(),
            group_offset,
        }
    }

    /// Where to fetch before the ledger answers: after the channel's own chain for the
    /// partition if it holds any, else the group's committed offset, else nowhere yet.
    fn provisional_start(&self, tp: &TopicPartition, r: &Reconciling) -> Option<i64> {
        if let Some(first) = self.index.next_start_after(tp, i64::MIN) {
            return Some(self.index.chain_end(tp, first - 1) + 1);
        }
        *r.group_offset.lock().expect("lock")
    }

    /// Reads the partition's ledger (delivering its tip if it waits, deleting earlier owners'
    /// in-use files) and, for a partition the ledger has never seen, fixes its genesis at the
    /// log start or end as `auto_offset_reset` says. Returns the position, `next` always set.
    /// HDFS calls
    /// retry forever inside; revocation aborts the task, which is safe at any await.
    fn spawn_reconcile(
        &self,
        tp: &TopicPartition,
    ) -> tokio::task::JoinHandle<Result<Position, String>> {
        let (ledger, tp) = (self.ledger.clone(), tp.clone());
        let clean = self.cleaned.lock().expect("lock").insert(tp.clone());
        let consumer = self.consumer.get().cloned();
        let earliest = self.earliest;
        let health = self.health.clone();
        self.runtime.spawn(async move {
            let refused = |e: CommitError| {
                // Not transient: the partition cannot start until an operator acts.
                if matches!(
                    e,
                    CommitError::Refused { .. } | CommitError::BadEntry { .. }
                ) {
                    health.set_halted(ledger_halt_key(&tp), Some(format!("partition {tp}: {e}")));
                }
                e.to_string()
            };
            ledger.refuse_version_1().await.map_err(refused)?;
            let mut pos = ledger.reconcile(&tp, clean).await.map_err(refused)?;
            let next = match pos.next {
                Some(next) => next,
                None => {
                    let consumer = consumer.ok_or("consumer not ready")?;
                    let t = tp.clone();
                    let (low, high) = tokio::task::spawn_blocking(move || {
                        consumer.fetch_watermarks(&t.topic, t.partition, Duration::from_secs(10))
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                    let start = if earliest { low } else { high };
                    let start = ledger.genesis(&tp, start).await.map_err(refused)?;
                    tracing::info!(partition = %tp, start, "genesis: the partition starts here");
                    start
                }
            };
            // A halt from an earlier attempt (a refused ledger) is over; a halt for data gone
            // from Kafka is not, and ends only when the partition delivers again.
            health.set_halted(ledger_halt_key(&tp), None);
            pos.next = Some(next);
            Ok(pos)
        })
    }
}

/// The /health key of a partition halted because its ledger refused it (the data-gone halt is
/// keyed by the partition itself): the two end on different events.
fn ledger_halt_key(tp: &TopicPartition) -> String {
    format!("{tp} ledger")
}

impl Ownership for RelayOwnership {
    fn assigned(&self, tp: &TopicPartition) -> Result<Option<Start>, String> {
        let mut tasks = self.tasks.lock().expect("lock");
        let r = tasks
            .entry(tp.clone())
            .or_insert_with(|| self.start_reconciling(tp));
        if !r.task.is_finished() {
            if r.since.elapsed() < PROVISIONAL_AFTER {
                return Ok(None);
            }
            return Ok(self.provisional_start(tp, r).map(Start::Provisional));
        }
        let r = tasks.remove(tp).expect("present above");
        let pos = self
            .runtime
            .block_on(r.task)
            .map_err(|e| format!("reconcile task: {e}"))??;
        let committed_end = pos.next.expect("the task sets next") - 1;
        let chain_end = self.index.chain_end(tp, committed_end);
        events::reconciled(tp, committed_end, chain_end, &pos);
        self.repair.delivered(tp, committed_end);
        self.sink
            .blocking_send(SinkCommand::Activate {
                tp: tp.clone(),
                committed_end,
            })
            .map_err(|_| "sink stopped".to_string())?;
        Ok(Some(Start::Confirmed(chain_end + 1)))
    }

    fn revoked(&self, tp: &TopicPartition) {
        if let Some(r) = self.tasks.lock().expect("lock").remove(tp) {
            r.task.abort();
        }
        self.cleaned.lock().expect("lock").remove(tp);
        self.repair.released(tp);
        self.health.set_halted(tp.to_string(), None);
        self.health.set_halted(ledger_halt_key(tp), None);
        let _ = self
            .sink
            .blocking_send(SinkCommand::Deactivate { tp: tp.clone() });
    }

    fn gone(&self, tp: &TopicPartition, from: i64, low: i64) {
        // The channel may hold part of the range (after a damaged stretch): only what neither
        // the channel nor Kafka holds is reported.
        let through = self
            .index
            .next_start_after(tp, from - 1)
            .map_or(low, |next| next.min(low))
            - 1;
        events::partition_halted(tp, from, through);
        self.health.set_halted(
            tp.to_string(),
            Some(format!(
                "partition {tp} halted: offsets {from}..={through} are gone from the channel and \
                 from Kafka; once HDFS holds everything before {from}, record the loss with \
                 `flumen ledger skip --topic {} --partition {} --from {from} --through {through}`",
                tp.topic, tp.partition
            )),
        );
    }

    fn resumed(&self, tp: &TopicPartition) {
        events::partition_resumed(tp);
        self.health.set_halted(tp.to_string(), None);
    }
}

/// Runs the daemon until `shutdown` resolves, then stops consuming, delivers what the channel
/// holds and returns. Errors are fatal for the process (the supervisor restarts it, and
/// recovery starts from the last durable point).
pub async fn run(config: Settings, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
    let health = Arc::new(Health::default());
    // The channel lock first: a second daemon on the same config must be refused for that,
    // not for the metrics port the first one holds.
    let wal = Wal::open(wal_options(&config))?;
    // Before /health is served, so it never says ready while lost offsets are outstanding.
    let repair = Arc::new(ChannelRepair::new(&wal.gaps, health.clone()));
    if let Some(addr) = config.metrics_listen {
        crate::http::serve(addr, health.clone())
            .await
            .map_err(|source| RelayError::Listen {
                addr: addr.to_string(),
                source,
            })?;
    }
    for d in &wal.damage {
        tracing::error!(segment = d.segment, path = %d.path.display(), byte_start = d.byte_start,
            byte_end = d.byte_end, reason = %d.reason, after = ?d.after,
            "damaged channel range; intact batches recovered, the rest is re-fetched from Kafka");
    }
    events::channel_recovered(&wal.damage, &wal.gaps);
    tracing::info!(
        batches = wal.batches_recovered,
        bytes = wal.index.bytes_total(),
        "channel opened"
    );
    let index = wal.index.clone();
    // Before the first HDFS call, so /health names a failing login rather than only the
    // failing calls it causes. It lives as long as the runtime.
    if let Some(k) = &config.hdfs.kerberos {
        tokio::spawn(kerberos::keeper::keep(
            kerberos::Login::new(k),
            health.clone(),
        ));
    }
    let ledger = ledger(&config, health.clone())?;

    // Each core thread reports here when it ends, whether it returned or panicked, so a dead
    // thread ends the process (non-zero) instead of leaving it alive and idle.
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<&'static str>();
    let appended = Arc::new(Notify::new());
    let (channel, batch_tx) = ChannelWriter::new(
        wal.writer,
        appended.clone(),
        config.channel.disk_free_bytes_min,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let health = health.clone();
        let ended = EndGuard(ended_tx.clone(), "channel writer");
        std::thread::Builder::new()
            .name("flumen-channel".into())
            .spawn(move || {
                let _ended = ended;
                let r = channel.run(|| stop.load(Ordering::Acquire));
                if let Err(e) = &r {
                    health.set_down(format!("channel writer stopped: {e}"));
                }
                r
            })
            .expect("spawn channel thread")
    };

    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let ownership = Arc::new(RelayOwnership {
        ledger: ledger.clone(),
        index: index.clone(),
        health: health.clone(),
        sink: cmd_tx,
        runtime: tokio::runtime::Handle::current(),
        consumer: OnceLock::new(),
        earliest: config.kafka.auto_offset_reset == OffsetReset::Earliest,
        tasks: Mutex::default(),
        cleaned: Mutex::default(),
        repair: repair.clone(),
    });
    let source = Source::new(
        SourceOptions::from_settings(&config),
        ownership.clone(),
        index.clone(),
        health.clone(),
        batch_tx,
    )?;
    let consumer = source.consumer();
    let _ = ownership.consumer.set(consumer.clone());

    let committed: Arc<Mutex<HashMap<TopicPartition, i64>>> = Arc::default();
    let on_commit = advisory_commit(consumer.clone(), committed.clone(), repair);
    let sink = Sink::new(
        SinkOptions::from_settings(&config),
        ledger,
        index.clone(),
        on_commit,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sink_task = tokio::spawn(sink::run(sink, cmd_rx, appended.clone(), stop_rx));
    spawn_lag_reporter(consumer.clone(), committed.clone());
    spawn_kafka_probe(
        consumer.clone(),
        health.clone(),
        config.kafka.topics[0].clone(),
    );

    let source_thread = {
        let stop = stop.clone();
        let health = health.clone();
        let ended = EndGuard(ended_tx, "kafka source");
        std::thread::Builder::new()
            .name("flumen-kafka".into())
            .spawn(move || {
                let _ended = ended;
                let r = source.run(|| stop.load(Ordering::Acquire));
                if let Err(e) = &r {
                    health.set_down(format!("kafka source stopped: {e}"));
                }
                r
            })
            .expect("spawn kafka thread")
    };

    tokio::pin!(shutdown);
    let (early, died) = tokio::select! {
        _ = &mut shutdown => (None, None),
        r = &mut sink_task => (Some(r), None),
        name = ended_rx.recv() => (None, name),
    };
    stop.store(true, Ordering::Release);
    let source_result = join(source_thread).await?;
    let writer_result = join(writer).await?;
    // The first thread to end is not always the one that failed: a dead Kafka thread drops
    // the batch queue, and the writer then ends cleanly, sometimes first. Name the failure.
    let died = died.map(|first| match (&source_result, &writer_result) {
        (Err(e), _) => ("kafka source", e.to_string()),
        (_, Err(e)) => ("channel writer", e.to_string()),
        _ => (first, "it returned before shutdown".to_string()),
    });
    if let Some((name, why)) = &died {
        tracing::error!(thread = name, error = %why, "a core thread stopped; shutting down");
    }
    let died = died.map(|(name, _)| name);
    appended.notify_one();
    let _ = stop_tx.send(true);
    let sink_result = match early {
        Some(r) => r,
        None => sink_task.await,
    }
    .map_err(|_| RelayError::Panic)?;
    writer_result?;
    source_result?;
    sink_result?;
    if let Some(name) = died {
        health.set_down(format!("the {name} thread stopped"));
        return Err(RelayError::ThreadStopped(name));
    }
    final_advisory_commit(consumer.clone(), &committed).await;
    // Leave the group cleanly now that every file is committed.
    consumer.unsubscribe();
    Ok(())
}

/// How long the last advisory commit may take at shutdown.
const FINAL_COMMIT_MAX: Duration = Duration::from_secs(10);

/// A last, synchronous advisory commit for the partitions still assigned: the asynchronous ones
/// may be in flight at exit, which leaves the group offset (the next start's provisional
/// position and the lag monitors' view) behind HDFS.
async fn final_advisory_commit(
    consumer: Arc<KafkaConsumer>,
    committed: &Mutex<HashMap<TopicPartition, i64>>,
) {
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for (tp, last) in committed.lock().expect("lock").iter() {
        if assigned.find_partition(&tp.topic, tp.partition).is_some() {
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(last + 1));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    let commit = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
    match tokio::time::timeout(FINAL_COMMIT_MAX, commit).await {
        Ok(Ok(Ok(()))) => tracing::debug!("final advisory offset commit done"),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "final advisory offset commit failed; the group offset lags HDFS (safe)")
        }
        _ => tracing::warn!(
            "final advisory offset commit did not finish; the group offset may lag HDFS (safe)"
        ),
    }
}

/// Sends its thread's name when dropped: on return and on panic alike.
struct EndGuard(mpsc::UnboundedSender<&'static str>, &'static str);

impl Drop for EndGuard {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

async fn join<T: Send + 'static>(t: std::thread::JoinHandle<T>) -> Result<T, RelayError> {
    tokio::task::spawn_blocking(move || t.join())
        .await
        .map_err(|_| RelayError::Panic)?
        .map_err(|_| RelayError::Panic)
}

/// After each commit: the advisory Kafka offset commit (lag monitoring only; HDFS is the
/// truth), and the committed end for the lag reporter.
fn advisory_commit(
    consumer: Arc<KafkaConsumer>,
    committed: Arc<Mutex<HashMap<TopicPartition, i64>>>,
    repair: Arc<ChannelRepair>,
) -> sink::OnCommit {
    Box::new(move |tp, last| {
        committed.lock().expect("lock").insert(tp.clone(), last);
        repair.delivered(tp, last);
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(last + 1));
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(partition = %tp, error = %e, "advisory offset commit failed");
            events::error(events::ErrorCode::KafkaCommit);
        }
    })
}

/// Every 15 s, reads the brokers' high watermarks for the partitions we committed to and
/// publishes end-to-end lag (records between the log end and the last offset in HDFS).
/// While `/health` doubts Kafka, asks the brokers for a topic's metadata every 10 s; an answer
/// clears the doubt. Without it, an idle topic stayed degraded after the brokers came back,
/// since only an arriving record cleared it.
fn spawn_kafka_probe(consumer: Arc<KafkaConsumer>, health: Arc<Health>, topic: String) {
    tokio::spawn(async move {
        // Runs for the life of the process.
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if !health.kafka_in_doubt() {
                continue;
            }
            let (c, t) = (consumer.clone(), topic.clone());
            let answered = tokio::task::spawn_blocking(move || {
                c.fetch_metadata(Some(&t), Duration::from_secs(5)).is_ok()
            })
            .await
            .unwrap_or(false);
            if answered {
                health.set_kafka_ok();
            }
        }
    });
}

fn spawn_lag_reporter(
    consumer: Arc<KafkaConsumer>,
    committed: Arc<Mutex<HashMap<TopicPartition, i64>>>,
) {
    tokio::spawn(async move {
        // Runs for the life of the process.
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            let snapshot: Vec<_> = committed
                .lock()
                .expect("lock")
                .clone()
                .into_iter()
                .collect();
            let consumer = consumer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for (tp, end) in snapshot {
                    if let Ok((_, high)) =
                        consumer.fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(5))
                    {
                        events::lag(&tp, high, end);
                    }
                }
            })
            .await;
        }
    });
}

/// Delivers every pending batch in a channel directory to HDFS through the same ledger,
/// without Kafka. Returns per-partition (committed end before, after).
///
/// Replay coordinates with a live daemon through the ledger alone: it never deletes staging
/// files (they may be the daemon's in-use files), and every range it commits is claimed with
/// the same compare-and-set, so whichever side claims a range first delivers it and the other
/// is fenced. A partition the ledger has never seen is refused: its start is unknown.
pub async fn replay(
    config: &Settings,
    dry_run: bool,
    progress: impl Fn(u64, u64),
) -> Result<Vec<(TopicPartition, i64, i64)>, RelayError> {
    let health = Arc::new(Health::default());
    let wal = Wal::open(wal_options(config))?;
    let index = wal.index.clone();
    let ledger = ledger(config, health)?;
    let mut plan = Vec::new();
    for tp in index.partitions() {
        let end = if dry_run {
            ledger.committed_end(&tp).await?
        } else {
            ledger.reconcile(&tp, false).await?.next.map(|n| n - 1)
        };
        let Some(committed_end) = end else {
            return Err(CommitError::Refused {
                tp,
                reason: "no genesis entry in the ledger, so its start is unknown; \
                         `flumen run` creates it on the partition's first assignment"
                    .into(),
            }
            .into());
        };
        plan.push((
            tp.clone(),
            committed_end,
            index.chain_end(&tp, committed_end),
        ));
    }
    if dry_run {
        return Ok(plan);
    }
    let on_commit: sink::OnCommit = Box::new(|_, _| {});
    let mut sink = Sink::new(
        SinkOptions::from_settings(config),
        ledger,
        index.clone(),
        on_commit,
    );
    for (tp, committed_end, _) in &plan {
        sink.handle(SinkCommand::Activate {
            tp: tp.clone(),
            committed_end: *committed_end,
        })
        .await?;
    }
    let total = index.bytes_total();
    let mut done = 0u64;
    loop {
        let n = sink.pump().await?;
        if n == 0 {
            break;
        }
        done += n as u64;
        progress(done, total);
    }
    sink.finish().await?;
    let ends = sink.committed_ends();
    drop(wal.writer);
    Ok(plan
        .into_iter()
        .map(|(tp, before, _)| {
            let after = ends.get(&tp).copied().unwrap_or(before);
            (tp, before, after)
        })
        .collect())
}
