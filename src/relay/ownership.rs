//! The source's `Ownership` for `flumen run`: reconciles each assigned partition with the
//! HDFS ledger and the channel on tokio tasks (aborted on revocation), offers a provisional
//! start while HDFS is slow, fixes a new partition's genesis from the Kafka watermarks, and
//! halts a partition whose data is gone. It lives in `relay` because it joins the source to
//! `commit` and `sink`, which the source itself must never import.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::commit::{CommitError, Ledger, Position};
use crate::events;
use crate::hdfs::NativeHdfs;
use crate::health::Health;
use crate::repair::ChannelRepair;
use crate::sink::SinkCommand;
use crate::source::{KafkaConsumer, Ownership, Start};
use crate::wal::{TopicPartition, WalIndex};

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
pub(super) struct RelayOwnership {
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
    cleaned: Mutex<HashSet<TopicPartition>>,
    /// Offsets the channel lost at open, on `/health` until HDFS holds them.
    repair: Arc<ChannelRepair>,
}

impl RelayOwnership {
    /// Runs its reconciliations on the current tokio runtime; the consumer comes later
    /// ([`RelayOwnership::set_consumer`]), since the source that owns it needs this first.
    pub(super) fn new(
        ledger: Arc<Ledger<NativeHdfs>>,
        index: Arc<WalIndex>,
        health: Arc<Health>,
        sink: mpsc::Sender<SinkCommand>,
        earliest: bool,
        repair: Arc<ChannelRepair>,
    ) -> Self {
        RelayOwnership {
            ledger,
            index,
            health,
            sink,
            runtime: tokio::runtime::Handle::current(),
            consumer: OnceLock::new(),
            earliest,
            tasks: Mutex::default(),
            cleaned: Mutex::default(),
            repair,
        }
    }

    pub(super) fn set_consumer(&self, consumer: Arc<KafkaConsumer>) {
        let _ = self.consumer.set(consumer);
    }

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
                watermark: pos.watermark,
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
