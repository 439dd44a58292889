//! Streaming frame encoder: writes one batch frame record by record, straight from borrowed
//! bytes, into one growing buffer. The source encodes every Kafka message into its
//! partition's pending frame as it arrives, with no `Record`/`Batch` copy in between.
//!
//! It writes frame version 2 (`wal-format.md` §2.3), or version 1 where `channel.frame_version`
//! asks for it (byte for byte what bincode 1.3.3 writes for the same `Batch`, which a property
//! test checks). The batch header is the same in both:
//! topic (u64 length + bytes), partition i32, start_offset i64, last_offset i64, record count
//! u64, all little-endian. Each record is then: the offset's distance from the previous one
//! less one (the first counts from `start_offset - 1`), as a varint; the timestamp as a tag
//! 0/1 and a zigzag varint of its difference from the previous record's timestamp (0 before
//! the first); key and value as a varint of length + 1, 0 for none, then the bytes; a varint
//! header count, and per header the name (varint length + bytes) and the value as a key is.
//! `last_offset` and the record count are patched by [`FrameBuilder::finish`], the frame
//! header (length, CRC32) too.
//!
//! Invariants, as `Batch::validate` states them for the serde path: the start offset is not
//! negative, record offsets increase from the start, `last_offset` is at least the start and
//! the last record, and the payload never exceeds `FRAME_PAYLOAD_BYTES_MAX` (a record that
//! would cross it is refused before it is kept, so the caller flushes first).
//!
//! [`Batch`]: super::frame::Batch

use super::frame::{
    Batch, FrameError, FrameVersion, FRAME_HEADER_BYTES, FRAME_KIND_BATCH, FRAME_MAGIC,
    FRAME_PAYLOAD_BYTES_MAX,
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
    version: FrameVersion,
    start: i64,
    /// The last record's offset; `start - 1` while there is none.
    previous: i64,
    /// The last timestamp written, the base of the next one's delta; 0 before the first.
    previous_ts: i64,
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
    /// Starts a frame of `version` for `topic`/`partition` whose range begins at `start`,
    /// writing into `buf` (cleared; pass a buffer with capacity to avoid regrowing it).
    pub fn new(
        topic: &str,
        partition: i32,
        start: i64,
        version: FrameVersion,
        mut buf: Vec<u8>,
    ) -> Result<Self, FrameError> {
        if start < 0 {
            return Err(FrameError::Invalid("negative start offset"));
        }
        buf.clear();
        buf.extend_from_slice(&FRAME_MAGIC);
        buf.extend_from_slice(&[version.byte(), FRAME_KIND_BATCH, 0, 0]);
        buf.extend_from_slice(&[0; 8]); // payload length and CRC, patched by `finish`
        buf.extend_from_slice(&(topic.len() as u64).to_le_bytes());
        buf.extend_from_slice(topic.as_bytes());
        buf.extend_from_slice(&partition.to_le_bytes());
        buf.extend_from_slice(&start.to_le_bytes());
        let last_at = buf.len();
        buf.extend_from_slice(&[0; 16]); // last_offset and record count, patched by `finish`
        let b = Self {
            buf,
            version,
            start,
            previous: start - 1,
            previous_ts: 0,
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
        match self.version {
            FrameVersion::V1 => put_record_v1(&mut self.buf, r, headers),
            FrameVersion::V2 => self.put_record_v2(r, headers),
        }
        if self.payload_len() > FRAME_PAYLOAD_BYTES_MAX {
            self.buf.truncate(mark);
            return Ok(Pushed::Full);
        }
        self.previous = r.offset;
        self.previous_ts = r.timestamp_ms.unwrap_or(self.previous_ts);
        self.records += 1;
        Ok(Pushed::Kept)
    }

    fn put_record_v2<'h>(
        &mut self,
        r: &RecordFields<'_>,
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    ) {
        // The fields before the key go through a stack buffer, one copy into the frame: a
        // record is a few bytes of varints around its key and value.
        let mut head = Varints::new();
        // The true distance is 1..2^64 since `offset > previous`, so the wrap is exact.
        head.put(r.offset.wrapping_sub(self.previous).wrapping_sub(1) as u64);
        match r.timestamp_ms {
            None => head.byte(0),
            Some(t) => {
                head.byte(1);
                head.put(zigzag(t.wrapping_sub(self.previous_ts)));
            }
        }
        let b = &mut self.buf;
        put_option_after(b, &mut head, r.key);
        put_option_after(b, &mut Varints::new(), r.value);
        put_headers(b, headers);
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

/// The frame's CRC over header bytes 4..12 and the payload (`wal-format.md` §2.2).
fn frame_crc(frame: &[u8]) -> u32 {
    super::frame::frame_crc(&frame[..12], &frame[FRAME_HEADER_BYTES..])
}

/// The frame of a whole `Batch` (the tools' and tests' path; the source pushes as it polls).
pub fn encode_batch(batch: &Batch, version: FrameVersion) -> Result<Frame, FrameError> {
    batch.validate()?;
    let bytes = batch.payload_bytes() + 64;
    let mut b = FrameBuilder::new(
        &batch.topic,
        batch.partition,
        batch.start_offset,
        version,
        Vec::with_capacity(bytes),
    )?;
    for r in &batch.records {
        let fields = RecordFields {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
        };
        let headers = r.headers.iter().map(|h| (&h.key[..], h.value.as_deref()));
        if b.push(&fields, headers)? == Pushed::Full {
            return Err(b.too_large(&fields));
        }
    }
    b.finish(Some(batch.last_offset))
}

/// A version 1 record: bincode 1.3.3's fixed-width little-endian fields.
fn put_record_v1<'h>(
    b: &mut Vec<u8>,
    r: &RecordFields<'_>,
    headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
) {
    let fixed_bytes = |b: &mut Vec<u8>, bytes: &[u8]| {
        b.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        b.extend_from_slice(bytes);
    };
    let fixed_option = |b: &mut Vec<u8>, bytes: Option<&[u8]>| match bytes {
        None => b.push(0),
        Some(bytes) => {
            b.push(1);
            fixed_bytes(b, bytes);
        }
    };
    b.extend_from_slice(&r.offset.to_le_bytes());
    match r.timestamp_ms {
        None => b.push(0),
        Some(t) => {
            b.push(1);
            b.extend_from_slice(&t.to_le_bytes());
        }
    }
    fixed_option(b, r.key);
    fixed_option(b, r.value);
    let count_at = b.len();
    b.extend_from_slice(&[0; 8]);
    let mut count = 0u64;
    for (name, value) in headers {
        fixed_bytes(b, name);
        fixed_option(b, value);
        count += 1;
    }
    b[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
}

/// A few varints gathered on the stack, to be copied into a frame at once. 32 bytes: the most
/// a record puts here is 31 (offset delta, timestamp tag and delta, key length). Handed on by
/// reference: moving the struct right after its bytes were stored one by one stalls the load
/// on store forwarding, which doubled the encode time in `cargo bench --bench codec`.
struct Varints {
    bytes: [u8; 32],
    len: usize,
}

impl Varints {
    #[inline]
    fn new() -> Self {
        Varints {
            bytes: [0; 32],
            len: 0,
        }
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    /// `v` as unsigned LEB128: seven bits a byte, low first, the high bit set on all but the
    /// last.
    #[inline]
    fn put(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Maps a signed difference to an unsigned one that is small when the difference is near 0.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A varint length, then the bytes.
fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    let mut head = Varints::new();
    head.put(bytes.len() as u64);
    b.extend_from_slice(head.bytes());
    b.extend_from_slice(bytes);
}

/// Length + 1, or 0 for none, then the bytes.
fn put_option(b: &mut Vec<u8>, bytes: Option<&[u8]>) {
    put_option_after(b, &mut Varints::new(), bytes)
}

/// `head`, then `bytes` as `put_option` writes them: one copy for the varints, one for the
/// bytes.
#[inline]
fn put_option_after(b: &mut Vec<u8>, head: &mut Varints, bytes: Option<&[u8]>) {
    match bytes {
        None => head.byte(0),
        Some(bytes) => head.put(bytes.len() as u64 + 1),
    }
    b.extend_from_slice(head.bytes());
    if let Some(bytes) = bytes {
        b.extend_from_slice(bytes);
    }
}

/// The header count, then each header. The count is not known until the iterator ends: one
/// byte is kept for it and widened in place in the rare case of 128 headers or more.
fn put_headers<'h>(
    b: &mut Vec<u8>,
    headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
) {
    let count_at = b.len();
    b.push(0);
    let mut count = 0u64;
    for (name, value) in headers {
        put_bytes(b, name);
        put_option(b, value);
        count += 1;
    }
    if count < 0x80 {
        b[count_at] = count as u8;
    } else {
        let mut wide = Varints::new();
        wide.put(count);
        b.splice(count_at..count_at + 1, wide.bytes().iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::frame::{decode_frame, encode_frame, encode_frame_v1, Batch, Header, Record};
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
        build_as(batch, through, FrameVersion::V2)
    }

    fn build_as(batch: &Batch, through: Option<i64>, version: FrameVersion) -> Frame {
        let mut b = FrameBuilder::new(
            &batch.topic,
            batch.partition,
            batch.start_offset,
            version,
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
            let mut v1 = Vec::new();
            encode_frame_v1(&batch, &mut v1).unwrap();
            prop_assert_eq!(&build_as(&batch, through, FrameVersion::V1).bytes, &v1);
            prop_assert_eq!(decode_frame(&v1).unwrap().0, batch.clone());
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

    /// The header count is written before the headers are known: 128 and more take a wider
    /// varint, moved into place after them.
    #[test]
    fn a_record_with_many_headers_round_trips() {
        for n in [127usize, 128, 300] {
            let headers: Vec<Header> = (0..n)
                .map(|i| Header {
                    key: i.to_string().into_bytes(),
                    value: (i % 2 == 0).then(|| vec![i as u8]),
                })
                .collect();
            let record = |offset| Record {
                offset,
                timestamp_ms: Some(-5),
                key: None,
                value: Some(b"v".to_vec()),
                headers: headers.clone(),
            };
            let batch = Batch {
                topic: "t".into(),
                partition: 1,
                start_offset: 0,
                last_offset: 1,
                records: vec![record(0), record(1)],
            };
            let frame = build(&batch, None);
            assert_eq!(decode_frame(&frame.bytes).unwrap().0, batch, "{n} headers");
        }
    }

    /// The extremes of both versions: offsets at `i64::MAX` from a start of 0 and from a start
    /// of `i64::MAX`, timestamps jumping between `i64::MIN` and `i64::MAX`, none between.
    #[test]
    fn extreme_offsets_and_timestamps_round_trip() {
        let record = |offset, timestamp_ms| Record {
            offset,
            timestamp_ms,
            key: Some(Vec::new()),
            value: None,
            headers: vec![],
        };
        let batches = [
            (
                0,
                vec![record(0, Some(i64::MIN)), record(i64::MAX, Some(i64::MAX))],
            ),
            (i64::MAX, vec![record(i64::MAX, Some(-1))]),
            (
                5,
                vec![
                    record(5, Some(i64::MAX)),
                    record(6, None),
                    record(7, Some(i64::MIN)),
                    record(i64::MAX - 1, Some(0)),
                ],
            ),
        ];
        for (start, records) in batches {
            let last = records.last().unwrap().offset;
            let batch = Batch {
                topic: "t".into(),
                partition: 0,
                start_offset: start,
                last_offset: last,
                records,
            };
            for version in [FrameVersion::V1, FrameVersion::V2] {
                let frame = build_as(&batch, None, version);
                assert_eq!(decode_frame(&frame.bytes).unwrap().0, batch, "{version:?}");
            }
        }
    }

    #[test]
    fn offsets_must_increase_and_start_must_not_be_negative() {
        assert!(FrameBuilder::new("t", 0, -1, FrameVersion::V2, Vec::new()).is_err());
        let mut b = FrameBuilder::new("t", 0, 10, FrameVersion::V2, Vec::new()).unwrap();
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
        let mut b = FrameBuilder::new("t", 3, 0, FrameVersion::V2, Vec::new()).unwrap();
        assert_eq!(b.push(&r(0, &big), []), Ok(Pushed::Kept));
        let len = b.len();
        assert_eq!(b.push(&r(1, &big), []), Ok(Pushed::Full));
        assert_eq!((b.len(), b.records()), (len, 1));
        let frame = b.finish(None).unwrap();
        let (decoded, _) = decode_frame(&frame.bytes).unwrap();
        assert_eq!((decoded.records.len(), decoded.last_offset), (1, 0));

        let huge = vec![7u8; FRAME_PAYLOAD_BYTES_MAX];
        let mut empty = FrameBuilder::new("t", 3, 0, FrameVersion::V2, Vec::new()).unwrap();
        assert_eq!(empty.push(&r(0, &huge), []), Ok(Pushed::Full));
        assert!(empty.is_empty());
        assert!(matches!(
            empty.too_large(&r(0, &huge)),
            FrameError::TooLarge(n) if n > FRAME_PAYLOAD_BYTES_MAX
        ));
    }
}
