//! Segment files read back: naming, the 32-byte header, directory listing, and the recovery
//! scan that resynchronises on the next intact frame after damage (`wal-format.md` §2, §4).
//! Everything here is read-only; only `writer.rs`, `index.rs` and `recovery.rs` create,
//! rename, truncate or delete channel files.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::frame::{self, Seed, FRAME_HEADER_BYTES, FRAME_MAGIC};
use super::log::{io_err, WalError};
use super::view::{BatchView, FrameShape};
use super::TopicPartition;

/// ASCII "FLUMENWS": flumen WAL segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLUMENWS";
/// The segment version this binary writes by default (`channel.segment_version`): 2 binds each
/// frame's CRC to the segment's id and ends the data with a zero end marker, so a segment file
/// can be recycled (`wal-format.md` §2.1, §5). Version 1 segments are still read and written.
pub const SEGMENT_VERSION: u32 = 2;
/// magic(8) + version(4) + reserved(4) + segment_id(8) + crc32(4) + reserved(4).
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// A version 2 segment's data ends at 16 zero bytes where the next frame header would start
/// (`wal-format.md` §2.2): what lies after them is unused, not damage.
pub const END_MARKER: [u8; 16] = [0; 16];
/// Bytes read at a time while looking for the next frame magic after damage.
const RESYNC_WINDOW_BYTES: usize = 64 * 1024;

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// A trimmed segment that still had older segments before it leaves this empty file, so a gap
/// in segment ids always means a segment was lost, never that it was trimmed (§5).
pub fn placeholder_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.trimmed"))
}

/// A trimmed segment's file kept for reuse: the writer's next segment overwrites it instead of
/// allocating a new file (`wal-format.md` §5). It holds nothing the channel needs.
pub fn free_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.free"))
}

/// Segment ids (`*.wal`), trimmed-segment placeholders (`*.trimmed`) and files kept for reuse
/// (`*.free`) of a channel directory.
#[derive(Debug, Default)]
pub struct Listing {
    pub segments: Vec<u64>,
    pub placeholders: BTreeSet<u64>,
    pub free: BTreeSet<u64>,
}

pub fn list_dir(dir: &Path) -> Result<Listing, WalError> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".wal").and_then(|s| s.parse().ok()) {
            listing.segments.push(id);
        } else if let Some(id) = name.strip_suffix(".trimmed").and_then(|s| s.parse().ok()) {
            listing.placeholders.insert(id);
        } else if let Some(id) = name.strip_suffix(".free").and_then(|s| s.parse().ok()) {
            listing.free.insert(id);
        }
    }
    listing.segments.sort_unstable();
    Ok(listing)
}

/// Lists segment ids in a channel directory, oldest first (placeholders excluded).
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    Ok(list_dir(dir)?.segments)
}

/// The seed of a segment's frames: its id in version 2, none in version 1.
pub fn segment_seed(version: u32, id: u64) -> Seed {
    if version >= 2 {
        Seed::segment(id)
    } else {
        Seed::NONE
    }
}

pub fn segment_header(id: u64, version: u32) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment's header; returns the seed its frames are bound to.
pub fn check_segment_header(path: &Path, h: &[u8], id: u64) -> Result<Seed, WalError> {
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
    if !(1..=SEGMENT_VERSION).contains(&version) {
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
    Ok(segment_seed(version, id))
}

/// A damaged byte range found while scanning a segment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    pub segment: u64,
    pub path: PathBuf,
    pub byte_start: u64,
    /// Where the next intact frame starts (the scan resynchronised there), or the file's end.
    pub byte_end: u64,
    pub reason: String,
    /// The last intact batch before the damage, if any: (topic/partition, last offset).
    pub after: Option<(String, i64)>,
}

/// One intact frame found by [`scan_segment`], borrowed from the scan's buffer: recovery
/// needs only its partition and offsets, so no record is copied out (`to_batch` for a caller
/// that keeps it).
pub struct ScannedFrame<'a> {
    pub pos: u64,
    pub len: u64,
    pub batch: BatchView<'a>,
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub struct SegmentScan {
    /// End of the last intact frame: 32 for a header-only segment, 0 if the header is bad.
    pub end: u64,
    pub file_len: u64,
    /// What the segment's frames are bound to (its header's version says).
    pub seed: Seed,
    /// The inode read: a live channel's reader compares it to the path's afterwards
    /// (`survey::Reading::Live`).
    pub ino: u64,
    /// Damaged ranges, in file order; intact frames between and after them were kept.
    pub damage: Vec<Damage>,
    /// No longer than its header and without a valid one: what a crash or a full disk inside
    /// segment creation leaves. It never held a batch, so it is not damage.
    pub unfinished: bool,
}

/// Reads a segment frame by frame, calling `on_frame` for each intact one. A damaged frame is
/// reported as one range, from its start to the next offset where a whole frame verifies
/// (magic, header checks, length within the file and the 64 MiB limit, CRC, decode, batch
/// invariants), and the scan goes on from there. Memory is bounded by one frame.
pub fn scan_segment(
    path: &Path,
    id: u64,
    mut on_frame: impl FnMut(ScannedFrame<'_>),
) -> Result<SegmentScan, WalError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    let file_len = meta.len();
    let mut scan = SegmentScan {
        file_len,
        ino: std::os::unix::fs::MetadataExt::ino(&meta),
        ..Default::default()
    };
    let damage = |start: u64, end: u64, reason: String, after: Option<(String, i64)>| Damage {
        segment: id,
        path: path.to_path_buf(),
        byte_start: start,
        byte_end: end,
        reason,
        after,
    };
    let mut header = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    let read = file_len.min(SEGMENT_HEADER_BYTES) as usize;
    file.read_exact(&mut header[..read]).map_err(io_err(path))?;
    let seed = match check_segment_header(path, &header[..read], id) {
        Ok(seed) => seed,
        Err(e) => {
            // A segment header is never resynchronised past: an unknown version must not be
            // read by an old binary, and a header that fails its checks vouches for nothing.
            scan.unfinished = file_len <= SEGMENT_HEADER_BYTES;
            if !scan.unfinished {
                scan.damage.push(damage(0, file_len, e.to_string(), None));
            }
            return Ok(scan);
        }
    };
    scan.seed = seed;
    let mut pos = SEGMENT_HEADER_BYTES;
    scan.end = pos;
    let mut buf = Vec::new();
    let mut after = None;
    while pos < file_len {
        match read_frame_at(&mut file, pos, file_len, &mut buf, seed) {
            Ok(shape) => {
                let len = buf.len() as u64;
                let batch = shape.view(&buf);
                after = Some((
                    TopicPartition::new(batch.topic, batch.partition).to_string(),
                    batch.last_offset,
                ));
                on_frame(ScannedFrame { pos, len, batch });
                pos += len;
                scan.end = pos;
            }
            Err(reason) => {
                // Zeros never parse as a frame: in a version 2 segment they are the writer's
                // end marker, unless intact frames follow them. Then they are damage, and
                // reported, never a silent end.
                let marker = seed != Seed::NONE
                    && at_end_marker(&mut file, pos, file_len).map_err(io_err(path))?;
                let (next, reason) = if marker {
                    match intact_after(&mut file, pos, file_len, &mut buf, seed) {
                        Ok(None) => break,
                        next => (next, ZEROS_BEFORE_FRAMES.into()),
                    }
                } else {
                    (resync(&mut file, pos, file_len, &mut buf, seed), reason)
                };
                let end = next.map_err(io_err(path))?.unwrap_or(file_len);
                scan.damage.push(damage(pos, end, reason, after.clone()));
                pos = end;
            }
        }
    }
    Ok(scan)
}

/// Finds the first offset after the damaged frame at `bad` where intact frames resume, or
/// `None` if none follows. A candidate counts only if [`read_frame_at`] accepts it: header
/// checks and the length limit before any allocation, then the CRC over header and payload,
/// then decoding and the batch invariants.
///
/// When the damaged frame's header parses and the frame it declares ends at a verified frame
/// (or at the end of the file, or at a version 2 segment's end marker), the damage is most
/// likely in its payload or CRC: reading resumes there, so the scan never lands on something
/// that merely looks like a frame inside the damaged payload. Only if intact frames chain from
/// inside that span exactly to its end (the declared length itself was hit) does it resume at
/// the first of them. Otherwise every occurrence of the frame magic after `bad` is tried in
/// order.
pub fn resync(
    file: &mut File,
    bad: u64,
    limit: u64,
    buf: &mut Vec<u8>,
    seed: Seed,
) -> io::Result<Option<u64>> {
    if let Some(next) = declared_next(file, bad, limit)? {
        let marker = seed != Seed::NONE && next < limit && at_end_marker(file, next, limit)?;
        if next == limit || marker || read_frame_at(file, next, limit, buf, seed).is_ok() {
            let chains = |f: &mut File, c: u64| chains_to(f, c, next, buf, seed);
            let skipped = first_magic(file, bad + 1, next, chains)?;
            return Ok(skipped.or((next < limit).then_some(next)));
        }
    }
    intact_after(file, bad, limit, buf, seed)
}

const ZEROS_BEFORE_FRAMES: &str = "zero bytes where a frame should start, before intact frames";

/// The first offset after `pos` where a frame bound to `seed` verifies, if any.
fn intact_after(
    file: &mut File,
    pos: u64,
    limit: u64,
    buf: &mut Vec<u8>,
    seed: Seed,
) -> io::Result<Option<u64>> {
    first_magic(file, pos + 1, limit, |f, c| {
        read_frame_at(f, c, limit, buf, seed).is_ok()
    })
}

/// True if the bytes at `pos` are a version 2 segment's end marker: zero up to 16 bytes or
/// the end of the file, whichever comes first.
fn at_end_marker(file: &mut File, pos: u64, limit: u64) -> io::Result<bool> {
    let mut bytes = END_MARKER;
    let n = (limit - pos).min(END_MARKER.len() as u64) as usize;
    file.seek(SeekFrom::Start(pos))?;
    file.read_exact(&mut bytes[..n])?;
    Ok(bytes[..n] == END_MARKER[..n])
}

/// True if verified frames follow one another from `pos` and the last ends exactly at `end`.
fn chains_to(file: &mut File, mut pos: u64, end: u64, buf: &mut Vec<u8>, seed: Seed) -> bool {
    while pos < end {
        if read_frame_at(file, pos, end, buf, seed).is_err() {
            return false;
        }
        pos += buf.len() as u64;
    }
    pos == end
}

/// The first offset in `from..to` holding the frame magic for which `accept` holds. Reads the
/// file a window at a time, so memory stays bounded whatever the distance.
fn first_magic(
    file: &mut File,
    from: u64,
    to: u64,
    mut accept: impl FnMut(&mut File, u64) -> bool,
) -> io::Result<Option<u64>> {
    let mut window = vec![0u8; RESYNC_WINDOW_BYTES];
    let mut base = from;
    while base + FRAME_HEADER_BYTES as u64 <= to {
        let want = (to - base).min(RESYNC_WINDOW_BYTES as u64) as usize;
        file.seek(SeekFrom::Start(base))?;
        file.read_exact(&mut window[..want])?;
        let hits: Vec<u64> = window[..want]
            .windows(FRAME_MAGIC.len())
            .enumerate()
            .filter(|(_, w)| *w == FRAME_MAGIC)
            .map(|(i, _)| base + i as u64)
            .collect();
        for candidate in hits {
            if accept(file, candidate) {
                return Ok(Some(candidate));
            }
        }
        // Overlap by the magic's length minus one so a magic across two windows is seen.
        base += (want - (FRAME_MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

/// Where the frame at `pos` says the next one starts, if its header parses and the whole
/// declared frame lies inside the file.
fn declared_next(file: &mut File, pos: u64, limit: u64) -> io::Result<Option<u64>> {
    if pos + FRAME_HEADER_BYTES as u64 > limit {
        return Ok(None);
    }
    let mut header = [0u8; FRAME_HEADER_BYTES];
    file.seek(SeekFrom::Start(pos))?;
    file.read_exact(&mut header)?;
    Ok(frame::decode_header(&header)
        .ok()
        .map(|payload| pos + (FRAME_HEADER_BYTES + payload) as u64)
        .filter(|&next| next <= limit))
}

/// Reads and verifies the frame at `pos` into `buf` (which ends up holding exactly the frame);
/// `seed` is its segment's (`segment_seed`).
pub fn read_frame_at(
    file: &mut File,
    pos: u64,
    limit: u64,
    buf: &mut Vec<u8>,
    seed: Seed,
) -> Result<FrameShape, String> {
    read_frame_bytes_at(file, pos, limit, buf)?;
    FrameShape::check_seeded(buf, seed)
        .map(|(shape, _)| shape)
        .map_err(|e| e.to_string())
}

/// Reads the frame at `pos` into `buf`, which ends up holding exactly the frame, torn or
/// oversized headers refused; the caller checks the CRC and decodes.
pub fn read_frame_bytes_at(
    file: &mut File,
    pos: u64,
    limit: u64,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
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
    // Exactly the frame: `resize` alone would double the buffer, which lives as long as the
    // reader or the scan.
    buf.reserve_exact((total as usize).saturating_sub(buf.len()));
    // Read into the spare capacity: `resize` would zero every frame's bytes first.
    let body = total - FRAME_HEADER_BYTES as u64;
    let read = (&*file)
        .take(body)
        .read_to_end(buf)
        .map_err(|e| e.to_string())?;
    if read as u64 != body {
        return Err(format!(
            "the file ends {read} bytes into a {body}-byte frame payload"
        ));
    }
    Ok(())
}

/// What the channel holds for one segment: its durable length and, per partition, the offset
/// ranges of its intact batches (merged when contiguous, so normally one range per partition).
#[derive(Debug, Clone, Default)]
pub struct SegmentInfo {
    pub path: PathBuf,
    /// End of the last intact frame; readers never go past it.
    pub durable_len: u64,
    /// Bytes the file occupies on disk (damage counts here, not in `durable_len`);
    /// what `bytes_total` adds and what trimming gives back.
    pub file_len: u64,
    /// What its frames' CRCs are bound to (`segment_seed`).
    pub seed: Seed,
    pub ranges: HashMap<TopicPartition, Vec<(i64, i64)>>,
    /// Damaged byte ranges `[start, end)`; a reader that meets one continues at its end.
    pub damaged: Vec<(u64, u64)>,
}

impl SegmentInfo {
    pub fn add(&mut self, tp: &TopicPartition, start: i64, last: i64) {
        let ranges = self.ranges.entry(tp.clone()).or_default();
        match ranges.last_mut() {
            Some(r) if r.1 + 1 == start => r.1 = last,
            _ => ranges.push((start, last)),
        }
    }
}
