//! The shared, in-memory index of the channel: which segments exist, the offset ranges each
//! holds per partition, and trimming. The writer publishes into it after each fsync; the sink,
//! the source's flow control and the tools read it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::frame::Seed;
use super::log::{io_err, WalError};
use super::segment::{free_path, placeholder_path, SegmentInfo};
use super::writer::DiskStatus;
use super::TopicPartition;

/// The shared, in-memory index of the channel. The writer thread updates it after each fsync;
/// the sink, the trimmer and the tools read it. Memory is O(segments x partitions).
#[derive(Debug, Default)]
pub struct WalIndex {
    inner: Mutex<IndexInner>,
    pub(super) bytes_total: AtomicU64,
    /// Set by the channel writer only, while the disk is full or below `disk_free_bytes_min`.
    pub(super) disk: DiskStatus,
}

#[derive(Debug, Default)]
pub(super) struct IndexInner {
    pub(super) dir: PathBuf,
    pub(super) segments: BTreeMap<u64, SegmentInfo>,
    /// Trimmed segments that still have an older live segment before them (§5).
    pub(super) placeholders: BTreeSet<u64>,
    /// The segment the writer appends to. After open it does not exist yet: the first append
    /// creates it, so opening needs no free space.
    pub(super) active: u64,
    /// Trimmed segment files kept for the writer to reuse (`<id>.free`), oldest first; at most
    /// `pool_max` of them (0 with version 1 segments, which cannot be recycled).
    pub(super) pool: VecDeque<u64>,
    pub(super) pool_max: usize,
}

impl WalIndex {
    pub(super) fn lock(&self) -> MutexGuard<'_, IndexInner> {
        // A poisoned lock means a thread panicked mid-update: a programmer error.
        self.inner.lock().expect("wal index lock poisoned")
    }

    /// Whether the channel writer is waiting for disk space (full, or below
    /// `disk_free_bytes_min`): the source pauses consumption while it is.
    pub fn disk_full(&self) -> bool {
        self.disk.is_full()
    }

    /// Bytes on disk across all segments.
    pub fn bytes_total(&self) -> u64 {
        self.bytes_total.load(Ordering::Acquire)
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    pub fn active_segment(&self) -> u64 {
        self.lock().active
    }

    pub fn first_segment(&self) -> Option<u64> {
        self.lock().segments.keys().next().copied()
    }

    /// Path, durable length and frame seed of a segment, or `None` if it was trimmed.
    pub fn segment(&self, id: u64) -> Option<(PathBuf, u64, Seed)> {
        self.lock()
            .segments
            .get(&id)
            .map(|s| (s.path.clone(), s.durable_len, s.seed))
    }

    /// Segment files kept for reuse, oldest first.
    pub fn pool(&self) -> Vec<u64> {
        self.lock().pool.iter().copied().collect()
    }

    /// The oldest file kept for reuse, taken out of the pool (the writer's alone to use).
    pub(super) fn take_free(&self) -> Option<u64> {
        self.lock().pool.pop_front()
    }

    /// Unlinks every file kept for reuse, giving its space back: the writer's first resort when
    /// the disk runs low. Returns how many there were.
    pub fn release_pool(&self) -> Result<usize, WalError> {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner.pool.drain(..).collect();
        for &id in &ids {
            remove_if_present(&free_path(&inner.dir, id))?;
        }
        Ok(ids.len())
    }

    /// Where reading resumes after the damaged range of segment `id` that holds byte `pos`.
    pub fn damage_end(&self, id: u64, pos: u64) -> Option<u64> {
        let inner = self.lock();
        let seg = inner.segments.get(&id)?;
        seg.damaged
            .iter()
            .find(|&&(start, end)| start <= pos && pos < end)
            .map(|&(_, end)| end)
    }

    /// The next segment after `id`, if one exists.
    pub fn next_segment(&self, id: u64) -> Option<u64> {
        self.lock().segments.range(id + 1..).next().map(|(k, _)| *k)
    }

    /// Every partition the channel holds data for.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        let inner = self.lock();
        let mut tps: Vec<_> = inner
            .segments
            .values()
            .flat_map(|s| s.ranges.keys().cloned())
            .collect();
        tps.sort();
        tps.dedup();
        tps
    }

    /// Follows the chain of batches for `tp` that continues from `committed_end` (the last offset
    /// already in HDFS) and returns the last offset the channel can supply without a hole.
    pub fn chain_end(&self, tp: &TopicPartition, committed_end: i64) -> i64 {
        let inner = self.lock();
        let mut end = committed_end;
        for seg in inner.segments.values() {
            for &(start, last) in seg.ranges.get(tp).into_iter().flatten() {
                if start <= end + 1 && last > end {
                    end = last;
                }
            }
        }
        end
    }

    /// The first batch start of `tp` beyond `end`: where the channel resumes after a hole.
    pub fn next_start_after(&self, tp: &TopicPartition, end: i64) -> Option<i64> {
        let inner = self.lock();
        inner
            .segments
            .values()
            .flat_map(|seg| seg.ranges.get(tp).into_iter().flatten())
            .map(|&(start, _)| start)
            .filter(|&start| start > end)
            .min()
    }

    /// The first segment holding any offset of `tp` above `committed_end`.
    pub fn first_segment_after(&self, tp: &TopicPartition, committed_end: i64) -> Option<u64> {
        let inner = self.lock();
        inner.segments.iter().find_map(|(id, seg)| {
            let hit = seg
                .ranges
                .get(tp)
                .is_some_and(|rs| rs.iter().any(|&(_, last)| last > committed_end));
            hit.then_some(*id)
        })
    }

    /// Deletes every segment below `below` (the reader's cursor) other than the active one whose
    /// batches are all done. Returns the number of segments deleted.
    ///
    /// A segment with an older live segment before it is truncated and renamed to a
    /// `.trimmed` placeholder instead of unlinked, so the ids between the oldest and the newest
    /// segment stay contiguous and a missing id always means a lost segment. Placeholders go
    /// once no live segment is older.
    pub fn trim(
        &self,
        below: u64,
        is_done: impl Fn(&TopicPartition, i64) -> bool,
    ) -> Result<usize, WalError> {
        let mut inner = self.lock();
        let active = inner.active;
        let doomed: Vec<u64> = inner
            .segments
            .range(..below.min(active))
            .filter(|(_, seg)| {
                seg.ranges
                    .iter()
                    .all(|(tp, rs)| rs.iter().all(|&(_, last)| is_done(tp, last)))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &doomed {
            let seg = inner.segments.remove(id).expect("listed above");
            let oldest = inner.segments.keys().next().is_none_or(|first| id < first);
            if oldest {
                keep_or_remove(&mut inner, *id, &seg.path)?;
            } else if leave_placeholder(&seg.path)? {
                inner.placeholders.insert(*id);
            }
            self.bytes_total.fetch_sub(seg.file_len, Ordering::AcqRel);
        }
        sweep_placeholders(&mut inner)?;
        Ok(doomed.len())
    }
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), WalError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// A trimmed oldest segment's file goes to the pool while it has room (renamed `<id>.free`,
/// not fsynced: after a crash it may come back as a segment, whose batches are all done, and is
/// trimmed again), and is unlinked otherwise.
fn keep_or_remove(inner: &mut IndexInner, id: u64, path: &Path) -> Result<(), WalError> {
    if inner.pool.len() >= inner.pool_max {
        return remove_if_present(path);
    }
    match fs::rename(path, free_path(&inner.dir, id)) {
        Ok(()) => inner.pool.push_back(id),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    Ok(())
}

/// Frees a trimmed segment's space (truncate) and keeps its id as `<id>.trimmed`. Neither step
/// needs free space. Not fsynced: after a crash the segment may come back whole (trimmed
/// again) or empty (an empty segment file is never damage). False if the file was gone.
fn leave_placeholder(path: &Path) -> Result<bool, WalError> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path)(e)),
    };
    file.set_len(0).map_err(io_err(path))?;
    fs::rename(path, path.with_extension("trimmed")).map_err(io_err(path))?;
    Ok(true)
}

/// Deletes the placeholders that no longer sit between two live segments.
fn sweep_placeholders(inner: &mut IndexInner) -> Result<(), WalError> {
    let oldest_live = inner.segments.keys().next().copied().unwrap_or(u64::MAX);
    let stale: Vec<u64> = inner.placeholders.range(..oldest_live).copied().collect();
    for id in stale {
        remove_if_present(&placeholder_path(&inner.dir, id))?;
        inner.placeholders.remove(&id);
    }
    Ok(())
}
