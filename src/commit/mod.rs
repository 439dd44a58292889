//! The exactly-once file commit on HDFS: a per-partition ledger of claimed offset ranges that is
//! never undone (`ledger.rs`), with every HDFS name built in one place (`naming.rs`). Generic
//! over [`crate::hdfs::Hdfs`], so the deterministic simulation runs this very code against an
//! in-memory HDFS. The protocol and its crash analysis are in `wal-format.md` §6-7.

pub mod ledger;
pub mod naming;

use hdfs_native::HdfsError;

use crate::wal::TopicPartition;

pub use ledger::{CommitOutcome, Ledger, Marks, Position, Staged, Tip};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    // Brief: the source's RemoteException text carries the whole Java stack trace.
    #[error("HDFS {op} {path}: {}", crate::hdfs_fault::Brief(source))]
    Hdfs {
        op: &'static str,
        path: String,
        source: HdfsError,
    },
    #[error("ledger entry {path} does not parse: {reason}")]
    BadEntry { path: String, reason: String },
    #[error(
        "partition {tp}: the final path {path} for offsets [{first}, {last}] is taken by a file \
         flumen did not write there; move it away and the partition continues"
    )]
    FinalOccupied {
        tp: TopicPartition,
        path: String,
        first: i64,
        last: i64,
    },
    #[error("ledger of {tp}: {reason}")]
    Refused { tp: TopicPartition, reason: String },
    #[error("HDFS client for {url}: {}", crate::hdfs_fault::Brief(source))]
    Connect { url: String, source: HdfsError },
}
