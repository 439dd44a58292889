//! Streaming frame encoder: writes one batch frame record by record, straight from borrowed
//! bytes, into one growing buffer. The source encodes every Kafka message into its
//! partition's pending frame as it arrives, with no `Record`/`Batch` copy in between.
//!
//! The bytes are exactly what `frame::encode_frame` writes for the equivalent [`Batch`]
//! (bincode 1.3.3, fixed-width little-endian integers; `wal-format.md` §2), which the tests
//! below check byte for byte. Layout of the payload:
//! topic (u64 length + bytes), partition i32, start_offset i64, last_offset i64, record count
//! u64, then per record: offset i64, timestamp (u8 tag 0/1 + i64), key and value (u8 tag 0/1 +
//! u64 length + bytes), header count u64, per header: name (u64 length + bytes), value (tag +
//! length + bytes). `last_offset` and the record count are patched by [`FrameBuilder::finish`],
//! the frame header (length, CRC32) too.
//!
//! Invariants, as `Batch::validate` states them for the serde path: the start offset is not
//! negative, record offsets increase from the start, `last_offset` is at least the start and
//! the last record, and the payload never exceeds `FRAME_PAYLOAD_BYTES_MAX` (a record that
//! would cross it is refused before it is kept, so the caller flushes first).
//!
//! [`Batch`]: super::frame::Batch

use super::frame::{
    FrameError, FRAME_HEADER_BYTES, FRAME_KIND_BATCH, FRAME_MAGIC, FRAME_PAYLOAD_BYTES_MAX,
    FRAME_VERSION,
};

/// One record's fields, borrowed from wherever they live (a librdkafka message).
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// What [`FrameBuilder::push`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The record is in the frame.
    Kept,
    /// The record would take the payload over `FRAME_PAYLOAD_BYTES_MAX`; the frame is as it
    /// was. Flush it and push the record into a new one; refused by an empty frame too, the
    /// record can never be stored (see [`FrameBuilder::too_large`]).
    Full,
}

/// A batch frame being built. Holds the frame bytes from the header on.
#[derive(Debug)]
pub struct FrameBuilder {
    buf: Vec<u8>,
    start: i64,
    /// The last record's offset; `start - 1` while there is none.
    previous: i64,
    records: u64,
    /// Where `last_offset` sits in `buf` (the record count follows it).
    last_at: usize,
}

/// A finished frame and the range it covers.
#[derive(Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub start_offset: i64,
    pub last_offset: i64,
    pub records: u64,
}

impl FrameBuilder {
    /// Starts a frame for `topic`/`partition` whose range begins at `start`, writing into
    /// `buf` (cleared; pass a buffer with capacity to avoid regrowing it).
    pub fn new(
        topic: &str,
        partition: i32,
        start: i64,
        mut buf: Vec<u8>,
    ) -> Result<Self, FrameError> {
        if start < 0 {
            return Err(FrameError::Invalid("negative start offset"));
        }
        buf.clear();
        buf.extend_from_slice(&FRAME_MAGIC);
        buf.extend_from_slice(&[FRAME_VERSION, FRAME_KIND_BATCH, 0, 0]);
        buf.extend_from_slice(&[0; 8]); // payload length and CRC, patched by `finish`
        put_bytes(&mut buf, topic.as_bytes());
        buf.extend_from_slice(&partition.to_le_bytes());
        buf.extend_from_slice(&start.to_le_bytes());
        let last_at = buf.len();
        buf.extend_from_slice(&[0; 16]); // last_offset and record count, patched by `finish`
        let b = Self {
            buf,
            start,
            previous: start - 1,
            records: 0,
            last_at,
        };
        if b.payload_len() > FRAME_PAYLOAD_BYTES_MAX {
            return Err(FrameError::TooLarge(b.payload_len()));
        }
        Ok(b)
    }

    /// Appends a record with its headers (name, value) in order. Refuses an offset that does
    /// not increase; answers `Full`, changing nothing, if the record does not fit.
    pub fn push<'h>(
        &mut self,
        r: &RecordFields<'_>,
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    ) -> Result<Pushed, FrameError> {
        if r.offset <= self.previous {
            return Err(FrameError::Invalid("record offsets not increasing"));
        }
        let mark = self.buf.len();
        let b = &mut self.buf;
        b.extend_from_slice(&r.offset.to_le_bytes());
        match r.timestamp_ms {
            None => b.push(0),
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&t.to_le_bytes());
            }
        }
        put_option(b, r.key);
        put_option(b, r.value);
        let count_at = b.len();
        b.extend_from_slice(&[0; 8]);
        let mut count = 0u64;
        for (name, value) in headers {
            put_bytes(b, name);
            put_option(b, value);
            count += 1;
        }
        b[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
        if self.payload_len() > FRAME_PAYLOAD_BYTES_MAX {
            self.buf.truncate(mark);
            return Ok(Pushed::Full);
        }
        self.previous = r.offset;
        self.records += 1;
        Ok(Pushed::Kept)
    }

    /// The error for a record refused by an empty frame: it alone exceeds the payload limit.
    pub fn too_large(&self, r: &RecordFields<'_>) -> FrameError {
        let len = |v: Option<&[u8]>| v.map_or(0, <[u8]>::len);
        FrameError::TooLarge(self.payload_len() + len(r.key) + len(r.value))
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes of the frame so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    fn payload_len(&self) -> usize {
        self.buf.len() - FRAME_HEADER_BYTES
    }

    /// Closes the frame. Its range ends at the last record, or at `through` if that is further
    /// (offsets consumed without a record); an empty frame without `through` covers `start`
    /// only, as the serde path did.
    pub fn finish(mut self, through: Option<i64>) -> Result<Frame, FrameError> {
        let last_record = if self.records == 0 {
            self.start
        } else {
            self.previous
        };
        let last = through.map_or(last_record, |t| t.max(last_record));
        let at = self.last_at;
        self.buf[at..at + 8].copy_from_slice(&last.to_le_bytes());
        self.buf[at + 8..at + 16].copy_from_slice(&self.records.to_le_bytes());
        let payload_len = self.payload_len();
        self.buf[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
        let crc = frame_crc(&self.buf);
        self.buf[12..16].copy_from_slice(&crc.to_le_bytes());
        Ok(Frame {
            bytes: self.buf,
            start_offset: self.start,
            last_offset: last,
            records: self.records,
        })
    }
}

/// The frame's CRC, computed as `frame::encode_frame` computes it.
fn frame_crc(frame: &[u8]) -> u32 {
    super::frame::frame_crc(&frame[..12], &frame[FRAME_HEADER_BYTES..])
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    b.extend_from_slice(bytes);
}

fn put_option(b: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => b.push(0),
        Some(bytes) => {
            b.push(1);
            put_bytes(b, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::frame::{decode_frame, encode_frame, Batch, Header, Record};
    use proptest::prelude::*;

    fn view(r: &Record) -> RecordFields<'_> {
        RecordFields {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
        }
    }

    fn build(batch: &Batch, through: Option<i64>) -> Frame {
        let mut b = FrameBuilder::new(
            &batch.topic,
            batch.partition,
            batch.start_offset,
            Vec::new(),
        )
        .unwrap();
        for r in &batch.records {
            let headers = r.headers.iter().map(|h| (&h.key[..], h.value.as_deref()));
            assert_eq!(b.push(&view(r), headers).unwrap(), Pushed::Kept);
        }
        b.finish(through).unwrap()
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..40)
    }

    fn record() -> impl Strategy<Value = (i64, Record)> {
        let header =
            (bytes(), proptest::option::of(bytes())).prop_map(|(key, value)| Header { key, value });
        (
            1i64..1000,
            proptest::option::of(any::<i64>()),
            proptest::option::of(bytes()),
            proptest::option::of(bytes()),
            proptest::collection::vec(header, 0..4),
        )
            .prop_map(|(gap, timestamp_ms, key, value, headers)| {
                let r = Record {
                    offset: 0,
                    timestamp_ms,
                    key,
                    value,
                    headers,
                };
                (gap, r)
            })
    }

    fn batch() -> impl Strategy<Value = (Batch, Option<i64>)> {
        (
            proptest::string::string_regex("[a-zA-Z0-9._-]{0,20}").unwrap(),
            any::<i32>(),
            0i64..i64::MAX / 4,
            proptest::collection::vec(record(), 0..12),
            proptest::option::of(-5i64..5000),
        )
            .prop_map(|(topic, partition, start, recs, through_gap)| {
                let mut next = start;
                let records: Vec<Record> = recs
                    .into_iter()
                    .map(|(gap, mut r)| {
                        r.offset = next + gap - 1;
                        next = r.offset + 1;
                        r
                    })
                    .collect();
                let last = records.last().map_or(start, |r| r.offset);
                let through = through_gap.map(|g| last + g);
                let batch = Batch {
                    topic,
                    partition,
                    start_offset: start,
                    last_offset: through.map_or(last, |t| t.max(last)),
                    records,
                };
                (batch, through)
            })
    }

    proptest! {
        /// The streaming encoder writes exactly what the serde encoder writes, and the decoder
        /// reads it back: None key/value/timestamp, headers, gaps, empty batches, `through`.
        #[test]
        fn builder_matches_encode_frame_byte_for_byte((batch, through) in batch()) {
            let mut want = Vec::new();
            encode_frame(&batch, &mut want).unwrap();
            let got = build(&batch, through);
            prop_assert_eq!(&got.bytes, &want);
            prop_assert_eq!(got.start_offset, batch.start_offset);
            prop_assert_eq!(got.last_offset, batch.last_offset);
            prop_assert_eq!(got.records, batch.records.len() as u64);
            let (decoded, used) = decode_frame(&got.bytes).unwrap();
            prop_assert_eq!(used, got.bytes.len());
            prop_assert_eq!(decoded, batch);
        }
    }

    #[test]
    fn offsets_must_increase_and_start_must_not_be_negative() {
        assert!(FrameBuilder::new("t", 0, -1, Vec::new()).is_err());
        let mut b = FrameBuilder::new("t", 0, 10, Vec::new()).unwrap();
        let r = |offset| RecordFields {
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(b"v"),
        };
        assert_eq!(
            b.push(&r(9), []),
            Err(FrameError::Invalid("record offsets not increasing"))
        );
        assert_eq!(b.push(&r(10), []), Ok(Pushed::Kept));
        assert!(b.push(&r(10), []).is_err());
        assert_eq!(b.records(), 1);
    }

    /// A record that would take the payload over the limit is refused and leaves the frame as
    /// it was; an empty frame refuses a record that can never fit, so the caller fails loudly.
    #[test]
    fn a_record_past_the_payload_limit_is_refused_without_changing_the_frame() {
        let big = vec![7u8; FRAME_PAYLOAD_BYTES_MAX / 2];
        let r = |offset, value| RecordFields {
            offset,
            timestamp_ms: Some(1),
            key: None,
            value: Some(value),
        };
        let mut b = FrameBuilder::new("t", 3, 0, Vec::new()).unwrap();
        assert_eq!(b.push(&r(0, &big), []), Ok(Pushed::Kept));
        let len = b.len();
        assert_eq!(b.push(&r(1, &big), []), Ok(Pushed::Full));
        assert_eq!((b.len(), b.records()), (len, 1));
        let frame = b.finish(None).unwrap();
        let (decoded, _) = decode_frame(&frame.bytes).unwrap();
        assert_eq!((decoded.records.len(), decoded.last_offset), (1, 0));

        let huge = vec![7u8; FRAME_PAYLOAD_BYTES_MAX];
        let mut empty = FrameBuilder::new("t", 3, 0, Vec::new()).unwrap();
        assert_eq!(empty.push(&r(0, &huge), []), Ok(Pushed::Full));
        assert!(empty.is_empty());
        assert!(matches!(
            empty.too_large(&r(0, &huge)),
            FrameError::TooLarge(n) if n > FRAME_PAYLOAD_BYTES_MAX
        ));
    }
}
