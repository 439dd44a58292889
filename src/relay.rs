//! Wires source -> channel writer -> sink -> commit into the `flumen run` daemon, and the
//! channel-only `replay`. Threads: the Kafka poll loop and the channel writer run on their own
//! OS threads (both block); the sink and HDFS I/O run on tokio. One shutdown notice
//! (`crate::shutdown`) reaches every part; `ownership.rs` reconciles assigned partitions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::commit::{CommitError, Ledger};
use crate::completeness;
use crate::config::{OffsetReset, Settings};
use crate::events;
use crate::hdfs::{self, NativeHdfs};
use crate::health::Health;
use crate::kerberos;
use crate::repair::ChannelRepair;
use crate::shutdown::{Shutdown, Trigger};
use crate::sink::{self, Sink, SinkCommand, SinkOptions};
use crate::source::{KafkaConsumer, Source, SourceError, SourceOptions};
use crate::wal::{ChannelWriter, TopicPartition, Wal, WalError, WalOptions};

mod ownership;

use ownership::RelayOwnership;

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
        segment_version: c.channel.segment_version,
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

/// How long `run` waits, after the core parts ended, for the other parts (the HTTP server
/// finishing open requests, the lag reporter, the Kafka probe) to end.
const PARTS_STOP_MAX: Duration = Duration::from_secs(5);

/// Runs the daemon until `shutdown` resolves, then stops consuming, delivers what the channel
/// holds and returns once every part it started has ended. Errors are fatal for the process
/// (the supervisor restarts it, and recovery starts from the last durable point).
pub async fn run(config: Settings, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
    let mut trigger = Trigger::default();
    let result = run_until(config, shutdown, &mut trigger).await;
    // On an early error too: the notice goes out here if it has not, so nothing this run
    // started (a server on the metrics port, a lag query) outlives it.
    if !trigger.finished(PARTS_STOP_MAX).await {
        tracing::warn!(
            limit_s = PARTS_STOP_MAX.as_secs(),
            "some background tasks had not ended at shutdown"
        );
    }
    result
}

/// Opens the channel, starts every part with a listener of `trigger`, and stops them in order.
async fn run_until(
    config: Settings,
    shutdown: impl Future<Output = ()>,
    trigger: &mut Trigger,
) -> Result<(), RelayError> {
    let health = Arc::new(Health::default());
    // The channel lock first: a second daemon on the same config must be refused for that,
    // not for the metrics port the first one holds.
    let wal = Wal::open(wal_options(&config))?;
    // Before /health is served, so it never says ready while lost offsets are outstanding.
    let repair = Arc::new(ChannelRepair::new(&wal.gaps, health.clone()));
    if let Some(addr) = config.metrics_listen {
        crate::http::serve(addr, health.clone(), trigger.listener())
            .await
            .map_err(|source| RelayError::Listen {
                addr: addr.to_string(),
                source,
            })?;
    }
    report_recovery(&wal);
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
    let (ended_tx, ended_rx) = mpsc::unbounded_channel::<&'static str>();
    let appended = Arc::new(Notify::new());
    let (channel, batch_tx) = ChannelWriter::new(
        wal.writer,
        appended.clone(),
        config.channel.disk_free_bytes_min,
    );
    let writer = spawn_core(
        "flumen-channel",
        EndGuard(ended_tx.clone(), "channel writer"),
        health.clone(),
        trigger.listener(),
        move |stop| channel.run(stop),
    );

    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let ownership = Arc::new(RelayOwnership::new(
        ledger.clone(),
        index.clone(),
        health.clone(),
        cmd_tx,
        config.kafka.auto_offset_reset == OffsetReset::Earliest,
        repair.clone(),
    ));
    let source = Source::new(
        SourceOptions::from_settings(&config),
        ownership.clone(),
        index.clone(),
        health.clone(),
        batch_tx,
    )?;
    let consumer = source.consumer();
    ownership.set_consumer(consumer.clone());

    let committed: Arc<Mutex<HashMap<TopicPartition, i64>>> = Arc::default();
    let on_commit = advisory_commit(consumer.clone(), committed.clone(), repair);
    if let Some(c) = &config.hdfs.completeness {
        let markers = completeness::Markers {
            ledger: ledger.clone(),
            rule: c.rule,
            marker: c.marker.clone(),
            pending_dir: sink::late::pending_dir(&config.hdfs.state_dir),
            topics: config.kafka.topics.clone(),
            kafka: Arc::new(LogEnds(consumer.clone())),
        };
        tokio::spawn(completeness::run(markers, trigger.listener()));
    }
    let sink = Sink::new(
        SinkOptions::from_settings(&config),
        ledger,
        index.clone(),
        on_commit,
    );
    // The sink hears the notice only once the writer has ended (the relay drops
    // `writer_ended` then), so it drains everything the source handed over.
    let (writer_ended, gate) = oneshot::channel();
    let sink_listener = trigger.listener().after(gate);
    let sink_task = tokio::spawn(sink::run(sink, cmd_rx, appended.clone(), sink_listener));
    spawn_lag_reporter(consumer.clone(), committed.clone(), trigger.listener());
    spawn_kafka_probe(
        consumer.clone(),
        health.clone(),
        config.kafka.topics[0].clone(),
        trigger.listener(),
    );
    let source_thread = spawn_core(
        "flumen-kafka",
        EndGuard(ended_tx, "kafka source"),
        health.clone(),
        trigger.listener(),
        move |stop| source.run(stop),
    );

    let core = Core {
        source_thread,
        writer,
        writer_ended,
        sink_task,
        ended_rx,
        appended,
        health,
    };
    core.stop_after(shutdown, trigger).await?;
    final_advisory_commit(consumer.clone(), &committed).await;
    // Leave the group cleanly now that every file is committed.
    consumer.unsubscribe();
    Ok(())
}

/// Logs what recovery found in the channel.
fn report_recovery(wal: &Wal) {
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
}

/// Starts a core OS thread. It sees the shutdown notice through `stop`, reports its end
/// (returned or panicked) through `ended`, and puts its error on `/health`.
fn spawn_core<E: std::fmt::Display + Send + 'static>(
    thread: &str,
    ended: EndGuard,
    health: Arc<Health>,
    shutdown: Shutdown,
    body: impl FnOnce(&dyn Fn() -> bool) -> Result<(), E> + Send + 'static,
) -> std::thread::JoinHandle<Result<(), E>> {
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let name = ended.1;
            let _ended = ended;
            let shutdown = RefCell::new(shutdown);
            let r = body(&|| shutdown.borrow_mut().check());
            if let Err(e) = &r {
                health.set_down(format!("{name} stopped: {e}"));
            }
            r
        })
        .unwrap_or_else(|e| panic!("spawn {thread} thread: {e}"))
}

/// The running pipeline's parts that stop in order.
struct Core {
    source_thread: std::thread::JoinHandle<Result<(), SourceError>>,
    writer: std::thread::JoinHandle<Result<(), WalError>>,
    /// Dropped once the writer has ended: opens the sink's gate.
    writer_ended: oneshot::Sender<()>,
    sink_task: tokio::task::JoinHandle<Result<(), sink::SinkError>>,
    ended_rx: mpsc::UnboundedReceiver<&'static str>,
    appended: Arc<Notify>,
    health: Arc<Health>,
}

impl Core {
    /// Waits for `shutdown` or for a core part to end early, then stops the parts in order:
    /// the source stops polling and hands its pending batches to the writer, the writer drains
    /// and ends, then the sink drains what the channel holds and commits.
    async fn stop_after(
        mut self,
        shutdown: impl Future<Output = ()>,
        trigger: &mut Trigger,
    ) -> Result<(), RelayError> {
        tokio::pin!(shutdown);
        let (early, died) = tokio::select! {
            _ = &mut shutdown => (None, None),
            r = &mut self.sink_task => (Some(r), None),
            name = self.ended_rx.recv() => (None, name),
        };
        trigger.fire();
        let source_result = join(self.source_thread).await?;
        let writer_result = join(self.writer).await?;
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
        self.appended.notify_one();
        drop(self.writer_ended);
        let sink_result = match early {
            Some(r) => r,
            None => self.sink_task.await,
        }
        .map_err(|_| RelayError::Panic)?;
        writer_result?;
        source_result?;
        sink_result?;
        if let Some(name) = died {
            self.health.set_down(format!("the {name} thread stopped"));
            return Err(RelayError::ThreadStopped(name));
        }
        Ok(())
    }
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

/// While `/health` doubts Kafka, asks the brokers for a topic's metadata every 10 s; an answer
/// clears the doubt. Without it, an idle topic stayed degraded after the brokers came back,
/// since only an arriving record cleared it.
fn spawn_kafka_probe(
    consumer: Arc<KafkaConsumer>,
    health: Arc<Health>,
    topic: String,
    mut shutdown: Shutdown,
) {
    tokio::spawn(async move {
        // Runs until the shutdown notice.
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                _ = shutdown.recv() => return,
            }
            if !health.kafka_in_doubt() {
                continue;
            }
            let (c, t) = (consumer.clone(), topic.clone());
            let probe = tokio::task::spawn_blocking(move || {
                c.fetch_metadata(Some(&t), Duration::from_secs(5)).is_ok()
            });
            // Shutdown does not wait for the answer: it changes nothing once stopping.
            let answered = tokio::select! {
                r = probe => r.unwrap_or(false),
                _ = shutdown.recv() => return,
            };
            if answered {
                health.set_kafka_ok();
            }
        }
    });
}

/// The marker task's view of Kafka through the source's consumer (blocking calls, made on
/// the marker task's blocking threads, never on the poll thread).
struct LogEnds(Arc<KafkaConsumer>);

impl completeness::KafkaView for LogEnds {
    fn log_ends(&self, topic: &str) -> Result<Vec<(i32, i64)>, String> {
        let timeout = Duration::from_secs(10);
        let md = self
            .0
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| e.to_string())?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or("not in the metadata")?;
        if let Some(e) = t.error() {
            return Err(format!("{e:?}"));
        }
        t.partitions()
            .iter()
            .map(|p| {
                let (_, high) = self
                    .0
                    .fetch_watermarks(topic, p.id(), timeout)
                    .map_err(|e| e.to_string())?;
                Ok((p.id(), high))
            })
            .collect()
    }
}

/// Every 15 s, reads the brokers' high watermarks for the partitions we committed to and
/// publishes end-to-end lag (records between the log end and the last offset in HDFS).
fn spawn_lag_reporter(
    consumer: Arc<KafkaConsumer>,
    committed: Arc<Mutex<HashMap<TopicPartition, i64>>>,
    mut shutdown: Shutdown,
) {
    tokio::spawn(async move {
        // Runs until the shutdown notice.
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                _ = shutdown.recv() => return,
            }
            let snapshot: Vec<_> = committed
                .lock()
                .expect("lock")
                .clone()
                .into_iter()
                .collect();
            let consumer = consumer.clone();
            let report = tokio::task::spawn_blocking(move || {
                for (tp, end) in snapshot {
                    if let Ok((_, high)) =
                        consumer.fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(5))
                    {
                        events::lag(&tp, high, end);
                    }
                }
            });
            // Shutdown does not wait for the brokers (5 s per partition while they are away).
            tokio::select! {
                _ = report => {}
                _ = shutdown.recv() => return,
            }
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
    let mut watermarks = HashMap::new();
    for tp in index.partitions() {
        let end = if dry_run {
            ledger.committed_end(&tp).await?
        } else {
            let pos = ledger.reconcile(&tp, false).await?;
            watermarks.insert(tp.clone(), pos.watermark);
            pos.next.map(|n| n - 1)
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
            watermark: watermarks.get(tp).copied().flatten(),
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
