//! A read-only scan of a whole channel directory: what `Wal::open`, `wal check`, `wal dump`
//! and `offsets` all start from.
//!
//! `Wal::open` reads a directory it has locked, so nothing changes under it. The tools read a
//! channel a relay may be running on (`Reading::Live`). There the relay trims segments whose
//! batches are all in HDFS while the tool reads them: it unlinks an oldest segment, renames it
//! to the reuse pool (`<id>.free`, later rewritten as a new segment) or truncates it to a
//! `.trimmed` placeholder (`wal-format.md` §5). A live reader would then fail to open a listed
//! segment, or read a file whose bytes changed under it and report damage that is not there.
//! So a live reader checks, where a segment fails to open or shows damage, whether the path
//! still names the file it read at its full length; if not, the segment was trimmed during the
//! read and counts as trimmed, not as damage or a missing segment.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;

use super::log::WalError;
use super::segment::{
    list_dir, scan_segment, segment_path, Damage, ScannedFrame, SegmentInfo, SegmentScan,
    SEGMENT_HEADER_BYTES,
};
use super::TopicPartition;

/// Who else may change the directory while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The reader holds the channel's lock (`Wal::open`): every failure is real.
    Exclusive,
    /// A relay may be running (the tools): segments may be trimmed during the read.
    Live,
}

#[derive(Debug, Default)]
pub struct Survey {
    pub segments: BTreeMap<u64, SegmentInfo>,
    pub placeholders: BTreeSet<u64>,
    /// Trimmed segment files kept for reuse (`*.free`).
    pub free: BTreeSet<u64>,
    /// Segments left unfinished by a crash or a full disk during creation (never damage).
    pub unfinished: Vec<u64>,
    /// Listed segments the running relay trimmed while they were read (`Reading::Live`
    /// only): their batches were all in HDFS. Frames read from them before that showed were
    /// passed to `on_frame`, so a live survey is a snapshot, not an instant.
    pub trimmed_while_read: Vec<u64>,
    pub damage: Vec<Damage>,
    pub batches: u64,
}

/// Scans every segment of `dir`, calling `on_frame(segment id, frame)` for each intact frame.
pub fn survey(
    dir: &Path,
    reading: Reading,
    mut on_frame: impl FnMut(u64, &ScannedFrame),
) -> Result<Survey, WalError> {
    let listing = list_dir(dir)?;
    let mut out = Survey {
        placeholders: listing.placeholders,
        free: listing.free,
        ..Default::default()
    };
    for id in listing.segments {
        let path = segment_path(dir, id);
        let mut info = SegmentInfo {
            path: path.clone(),
            ..Default::default()
        };
        let scan = scan(&path, id, reading, |f| {
            out.batches += 1;
            let tp = TopicPartition::new(f.batch.topic, f.batch.partition);
            info.add(&tp, f.batch.start_offset, f.batch.last_offset);
            on_frame(id, &f);
        })?;
        let Some(scan) = scan else {
            out.trimmed_while_read.push(id);
            continue;
        };
        if scan.unfinished {
            out.unfinished.push(id);
            continue;
        }
        info.durable_len = scan.end.max(SEGMENT_HEADER_BYTES);
        info.file_len = scan.file_len;
        info.seed = scan.seed;
        info.damaged = scan
            .damage
            .iter()
            .map(|d| (d.byte_start, d.byte_end))
            .collect();
        out.damage.extend(scan.damage);
        out.segments.insert(id, info);
    }
    Ok(out)
}

/// [`scan_segment`], or `None` if reading `Live` and the segment was trimmed before or while
/// it was read.
pub fn scan(
    path: &Path,
    id: u64,
    reading: Reading,
    on_frame: impl FnMut(ScannedFrame<'_>),
) -> Result<Option<SegmentScan>, WalError> {
    let scan = match scan_segment(path, id, on_frame) {
        Err(WalError::Io { source, .. })
            if reading == Reading::Live && source.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        other => other?,
    };
    if reading == Reading::Live && !scan.damage.is_empty() && changed_since(path, &scan) {
        return Ok(None);
    }
    Ok(Some(scan))
}

/// Whether `path` no longer names the file `scan` read, at least as long as it was: unlinked
/// or renamed away (trimmed, pooled, reused) or truncated (becoming a placeholder).
fn changed_since(path: &Path, scan: &SegmentScan) -> bool {
    match fs::metadata(path) {
        Ok(meta) => {
            std::os::unix::fs::MetadataExt::ino(&meta) != scan.ino || meta.len() < scan.file_len
        }
        Err(_) => true,
    }
}

impl Survey {
    /// Missing segments and holes in partitions' offset chains (`wal-format.md` §4.1).
    /// An unfinished segment stands for its id like a placeholder: it never held a batch, and
    /// so does one trimmed while it was read: its batches are all in HDFS.
    pub fn gaps(&self) -> super::gaps::Gaps {
        let mut present = self.placeholders.clone();
        present.extend(self.unfinished.iter().copied());
        present.extend(self.trimmed_while_read.iter().copied());
        super::gaps::find_gaps(&self.segments, &present)
    }
}
