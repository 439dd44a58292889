//! The claim ledger: per partition, a chain of slots `[first, last]` that is never undone.
//! `wal-format.md` §6 specifies it and §7 analyses a crash at every step; keep them in step.
//!
//! The three rules everything rests on:
//! 1. A slot is created only by renaming a fully built staging directory onto its name
//!    (`rename2` without overwrite), so a slot is never observable half-written, and two writers
//!    can never both own the range starting at one offset.
//! 2. Only the tip (the slot with the highest first offset) may be undelivered: a writer
//!    delivers its claim before it claims the next range, and a reconciler delivers the tip
//!    before anyone writes on. So a writer whose fresh claim is not the tip when it looks
//!    again must not deliver it (it is fenced: its claim is either delivered by the
//!    reconciler that wrote after it, or a stray in a slot that garbage collection freed).
//! 3. Nothing is inferred from final files, which other processes may move or delete: a
//!    claim is undelivered exactly while its data file sits inside its slot.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hdfs_native::HdfsError;

mod watermark;

pub use watermark::{Marks, Tip};

use super::naming::{self, EntryKind, EntryMeta, PartitionPaths};
use super::CommitError;
use crate::hdfs::{Entry, Hdfs};
use crate::wal::TopicPartition;

/// Slots kept by garbage collection. Fencing needs only the tip (rule 2); the rest are kept so
/// an operator can see the recent history.
pub const SLOTS_KEPT: usize = 8;
/// Final directories remembered as existing, so a commit usually needs no `mkdirs`.
const DIRS_CACHED_MAX: usize = 4096;
/// Attempts at a step that can lose a race with a concurrent cleaner before we report it.
const RACE_ATTEMPTS_MAX: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The range is in HDFS under its final name, exactly once.
    Committed,
    /// Another writer holds this range or a later one; our file is not delivered by us.
    Fenced,
    /// The partition's watermark reached the file's horizon before the claim (an idle
    /// advance the writer did not know): its records are late, so it is not claimed and the
    /// writer writes the range again knowing the watermark (`wal-format.md` §6.6).
    Late,
}

/// What reconciliation found for a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// The first offset the next claim must start at; None when the partition has no genesis.
    pub next: Option<i64>,
    /// The tip was undelivered and is delivered now (a crash between claim and rename).
    pub rolled_forward: bool,
    /// Staging directories (in-use files of dead, fenced or zombie writers) deleted.
    pub staging_deleted: usize,
    /// The partition's event-time watermark (ms) as the tip entry records it, if any.
    pub watermark: Option<i64>,
}

/// An in-use file in the staging area.
pub struct Staged<W> {
    pub writer: W,
    pub token: String,
    pub path: String,
}

/// Where a file claim's data is.
enum ClaimState {
    Delivered,
    Waiting { data: String, final_path: String },
}

/// Makes the unique token of each staging directory.
pub type TokenSource = Box<dyn Fn() -> String + Send + Sync>;

pub struct Ledger<H: Hdfs> {
    hdfs: Arc<H>,
    root: String,
    dirs_made: Mutex<HashSet<String>>,
    tokens: TokenSource,
}

fn hdfs_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(HdfsError) -> CommitError + 'a {
    move |source| CommitError::Hdfs {
        op,
        path: path.into(),
        source,
    }
}

/// The slots of a listing, sorted by first offset.
fn slots_of(listing: &[Entry]) -> Vec<i64> {
    let mut slots: Vec<i64> = listing
        .iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| naming::parse_slot(e.name()))
        .collect();
    slots.sort_unstable();
    slots
}

impl<H: Hdfs> Ledger<H> {
    /// A ledger under `<state_dir>/ledger`.
    pub fn new(hdfs: Arc<H>, state_dir: &str) -> Self {
        Self {
            hdfs,
            root: format!("{state_dir}/ledger"),
            dirs_made: Mutex::new(HashSet::new()),
            tokens: Box::new(naming::new_token),
        }
    }

    /// Replaces the random tokens with `tokens` (the simulation's seeded ones). Tokens must be
    /// unique across every writer of the ledger, and made of `[0-9a-z]`.
    pub fn with_tokens(mut self, tokens: TokenSource) -> Self {
        self.tokens = tokens;
        self
    }

    pub fn hdfs(&self) -> &Arc<H> {
        &self.hdfs
    }

    fn paths(&self, tp: &TopicPartition) -> PartitionPaths {
        PartitionPaths::new(&self.root, tp)
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>, CommitError> {
        match self.hdfs.list(dir).await {
            Ok(l) => Ok(l),
            Err(HdfsError::FileNotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(hdfs_err("list", dir)(e)),
        }
    }

    async fn exists(&self, path: &str) -> Result<bool, CommitError> {
        match self.hdfs.stat(path).await {
            Ok(_) => Ok(true),
            Err(HdfsError::FileNotFound(_)) => Ok(false),
            Err(e) => Err(hdfs_err("stat", path)(e)),
        }
    }

    async fn mkdirs(&self, dir: &str) -> Result<(), CommitError> {
        self.hdfs.mkdirs(dir).await.map_err(hdfs_err("mkdirs", dir))
    }

    /// Creates `dir` unless this process already made it (`fresh` ignores the cache).
    async fn ensure_dir(&self, dir: &str, fresh: bool) -> Result<(), CommitError> {
        if !fresh && self.dirs_made.lock().expect("lock").contains(dir) {
            return Ok(());
        }
        self.mkdirs(dir).await?;
        let mut made = self.dirs_made.lock().expect("lock");
        if made.len() >= DIRS_CACHED_MAX {
            made.clear();
        }
        made.insert(dir.to_string());
        Ok(())
    }

    /// The entry meta of a slot (its single `v1.*` child), or None when the slot is absent.
    async fn read_meta(&self, slot: &str) -> Result<Option<EntryMeta>, CommitError> {
        let children = self.list(slot).await?;
        if children.is_empty() {
            return Ok(None);
        }
        let metas: Vec<_> = children
            .iter()
            .filter_map(|e| EntryMeta::parse(e.name()))
            .collect();
        match metas.as_slice() {
            [one] => Ok(Some(one.clone())),
            _ => Err(CommitError::BadEntry {
                path: slot.into(),
                reason: format!("expected one v1.* entry, found {}", children.len()),
            }),
        }
    }

    /// Walks a file claim's meta directory down to its data file (undelivered) or to an empty
    /// directory (delivered). The directories below the meta mirror the final path.
    async fn claim_state(&self, slot: &str, meta: &EntryMeta) -> Result<ClaimState, CommitError> {
        let mut cur = format!("{slot}/{}", meta.name());
        let mut final_path = String::new();
        // Bounded by the final path's depth.
        loop {
            let children = self.list(&cur).await?;
            let Some(child) = children.first() else {
                return Ok(ClaimState::Delivered);
            };
            final_path.push('/');
            final_path.push_str(child.name());
            if !child.is_dir {
                return Ok(ClaimState::Waiting {
                    data: child.path.clone(),
                    final_path,
                });
            }
            cur = child.path.clone();
        }
    }

    /// The tip slot and its meta. A listing can be stale by the time the tip is read: a fast
    /// writer may have committed past it and garbage-collected it. Then the listing is taken
    /// again; it can only move forward.
    async fn read_tip(&self, p: &PartitionPaths) -> Result<Option<(i64, EntryMeta)>, CommitError> {
        for _ in 0..RACE_ATTEMPTS_MAX {
            let slots = slots_of(&self.list(&p.dir).await?);
            let Some(&first) = slots.last() else {
                return Ok(None);
            };
            if let Some(meta) = self.read_meta(&p.slot(first)).await? {
                return Ok(Some((first, meta)));
            }
        }
        Err(CommitError::BadEntry {
            path: p.dir.clone(),
            reason: "the tip slot kept vanishing while it was read".into(),
        })
    }

    async fn read_start(&self, p: &PartitionPaths) -> Result<Option<i64>, CommitError> {
        Ok(self.read_meta(&p.genesis()).await?.map(|m| m.offset))
    }

    /// Re-derives a partition's position from the ledger: delivers the tip if its data still
    /// waits (roll forward), and with `clean` deletes every staging directory (in-use files of
    /// earlier owners; deleting fences a zombie still writing one). Idempotent, and safe to
    /// cancel or crash at any await.
    pub async fn reconcile(
        &self,
        tp: &TopicPartition,
        clean: bool,
    ) -> Result<Position, CommitError> {
        let p = self.paths(tp);
        let mut pos = Position::default();
        match self.read_tip(&p).await? {
            Some((first, meta)) => {
                let slot = p.slot(first);
                if meta.kind == EntryKind::File {
                    if let ClaimState::Waiting { data, final_path } =
                        self.claim_state(&slot, &meta).await?
                    {
                        self.deliver(tp, first, meta.offset, &data, &final_path)
                            .await?;
                        crate::crash_site!("reconcile-after-roll-forward");
                        pos.rolled_forward = true;
                    }
                }
                pos.next = Some(meta.offset + 1);
                pos.watermark = meta.watermark;
            }
            None => {
                let start = self.read_meta(&p.genesis()).await?;
                pos.next = start.as_ref().map(|m| m.offset);
                pos.watermark = start.and_then(|m| m.watermark);
            }
        }
        if clean {
            for e in self.list(&p.staging_root()).await? {
                self.hdfs
                    .delete(&e.path, true)
                    .await
                    .map_err(hdfs_err("delete", &e.path))?;
                pos.staging_deleted += 1;
            }
        }
        Ok(pos)
    }

    /// Fixes the partition's first offset at `start` unless another member fixed it first;
    /// returns the offset that holds.
    pub async fn genesis(&self, tp: &TopicPartition, start: i64) -> Result<i64, CommitError> {
        let p = self.paths(tp);
        for _ in 0..RACE_ATTEMPTS_MAX {
            if let Some(g) = self.read_start(&p).await? {
                return Ok(g);
            }
            let token = (self.tokens)();
            let meta = EntryMeta::new(EntryKind::Start, start, token.clone());
            let staged = p.staging(&token);
            self.mkdirs(&format!("{staged}/{}", meta.name())).await?;
            crate::crash_site!("genesis-before-claim");
            match self.hdfs.rename(&staged, &p.genesis()).await {
                Ok(()) => return Ok(start),
                // Taken by another member, or our own rename's lost response: read it back.
                Err(HdfsError::AlreadyExists(_) | HdfsError::FileNotFound(_)) => {
                    self.discard(tp, &token).await?;
                }
                Err(e) => return Err(hdfs_err("rename", &staged)(e)),
            }
        }
        Err(CommitError::Refused {
            tp: tp.clone(),
            reason: "could not create or read the genesis entry".into(),
        })
    }

    /// Creates a fresh in-use file in the partition's staging area.
    pub async fn open(&self, tp: &TopicPartition) -> Result<Staged<H::Writer>, CommitError> {
        let p = self.paths(tp);
        for _ in 0..RACE_ATTEMPTS_MAX {
            let token = (self.tokens)();
            let path = p.staged_data(&token);
            match self.hdfs.create(&path).await {
                Ok(writer) => {
                    return Ok(Staged {
                        writer,
                        token,
                        path,
                    })
                }
                // Our create applied but its response was lost: we hold no writer for it.
                Err(HdfsError::AlreadyExists(_)) => self.discard(tp, &token).await?,
                Err(e) => return Err(hdfs_err("create", &path)(e)),
            }
        }
        Err(CommitError::Refused {
            tp: tp.clone(),
            reason: "could not create an in-use file".into(),
        })
    }

    /// Deletes one of our staging directories (an abandoned or fenced file).
    pub async fn discard(&self, tp: &TopicPartition, token: &str) -> Result<(), CommitError> {
        let staged = self.paths(tp).staging(token);
        self.hdfs
            .delete(&staged, true)
            .await
            .map(|_| ())
            .map_err(hdfs_err("delete", &staged))
    }

    /// Token of the slot at `first`, if the slot exists.
    async fn slot_token(
        &self,
        p: &PartitionPaths,
        first: i64,
    ) -> Result<Option<String>, CommitError> {
        Ok(self.read_meta(&p.slot(first)).await?.map(|m| m.token))
    }

    /// Renames our built staging directory onto the slot at `first` (the compare-and-set), then
    /// checks it is the tip. Returns false when fenced; the staging directory is then gone.
    async fn claim(
        &self,
        tp: &TopicPartition,
        token: &str,
        first: i64,
    ) -> Result<bool, CommitError> {
        let p = self.paths(tp);
        let staged = p.staging(token);
        match self.hdfs.rename(&staged, &p.slot(first)).await {
            Ok(()) => {}
            Err(HdfsError::AlreadyExists(_)) => {
                self.discard(tp, token).await?;
                return Ok(false);
            }
            // Our rename's lost response, or a reconciler deleted our staging directory.
            Err(HdfsError::FileNotFound(_)) => {
                if self.slot_token(&p, first).await?.as_deref() != Some(token) {
                    self.discard(tp, token).await?;
                    return Ok(false);
                }
            }
            Err(e) => return Err(hdfs_err("rename", &staged)(e)),
        }
        crate::crash_site!("commit-after-claim");
        // Rule 2: a later slot means our view was stale.
        let slots = slots_of(&self.list(&p.dir).await?);
        if slots.last().is_some_and(|&tip| tip > first) {
            return Ok(false);
        }
        self.collect_garbage(&p, &slots).await?;
        Ok(true)
    }

    /// Commits a closed in-use file holding `[first, last]`: moves it into a claim, claims the
    /// slot at `first`, and renames it to `final_path`. The caller commits the advisory Kafka
    /// offset afterwards. `marks` carry the file's event times: the claim records the
    /// partition's watermark, and with `marks.seal` the predecessor entry is sealed first
    /// (`wal-format.md` §6.6), which may find the file late.
    pub async fn commit(
        &self,
        tp: &TopicPartition,
        token: &str,
        first: i64,
        last: i64,
        final_path: &str,
        marks: Marks,
    ) -> Result<CommitOutcome, CommitError> {
        let p = self.paths(tp);
        let mut before = marks.before_ms;
        if marks.seal {
            match self.seal(tp, first, token, marks.horizon_ms).await? {
                watermark::Sealed::At(w) => {
                    crate::crash_site!("commit-after-seal");
                    before = before.max(w)
                }
                watermark::Sealed::Fenced => {
                    self.discard(tp, token).await?;
                    return Ok(CommitOutcome::Fenced);
                }
                watermark::Sealed::Late => {
                    self.discard(tp, token).await?;
                    return Ok(CommitOutcome::Late);
                }
            }
        }
        let meta = EntryMeta {
            watermark: before.max(marks.file_max_ms),
            ..EntryMeta::new(EntryKind::File, last, token.into())
        };
        let held = format!("{}/{}{final_path}", p.staging(token), meta.name());
        self.mkdirs(naming::parent(&held)).await?;
        crate::crash_site!("commit-mid-claim");
        let data = p.staged_data(token);
        // Fails when a reconciler deleted our staging directory: we are fenced. The mkdirs
        // above may have re-created an empty one; it holds no data and is deleted here.
        if let Err(e) = self.hdfs.rename(&data, &held).await {
            if !matches!(e, HdfsError::FileNotFound(_)) || !self.exists(&held).await? {
                self.discard(tp, token).await?;
                return match e {
                    HdfsError::FileNotFound(_) => Ok(CommitOutcome::Fenced),
                    e => Err(hdfs_err("rename", &data)(e)),
                };
            }
        }
        crate::crash_site!("commit-before-claim");
        if !self.claim(tp, token, first).await? {
            return Ok(CommitOutcome::Fenced);
        }
        crate::crash_site!("commit-before-rename");
        let in_slot = format!("{}/{}{final_path}", p.slot(first), meta.name());
        self.deliver(tp, first, last, &in_slot, final_path).await?;
        Ok(CommitOutcome::Committed)
    }

    /// Renames a claim's data file to its final path. Someone else having done it (the source
    /// is gone) is success; a foreign file at the final path halts with `FinalOccupied`.
    async fn deliver(
        &self,
        tp: &TopicPartition,
        first: i64,
        last: i64,
        data: &str,
        final_path: &str,
    ) -> Result<(), CommitError> {
        let dir = naming::parent(final_path);
        self.ensure_dir(dir, false).await?;
        for _ in 0..RACE_ATTEMPTS_MAX {
            match self.hdfs.rename(data, final_path).await {
                Ok(()) => return Ok(()),
                Err(HdfsError::AlreadyExists(_)) => {
                    return Err(CommitError::FinalOccupied {
                        tp: tp.clone(),
                        path: final_path.into(),
                        first,
                        last,
                    })
                }
                // Delivered by a concurrent reconciler (the source is gone), or the target
                // directory was deleted since we made it.
                Err(HdfsError::FileNotFound(_)) => {
                    if !self.exists(data).await? {
                        return Ok(());
                    }
                    self.ensure_dir(dir, true).await?;
                }
                Err(e) => return Err(hdfs_err("rename", data)(e)),
            }
        }
        Err(CommitError::Refused {
            tp: tp.clone(),
            reason: format!("{dir} keeps disappearing while {data} is renamed into it"),
        })
    }

    /// Deletes the oldest slots once more than twice `SLOTS_KEPT` exist, keeping `SLOTS_KEPT`.
    /// Safe because only the tip is ever read to fence or deliver (rule 2): a zombie that
    /// claims a freed slot finds later slots when it looks and never delivers.
    async fn collect_garbage(&self, p: &PartitionPaths, slots: &[i64]) -> Result<(), CommitError> {
        if slots.len() <= 2 * SLOTS_KEPT {
            return Ok(());
        }
        for &first in &slots[..slots.len() - SLOTS_KEPT] {
            let slot = p.slot(first);
            self.hdfs
                .delete(&slot, true)
                .await
                .map_err(hdfs_err("delete", &slot))?;
        }
        Ok(())
    }

    /// Records that `[from, through]` is skipped (gone from the channel and from Kafka), as an
    /// operator decided. Refused unless the ledger continues exactly at `from`.
    pub async fn skip(
        &self,
        tp: &TopicPartition,
        from: i64,
        through: i64,
    ) -> Result<(), CommitError> {
        let refuse = |reason: String| CommitError::Refused {
            tp: tp.clone(),
            reason,
        };
        if through < from {
            return Err(refuse(format!("empty range [{from}, {through}]")));
        }
        let next = self.reconcile(tp, false).await?.next;
        match next {
            Some(n) if n == from => {}
            Some(n) => {
                return Err(refuse(format!(
                    "the ledger continues at offset {n}, not {from}"
                )))
            }
            None => return Err(refuse("the partition has no genesis entry".into())),
        }
        let p = self.paths(tp);
        let token = (self.tokens)();
        // The skip carries the watermark on, sealed against idle advances like a file's claim
        // (it holds no record, so it is never late).
        let watermark = match self.seal(tp, from, &token, None).await? {
            watermark::Sealed::At(w) => w,
            _ => {
                return Err(refuse(format!(
                    "another writer claimed offset {from} first"
                )))
            }
        };
        let meta = EntryMeta {
            watermark,
            ..EntryMeta::new(EntryKind::Skip, through, token.clone())
        };
        self.mkdirs(&format!("{}/{}", p.staging(&token), meta.name()))
            .await?;
        if self.claim(tp, &token, from).await? {
            return Ok(());
        }
        // Not the tip when we looked: either another writer claimed `from` first, or the
        // halted member saw our skip and already claimed past it. The slot's token tells.
        if self.slot_token(&p, from).await?.as_deref() == Some(token.as_str()) {
            return Ok(());
        }
        Err(refuse(format!(
            "another writer claimed offset {from} first"
        )))
    }

    /// Last offset the ledger holds (delivered or about to be), read-only: the tip's last, or
    /// the genesis offset minus one, or None for a partition the ledger has never seen.
    pub async fn committed_end(&self, tp: &TopicPartition) -> Result<Option<i64>, CommitError> {
        let p = self.paths(tp);
        if let Some((_, meta)) = self.read_tip(&p).await? {
            return Ok(Some(meta.offset));
        }
        Ok(self.read_start(&p).await?.map(|g| g - 1))
    }

    /// Refuses a state directory written by ledger version 1 (`<state>/claims/`): its claims
    /// cannot be read as slots, and starting beside them would deliver ranges twice.
    pub async fn refuse_version_1(&self) -> Result<(), CommitError> {
        let v1 = format!("{}/claims", naming::parent(&self.root));
        if self.exists(&v1).await? {
            return Err(CommitError::Refused {
                tp: TopicPartition::new("*", -1),
                reason: format!(
                    "{v1} holds version 1 claims; this flumen writes ledger version 2 \
                     (wal-format.md §8). Point hdfs.state_dir at a new directory"
                ),
            });
        }
        Ok(())
    }

    /// Partitions with a ledger, for the tools.
    pub async fn partitions(&self) -> Result<Vec<TopicPartition>, CommitError> {
        let mut tps = Vec::new();
        for topic in self.list(&self.root).await? {
            for part in self.list(&topic.path).await? {
                if let Ok(n) = part.name().parse() {
                    tps.push(TopicPartition::new(topic.name(), n));
                }
            }
        }
        tps.sort();
        Ok(tps)
    }
}
