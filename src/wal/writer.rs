//! The channel writer: the only code that creates or appends to segment files. `WalWriter`
//! appends a group of batches with one write and one fdatasync; `ChannelWriter` owns it on its
//! own thread, with the bounded queue from the source, and runs the group commit: take what is
//! queued up to `group_commit_bytes_max`, keep the free-space reserve, wait while the disk is
//! full (`DiskStatus`, which the source reads to pause), wake the sink after each append.
//!
//! Memory: the queue is bounded in bytes, not batches. Frames handed over and not yet appended
//! (queued, or in the group being written) total at most `QUEUE_GROUPS_MAX` x
//! `group_commit_bytes_max`, or one batch when a single batch is larger: one group being
//! written and one filling behind it. An append writes the group's frames with one `writev`,
//! without copying them into one buffer first.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SendError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::frame::{Seed, FRAME_HEADER_BYTES};
use super::index::WalIndex;
use super::log::{io_err, EncodedBatch, WalError, WalOptions};
use super::recovery::FILE_MODE;
use super::segment::{
    free_path, segment_header, segment_path, segment_seed, SegmentInfo, END_MARKER,
    SEGMENT_HEADER_BYTES,
};
use crate::events;

/// Bytes of frames handed to the writer and not yet appended, at most, in groups of
/// `group_commit_bytes_max`: one being written, one filling. Small on purpose: the channel on
/// disk is the buffer, and a full queue makes the source wait (librdkafka then stops fetching
/// at its own budget).
pub const QUEUE_GROUPS_MAX: usize = 2;
/// Batches queued at most, whatever their size (many partitions' small batches): the queue's
/// own slots; the byte bound above is what limits memory.
const QUEUE_BATCHES_MAX: usize = 1024;

/// How long the writer waits before it checks the disk again while it is full.
const DISK_FULL_RETRY: Duration = Duration::from_secs(1);

/// Whether the channel's disk is full (or below `channel.disk_free_bytes_min`). Set by the
/// channel writer only (`mark` is private to this module); anyone may read it.
#[derive(Debug, Default)]
pub struct DiskStatus {
    full: AtomicBool,
}

impl DiskStatus {
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Records the state after a write attempt, logging and counting only the transitions.
    fn mark(&self, full: bool, why: &str) {
        let was = self.full.swap(full, Ordering::AcqRel);
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
}

/// The source's end of the writer's queue, bounded in bytes: frames handed over and not yet
/// appended stay under `bytes_max`, except that a batch is always taken when none are
/// pending (so a batch larger than the bound still goes, alone). One sender only (the poll
/// thread), so checking and then adding cannot race another sender.
pub struct BatchSender {
    tx: SyncSender<EncodedBatch>,
    pending: Arc<AtomicUsize>,
    bytes_max: usize,
}

impl BatchSender {
    /// Queues `b`, or hands it back (`Full`) while the bytes pending would pass the bound.
    pub fn try_send(&self, b: EncodedBatch) -> Result<(), TrySendError<EncodedBatch>> {
        let len = b.frame.len();
        let pending = self.pending.load(Ordering::Acquire);
        if pending > 0 && pending + len > self.bytes_max {
            return Err(TrySendError::Full(b));
        }
        self.pending.fetch_add(len, Ordering::AcqRel);
        self.tx.try_send(b).inspect_err(|_| {
            self.pending.fetch_sub(len, Ordering::AcqRel);
        })
    }

    /// Queues `b`, waiting while the queue is full; an error once the writer is gone.
    pub fn send(&self, mut b: EncodedBatch) -> Result<(), SendError<EncodedBatch>> {
        loop {
            match self.try_send(b) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    b = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(back)) => return Err(SendError(back)),
            }
        }
    }
}

/// The channel writer thread's state: the writer, the receiving end of the source's bounded
/// queue, and the sink's wake-up. Fatal on fsync errors.
pub struct ChannelWriter {
    writer: WalWriter,
    batches: Receiver<EncodedBatch>,
    /// Bytes of frames sent and not yet appended (or dropped); shared with the `BatchSender`.
    pending: Arc<AtomicUsize>,
    appended: Arc<Notify>,
    disk_free_bytes_min: u64,
}

impl ChannelWriter {
    /// The writer and the sending end of its queue (bounded at `QUEUE_GROUPS_MAX` groups of
    /// bytes), which the source owns; dropping that sender is what ends [`ChannelWriter::run`].
    pub fn new(
        writer: WalWriter,
        appended: Arc<Notify>,
        disk_free_bytes_min: u64,
    ) -> (Self, BatchSender) {
        let (tx, batches) = sync_channel(QUEUE_BATCHES_MAX);
        let pending = Arc::new(AtomicUsize::new(0));
        let bytes_max = QUEUE_GROUPS_MAX * writer.options().group_commit_bytes_max;
        let sender = BatchSender {
            tx,
            pending: pending.clone(),
            bytes_max,
        };
        let w = ChannelWriter {
            writer,
            batches,
            pending,
            appended,
            disk_free_bytes_min,
        };
        (w, sender)
    }

    /// Group commit until the source drops its sender, having handed over its last batches.
    /// `stop` (the shutdown notice) only cuts short a wait for disk space.
    pub fn run(mut self, stop: impl Fn() -> bool) -> Result<(), WalError> {
        // Runs until the source drops its sender (shutdown).
        while let Some((group, bytes)) = self.next_group() {
            let appended = self.append_group(&group, bytes, &stop);
            drop(group);
            self.pending.fetch_sub(bytes, Ordering::AcqRel);
            if !appended? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Blocks for one batch, then takes whatever else is queued, up to
    /// `group_commit_bytes_max`. `None` once the sender is gone and the queue is empty.
    fn next_group(&self) -> Option<(Vec<EncodedBatch>, usize)> {
        let group_max = self.writer.options().group_commit_bytes_max;
        let first = self.batches.recv().ok()?;
        let mut bytes = first.frame.len();
        let mut group = vec![first];
        while bytes < group_max {
            match self.batches.try_recv() {
                Ok(b) => {
                    bytes += b.frame.len();
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        Some((group, bytes))
    }

    /// Appends one group, retrying while the disk is full; the source sees `disk_full` and
    /// pauses. False if shutdown came while the disk was full: the unwritten group is dropped.
    /// It was never acknowledged, so its offsets were never committed anywhere and the next run
    /// fetches it from Kafka again.
    fn append_group(
        &mut self,
        group: &[EncodedBatch],
        bytes: usize,
        stop: &impl Fn() -> bool,
    ) -> Result<bool, WalError> {
        let index = self.writer.index().clone();
        let disk = &index.disk;
        loop {
            if stop() && disk.is_full() {
                tracing::warn!(batches = group.len(), "shutting down with the channel disk full; unwritten batches will be fetched again");
                return Ok(false);
            }
            // The reserve must hold after the write (a group is up to 4 MiB), not only before.
            if !self.writer.room_for(bytes as u64, self.disk_free_bytes_min) {
                // Files kept for reuse go first: they hold nothing the channel needs.
                let released = index.release_pool()?;
                if released > 0 {
                    tracing::info!(
                        files = released,
                        "disk low: released the channel's segment files kept for reuse"
                    );
                    continue;
                }
                disk.mark(true, "free space below channel.disk_free_bytes_min");
                std::thread::sleep(DISK_FULL_RETRY);
                continue;
            }
            let began = Instant::now();
            // A slow disk, for tests: FAILPOINTS=channel-append-delay=sleep(300).
            #[cfg(feature = "failpoints")]
            fail::fail_point!("channel-append-delay");
            match self.writer.append(group) {
                Ok(()) => {
                    events::channel_appended(group.len(), bytes, began.elapsed());
                    disk.mark(false, "");
                    self.appended.notify_one();
                    return Ok(true);
                }
                Err(WalError::NoSpace { .. }) => {
                    disk.mark(true, "write failed with ENOSPC");
                    std::thread::sleep(DISK_FULL_RETRY);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Owns the active segment. Exactly one writer exists per channel directory (enforced by the
/// lock file taken in [`super::Wal::open`]).
pub struct WalWriter {
    opts: WalOptions,
    index: Arc<WalIndex>,
    /// The active segment's file; `None` from open until the first append creates it.
    file: Option<File>,
    path: PathBuf,
    /// The active segment's id (the one the next append creates while `file` is `None`).
    id: u64,
    /// End of the active segment's durable frames.
    len: u64,
    /// The active segment file's length: past `len` by the end marker, and by a recycled
    /// file's unused tail.
    file_len: u64,
    /// What the active segment's frames are bound to.
    seed: Seed,
    _lock: File,
}

impl WalWriter {
    /// The writer for a channel just opened: segment `id` is the next to create.
    pub(super) fn new(opts: WalOptions, index: Arc<WalIndex>, id: u64, lock: File) -> Self {
        WalWriter {
            path: segment_path(&opts.dir, id),
            opts,
            index,
            file: None,
            id,
            len: SEGMENT_HEADER_BYTES,
            file_len: SEGMENT_HEADER_BYTES,
            seed: Seed::NONE,
            _lock: lock,
        }
    }

    /// Publishes the (new, empty) active segment in the index.
    fn register_active(&self) {
        let mut inner = self.index.lock();
        inner.segments.insert(
            self.id,
            SegmentInfo {
                path: self.path.clone(),
                durable_len: SEGMENT_HEADER_BYTES,
                file_len: self.file_len,
                seed: self.seed,
                ..Default::default()
            },
        );
        inner.active = self.id;
        drop(inner);
        self.index
            .bytes_total
            .fetch_add(self.file_len, Ordering::AcqRel);
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
    /// A batch counts as appended only when this returns `Ok`. In a version 2 segment each
    /// frame's CRC is bound to the segment (`Seed::reseal`) and the end marker follows them.
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
        let heads: Vec<_> = batches
            .iter()
            .map(|b| self.seed.sealed_header(&b.frame))
            .collect();
        let mut slices = frame_slices(batches, &heads);
        let marker = self.seed != Seed::NONE;
        if marker {
            slices.push(IoSlice::new(&END_MARKER));
        }
        let file = self.file.as_mut().expect("segment started above");
        #[cfg(feature = "failpoints")]
        fail::fail_point!("wal-mid-append", |_| {
            // A torn append: half the group reaches the file, no fsync, then death.
            let buf: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
            let _ = file.write_all(&buf[..buf.len() / 2]);
            eprintln!("flumen: failpoint wal-mid-append hit: aborting");
            std::process::abort()
        });
        if let Err(e) = write_all_vectored(file, &mut slices) {
            return Err(self.undo_write(e));
        }
        let file = self.file.as_mut().expect("segment started above");
        file.sync_data().map_err(|source| WalError::Sync {
            path: self.path.clone(),
            source,
        })?;
        // The next append overwrites the marker: the cursor goes back to it.
        if marker {
            file.seek(SeekFrom::Current(-(END_MARKER.len() as i64)))
                .map_err(io_err(&self.path))?;
        }
        self.len += total as u64;
        let file_len = self
            .file_len
            .max(self.len + marker as u64 * END_MARKER.len() as u64);
        self.publish(batches, file_len);
        crate::crash_site!("wal-after-append");
        Ok(())
    }

    /// A failed write: nothing was synced, so cutting back to the durable length is safe and
    /// leaves the segment as the index describes it (a version 2 segment may end there without
    /// its marker: the end of the file ends it as well).
    fn undo_write(&mut self, e: io::Error) -> WalError {
        let file = self.file.as_mut().expect("a segment is active");
        let _ = file.set_len(self.len);
        let _ = file.seek(SeekFrom::Start(self.len));
        self.resize(self.len);
        if is_no_space(&e) {
            return WalError::NoSpace {
                path: self.path.clone(),
            };
        }
        io_err(&self.path)(e)
    }

    /// Records the active file's new length in the index and in `bytes_total`.
    fn resize(&mut self, file_len: u64) {
        if let Some(seg) = self.index.lock().segments.get_mut(&self.id) {
            seg.file_len = file_len;
        }
        self.count_file_len(file_len);
    }

    /// Moves `bytes_total` by the active file's change in length.
    fn count_file_len(&mut self, file_len: u64) {
        if file_len >= self.file_len {
            let grown = file_len - self.file_len;
            self.index.bytes_total.fetch_add(grown, Ordering::AcqRel);
        } else {
            let shrunk = self.file_len - file_len;
            self.index.bytes_total.fetch_sub(shrunk, Ordering::AcqRel);
        }
        self.file_len = file_len;
    }

    fn publish(&mut self, batches: &[EncodedBatch], file_len: u64) {
        let mut inner = self.index.lock();
        let seg = inner.segments.get_mut(&self.id).expect("active segment");
        for b in batches {
            seg.add(&b.tp, b.start_offset, b.last_offset);
        }
        seg.durable_len = self.len;
        seg.file_len = file_len;
        drop(inner);
        self.count_file_len(file_len);
    }

    /// Creates segment `id`, reusing a file from the pool when it can, and makes it the active
    /// one. The segment it replaces is cut to its data first: its marker and any unused tail go.
    /// On failure the writer is unchanged (still on the previous segment, or on none), so the
    /// append can be retried.
    fn start_segment(&mut self, id: u64) -> Result<(), WalError> {
        let version = self.opts.segment_version;
        let (file, file_len) = match self.recycled(id, version) {
            Some(reused) => reused,
            None => (
                create_segment_file(&self.opts.dir, id, version)?,
                SEGMENT_HEADER_BYTES,
            ),
        };
        if let Some(old) = &self.file {
            if self.file_len > self.len && old.set_len(self.len).is_ok() {
                self.resize(self.len);
            }
        }
        self.file = Some(file);
        self.id = id;
        self.path = segment_path(&self.opts.dir, id);
        self.len = SEGMENT_HEADER_BYTES;
        self.file_len = file_len;
        self.seed = segment_seed(version, id);
        self.register_active();
        Ok(())
    }

    /// Segment `id` made from the oldest file in the pool, and its length; `None` if the pool
    /// is empty or the file could not be reused (it is then unlinked: it holds nothing needed).
    fn recycled(&self, id: u64, version: u32) -> Option<(File, u64)> {
        if version < 2 {
            return None;
        }
        let old = self.index.take_free()?;
        let from = free_path(&self.opts.dir, old);
        match recycle_segment_file(&self.opts.dir, &from, id) {
            Ok(reused) => Some(reused),
            Err(e) => {
                tracing::warn!(file = %from.display(), error = %e, "could not reuse a trimmed segment file; creating a new one");
                let _ = fs::remove_file(&from);
                None
            }
        }
    }
}

/// The group as `writev` slices: each frame's sealed header, then the rest of it.
fn frame_slices<'a>(
    batches: &'a [EncodedBatch],
    heads: &'a [[u8; FRAME_HEADER_BYTES]],
) -> Vec<IoSlice<'a>> {
    let mut slices = Vec::with_capacity(batches.len() * 2 + 1);
    for (b, head) in batches.iter().zip(heads) {
        slices.push(IoSlice::new(head));
        slices.push(IoSlice::new(&b.frame[FRAME_HEADER_BYTES..]));
    }
    slices
}

/// Creates a segment and makes its header durable (file and directory). A failure removes the
/// file again, so a full disk never leaves an empty segment behind; ENOSPC is `NoSpace`.
fn create_segment_file(dir: &Path, id: u64, version: u32) -> Result<File, WalError> {
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
    if let Err(e) = file.write_all(&segment_header(id, version)) {
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

/// Turns a pooled file into version 2 segment `id` (`wal-format.md` §5): the new header and an
/// end marker at byte 32, fdatasync, rename to the segment's name, fsync the directory. Until
/// the rename the file is still a pool file; after it, a segment without frames. Its old
/// frames stay on disk behind the marker and never verify: they are bound to older ids.
fn recycle_segment_file(dir: &Path, from: &Path, id: u64) -> Result<(File, u64), WalError> {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .write(true)
        .read(true)
        .open(from)
        .map_err(io_err(from))?;
    let mut head = [0u8; SEGMENT_HEADER_BYTES as usize + END_MARKER.len()];
    head[..SEGMENT_HEADER_BYTES as usize].copy_from_slice(&segment_header(id, 2));
    file.write_all_at(&head, 0).map_err(io_err(from))?;
    file.sync_data().map_err(|source| WalError::Sync {
        path: from.to_path_buf(),
        source,
    })?;
    crate::crash_site!("wal-mid-recycle");
    let path = segment_path(dir, id);
    fs::rename(from, &path).map_err(io_err(from))?;
    fsync_dir(dir)?;
    let mut file = file;
    file.seek(SeekFrom::Start(SEGMENT_HEADER_BYTES))
        .map_err(io_err(&path))?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    Ok((file, len))
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

/// `Write::write_all_vectored` (not stable yet): writes every slice, in order, with as few
/// `writev` calls as the kernel allows (std caps one call at `IOV_MAX` slices).
fn write_all_vectored(file: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
