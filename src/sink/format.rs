//! Record encodings for HDFS files: `text` (the event bytes, one per line, as Flume's
//! DataStream writes them) and `jsonl` (one JSON object per record with its Kafka metadata),
//! each optionally through gzip or zstd.
//!
//! `text` writes the value's bytes as they are: a value holding a line break reaches it only
//! under `hdfs.text_newline_policy = "raw"` (see `crate::poison`), and a tombstone (no value)
//! and an empty value are both an empty line. `jsonl` keeps every byte and tells them apart.

use std::io::Write;

use base64::Engine;
use serde_json::{Map, Value};

use super::parquet::{ParquetEncoder, ParquetOptions};
use super::value_schema::Misfit;
use crate::wal::RecordRef;
#[cfg(test)]
use crate::wal::{Header, Record};

pub use crate::config::{Compression, Format};

impl Format {
    /// Appends one record's line to `out` (`text` and `jsonl`; Parquet files are encoded by
    /// [`FileEncoder::Parquet`], which needs the record's fields, not a line).
    pub fn encode(self, topic: &str, partition: i32, record: &impl RecordRef, out: &mut Vec<u8>) {
        match self {
            Format::Parquet => unreachable!("Parquet rows are pushed, not encoded as lines"),
            Format::Text => {
                out.extend_from_slice(record.value().unwrap_or_default());
                out.push(b'\n');
            }
            Format::JsonLines => {
                let m = jsonl_object(topic, partition, record);
                serde_json::to_writer(&mut *out, &Value::Object(m))
                    .expect("writing JSON into a Vec cannot fail");
                out.push(b'\n');
            }
        }
    }
}

/// One record as a `jsonl` object: topic, partition, offset, timestamp, key, headers, value.
pub fn jsonl_object(topic: &str, partition: i32, record: &impl RecordRef) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("topic".into(), topic.into());
    m.insert("partition".into(), partition.into());
    m.insert("offset".into(), record.offset().into());
    m.insert("timestamp".into(), record.timestamp_ms().into());
    put_bytes(&mut m, "key", record.key());
    m.insert("headers".into(), headers_list(record));
    put_bytes(&mut m, "value", record.value());
    m
}

/// Headers as Kafka holds them: an ordered list of `{"key", "value"}` objects, duplicates
/// included, each side as text or `*_base64` bytes (`put_bytes`). A JSON object kept only the
/// last of duplicate keys.
fn headers_list(record: &impl RecordRef) -> Value {
    let list = record
        .headers()
        .map(|(key, value)| {
            let mut m = Map::new();
            put_bytes(&mut m, "key", Some(key));
            put_bytes(&mut m, "value", value);
            Value::Object(m)
        })
        .collect();
    Value::Array(list)
}

/// UTF-8 bytes go in as `name`; anything else as `name_base64`, so no byte is ever lost.
fn put_bytes(m: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            m.insert(name.into(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                m.insert(name.into(), s.into());
            }
            Err(_) => {
                m.insert(
                    format!("{name}_base64"),
                    base64::engine::general_purpose::STANDARD.encode(b).into(),
                );
            }
        },
    }
}

/// One HDFS file's encoder: records become lines through a stream codec, or Parquet rows.
pub enum FileEncoder {
    Lines { format: Format, stream: Encoder },
    Parquet(Box<ParquetEncoder>),
}

/// Why `FileEncoder::push` did not add a record.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The value does not fit `hdfs.parquet.value_schema`; the file is as it was.
    #[error(transparent)]
    Misfit(#[from] Misfit),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl FileEncoder {
    pub fn new(
        format: Format,
        compression: Compression,
        parquet: &ParquetOptions,
        topic: &str,
    ) -> std::io::Result<Self> {
        Ok(match format {
            Format::Parquet => FileEncoder::Parquet(Box::new(
                ParquetEncoder::new(topic, compression, parquet).map_err(std::io::Error::other)?,
            )),
            format => FileEncoder::Lines {
                format,
                stream: Encoder::new(compression)?,
            },
        })
    }

    /// Adds one record; returns its size before compression (the measure of
    /// `hdfs.roll_bytes_max`). `line` is scratch space for a line format.
    pub fn push(
        &mut self,
        tp: &crate::wal::TopicPartition,
        record: &impl RecordRef,
        line: &mut Vec<u8>,
    ) -> Result<u64, PushError> {
        match self {
            FileEncoder::Lines { format, stream } => {
                line.clear();
                format.encode(&tp.topic, tp.partition, record, line);
                stream.write(line)?;
                Ok(line.len() as u64)
            }
            FileEncoder::Parquet(p) => p.push(tp.partition, record).map_err(|e| match e {
                super::parquet::PushError::Misfit(m) => PushError::Misfit(m),
                other => PushError::Io(std::io::Error::other(other)),
            }),
        }
    }

    /// The file can take no more records (a Parquet file at its row-group limit).
    pub fn full(&self) -> bool {
        match self {
            FileEncoder::Lines { .. } => false,
            FileEncoder::Parquet(p) => p.full(),
        }
    }

    /// Records held for a Parquet row group not yet encoded (0 for a line format).
    pub fn buffered_bytes(&self) -> usize {
        match self {
            FileEncoder::Lines { .. } => 0,
            FileEncoder::Parquet(p) => p.buffered_bytes(),
        }
    }

    pub fn pending_output_bytes(&self) -> usize {
        match self {
            FileEncoder::Lines { stream, .. } => stream.pending_output_bytes(),
            FileEncoder::Parquet(p) => p.pending_output_bytes(),
        }
    }

    /// See [`Encoder::take_output`].
    pub fn take_output(&mut self, capacity: usize) -> Vec<u8> {
        match self {
            FileEncoder::Lines { stream, .. } => stream.take_output(capacity),
            FileEncoder::Parquet(p) => p.take_output(capacity),
        }
    }

    /// Ends the file (a stream's trailer, Parquet's last row group and footer) and returns
    /// the remaining bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            FileEncoder::Lines { stream, .. } => stream.finish(),
            FileEncoder::Parquet(p) => p.finish().map_err(std::io::Error::other),
        }
    }
}

/// Streaming encoder in front of the HDFS writer: `write` takes uncompressed bytes,
/// `take_output` hands back what is ready to ship, `finish` closes the stream.
pub enum Encoder {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(c: Compression) -> std::io::Result<Self> {
        Ok(match c {
            Compression::None => Encoder::Plain(Vec::new()),
            Compression::Snappy => unreachable!("the config allows snappy with parquet only"),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Plain(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Encoder::Gzip(e) => e.write_all(bytes),
            Encoder::Zstd(e) => e.write_all(bytes),
        }
    }

    /// Bytes ready to be written to HDFS now. The next output goes into a buffer of `capacity`
    /// bytes, allocated once (growing by doubling from empty leaves up to twice the bytes
    /// allocated, and a shipped chunk stays allocated until HDFS acknowledges it).
    pub fn take_output(&mut self, capacity: usize) -> Vec<u8> {
        let next = Vec::with_capacity(capacity);
        match self {
            Encoder::Plain(v) => std::mem::replace(v, next),
            Encoder::Gzip(e) => std::mem::replace(e.get_mut(), next),
            Encoder::Zstd(e) => std::mem::replace(e.get_mut(), next),
        }
    }

    pub fn pending_output_bytes(&self) -> usize {
        match self {
            Encoder::Plain(v) => v.len(),
            Encoder::Gzip(e) => e.get_ref().len(),
            Encoder::Zstd(e) => e.get_ref().len(),
        }
    }

    /// Ends the stream and returns the remaining bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Plain(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn record(value: &[u8]) -> Record {
        Record {
            offset: 7,
            timestamp_ms: Some(1000),
            key: Some(b"cell-1".to_vec()),
            value: Some(value.to_vec()),
            headers: vec![Header {
                key: b"h".to_vec(),
                value: Some(b"x".to_vec()),
            }],
        }
    }

    #[test]
    fn text_is_exactly_the_value_and_a_newline() {
        let mut out = Vec::new();
        Format::Text.encode("t", 0, &record(b"jai mata di"), &mut out);
        assert_eq!(out, b"jai mata di\n");
    }

    #[test]
    fn jsonl_carries_metadata_and_never_drops_binary() {
        let mut out = Vec::new();
        Format::JsonLines.encode("t", 3, &record(&[0xff, 0x00]), &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 7);
        assert_eq!(v["key"], "cell-1");
        assert_eq!(
            v["headers"],
            serde_json::json!([{"key": "h", "value": "x"}])
        );
        assert_eq!(v["value_base64"], "/wA=");
        assert!(v.get("value").is_none());
    }

    /// Regression: jsonl headers were a JSON object, so duplicate keys kept only the last
    /// value and a key cut at a NUL collided with others. Now an ordered list keeps every
    /// header; binary keys and values are base64, a null value is null.
    #[test]
    fn jsonl_headers_are_an_ordered_list_with_duplicates_and_binary_keys() {
        let mut r = record(b"v");
        let h = |k: &[u8], v: Option<&[u8]>| Header {
            key: k.to_vec(),
            value: v.map(<[u8]>::to_vec),
        };
        r.headers = vec![
            h(b"a", Some(b"1")),
            h(b"a", Some(b"2")),
            h(b"a\0b", Some(b"x")),
            h(b"a\0c", None),
            h(&[0xc3, 0x28], Some(&[0xff])),
            h(b"", Some(b"")),
        ];
        let mut out = Vec::new();
        Format::JsonLines.encode("t", 0, &r, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["headers"],
            serde_json::json!([
                {"key": "a", "value": "1"},
                {"key": "a", "value": "2"},
                {"key": "a\u{0}b", "value": "x"},
                {"key": "a\u{0}c", "value": null},
                {"key_base64": "wyg=", "value_base64": "/w=="},
                {"key": "", "value": ""},
            ])
        );
    }

    /// Text cannot tell a tombstone from an empty value: both are an empty line (documented;
    /// the sink counts tombstones, and jsonl keeps them apart).
    #[test]
    fn text_writes_a_tombstone_and_an_empty_value_alike_and_jsonl_does_not() {
        let mut tombstone = record(b"");
        tombstone.value = None;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Format::Text.encode("t", 0, &tombstone, &mut a);
        Format::Text.encode("t", 0, &record(b""), &mut b);
        assert_eq!((a.as_slice(), b.as_slice()), (&b"\n"[..], &b"\n"[..]));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Format::JsonLines.encode("t", 0, &tombstone, &mut a);
        Format::JsonLines.encode("t", 0, &record(b""), &mut b);
        let (a, b): (Value, Value) = (
            serde_json::from_slice(&a).unwrap(),
            serde_json::from_slice(&b).unwrap(),
        );
        assert_eq!((&a["value"], &b["value"]), (&Value::Null, &Value::from("")));
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut e = Encoder::new(c).unwrap();
            let mut shipped = Vec::new();
            for i in 0..1000 {
                e.write(format!("line {i}\n").as_bytes()).unwrap();
                shipped.extend(e.take_output(0));
            }
            shipped.extend(e.finish().unwrap());
            let mut plain = String::new();
            match c {
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&shipped[..])
                        .read_to_string(&mut plain)
                        .unwrap();
                }
                _ => {
                    zstd::stream::read::Decoder::new(&shipped[..])
                        .unwrap()
                        .read_to_string(&mut plain)
                        .unwrap();
                }
            }
            assert_eq!(plain.lines().count(), 1000);
            assert_eq!(plain.lines().last(), Some("line 999"));
        }
    }
}
