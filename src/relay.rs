//! Wires source -> channel writer -> sink -> commit into the `flumen run` daemon, and the
//! channel-only `replay`. Threads: the Kafka poll loop and the channel writer run on their own
//! OS threads (both block); the sink and HDFS I/O run on tokio.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch, Notify};

use crate::committer::{self, CommitError, Committer};
use crate::config::Config;
use crate::events;
use crate::health::Health;
use crate::sink::{self, Sink, SinkCommand, SinkOptions};
use crate::source::{KafkaConsumer, Ownership, Source, SourceError, SourceOptions};
use crate::wal::{
    log::disk_free_bytes, EncodedBatch, TopicPartition, Wal, WalError, WalIndex, WalOptions,
    WalWriter,
};

/// Batches queued between the poll thread and the channel writer. Small on purpose: the
/// channel on disk is the buffer, and a full queue pauses consumption.
const WRITER_QUEUE_BATCHES: usize = 8;

/// One reconciliation attempt on assignment may take this long before the poll loop moves on.
const RECONCILE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error("metrics listener {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("a relay thread panicked")]
    Panic,
}

pub fn wal_options(c: &Config) -> WalOptions {
    WalOptions {
        dir: c.channel.dir.clone(),
        segment_bytes_max: c.channel.segment_bytes_max,
        group_commit_bytes_max: c.channel.group_commit_bytes_max,
    }
}

pub fn committer(c: &Config, health: Arc<Health>) -> Result<Committer, CommitError> {
    let client = committer::connect(&c.hdfs.url, c.hdfs.user.as_deref())?;
    Ok(Committer::new(
        Arc::new(client),
        c.state_dir(),
        Duration::from_millis(c.hdfs.retry_backoff_max_ms),
        health,
    ))
}

/// The channel writer thread: group commit, disk-space checks, fatal on fsync errors.
fn run_writer(
    mut writer: WalWriter,
    rx: Receiver<EncodedBatch>,
    appended: Arc<Notify>,
    disk_free_bytes_min: u64,
    stop: Arc<AtomicBool>,
) -> Result<(), WalError> {
    let index = writer.index().clone();
    let group_max = writer.options().group_commit_bytes_max;
    let dir = writer.options().dir.clone();
    // Runs until the source drops its sender (shutdown).
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut bytes = group[0].frame.len();
        while bytes < group_max {
            match rx.try_recv() {
                Ok(b) => {
                    bytes += b.frame.len();
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        // Retries while the disk is full; the source sees `disk_full` and pauses. On shutdown
        // the unwritten group is dropped: it was never acknowledged, so its offsets were never
        // committed anywhere and the next run fetches it from Kafka again.
        loop {
            if stop.load(Ordering::Acquire) && index.disk_full.load(Ordering::Acquire) {
                tracing::warn!(batches = group.len(), "shutting down with the channel disk full; unwritten batches will be fetched again");
                return Ok(());
            }
            let low = disk_free_bytes(&dir).is_some_and(|free| free < disk_free_bytes_min);
            if low {
                mark_disk_full(&index, true, "free space below channel.disk_free_bytes_min");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            let began = Instant::now();
            match writer.append(&group) {
                Ok(()) => {
                    events::channel_appended(group.len(), bytes, began.elapsed());
                    mark_disk_full(&index, false, "");
                    appended.notify_one();
                    break;
                }
                Err(WalError::NoSpace { .. }) => {
                    mark_disk_full(&index, true, "write failed with ENOSPC");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn mark_disk_full(index: &WalIndex, full: bool, why: &str) {
    let was = index.disk_full.swap(full, Ordering::AcqRel);
    if full && !was {
        tracing::warn!(
            reason = why,
            "channel disk full; consumption pauses until space returns"
        );
        events::error(events::ErrorCode::DiskFull);
    } else if !full && was {
        tracing::info!("channel disk has space again");
    }
}

/// Reconciles assigned partitions with HDFS and the channel, for the source's poll thread.
struct RelayOwnership {
    committer: Committer,
    index: Arc<WalIndex>,
    sink: mpsc::Sender<SinkCommand>,
    runtime: tokio::runtime::Handle,
    consumer: OnceLock<Arc<KafkaConsumer>>,
    earliest: bool,
}

impl Ownership for RelayOwnership {
    fn assigned(&self, tp: &TopicPartition) -> Result<i64, String> {
        // Bounded, so the poll thread keeps serving the group while HDFS is unreachable; the
        // source retries every second and the partition stays paused until this succeeds.
        let r = self
            .runtime
            .block_on(async {
                tokio::time::timeout(RECONCILE_ATTEMPT_TIMEOUT, self.committer.reconcile(tp)).await
            })
            .map_err(|_| format!("HDFS did not answer within {RECONCILE_ATTEMPT_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let mut committed_end = r.committed_end;
        if committed_end < 0 && self.index.chain_end(tp, -1) < 0 {
            // No history anywhere: start where auto_offset_reset says, at a real offset so the
            // first file's range starts at the first offset that exists.
            let consumer = self.consumer.get().ok_or("consumer not ready")?;
            let (low, high) = consumer
                .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            committed_end = if self.earliest { low } else { high } - 1;
        }
        let chain_end = self.index.chain_end(tp, committed_end);
        tracing::info!(partition = %tp, committed_end, channel_end = chain_end,
            rolled_forward = r.rolled_forward, temps_deleted = r.temps_deleted, "reconciled");
        self.sink
            .blocking_send(SinkCommand::Activate {
                tp: tp.clone(),
                committed_end,
            })
            .map_err(|_| "sink stopped".to_string())?;
        Ok(chain_end + 1)
    }

    fn revoked(&self, tp: &TopicPartition) {
        let _ = self
            .sink
            .blocking_send(SinkCommand::Deactivate { tp: tp.clone() });
    }

    fn ownership_known(&self) {
        let _ = self.sink.blocking_send(SinkCommand::OwnershipKnown);
    }
}

/// Runs the daemon until `shutdown` resolves, then stops consuming, delivers what the channel
/// holds and returns. Errors are fatal for the process (the supervisor restarts it, and
/// recovery starts from the last durable point).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
    let health = Arc::new(Health::default());
    if !config.metrics.listen.is_empty() {
        let addr = config.metrics.listen.parse().expect("validated");
        crate::http::serve(addr, health.clone())
            .await
            .map_err(|source| RelayError::Listen {
                addr: config.metrics.listen.clone(),
                source,
            })?;
    }
    let wal = Wal::open(wal_options(&config))?;
    for d in &wal.damage {
        tracing::error!(segment = d.segment, path = %d.path.display(), byte_start = d.byte_start,
            byte_end = d.byte_end, reason = %d.reason, after = ?d.after,
            "damaged channel range; intact batches recovered, the rest is re-fetched from Kafka");
    }
    tracing::info!(
        batches = wal.batches_recovered,
        bytes = wal.index.bytes_total(),
        "channel opened"
    );
    let index = wal.index.clone();
    let committer = committer(&config, health.clone())?;

    let appended = Arc::new(Notify::new());
    let (batch_tx, batch_rx) = sync_channel(WRITER_QUEUE_BATCHES);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let appended = appended.clone();
        let min = config.channel.disk_free_bytes_min;
        let health = health.clone();
        let w = wal.writer;
        std::thread::Builder::new()
            .name("flumen-channel".into())
            .spawn(move || {
                let r = run_writer(w, batch_rx, appended, min, stop);
                if let Err(e) = &r {
                    health.set_down(e.to_string());
                }
                r
            })
            .expect("spawn channel thread")
    };

    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let ownership = Arc::new(RelayOwnership {
        committer: committer.clone(),
        index: index.clone(),
        sink: cmd_tx,
        runtime: tokio::runtime::Handle::current(),
        consumer: OnceLock::new(),
        earliest: config.kafka.auto_offset_reset == "earliest",
    });
    let source = Source::new(
        SourceOptions::from_config(&config),
        ownership.clone(),
        index.clone(),
        health.clone(),
        batch_tx,
    )?;
    let consumer = source.consumer();
    let _ = ownership.consumer.set(consumer.clone());

    let committed: Arc<Mutex<HashMap<TopicPartition, i64>>> = Arc::default();
    let on_commit: sink::OnCommit = {
        let consumer = consumer.clone();
        let committed = committed.clone();
        Box::new(move |tp, last| {
            committed.lock().expect("lock").insert(tp.clone(), last);
            let mut tpl = TopicPartitionList::new();
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(last + 1));
            // Advisory: HDFS is the source of truth, so a failed commit only delays lag data.
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(partition = %tp, error = %e, "advisory offset commit failed");
                events::error(events::ErrorCode::KafkaCommit);
            }
        })
    };
    let sink = Sink::new(
        SinkOptions::from_config(&config),
        committer,
        index.clone(),
        on_commit,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sink_task = tokio::spawn(sink::run(sink, cmd_rx, appended.clone(), stop_rx));
    spawn_lag_reporter(consumer.clone(), committed);

    let source_thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("flumen-kafka".into())
            .spawn(move || source.run(|| stop.load(Ordering::Acquire)))
            .expect("spawn kafka thread")
    };

    tokio::pin!(shutdown);
    let early = tokio::select! {
        _ = &mut shutdown => None,
        r = &mut sink_task => Some(r),
    };
    stop.store(true, Ordering::Release);
    let source_result = tokio::task::spawn_blocking(move || source_thread.join())
        .await
        .map_err(|_| RelayError::Panic)?
        .map_err(|_| RelayError::Panic)?;
    let writer_result = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| RelayError::Panic)?
        .map_err(|_| RelayError::Panic)?;
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
    // Leave the group cleanly now that every file is committed.
    consumer.unsubscribe();
    Ok(())
}

/// Every 15 s, reads the brokers' high watermarks for the partitions we committed to and
/// publishes end-to-end lag (records between the log end and the last offset in HDFS).
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

/// Delivers every pending batch in a channel directory to HDFS through the same commit
/// protocol, without Kafka. Returns per-partition (committed end before, after).
pub async fn replay(
    config: &Config,
    dry_run: bool,
    progress: impl Fn(u64, u64),
) -> Result<Vec<(TopicPartition, i64, i64)>, RelayError> {
    let health = Arc::new(Health::default());
    let wal = Wal::open(wal_options(config))?;
    let index = wal.index.clone();
    let committer = committer(config, health)?;
    let mut plan = Vec::new();
    for tp in index.partitions() {
        let r = if dry_run {
            committer::Reconciled {
                committed_end: committer
                    .committed_end(&tp)
                    .await?
                    .map_or(-1, |c| c.last_offset),
                ..Default::default()
            }
        } else {
            committer.reconcile(&tp).await?
        };
        plan.push((
            tp.clone(),
            r.committed_end,
            index.chain_end(&tp, r.committed_end),
        ));
    }
    if dry_run {
        return Ok(plan);
    }
    let on_commit: sink::OnCommit = Box::new(|_, _| {});
    let mut sink = Sink::new(
        SinkOptions::from_config(config),
        committer,
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
    sink.handle(SinkCommand::OwnershipKnown).await?;
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
    sink.roll_all().await?;
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
