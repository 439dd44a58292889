//! Opening a channel directory: make it private, take its lock, survey every segment, tidy
//! what a crash left unfinished, report gaps, and rebuild the index. Writes nothing the data
//! depends on, so it succeeds on a full disk.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::gaps::Gaps;
use super::index::{remove_if_present, WalIndex};
use super::log::{io_err, Wal, WalError, WalOptions};
use super::segment::{free_path, placeholder_path, segment_path};
use super::survey::{survey, Reading, Survey};
use super::writer::WalWriter;

impl Wal {
    /// Opens (creating if needed) a channel directory: takes its lock, scans every segment and
    /// rebuilds the index. It writes nothing, so it succeeds on a full disk and the sink can
    /// drain the backlog: the active segment is created by the first append. Recovery never
    /// rewrites or truncates segments; damaged ranges stay on disk (reported) until trimmed.
    pub fn open(opts: WalOptions) -> Result<Wal, WalError> {
        let dir = opts.dir.clone();
        create_private_dir(&dir)?;
        let lock = lock_dir(&dir)?;
        let mut found = survey(&dir, Reading::Exclusive, |_, _| {})?;
        tidy_unfinished(&dir, &mut found)?;
        let gaps = found.gaps();
        log_gaps(&gaps);
        // Above every id a pooled file ever had: a reused file's old frames are bound to ids
        // below its new one, so none of them can verify in it (`wal-format.md` §5).
        let newest = found.segments.keys().chain(&found.free).max();
        let next_id = newest.map_or(1, |id| id + 1);
        let pool_max = if opts.segment_version >= 2 {
            POOL_FILES_MAX
        } else {
            0
        };
        let pool = keep_pool(&dir, &found.free, pool_max)?;
        let index = Arc::new(WalIndex::default());
        {
            let mut inner = index.lock();
            let bytes: u64 = found.segments.values().map(|s| s.file_len).sum();
            index.bytes_total.store(bytes, Ordering::Release);
            inner.dir = dir.clone();
            inner.segments = std::mem::take(&mut found.segments);
            inner.placeholders = std::mem::take(&mut found.placeholders);
            inner.active = next_id;
            inner.pool = pool;
            inner.pool_max = pool_max;
        }
        let writer = WalWriter::new(opts, index.clone(), next_id, lock);
        Ok(Wal {
            writer,
            index,
            damage: found.damage,
            gaps,
            batches_recovered: found.batches,
        })
    }
}

/// Trimmed segment files kept for reuse, at most: enough for the writer to roll into while the
/// sink trims behind it, and 4 x `segment_bytes_max` of disk, which the writer gives back first
/// when the disk runs low.
pub const POOL_FILES_MAX: usize = 4;

/// The pooled files open keeps (the oldest `max`); the rest are unlinked.
fn keep_pool(dir: &Path, free: &BTreeSet<u64>, max: usize) -> Result<VecDeque<u64>, WalError> {
    let mut pool = VecDeque::new();
    for &id in free {
        if pool.len() < max {
            pool.push_back(id);
        } else {
            remove_if_present(&free_path(dir, id))?;
        }
    }
    Ok(pool)
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
pub(super) const FILE_MODE: u32 = 0o600;

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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::wal::segment::list_segments;
    use crate::wal::{Batch, EncodedBatch, Record, WalOptions};

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
            segment_version: crate::wal::log::SEGMENT_VERSION,
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
