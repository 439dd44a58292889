//! Segment files: creation, recovery scan, group-commit append and trim.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::frame::{self, Batch, FrameError, FRAME_HEADER_BYTES};
use super::TopicPartition;

/// ASCII "FLUMENWS": flumen WAL segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLUMENWS";
pub const SEGMENT_VERSION: u32 = 1;
/// magic(8) + version(4) + reserved(4) + segment_id(8) + crc32(4) + reserved(4).
pub const SEGMENT_HEADER_BYTES: u64 = 32;

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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
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

/// A damaged byte range found while scanning a segment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    pub segment: u64,
    pub path: PathBuf,
    pub byte_start: u64,
    pub byte_end: u64,
    pub reason: String,
    /// The last intact batch before the damage, if any: (topic/partition, last offset).
    pub after: Option<(String, i64)>,
}

/// What the channel holds for one segment: its durable length and, per partition, the offset
/// ranges of its intact batches (merged when contiguous, so normally one range per partition).
#[derive(Debug, Clone, Default)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub durable_len: u64,
    /// Bytes the file occupies on disk (a damaged tail counts here, not in `durable_len`);
    /// what `bytes_total` adds and what trimming gives back.
    pub file_len: u64,
    pub ranges: HashMap<TopicPartition, Vec<(i64, i64)>>,
}

impl SegmentInfo {
    fn add(&mut self, tp: &TopicPartition, start: i64, last: i64) {
        let ranges = self.ranges.entry(tp.clone()).or_default();
        match ranges.last_mut() {
            Some(r) if r.1 + 1 == start => r.1 = last,
            _ => ranges.push((start, last)),
        }
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
    segments: BTreeMap<u64, SegmentInfo>,
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
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&seg.path)(e)),
            }
            self.bytes_total.fetch_sub(seg.file_len, Ordering::AcqRel);
        }
        Ok(doomed.len())
    }
}

/// Owns the active segment. Exactly one writer exists per channel directory (enforced by the
/// lock file taken in [`Wal::open`]).
pub struct WalWriter {
    opts: WalOptions,
    index: Arc<WalIndex>,
    file: File,
    path: PathBuf,
    id: u64,
    len: u64,
    _lock: File,
}

/// Result of opening a channel directory.
pub struct Wal {
    pub writer: WalWriter,
    pub index: Arc<WalIndex>,
    pub damage: Vec<Damage>,
    pub batches_recovered: u64,
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Lists segment ids in a channel directory, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".wal").and_then(|s| s.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn segment_header(id: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

pub fn check_segment_header(path: &Path, h: &[u8], id: u64) -> Result<(), WalError> {
    let bad = |reason: String| WalError::BadSegmentHeader {
        path: path.to_path_buf(),
        reason,
    };
    if h.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(bad(format!("{} bytes, need 32", h.len())));
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Err(bad("bad magic".into()));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4"));
    if version != SEGMENT_VERSION {
        return Err(bad(format!("unsupported version {version}")));
    }
    if h[12..16] != [0; 4] || h[28..32] != [0; 4] {
        return Err(bad("reserved bytes are not zero".into()));
    }
    let crc = u32::from_le_bytes(h[24..28].try_into().expect("4"));
    if crc != crc32fast::hash(&h[0..24]) {
        return Err(bad("header checksum mismatch".into()));
    }
    let stored = u64::from_le_bytes(h[16..24].try_into().expect("8"));
    if stored != id {
        return Err(bad(format!("names segment {stored}, file name says {id}")));
    }
    Ok(())
}

/// One intact frame found by [`scan_segment`].
pub struct ScannedFrame {
    pub pos: u64,
    pub len: u64,
    pub batch: Batch,
}

/// Reads a segment frame by frame, calling `on_frame` for each intact one, and stops at the
/// first damaged frame. Returns the end of the intact prefix and the damage found, if any.
/// Memory is bounded by one frame.
pub fn scan_segment(
    path: &Path,
    id: u64,
    mut on_frame: impl FnMut(ScannedFrame),
) -> Result<(u64, Option<Damage>), WalError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let damage = |start: u64, reason: String, after: Option<(String, i64)>| Damage {
        segment: id,
        path: path.to_path_buf(),
        byte_start: start,
        byte_end: file_len,
        reason,
        after,
    };
    let mut header = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    if let Err(e) = file
        .read_exact(&mut header)
        .map_err(io_err(path))
        .and_then(|_| check_segment_header(path, &header, id))
    {
        return Ok((0, Some(damage(0, e.to_string(), None))));
    }
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut buf = Vec::new();
    let mut after = None;
    while pos < file_len {
        match read_frame_at(&mut file, pos, file_len, &mut buf) {
            Ok(batch) => {
                let len = buf.len() as u64;
                after = Some((
                    TopicPartition::new(&batch.topic, batch.partition).to_string(),
                    batch.last_offset,
                ));
                on_frame(ScannedFrame { pos, len, batch });
                pos += len;
            }
            Err(reason) => return Ok((pos, Some(damage(pos, reason, after)))),
        }
    }
    Ok((pos, None))
}

/// Reads and verifies the frame at `pos` into `buf` (which ends up holding exactly the frame).
pub fn read_frame_at(
    file: &mut File,
    pos: u64,
    limit: u64,
    buf: &mut Vec<u8>,
) -> Result<Batch, String> {
    if pos + FRAME_HEADER_BYTES as u64 > limit {
        return Err(format!(
            "torn frame header: {} bytes before end",
            limit - pos
        ));
    }
    buf.resize(FRAME_HEADER_BYTES, 0);
    file.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
    file.read_exact(buf).map_err(|e| e.to_string())?;
    let payload = frame::decode_header(buf).map_err(|e| e.to_string())?;
    let total = (FRAME_HEADER_BYTES + payload) as u64;
    if pos + total > limit {
        return Err(format!(
            "torn frame: {total} bytes declared, {} present",
            limit - pos
        ));
    }
    buf.resize(total as usize, 0);
    file.read_exact(&mut buf[FRAME_HEADER_BYTES..])
        .map_err(|e| e.to_string())?;
    frame::decode_frame(buf)
        .map(|(batch, _)| batch)
        .map_err(|e| e.to_string())
}

fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WalError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

impl Wal {
    /// Opens (creating if needed) a channel directory: takes its lock, scans every segment,
    /// rebuilds the index, and starts a fresh active segment. Recovery never rewrites or
    /// truncates existing segments; damaged tails stay on disk (reported) until trimmed.
    pub fn open(opts: WalOptions) -> Result<Wal, WalError> {
        let dir = opts.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = lock_dir(&dir)?;
        let index = Arc::new(WalIndex::default());
        let mut damage = Vec::new();
        let mut batches_recovered = 0u64;
        let mut next_id = 1;
        {
            let mut inner = index.lock();
            for id in list_segments(&dir)? {
                let path = segment_path(&dir, id);
                let mut info = SegmentInfo {
                    path: path.clone(),
                    ..Default::default()
                };
                let (end, dmg) = scan_segment(&path, id, |f| {
                    batches_recovered += 1;
                    let tp = TopicPartition::new(f.batch.topic, f.batch.partition);
                    info.add(&tp, f.batch.start_offset, f.batch.last_offset);
                })?;
                damage.extend(dmg);
                let on_disk = fs::metadata(&path).map_err(io_err(&path))?.len();
                info.durable_len = end.max(SEGMENT_HEADER_BYTES);
                info.file_len = on_disk;
                index.bytes_total.fetch_add(on_disk, Ordering::AcqRel);
                inner.segments.insert(id, info);
                next_id = id + 1;
            }
        }
        let writer = WalWriter::create(opts, index.clone(), next_id, lock)?;
        Ok(Wal {
            writer,
            index,
            damage,
            batches_recovered,
        })
    }
}

/// Takes an exclusive advisory lock so two daemons (or a daemon and `replay`) never share a
/// channel directory. The lock dies with the process, so kill -9 leaves nothing to clean up.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
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
    fn create(
        opts: WalOptions,
        index: Arc<WalIndex>,
        id: u64,
        lock: File,
    ) -> Result<Self, WalError> {
        let file = Self::create_segment_file(&opts.dir, id)?;
        let path = segment_path(&opts.dir, id);
        let writer = Self {
            opts,
            index,
            file,
            path,
            id,
            len: SEGMENT_HEADER_BYTES,
            _lock: lock,
        };
        writer.register_active();
        Ok(writer)
    }

    /// Publishes the (new, empty) active segment in the index.
    fn register_active(&self) {
        let mut inner = self.index.lock();
        inner.segments.insert(
            self.id,
            SegmentInfo {
                path: self.path.clone(),
                durable_len: SEGMENT_HEADER_BYTES,
                file_len: SEGMENT_HEADER_BYTES,
                ranges: HashMap::new(),
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

    /// Appends `batches` with one write and one fdatasync, then publishes them in the index.
    /// A batch counts as appended only when this returns `Ok`.
    ///
    /// On `NoSpace` the segment is cut back to its previous durable length and the caller may
    /// retry the same batches later. Any other error is fatal for this writer.
    pub fn append(&mut self, batches: &[EncodedBatch]) -> Result<(), WalError> {
        if batches.is_empty() {
            return Ok(());
        }
        if self.len >= self.opts.segment_bytes_max {
            self.roll()?;
        }
        let total: usize = batches.iter().map(|b| b.frame.len()).sum();
        let mut buf = Vec::with_capacity(total);
        for b in batches {
            buf.extend_from_slice(&b.frame);
        }
        #[cfg(feature = "failpoints")]
        fail::fail_point!("wal-mid-append", |_| {
            // A torn append: half the group reaches the file, no fsync, then death.
            let _ = self.file.write_all(&buf[..buf.len() / 2]);
            eprintln!("flumen: failpoint wal-mid-append hit: aborting");
            std::process::abort()
        });
        if let Err(e) = self.file.write_all(&buf) {
            // Nothing was synced, so cutting back to the durable length is safe and leaves the
            // segment exactly as the index describes it.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            if e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull {
                return Err(WalError::NoSpace {
                    path: self.path.clone(),
                });
            }
            return Err(io_err(&self.path)(e));
        }
        self.file.sync_data().map_err(|source| WalError::Sync {
            path: self.path.clone(),
            source,
        })?;
        self.len += total as u64;
        let mut inner = self.index.lock();
        let seg = inner.segments.get_mut(&self.id).expect("active segment");
        for b in batches {
            seg.add(&b.tp, b.start_offset, b.last_offset);
        }
        seg.durable_len = self.len;
        seg.file_len = self.len;
        drop(inner);
        self.index
            .bytes_total
            .fetch_add(total as u64, Ordering::AcqRel);
        crate::crash_site!("wal-after-append");
        Ok(())
    }

    fn roll(&mut self) -> Result<(), WalError> {
        self.file = Self::create_segment_file(&self.opts.dir, self.id + 1)?;
        self.id += 1;
        self.path = segment_path(&self.opts.dir, self.id);
        self.len = SEGMENT_HEADER_BYTES;
        self.register_active();
        Ok(())
    }

    fn create_segment_file(dir: &Path, id: u64) -> Result<File, WalError> {
        let path = segment_path(dir, id);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(&segment_header(id)).map_err(io_err(&path))?;
        file.sync_all().map_err(|source| WalError::Sync {
            path: path.clone(),
            source,
        })?;
        fsync_dir(dir)?;
        Ok(file)
    }
}

/// Free bytes on the filesystem holding `dir`, from statvfs.
pub fn disk_free_bytes(dir: &Path) -> Option<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}
