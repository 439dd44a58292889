//! A rolled file's way into HDFS, off the sink's task: finish it (tail, hsync, close), wait for
//! the partition's previous roll to commit, then commit it in the ledger.
//!
//! Closing is the slow step (hdfs-native waits 500 ms when the NameNode has not yet heard from
//! the DataNodes), so closes overlap freely: across partitions, and with the partition's next
//! file and its earlier rolls. Commits of one partition stay strictly in offset order: a roll
//! commits only after its predecessor committed, because a file's first offset must be its
//! partition's ledger next offset.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hdfs_native::HdfsError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::format::FileEncoder;
use crate::commit::{CommitError, CommitOutcome, Ledger, Marks};
use crate::events;
use crate::hdfs::{Hdfs, HdfsWriter, NativeHdfs, NativeWriter};
use crate::wal::TopicPartition;

/// A closed-for-writing file on its way to its final name.
pub struct Roll {
    pub tp: TopicPartition,
    /// The partition's activation this file belongs to; results of older ones are stale.
    pub epoch: u64,
    /// Tells the sink which of the partition's rolls ended.
    pub seq: u64,
    pub writer: NativeWriter,
    pub encoder: FileEncoder,
    pub token: String,
    pub temp: String,
    pub start: i64,
    pub last: i64,
    pub records: u64,
    pub final_path: String,
    /// When the roll was decided: the commit latency runs from here to the final name.
    pub began: Instant,
    /// Event time for the ledger (completeness markers).
    pub marks: Marks,
    /// The bucket's pending note, made before the claim (`late::pending_note`).
    pub pending: Option<String>,
}

#[derive(Debug)]
pub enum Outcome {
    Committed,
    /// Another writer claimed the range: the partition re-derives its position.
    Fenced,
    /// The partition's watermark passed the file's bucket before the claim: the partition
    /// re-derives its position and watermark and writes the range again.
    Late,
    /// Finishing the file failed (its staging copy is discarded): the range is rewritten.
    CloseFailed,
    /// The previous roll did not commit, so this one must not: discarded.
    Cancelled,
    /// The ledger refused the commit; not transient.
    Failed(CommitError),
}

/// What a roll task reports to the sink when it ends.
#[derive(Debug)]
pub struct Done {
    pub tp: TopicPartition,
    pub epoch: u64,
    pub seq: u64,
    pub start: i64,
    pub last: i64,
    pub outcome: Outcome,
}

/// Resolves to `true` once the previous roll of the partition committed; dropped (an error)
/// if it was aborted.
pub type Link = oneshot::Receiver<bool>;

/// Starts the roll's task; returns its handle and the link its successor waits on.
pub fn spawn(
    roll: Roll,
    ledger: Arc<Ledger<NativeHdfs>>,
    prev: Option<Link>,
    done: mpsc::UnboundedSender<Done>,
) -> (JoinHandle<()>, Link) {
    let (committed_tx, link) = oneshot::channel();
    let task = tokio::spawn(async move {
        let Roll {
            tp,
            epoch,
            seq,
            mut writer,
            encoder,
            token,
            temp,
            start,
            last,
            records,
            final_path,
            began,
            marks,
            pending,
        } = roll;
        let outcome = match finish(&mut writer, encoder).await {
            Err(e) => {
                // Debug: the writer reported the failure to /health and logged it, rate-limited.
                let error = crate::hdfs_fault::Brief(&e);
                tracing::debug!(partition = %tp, %temp, %error, "closing HDFS file failed; rewriting it from the channel");
                discard(&ledger, &tp, &token).await;
                Outcome::CloseFailed
            }
            Ok(()) => {
                let claim = Claim {
                    token: &token,
                    start,
                    last,
                    final_path: &final_path,
                    marks,
                    pending: pending.as_deref(),
                };
                commit_after(prev, &ledger, &tp, claim).await
            }
        };
        if matches!(outcome, Outcome::Committed) {
            events::file_committed(&tp, &final_path, start, last, records, began.elapsed());
        }
        // The sink hears of this roll before its successor can commit: results come in order.
        let committed = matches!(outcome, Outcome::Committed);
        let _ = done.send(Done {
            tp,
            epoch,
            seq,
            start,
            last,
            outcome,
        });
        let _ = committed_tx.send(committed);
    });
    (task, link)
}

/// Writes the encoder's tail, then hsync and close.
async fn finish(writer: &mut NativeWriter, encoder: FileEncoder) -> Result<(), HdfsError> {
    let tail = encoder.finish().map_err(HdfsError::IOError)?;
    if !tail.is_empty() {
        writer.write(Bytes::from(tail)).await?;
    }
    crate::crash_site!("sink-mid-write");
    writer.hsync().await?;
    writer.close().await
}

/// What a closed file's commit needs.
struct Claim<'a> {
    token: &'a str,
    start: i64,
    last: i64,
    final_path: &'a str,
    marks: Marks,
    pending: Option<&'a str>,
}

/// Waits for the previous roll, then claims and delivers this one.
async fn commit_after(
    prev: Option<Link>,
    ledger: &Ledger<NativeHdfs>,
    tp: &TopicPartition,
    c: Claim<'_>,
) -> Outcome {
    if let Some(prev) = prev {
        if prev.await != Ok(true) {
            discard(ledger, tp, c.token).await;
            return Outcome::Cancelled;
        }
    }
    // Before the claim, so a bucket with committed data always has its note.
    if let Some(note) = c.pending {
        if let Err(source) = ledger.hdfs().mkdirs(note).await {
            discard(ledger, tp, c.token).await;
            return Outcome::Failed(CommitError::Hdfs {
                op: "mkdirs",
                path: note.to_string(),
                source,
            });
        }
    }
    let committed = ledger
        .commit(tp, c.token, c.start, c.last, c.final_path, c.marks)
        .await;
    match committed {
        Ok(CommitOutcome::Committed) => {
            crate::crash_site!("commit-after-rename");
            Outcome::Committed
        }
        Ok(CommitOutcome::Fenced) => Outcome::Fenced,
        Ok(CommitOutcome::Late) => Outcome::Late,
        Err(e) => Outcome::Failed(e),
    }
}

async fn discard(ledger: &Ledger<NativeHdfs>, tp: &TopicPartition, token: &str) {
    if let Err(e) = ledger.discard(tp, token).await {
        tracing::warn!(partition = %tp, token, error = %e, "could not delete a discarded in-use file; the next reconciliation will");
    }
}
