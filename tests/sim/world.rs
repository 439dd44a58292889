//! The simulated world shared by every actor: Kafka, the members' channels (their local disks,
//! which survive kills), the assignment table, the run's report, and the deterministic
//! executor that polls actors in an order drawn from the seed.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use flumen::wal::TopicPartition;

use super::hdfs_model::{PendingOp, SimHdfs};
use super::kafka_model::{Batch, PartitionLog};
use super::rng::Rng;

pub const TOPIC: &str = "t";
pub const STATE: &str = "/state";

pub fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

pub fn final_path(p: i32, first: i64, last: i64) -> String {
    format!("/data/{TOPIC}/{p}/f-{first:020}-{last:020}")
}

/// File content: one line per record.
pub fn content(records: &[i64]) -> Vec<u8> {
    records
        .iter()
        .map(|o| format!("{o}\n"))
        .collect::<String>()
        .into_bytes()
}

/// A member's durable channel for one partition: batches in arrival order, each with a
/// sequence number (the legacy sink's reader cursor follows it).
#[derive(Debug, Clone, Default)]
pub struct Channel {
    pub batches: Vec<(u64, Batch)>,
    pub next_seq: u64,
}

impl Channel {
    pub fn append(&mut self, b: Batch) {
        self.batches.push((self.next_seq, b));
        self.next_seq += 1;
    }
    /// Following batches that continue from `end` without a hole (wal `chain_end`).
    pub fn chain_end(&self, end: i64) -> i64 {
        let mut end = end;
        loop {
            let before = end;
            for (_, b) in &self.batches {
                if b.start <= end + 1 && b.last > end {
                    end = b.last;
                }
            }
            if end == before {
                return end;
            }
        }
    }
    /// Up to `max` records chained from `next`, and the last offset covered.
    pub fn records_from(&self, next: i64, max: usize) -> Option<(Vec<i64>, i64)> {
        let mut cur = next;
        let mut out = Vec::new();
        let mut last = None;
        while out.len() < max {
            let Some((_, b)) = self
                .batches
                .iter()
                .find(|(_, b)| b.start <= cur && b.last >= cur)
            else {
                break;
            };
            for &r in b.records.iter().filter(|&&r| r >= cur) {
                if out.len() == max {
                    break;
                }
                out.push(r);
                last = Some(r);
            }
            cur = last.expect("a batch holds its last record") + 1;
        }
        last.map(|l| (out, l))
    }
    /// Deletes batches wholly at or below `end` (HDFS holds them).
    pub fn trim(&mut self, end: i64) {
        self.batches.retain(|(_, b)| b.last > end);
    }
}

#[derive(Debug, Clone)]
pub struct Halt {
    pub part: i32,
    pub member: usize,
    pub from: i64,
    pub through: i64,
    pub resolved: bool,
    pub operator_sent: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub halts: Vec<Halt>,
    /// Operator skips that the ledger accepted.
    pub skips: Vec<(i32, i64, i64)>,
    /// Errors that ended an actor (a process crash; the supervisor restarts it).
    pub crashes: Vec<String>,
    /// Findings that are violations by themselves (a halt the run should never need).
    pub alarms: Vec<String>,
    /// Ledger answers that contradict the ledger's state (a skip reported refused although it
    /// is in force); each fails the run.
    pub known_bugs: Vec<String>,
    /// Files the user moved: (from, to).
    pub moved: Vec<(String, String)>,
    /// Writes that failed because someone deleted or fenced the in-use file, per member.
    pub in_use_lost: HashMap<usize, u64>,
    /// Entries listed during each commit, per member (finding 10).
    pub listed_per_commit: Vec<u64>,
    pub commits: u64,
    /// Files a commit found late (an advance passed their horizon) and that were written
    /// again without one.
    pub late_rewrites: u64,
}

/// What an actor tells the driver.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Nothing to fetch and nothing to write.
    pub idle: bool,
    pub halted: bool,
    /// The next offset it will write.
    pub next: i64,
}

pub struct World {
    pub hdfs: SimHdfs,
    pub kafka: RefCell<BTreeMap<i32, PartitionLog>>,
    pub channels: RefCell<HashMap<(usize, i32), Channel>>,
    pub owner: RefCell<HashMap<i32, usize>>,
    pub report: RefCell<Report>,
    pub status: RefCell<HashMap<(usize, i32), Status>>,
    pub tokens: Arc<AtomicU64>,
    pub rng: RefCell<Rng>,
    /// The partition's first offset is fixed (genesis or the legacy first start): retention
    /// may move from now on without changing what the oracle expects.
    pub started: RefCell<HashMap<i32, i64>>,
    /// Records per file.
    pub roll_max: Cell<usize>,
    /// Records per fetch.
    pub fetch_max: Cell<usize>,
    /// Legacy: trim the channel before Activate (finding 7) with this per mille.
    pub legacy_trim_race: Cell<u64>,
    /// Legacy: auto_offset_reset = earliest (else latest).
    pub legacy_earliest: Cell<bool>,
    /// The relay's bounded reconcile attempt on assignment (10 s, in polls), retried after a
    /// modelled second; None: unbounded.
    pub reconcile_budget: Cell<Option<u64>>,
}

impl World {
    pub fn new(hdfs: SimHdfs, rng: Rng) -> Rc<Self> {
        Rc::new(Self {
            hdfs,
            kafka: RefCell::new(BTreeMap::new()),
            channels: RefCell::new(HashMap::new()),
            owner: RefCell::new(HashMap::new()),
            report: RefCell::new(Report::default()),
            status: RefCell::new(HashMap::new()),
            tokens: Arc::new(AtomicU64::new(1)),
            rng: RefCell::new(rng),
            started: RefCell::new(HashMap::new()),
            roll_max: Cell::new(5),
            fetch_max: Cell::new(4),
            legacy_trim_race: Cell::new(0),
            legacy_earliest: Cell::new(true),
            reconcile_budget: Cell::new(None),
        })
    }

    /// Seeded-counter tokens, `[0-9a-z]`, unique across every writer of the run.
    pub fn token_source(&self) -> Box<dyn Fn() -> String + Send + Sync> {
        let t = self.tokens.clone();
        Box::new(move || format!("k{}", t.fetch_add(1, Ordering::Relaxed)))
    }

    pub fn chance(&self, per_mille: u64) -> bool {
        self.rng.borrow_mut().chance(per_mille)
    }
    pub fn below(&self, n: u64) -> u64 {
        self.rng.borrow_mut().below(n)
    }

    pub fn owns(&self, m: usize, p: i32) -> bool {
        self.owner.borrow().get(&p) == Some(&m)
    }

    pub fn low(&self, p: i32) -> i64 {
        self.kafka.borrow()[&p].low
    }
    pub fn high(&self, p: i32) -> i64 {
        self.kafka.borrow()[&p].high
    }

    pub fn mark_started(&self, p: i32, start: i64) {
        self.started.borrow_mut().entry(p).or_insert(start);
    }

    pub fn channel<R>(&self, m: usize, p: i32, f: impl FnOnce(&mut Channel) -> R) -> R {
        f(self.channels.borrow_mut().entry((m, p)).or_default())
    }

    pub fn set_status(&self, key: (usize, i32), f: impl FnOnce(&mut Status)) {
        f(self.status.borrow_mut().entry(key).or_default())
    }

    pub fn crash(&self, who: String) {
        self.report.borrow_mut().crashes.push(who);
    }

    pub fn in_use_lost(&self, m: usize) {
        *self.report.borrow_mut().in_use_lost.entry(m).or_default() += 1;
    }

    /// Reports a halt, once per (member, partition, from).
    pub fn halt(&self, m: usize, p: i32, from: i64, through: i64) {
        let mut r = self.report.borrow_mut();
        if !r
            .halts
            .iter()
            .any(|h| h.member == m && h.part == p && h.from == from && !h.resolved)
        {
            r.halts.push(Halt {
                part: p,
                member: m,
                from,
                through,
                resolved: false,
                operator_sent: false,
            });
        }
    }

    pub fn resolve_halts(&self, m: usize, p: i32) {
        for h in self.report.borrow_mut().halts.iter_mut() {
            if h.member == m && h.part == p {
                h.resolved = true;
            }
        }
    }
}

/// Client ids: one per actor, so a scenario can see which call an actor is about to make.
pub fn client_id(m: usize, p: i32, replay: bool) -> u32 {
    (m as u32 + 1) * 100 + p as u32 + if replay { 50 } else { 0 }
}

pub type Task = Pin<Box<dyn Future<Output = Result<(), String>>>>;

pub struct Slot {
    pub name: String,
    pub member: usize,
    pub part: i32,
    /// An owner actor (not a replay, operator or scripted one).
    pub owner_actor: bool,
    pub client: u32,
    pub fut: Option<Task>,
    pub paused: bool,
    pub result: Option<Result<(), String>>,
}

/// Polls boxed futures with a noop waker; which one runs next is the caller's (seeded) choice.
#[derive(Default)]
pub struct Exec {
    pub slots: Vec<Slot>,
    pub polls: u64,
}

impl Exec {
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        member: usize,
        part: i32,
        owner_actor: bool,
        client: u32,
        fut: impl Future<Output = Result<(), String>> + 'static,
    ) -> usize {
        self.slots.push(Slot {
            name: name.into(),
            member,
            part,
            owner_actor,
            client,
            fut: Some(Box::pin(fut)),
            paused: false,
            result: None,
        });
        self.slots.len() - 1
    }

    pub fn live(&self, i: usize) -> bool {
        self.slots[i].fut.is_some()
    }

    pub fn runnable(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].fut.is_some() && !self.slots[i].paused)
            .collect()
    }

    /// Polls task `i` once; true when it finished.
    pub fn poll(&mut self, i: usize, hdfs: &SimHdfs) -> bool {
        self.polls += 1;
        hdfs.lock().tick();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let slot = &mut self.slots[i];
        let Some(fut) = slot.fut.as_mut() else {
            return true;
        };
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => {
                slot.fut = None;
                slot.result = Some(r);
                true
            }
            Poll::Pending => false,
        }
    }

    /// Drops the task at whatever await it is in.
    pub fn kill(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.fut.take().is_some() {
            slot.result = Some(Err("killed".into()));
        }
    }

    /// The call task `i` has announced and not yet had answered.
    pub fn pending(&self, i: usize, hdfs: &SimHdfs) -> Option<PendingOp> {
        hdfs.lock().pending.get(&self.slots[i].client).cloned()
    }
}

/// `tokio::time::timeout` in polls: Some(output), or None after `budget` polls (the inner
/// future is dropped where it stands, as a cancelled reconcile is).
pub struct Budget<F> {
    inner: Pin<Box<F>>,
    left: u64,
}

impl<F: Future> Future for Budget<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Pending,
        }
    }
}

pub fn budget<F: Future>(polls: u64, f: F) -> Budget<F> {
    Budget {
        inner: Box::pin(f),
        left: polls,
    }
}
