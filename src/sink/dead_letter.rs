//! Dead letters: an oversized record, with its key, headers, offset and timestamp, written as
//! one JSON document to `hdfs.dead_letter_dir`. The file is written under a hidden temporary
//! name and renamed into place without overwrite, so a crash never leaves an empty or partial
//! dead letter that a later run would take as delivered.

use bytes::Bytes;
use hdfs_native::HdfsError;

use super::format::Format;
use crate::hdfs::{Hdfs, HdfsWriter};
use crate::wal::{Record, TopicPartition};

/// The dead letter's content: the record as one `jsonl` line, so no byte of it is lost.
pub fn dead_letter_body(tp: &TopicPartition, record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    Format::JsonLines.encode(&tp.topic, tp.partition, record, &mut out);
    out
}

/// Writes `body` to `path` atomically. A dead letter already at `path` was delivered by an
/// earlier run (its name is a function of the offset), so ours is dropped.
pub async fn write_dead_letter<H: Hdfs>(
    hdfs: &H,
    path: &str,
    body: Bytes,
) -> Result<(), HdfsError> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let temp = format!("{dir}/.{name}.{}.tmp", crate::commit::naming::new_token());
    let mut w = hdfs.create(&temp).await?;
    w.write(body).await?;
    w.hsync().await?;
    w.close().await?;
    match hdfs.rename(&temp, path).await {
        Ok(()) => Ok(()),
        Err(HdfsError::AlreadyExists(_)) => hdfs.delete(&temp, false).await.map(|_| ()),
        Err(e) => Err(e),
    }
}
