//! The durable local channel: an append-only log of CRC-framed, bincode-encoded record batches,
//! split into segment files and trimmed once HDFS holds everything a segment carries.
//!
//! The byte layout, the durability assumptions and the crash analysis live in `wal-format.md`.
//! `frame` is the codec, `segment` reads segment files back (header, recovery scan with
//! resynchronisation), `gaps` finds missing segments and offset-chain holes, `log` owns the
//! files (open, lazy segment creation, append with group commit, trim) and `reader` follows
//! the log for the sink, and `view` reads a frame's records without copying them.

pub mod frame;
pub mod gaps;
pub mod log;
pub mod reader;
pub mod segment;
pub mod view;

pub use frame::{Batch, Header, Record};
pub use gaps::{ChainHole, Gaps, HoleCause, MissingSegments};
pub use log::{Damage, EncodedBatch, Wal, WalError, WalIndex, WalOptions, WalWriter};
pub use reader::WalReader;
pub use view::{BatchView, FrameShape, RecordRef, RecordView};

/// A Kafka topic and partition; the unit of ordering, ownership and commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}
