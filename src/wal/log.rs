//! The channel's shared types: `Wal` (what opening a directory yields; `recovery.rs` opens it),
//! `WalError`, `WalOptions` and `EncodedBatch`. The files themselves are handled by
//! `writer.rs` (create, append), `index.rs` (trim) and `recovery.rs` (open); `segment.rs`
//! reads them back. The re-exports keep the `wal::log::` paths the tools and tests use.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::encoder;
use super::frame::{Batch, FrameError, FrameVersion};
use super::gaps::Gaps;
pub use super::index::WalIndex;
pub use super::segment::{
    check_segment_header, list_segments, placeholder_path, read_frame_at, scan_segment,
    segment_path, Damage, ScannedFrame, SegmentInfo, END_MARKER, SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC, SEGMENT_VERSION,
};
pub use super::survey::{survey, Reading, Survey};
pub use super::writer::{disk_free_bytes, WalWriter};
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
    /// The segment version new segments get (`channel.segment_version`): 2 binds frames to
    /// their segment and reuses trimmed segment files; 1 is what builds before it read.
    pub segment_version: u32,
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
    /// The batch in the frame version this binary writes by default (tools and tests; the
    /// source encodes as it polls, in `channel.frame_version`).
    pub fn encode(batch: &Batch) -> Result<Self, FrameError> {
        let frame = encoder::encode_batch(batch, FrameVersion::default())?.bytes;
        Ok(Self {
            tp: TopicPartition::new(batch.topic.clone(), batch.partition),
            start_offset: batch.start_offset,
            last_offset: batch.last_offset,
            frame,
        })
    }
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
