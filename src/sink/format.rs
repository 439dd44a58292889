//! Record encodings for HDFS files: `text` (the event bytes, one per line, as Flume's
//! DataStream writes them) and `jsonl` (one JSON object per record with its Kafka metadata),
//! each optionally through gzip or zstd.

use std::io::Write;

use base64::Engine;
use serde_json::{Map, Value};

use crate::wal::Record;

pub use crate::config::{Compression, Format};

impl Format {
    /// Appends one record's line to `out`.
    pub fn encode(self, topic: &str, partition: i32, record: &Record, out: &mut Vec<u8>) {
        match self {
            Format::Text => {
                out.extend_from_slice(record.value.as_deref().unwrap_or_default());
                out.push(b'\n');
            }
            Format::JsonLines => {
                let mut m = Map::new();
                m.insert("topic".into(), topic.into());
                m.insert("partition".into(), partition.into());
                m.insert("offset".into(), record.offset.into());
                m.insert("timestamp".into(), record.timestamp_ms.into());
                put_bytes(&mut m, "key", record.key.as_deref());
                let mut headers = Map::new();
                for h in &record.headers {
                    let v = match h.value.as_deref() {
                        None => Value::Null,
                        Some(b) => match std::str::from_utf8(b) {
                            Ok(s) => s.into(),
                            Err(_) => base64::engine::general_purpose::STANDARD.encode(b).into(),
                        },
                    };
                    headers.insert(h.key.clone(), v);
                }
                m.insert("headers".into(), headers.into());
                put_bytes(&mut m, "value", record.value.as_deref());
                serde_json::to_writer(&mut *out, &Value::Object(m))
                    .expect("writing JSON into a Vec cannot fail");
                out.push(b'\n');
            }
        }
    }
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

    /// Bytes ready to be written to HDFS now.
    pub fn take_output(&mut self) -> Vec<u8> {
        match self {
            Encoder::Plain(v) => std::mem::take(v),
            Encoder::Gzip(e) => std::mem::take(e.get_mut()),
            Encoder::Zstd(e) => std::mem::take(e.get_mut()),
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
    use crate::wal::Header;
    use std::io::Read;

    fn record(value: &[u8]) -> Record {
        Record {
            offset: 7,
            timestamp_ms: Some(1000),
            key: Some(b"cell-1".to_vec()),
            value: Some(value.to_vec()),
            headers: vec![Header {
                key: "h".into(),
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
        assert_eq!(v["headers"]["h"], "x");
        assert_eq!(v["value_base64"], "/wA=");
        assert!(v.get("value").is_none());
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut e = Encoder::new(c).unwrap();
            let mut shipped = Vec::new();
            for i in 0..1000 {
                e.write(format!("line {i}\n").as_bytes()).unwrap();
                shipped.extend(e.take_output());
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
