//! The durable local channel: an append-only log of CRC-framed record batches (`wal-format.md`),
//! split into segment files and trimmed once HDFS holds everything a segment carries.
//!
//! The byte layout, the durability assumptions and the crash analysis live in `wal-format.md`.
//! `frame` is the codec, `segment` reads segment files back (header, recovery scan with
//! resynchronisation), `gaps` finds missing segments and offset-chain holes, `recovery` opens
//! a directory, `writer` creates and appends segments (the group-commit thread and the disk
//! status), `index` maps offsets to segments and trims, `log` holds the shared types,
//! `reader` follows the log for the sink, and `view` reads a frame's records without copying
//! them; `encoder` writes a frame record by record from borrowed bytes.

pub mod encoder;
pub mod frame;
pub mod gaps;
pub mod index;
pub mod log;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod survey;
pub mod view;
pub mod writer;

pub use frame::{Batch, FrameVersion, Header, Record};
pub use gaps::{ChainHole, Gaps, HoleCause, MissingSegments};
pub use index::WalIndex;
pub use log::{Damage, EncodedBatch, Wal, WalError, WalOptions};
pub use reader::WalReader;
pub use view::{BatchView, FrameShape, RecordRef, RecordView};
pub use writer::{BatchSender, ChannelWriter, DiskStatus, WalWriter};

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
