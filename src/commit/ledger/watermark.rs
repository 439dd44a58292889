//! Event-time watermarks in the ledger, for completeness markers (`wal-format.md` §6.6).
//!
//! Each entry's name may carry the partition's watermark through that entry (`.w<ms>`) and the
//! token of the writer that sealed it (`.s<token>`). The last entry of a partition's chain (the
//! tip, or the genesis entry while there is no slot) is the only one whose watermark moves:
//! - an *advance* (the marker task, for a partition with nothing left to deliver) renames the
//!   unsealed entry to a higher watermark;
//! - a *seal* (a writer, before it claims the next range) renames it to carry the writer's
//!   token, after checking that its file is not late under the watermark it seals.
//!
//! Both are renames of the exact name read, so they are compare-and-sets on one name: a writer
//! claims the next range only under a watermark it checked, and no advance can follow a seal.
//! A seal whose writer can no longer claim (its staging directory is gone and no later slot
//! exists) may be taken over or advanced: that writer's claim, a rename of its staging
//! directory, can then never succeed. Entry names change only while the entry is delivered,
//! since delivery walks the claim's directories by name.

use hdfs_native::HdfsError;

use super::{hdfs_err, slots_of, ClaimState, Ledger};
use crate::commit::naming::{EntryKind, EntryMeta, PartitionPaths};
use crate::commit::CommitError;
use crate::hdfs::Hdfs;
use crate::wal::TopicPartition;

/// What a file's commit knows about event time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// The greatest record time (ms) in the file, if any record has one.
    pub file_max_ms: Option<i64>,
    /// The writer's watermark before the file.
    pub before_ms: Option<i64>,
    /// The watermark at which the file's records are late: its bucket's end plus the allowed
    /// lateness. `None` for a file of late records or without completeness.
    pub horizon_ms: Option<i64>,
    /// Seal the predecessor entry before the claim (completeness enabled).
    pub seal: bool,
}

/// The last entry of a partition's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// The entry's directory: a slot, or `genesis` while the chain has no slot.
    pub dir: String,
    /// The slot's first offset; `None` for the genesis entry.
    pub first: Option<i64>,
    pub meta: EntryMeta,
    /// Whether its data (a file claim's) is at its final name: only then may the name change.
    pub delivered: bool,
}

impl Tip {
    /// The offset the next range starts at.
    pub fn next(&self) -> i64 {
        match self.meta.kind {
            EntryKind::Start => self.meta.offset,
            EntryKind::File | EntryKind::Skip => self.meta.offset + 1,
        }
    }

    fn path(&self) -> String {
        format!("{}/{}", self.dir, self.meta.name())
    }
}

/// What sealing the predecessor of a range found.
pub(super) enum Sealed {
    /// Sealed (or already sealed by us); the predecessor's watermark.
    At(Option<i64>),
    /// The chain does not end right before the range, or another live writer sealed it.
    Fenced,
    /// The predecessor's watermark reached the horizon: the file's records are late.
    Late,
}

/// Attempts at a compare-and-set on an entry name that keeps changing under us.
const SEAL_ATTEMPTS_MAX: usize = 5;

impl<H: Hdfs> Ledger<H> {
    /// The last entry of the chain with its delivery state, or None without a genesis entry.
    /// Read-only.
    pub async fn tip(&self, tp: &TopicPartition) -> Result<Option<Tip>, CommitError> {
        let p = self.paths(tp);
        let tip = match self.read_tip(&p).await? {
            Some((first, meta)) => Tip {
                dir: p.slot(first),
                first: Some(first),
                meta,
                delivered: true,
            },
            None => match self.read_meta(&p.genesis()).await? {
                Some(meta) => Tip {
                    dir: p.genesis(),
                    first: None,
                    meta,
                    delivered: true,
                },
                None => return Ok(None),
            },
        };
        let delivered = tip.meta.kind != EntryKind::File
            || matches!(
                self.claim_state(&tip.dir, &tip.meta).await?,
                ClaimState::Delivered
            );
        Ok(Some(Tip { delivered, ..tip }))
    }

    /// Raises the tip's watermark to `to_ms` if it is delivered and not sealed by a writer that
    /// may still claim after it. Returns whether the watermark is now `to_ms`; `false` when a
    /// writer or another advance changed the entry since `tip` was read.
    pub async fn advance(
        &self,
        tp: &TopicPartition,
        tip: &Tip,
        to_ms: i64,
    ) -> Result<bool, CommitError> {
        if !tip.delivered || tip.meta.watermark.is_some_and(|w| w >= to_ms) {
            return Ok(false);
        }
        let p = self.paths(tp);
        if let Some(sealer) = &tip.meta.sealer {
            if !self.sealer_gone(&p, sealer, tip).await? {
                return Ok(false);
            }
        }
        let advanced = EntryMeta {
            watermark: Some(to_ms),
            sealer: None,
            ..tip.meta.clone()
        };
        self.rename_entry(tip, &advanced).await
    }

    /// Seals the entry the range at `first` continues, for the writer `token`, unless the
    /// file is late under its watermark (`horizon_ms`). Bounded retries when the name changes.
    pub(super) async fn seal(
        &self,
        tp: &TopicPartition,
        first: i64,
        token: &str,
        horizon_ms: Option<i64>,
    ) -> Result<Sealed, CommitError> {
        let p = self.paths(tp);
        for _ in 0..SEAL_ATTEMPTS_MAX {
            let Some(tip) = self.tip(tp).await? else {
                return Ok(Sealed::Fenced);
            };
            if tip.next() != first || !tip.delivered {
                return Ok(Sealed::Fenced);
            }
            match &tip.meta.sealer {
                // Ours: the response of our own seal was lost.
                Some(s) if s == token => return Ok(Sealed::At(tip.meta.watermark)),
                Some(s) if !self.sealer_gone(&p, s, &tip).await? => return Ok(Sealed::Fenced),
                _ => {}
            }
            if horizon_ms.is_some_and(|h| tip.meta.watermark.is_some_and(|w| h <= w)) {
                return Ok(Sealed::Late);
            }
            let sealed = EntryMeta {
                sealer: Some(token.to_string()),
                ..tip.meta.clone()
            };
            if self.rename_entry(&tip, &sealed).await? {
                return Ok(Sealed::At(tip.meta.watermark));
            }
        }
        Err(CommitError::Refused {
            tp: tp.clone(),
            reason: "the last ledger entry kept changing while it was sealed".into(),
        })
    }

    /// Whether the writer that sealed `tip` can no longer claim the range after it: its
    /// staging directory is gone (deleted by a reconciler, or renamed by its own claim) and,
    /// looked at after that, no slot follows `tip`. Names are never reused, so neither can
    /// change back.
    async fn sealer_gone(
        &self,
        p: &PartitionPaths,
        sealer: &str,
        tip: &Tip,
    ) -> Result<bool, CommitError> {
        if self.exists(&p.staging(sealer)).await? {
            return Ok(false);
        }
        let slots = slots_of(&self.list(&p.dir).await?);
        Ok(match tip.first {
            Some(first) => slots.last().is_none_or(|&last| last <= first),
            None => slots.is_empty(),
        })
    }

    /// Renames the tip's entry to `to` (the compare-and-set); false if its name changed.
    async fn rename_entry(&self, tip: &Tip, to: &EntryMeta) -> Result<bool, CommitError> {
        let from = tip.path();
        match self
            .hdfs
            .rename(&from, &format!("{}/{}", tip.dir, to.name()))
            .await
        {
            Ok(()) => Ok(true),
            Err(HdfsError::FileNotFound(_) | HdfsError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(hdfs_err("rename", &from)(e)),
        }
    }
}
