//! The channel's files: open (recovery), lazy segment creation, group-commit append and trim.
//! The only module that creates, truncates, renames or deletes channel files; reading them
//! back (header checks, the recovery scan) lives in `segment.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::frame::{self, Batch, FrameError};
use super::gaps::Gaps;
use super::segment::segment_header;
pub use super::segment::{
    check_segment_header, list_segments, placeholder_path, read_frame_at, scan_segment,
    segment_path, survey, Damage, ScannedFrame, SegmentInfo, Survey, SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC, SEGMENT_VERSION,
};
use super::TopicPartition;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("channel I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A failed fsync cannot be retried: the kernel may already have dropped the dirty pages
    /// (PostgreSQL's "fsyncgate"). The process must stop and recover from the last durable point.
    #[error("fdatasync failed on {path}: {source}; stopping, restart recovers from the last durable batch")]
    Sync { path: PathBuf, source: io::Error },
    #[error("channel disk is full at {path}")]
    NoSpace { path: PathBuf },
    #[error("segment {path} has a bad header: {reason}")]
    BadSegmentHeader { path: PathBuf, reason: String },
    #[error("batch rejected by the codec: {0}")]
    Frame(#[from] FrameError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Options for the channel; the config module fills them from `[channel]`.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub dir: PathBuf,
    pub segment_bytes_max: u64,
    /// Group commit: one fdatasync covers at most this many bytes of queued batches.
    pub group_commit_bytes_max: usize,
}

/// A batch already framed by the source thread, so encoding runs off the writer thread.
#[derive(Debug)]
pub struct EncodedBatch {
    pub tp: TopicPartition,
    pub start_offset: i64,
    pub last_offset: i64,
    pub frame: Vec<u8>,
}

impl EncodedBatch {
    pub fn encode(batch: &Batch) -> Result<Self, FrameError> {
        let mut frame = Vec::with_capacity(batch.payload_bytes() + 256);
        frame::encode_frame(batch, &mut frame)?;
        Ok(Self {
            tp: TopicPartition::new(batch.topic.clone(), batch.partition),
            start_offset: batch.start_offset,
            last_offset: batch.last_offset,
            frame,
        })
    }
}

/// The shared, in-memory index of the channel. The writer thread updates it after each fsync;
/// the sink, the trimmer and the tools read it. Memory is O(segments x partitions).
#[derive(Debug, Default)]
pub struct WalIndex {
    inner: Mutex<IndexInner>,
    bytes_total: AtomicU64,
    /// Set by the writer while the disk is full or below `disk_free_bytes_min`.
    pub disk_full: AtomicBool,
}

#[derive(Debug, Default)]
struct IndexInner {
    dir: PathBuf,
    segments: BTreeMap<u64, SegmentInfo>,
    /// Trimmed segments that still have an older live segment before them (§5).
    placeholders: BTreeSet<u64>,
    /// The segment the writer appends to. After open it does not exist yet: the first append
    /// creates it, so opening needs no free space.
    active: u64,
}

impl WalIndex {
    fn lock(&self) -> MutexGuard<'_, IndexInner> {
        // A poisoned lock means a thread panicked mid-update: a programmer error.
        self.inner.lock().expect("wal index lock poisoned")
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

    /// Path and durable length of a segment, or `None` if it was trimmed.
    pub fn segment(&self, id: u64) -> Option<(PathBuf, u64)> {
        self.lock()
            .segments
            .get(&id)
            .map(|s| (s.path.clone(), s.durable_len))
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
                remove_if_present(&seg.path)?;
            } else if leave_placeholder(&seg.path)? {
                inner.placeholders.insert(*id);
            }
            self.bytes_total.fetch_sub(seg.file_len, Ordering::AcqRel);
        }
        sweep_placeholders(&mut inner)?;
        Ok(doomed.len())
    }
}

fn remove_if_present(path: &Path) -> Result<(), WalError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
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

/// Owns the active segment. Exactly one writer exists per channel directory (enforced by the
/// lock file taken in [`Wal::open`]).
pub struct WalWriter {
    opts: WalOptions,
    index: Arc<WalIndex>,
    /// The active segment's file; `None` from open until the first append creates it.
    file: Option<File>,
    path: PathBuf,
    /// The active segment's id (the one the next append creates while `file` is `None`).
    id: u64,
    len: u64,
    _lock: File,
}

/// Result of opening a channel directory.
pub struct Wal {
    pub writer: WalWriter,
    pub index: Arc<WalIndex>,
    pub damage: Vec<Damage>,
    /// Missing segments and holes in partitions' offset chains found at open.
    pub gaps: Gaps,
    pub batches_recovered: u64,
}

fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WalError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

fn is_no_space(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull
}

impl Wal {
    /// Opens (creating if needed) a channel directory: takes its lock, scans every segment and
    /// rebuilds the index. It writes nothing, so it succeeds on a full disk and the sink can
    /// drain the backlog: the active segment is created by the first append. Recovery never
    /// rewrites or truncates segments; damaged ranges stay on disk (reported) until trimmed.
    pub fn open(opts: WalOptions) -> Result<Wal, WalError> {
        let dir = opts.dir.clone();
        create_private_dir(&dir)?;
        let lock = lock_dir(&dir)?;
        let mut found = survey(&dir, |_, _| {})?;
        tidy_unfinished(&dir, &mut found)?;
        let gaps = found.gaps();
        log_gaps(&gaps);
        let next_id = found.segments.keys().next_back().map_or(1, |id| id + 1);
        let index = Arc::new(WalIndex::default());
        {
            let mut inner = index.lock();
            let bytes: u64 = found.segments.values().map(|s| s.file_len).sum();
            index.bytes_total.store(bytes, Ordering::Release);
            inner.dir = dir.clone();
            inner.segments = std::mem::take(&mut found.segments);
            inner.placeholders = std::mem::take(&mut found.placeholders);
            inner.active = next_id;
        }
        let writer = WalWriter {
            path: segment_path(&dir, next_id),
            opts,
            index: index.clone(),
            file: None,
            id: next_id,
            len: SEGMENT_HEADER_BYTES,
            _lock: lock,
        };
        Ok(Wal {
            writer,
            index,
            damage: found.damage,
            gaps,
            batches_recovered: found.batches,
        })
    }
}

/// Segment files no longer than a header without a valid one (a crash or a full disk inside
/// segment creation; they never held a batch) are removed, or become placeholders when live
/// segments lie on both sides, so they are neither damage nor a gap. Placeholders outside the
/// live range are removed too. None of this needs free space or must be durable.
fn tidy_unfinished(dir: &Path, found: &mut Survey) -> Result<(), WalError> {
    let lo = found.segments.keys().next().copied().unwrap_or(u64::MAX);
    let hi = found.segments.keys().next_back().copied().unwrap_or(0);
    for &id in &found.unfinished {
        let path = segment_path(dir, id);
        if lo < id && id < hi {
            fs::rename(&path, placeholder_path(dir, id)).map_err(io_err(&path))?;
            found.placeholders.insert(id);
        } else {
            remove_if_present(&path)?;
        }
        tracing::info!(segment = id, path = %path.display(),
            "removed an empty segment file left by a crash or a full disk during its creation");
    }
    let outside: Vec<u64> = found
        .placeholders
        .iter()
        .copied()
        .filter(|&id| id < lo || id > hi)
        .collect();
    for id in outside {
        remove_if_present(&placeholder_path(dir, id))?;
        found.placeholders.remove(&id);
    }
    Ok(())
}

/// Missing segments and the partition holes they cause are errors an operator must see; a
/// hole the channel never held (rebalance, skip) is normal and only logged at debug.
fn log_gaps(gaps: &Gaps) {
    for m in &gaps.missing {
        let holes: Vec<String> = gaps
            .holes_across(m)
            .map(|h| format!("{} offsets {}..={}", h.tp, h.from, h.through))
            .collect();
        tracing::error!(first_segment = m.first, last_segment = m.last, lost = ?holes,
            "channel segments are missing (deleted or lost outside flumen); their batches \
             are fetched again from Kafka if it still holds them");
    }
    for h in gaps.holes.iter().filter(|h| !h.cause.is_loss()) {
        tracing::debug!(partition = %h.tp, from = h.from, through = h.through,
            cause = h.cause.describe(), "hole in the channel's offset chain");
    }
}

/// Channel files hold the records themselves, which may be personal data: the directory is
/// created 0700 and its files 0600. An existing directory open to others is kept as it is (the
/// operator may share it on purpose) but named in a warning.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

fn create_private_dir(dir: &Path) -> Result<(), WalError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    let mode = fs::metadata(dir).map_err(io_err(dir))?.permissions().mode() & 0o777;
    if let Some(loose) = loose_mode(mode) {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:04o}"), "the channel directory is {loose}; \
            its segments hold the records themselves (chmod 700 to keep them private)");
    }
    Ok(())
}

/// What a directory mode lets others do, if anything.
fn loose_mode(mode: u32) -> Option<&'static str> {
    match (mode & 0o070 != 0, mode & 0o007 != 0) {
        (_, true) => Some("open to every user"),
        (true, false) => Some("open to its group"),
        _ => None,
    }
}

/// Takes an exclusive advisory lock so two daemons (or a daemon and `replay`) never share a
/// channel directory. The lock dies with the process, so kill -9 leaves nothing to clean up.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .mode(FILE_MODE)
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // SAFETY: flock on a valid descriptor we own; no memory is shared with the kernel.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(WalError::Io {
            path,
            source: io::Error::new(
                io::ErrorKind::WouldBlock,
                "channel directory is in use by another flumen process",
            ),
        });
    }
    Ok(file)
}

impl WalWriter {
    /// Publishes the (new, empty) active segment in the index.
    fn register_active(&self) {
        let mut inner = self.index.lock();
        inner.segments.insert(
            self.id,
            SegmentInfo {
                path: self.path.clone(),
                durable_len: SEGMENT_HEADER_BYTES,
                file_len: SEGMENT_HEADER_BYTES,
                ..Default::default()
            },
        );
        inner.active = self.id;
        drop(inner);
        self.index
            .bytes_total
            .fetch_add(SEGMENT_HEADER_BYTES, Ordering::AcqRel);
    }

    pub fn index(&self) -> &Arc<WalIndex> {
        &self.index
    }

    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// Bytes an append of `group_bytes` of frames takes: the frames, plus a segment header
    /// when the append must create the active segment first.
    pub fn bytes_needed(&self, group_bytes: u64) -> u64 {
        if self.needs_segment().is_some() {
            group_bytes + SEGMENT_HEADER_BYTES
        } else {
            group_bytes
        }
    }

    /// Whether appending `group_bytes` of frames leaves at least `disk_free_bytes_min` free:
    /// the reserve holds after the write, not only before it. The need is rounded up to whole
    /// filesystem blocks plus one (the block the segment's tail already half fills may not
    /// take it), so block rounding cannot cross the reserve either. True if statvfs fails:
    /// the write then finds out (ENOSPC).
    pub fn room_for(&self, group_bytes: u64, disk_free_bytes_min: u64) -> bool {
        let Some((free, block)) = disk_space(&self.opts.dir) else {
            return true;
        };
        let block = block.max(1);
        let need = self.bytes_needed(group_bytes).div_ceil(block) * block + block;
        free >= disk_free_bytes_min.saturating_add(need)
    }

    /// The id of the segment the next append must create, if it must create one.
    fn needs_segment(&self) -> Option<u64> {
        match self.file {
            None => Some(self.id),
            Some(_) if self.len >= self.opts.segment_bytes_max => Some(self.id + 1),
            Some(_) => None,
        }
    }

    /// Appends `batches` with one write and one fdatasync, then publishes them in the index.
    /// A batch counts as appended only when this returns `Ok`.
    ///
    /// On `NoSpace` the segment is cut back to its previous durable length (or a segment this
    /// call was creating is removed) and the caller may retry the same batches later. Any
    /// other error is fatal for this writer.
    pub fn append(&mut self, batches: &[EncodedBatch]) -> Result<(), WalError> {
        if batches.is_empty() {
            return Ok(());
        }
        if let Some(id) = self.needs_segment() {
            self.start_segment(id)?;
        }
        let total: usize = batches.iter().map(|b| b.frame.len()).sum();
        let mut buf = Vec::with_capacity(total);
        for b in batches {
            buf.extend_from_slice(&b.frame);
        }
        let file = self.file.as_mut().expect("segment started above");
        #[cfg(feature = "failpoints")]
        fail::fail_point!("wal-mid-append", |_| {
            // A torn append: half the group reaches the file, no fsync, then death.
            let _ = file.write_all(&buf[..buf.len() / 2]);
            eprintln!("flumen: failpoint wal-mid-append hit: aborting");
            std::process::abort()
        });
        if let Err(e) = file.write_all(&buf) {
            // Nothing was synced, so cutting back to the durable length is safe and leaves the
            // segment exactly as the index describes it.
            let _ = file.set_len(self.len);
            let _ = file.seek(SeekFrom::Start(self.len));
            if is_no_space(&e) {
                return Err(WalError::NoSpace {
                    path: self.path.clone(),
                });
            }
            return Err(io_err(&self.path)(e));
        }
        file.sync_data().map_err(|source| WalError::Sync {
            path: self.path.clone(),
            source,
        })?;
        self.len += total as u64;
        self.publish(batches, total as u64);
        crate::crash_site!("wal-after-append");
        Ok(())
    }

    fn publish(&self, batches: &[EncodedBatch], total: u64) {
        let mut inner = self.index.lock();
        let seg = inner.segments.get_mut(&self.id).expect("active segment");
        for b in batches {
            seg.add(&b.tp, b.start_offset, b.last_offset);
        }
        seg.durable_len = self.len;
        seg.file_len = self.len;
        drop(inner);
        self.index.bytes_total.fetch_add(total, Ordering::AcqRel);
    }

    /// Creates segment `id` and makes it the active one. On failure the writer is unchanged
    /// (still on the previous segment, or on none), so the append can be retried.
    fn start_segment(&mut self, id: u64) -> Result<(), WalError> {
        let file = create_segment_file(&self.opts.dir, id)?;
        self.file = Some(file);
        self.id = id;
        self.path = segment_path(&self.opts.dir, id);
        self.len = SEGMENT_HEADER_BYTES;
        self.register_active();
        Ok(())
    }
}

/// Creates a segment and makes its header durable (file and directory). A failure removes the
/// file again, so a full disk never leaves an empty segment behind; ENOSPC is `NoSpace`.
fn create_segment_file(dir: &Path, id: u64) -> Result<File, WalError> {
    let path = segment_path(dir, id);
    let fail = |e: io::Error| {
        if is_no_space(&e) {
            WalError::NoSpace { path: path.clone() }
        } else {
            io_err(&path)(e)
        }
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .mode(FILE_MODE)
        .create_new(true)
        .write(true)
        .read(true)
        .open(&path)
        .map_err(fail)?;
    if let Err(e) = file.write_all(&segment_header(id)) {
        let _ = fs::remove_file(&path);
        return Err(fail(e));
    }
    if let Err(source) = file.sync_all() {
        let _ = fs::remove_file(&path);
        return Err(WalError::Sync { path, source });
    }
    fsync_dir(dir)?;
    Ok(file)
}

/// Free bytes on the filesystem holding `dir`, from statvfs.
pub fn disk_free_bytes(dir: &Path) -> Option<u64> {
    disk_space(dir).map(|(free, _)| free)
}

/// Free bytes (for an unprivileged writer) and the block size of the filesystem holding `dir`.
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_bavail as u64 * st.f_frsize as u64, st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::wal::{Batch, Record};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Regression: the channel dir was 0755 and its segments and LOCK 0644, so any local user
    /// could read the records.
    #[test]
    fn a_new_channel_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/channel");
        let mut wal = Wal::open(WalOptions {
            dir: dir.clone(),
            segment_bytes_max: 1 << 20,
            group_commit_bytes_max: 1 << 20,
        })
        .unwrap();
        let batch = Batch {
            topic: "t".into(),
            partition: 0,
            start_offset: 0,
            last_offset: 0,
            records: vec![Record {
                offset: 0,
                timestamp_ms: None,
                key: None,
                value: Some(b"secret".to_vec()),
                headers: vec![],
            }],
        };
        wal.writer
            .append(&[EncodedBatch::encode(&batch).unwrap()])
            .unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("LOCK")), 0o600);
        for id in list_segments(&dir).unwrap() {
            assert_eq!(mode(&segment_path(&dir, id)), 0o600, "segment {id}");
        }
    }

    #[test]
    fn a_loose_directory_is_named() {
        assert_eq!(loose_mode(0o700), None);
        assert_eq!(loose_mode(0o750), Some("open to its group"));
        assert_eq!(loose_mode(0o755), Some("open to every user"));
    }
}
