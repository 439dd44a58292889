//! Dead letters: a poison record (oversized, or a line break under `format = "text"`), with its
//! topic, partition, offset, timestamp, key, headers, value and why it was diverted, written as
//! one JSON document to `hdfs.dead_letter_dir`. The name is a function of the offset, and the
//! file is written under a hidden temporary name and renamed into place without overwrite, so
//! a crash never leaves an empty or partial dead letter that a later run would take as
//! delivered, and a range written again (after a crash or by a zombie) never writes it twice.

use bytes::Bytes;
use hdfs_native::HdfsError;
use serde_json::Value;

use super::format::jsonl_object;
use crate::hdfs::{Hdfs, HdfsWriter};
use crate::poison::Poison;
use crate::wal::{RecordRef, TopicPartition};

/// Whether this call put the dead letter in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Ours is the one in place.
    New,
    /// One was already there (an earlier run, or another writer of the range): ours was dropped.
    Existing,
}

/// `<dir>/<topic>+<partition>+<offset:020>.json`: one name per record, whoever writes it.
pub fn dead_letter_path(dir: &str, tp: &TopicPartition, offset: i64) -> String {
    format!("{dir}/{}+{}+{offset:020}.json", tp.topic, tp.partition)
}

/// The dead letter's content: the record as its `jsonl` object, so no byte of it is lost,
/// plus `reason` and, where the poison has one, `detail` (which field of a value schema
/// misfit, and how).
pub fn dead_letter_body(
    tp: &TopicPartition,
    record: &impl RecordRef,
    poison: Poison,
    detail: Option<&str>,
) -> Vec<u8> {
    let mut m = jsonl_object(&tp.topic, tp.partition, record);
    m.insert("reason".into(), format!("the record {poison}").into());
    if let Some(d) = detail {
        m.insert("detail".into(), d.into());
    }
    let mut out = serde_json::to_vec(&Value::Object(m)).expect("JSON into a Vec cannot fail");
    out.push(b'\n');
    out
}

/// Writes `body` to `path` atomically. A dead letter already at `path` was delivered by an
/// earlier run (its name is a function of the offset), so ours is dropped.
pub async fn write_dead_letter<H: Hdfs>(
    hdfs: &H,
    path: &str,
    body: Bytes,
) -> Result<Written, HdfsError> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let temp = format!("{dir}/.{name}.{}.tmp", crate::commit::naming::new_token());
    let mut w = hdfs.create(&temp).await?;
    w.write(body).await?;
    w.hsync().await?;
    w.close().await?;
    match hdfs.rename(&temp, path).await {
        Ok(()) => {
            crate::crash_site!("dead-letter-after-rename");
            Ok(Written::New)
        }
        Err(HdfsError::AlreadyExists(_)) => {
            hdfs.delete(&temp, false).await?;
            Ok(Written::Existing)
        }
        // A retried rename whose first try applied: the source (our own, uniquely named
        // temporary) is gone and the dead letter is in place, so the rename was ours.
        Err(HdfsError::FileNotFound(_)) if hdfs.stat(path).await.is_ok() => Ok(Written::New),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Header, Record};

    /// Regression: a dead letter kept only the value; it must hold the whole record.
    #[test]
    fn body_holds_the_whole_record_and_why() {
        let tp = TopicPartition::new("t", 3);
        let record = Record {
            offset: 12,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"k".to_vec()),
            value: Some(vec![0xff; 3]),
            headers: vec![Header {
                key: vec![0xff],
                value: Some(b"v".to_vec()),
            }],
        };
        let body = dead_letter_body(&tp, &record, Poison::Oversized { bytes: 3, max: 2 }, None);
        assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "topic": "t", "partition": 3, "offset": 12, "timestamp": 1_700_000_000_000i64,
                "key": "k", "headers": [{"key_base64": "/w==", "value": "v"}],
                "value_base64": "////",
                "reason": "the record is 3 bytes, above kafka.record_bytes_max (2)",
            })
        );
        assert_eq!(
            dead_letter_path("/dl", &tp, 12),
            "/dl/t+3+00000000000000000012.json"
        );
    }
}
