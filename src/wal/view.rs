//! A zero-copy view over one channel frame: the sink formats records straight from the frame's
//! bytes instead of decoding a `Batch` (a `Vec` per key, value and header).
//!
//! It reads both frame versions (`wal-format.md` §2.3). A version 1 frame is accepted exactly
//! when [`decode_frame`](super::frame::decode_frame)'s bincode accepts it: the same header,
//! length and CRC checks, the payload read as bincode 1.3.3 reads it (fixed little-endian
//! integers, `u64` lengths bounded by the bytes left, `Option` tags 0 or 1, a UTF-8 topic, no
//! trailing bytes), then `Batch::validate`'s offset rules, in that order. The tests below hold
//! the two to that on random batches and corruptions. A version 2 frame has the same batch
//! header; its records use varints (at most 64 bits) and offset and timestamp deltas, and an
//! offset that would pass `i64::MAX` is refused.

use super::frame::{
    checked_payload, Batch, FrameError, FrameVersion as Wire, Header, Record, Seed,
    FRAME_HEADER_BYTES,
};

/// What a version 2 record's deltas count from: the previous record's offset (the start less
/// one before the first) and timestamp (0 before the first).
#[derive(Debug, Clone, Copy)]
struct Prev {
    offset: i64,
    ts: i64,
}

impl Prev {
    fn first(start_offset: i64) -> Self {
        Self {
            offset: start_offset.saturating_sub(1),
            ts: 0,
        }
    }
}

/// A frame that passed every check, by position only, so a reader can check it into its own
/// buffer and hand it out without borrowing ([`FrameShape::view`] borrows it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
    wire: Wire,
    topic: (usize, usize),
    partition: i32,
    start_offset: i64,
    last_offset: i64,
    /// Where the first record starts, and the frame's end.
    records: (usize, usize),
    count: usize,
}

impl FrameShape {
    /// Checks the frame at the front of `bytes` as `decode_frame` does; returns its shape and
    /// its length.
    pub fn check(bytes: &[u8]) -> Result<(Self, usize), FrameError> {
        Self::check_seeded(bytes, Seed::NONE)
    }

    /// As [`FrameShape::check`], for a frame whose CRC is bound to `seed` (its segment's).
    pub fn check_seeded(bytes: &[u8], seed: Seed) -> Result<(Self, usize), FrameError> {
        let (_, total) = checked_payload(bytes, seed)?;
        Ok((Self::check_payload(&bytes[..total])?, total))
    }

    fn check_payload(frame: &[u8]) -> Result<Self, FrameError> {
        let wire = Wire::from_byte(frame[4]).expect("checked_payload knows the version");
        let mut c = Cursor {
            bytes: frame,
            at: FRAME_HEADER_BYTES,
        };
        let topic = c.bytes()?;
        std::str::from_utf8(topic).map_err(|e| decode(format!("topic: {e}")))?;
        let topic = (c.at - topic.len(), c.at);
        let (partition, start_offset, last_offset) = (c.i32()?, c.i64()?, c.i64()?);
        let count = c.u64()?;
        let records_at = c.at;
        // Decode every record first, as bincode does, then apply `Batch::validate`'s rules.
        let (mut increasing, mut prev) = (true, Prev::first(start_offset));
        let mut n = 0u64;
        while n < count {
            let before = prev.offset;
            increasing &= read_record(&mut c, wire, &mut prev)?.offset > before;
            n += 1;
        }
        if c.at != frame.len() {
            return Err(decode("trailing bytes after the batch".into()));
        }
        validate(start_offset, last_offset, increasing, prev.offset)?;
        Ok(Self {
            wire,
            topic,
            partition,
            start_offset,
            last_offset,
            records: (records_at, frame.len()),
            count: count as usize, // at most the frame's length: each record took bytes
        })
    }

    /// The view over `frame`, the bytes this shape was checked on.
    pub fn view<'a>(&self, frame: &'a [u8]) -> BatchView<'a> {
        assert_eq!(
            frame.len(),
            self.records.1,
            "a frame other than the checked one"
        );
        BatchView {
            topic: std::str::from_utf8(&frame[self.topic.0..self.topic.1]).expect("checked"),
            partition: self.partition,
            start_offset: self.start_offset,
            last_offset: self.last_offset,
            frame,
            shape: *self,
        }
    }
}

/// `Batch::validate`, on what the walk over the records found.
fn validate(start: i64, last: i64, increasing: bool, previous: i64) -> Result<(), FrameError> {
    if start < 0 {
        return Err(FrameError::Invalid("negative start offset"));
    }
    if last < start {
        return Err(FrameError::Invalid("last offset below start offset"));
    }
    if !increasing {
        return Err(FrameError::Invalid("record offsets not increasing"));
    }
    if previous > last {
        return Err(FrameError::Invalid("record beyond last offset"));
    }
    Ok(())
}

/// One batch, borrowed from its frame.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub start_offset: i64,
    pub last_offset: i64,
    frame: &'a [u8],
    shape: FrameShape,
}

impl<'a> BatchView<'a> {
    /// Checks the frame at the front of `bytes` (see [`FrameShape::check`]); returns the view
    /// and the frame's length.
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, usize), FrameError> {
        let (shape, len) = FrameShape::check(bytes)?;
        Ok((shape.view(&bytes[..len]), len))
    }

    pub fn len(&self) -> usize {
        self.shape.count
    }

    pub fn is_empty(&self) -> bool {
        self.shape.count == 0
    }

    pub fn records(&self) -> Records<'a> {
        Records {
            c: Cursor {
                bytes: self.frame,
                at: self.shape.records.0,
            },
            left: self.shape.count,
            wire: self.shape.wire,
            prev: Prev::first(self.shape.start_offset),
        }
    }

    /// The owned batch, as `decode_frame` returns it.
    pub fn to_batch(&self) -> Batch {
        Batch {
            topic: self.topic.to_string(),
            partition: self.partition,
            start_offset: self.start_offset,
            last_offset: self.last_offset,
            records: self.records().map(|r| r.to_record()).collect(),
        }
    }
}

/// The records of a checked batch, in offset order.
pub struct Records<'a> {
    c: Cursor<'a>,
    left: usize,
    wire: Wire,
    prev: Prev,
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordView<'a>;

    fn next(&mut self) -> Option<RecordView<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = read_record(&mut self.c, self.wire, &mut self.prev);
        Some(r.expect("checked when the frame was read"))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// One record, borrowed from its frame.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: Cursor<'a>,
    header_count: u64,
    wire: Wire,
}

impl<'a> RecordView<'a> {
    /// Each header's key and value, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        let (mut c, wire) = (self.headers, self.wire);
        (0..self.header_count).map(move |_| read_header(&mut c, wire).expect("checked"))
    }

    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(key, value)| Header {
                    key: key.to_vec(),
                    value: value.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }
}

/// What the formats need of a record, owned (`Record`, for the tools) or borrowed.
pub trait RecordRef {
    fn offset(&self) -> i64;
    fn timestamp_ms(&self) -> Option<i64>;
    fn key(&self) -> Option<&[u8]>;
    fn value(&self) -> Option<&[u8]>;
    fn headers(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)>;
}

impl RecordRef for RecordView<'_> {
    fn offset(&self) -> i64 {
        self.offset
    }
    fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }
    fn key(&self) -> Option<&[u8]> {
        self.key
    }
    fn value(&self) -> Option<&[u8]> {
        self.value
    }
    fn headers(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        RecordView::headers(self)
    }
}

impl RecordRef for Record {
    fn offset(&self) -> i64 {
        self.offset
    }
    fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn headers(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.headers
            .iter()
            .map(|h| (h.key.as_slice(), h.value.as_deref()))
    }
}

/// Reads one record and moves `prev` on to it.
#[inline]
fn read_record<'a>(c: &mut Cursor<'a>, wire: Wire, prev: &mut Prev) -> Result<RecordView<'a>, Bad> {
    let (offset, timestamp_ms, key, value, header_count) = match wire {
        Wire::V1 => (
            c.i64()?,
            c.option(Cursor::i64)?,
            c.option(Cursor::bytes)?,
            c.option(Cursor::bytes)?,
            c.u64()?,
        ),
        Wire::V2 => {
            let step = c.varint()?;
            let offset = prev
                .offset
                .checked_add(1)
                .and_then(|o| o.checked_add_unsigned(step));
            let offset = offset.ok_or(Bad::Offset)?;
            let ts = c.option(|c| Ok(prev.ts.wrapping_add(unzigzag(c.varint()?))))?;
            (offset, ts, c.sized()?, c.sized()?, c.varint()?)
        }
    };
    let headers = *c;
    for _ in 0..header_count {
        read_header(c, wire)?;
    }
    prev.offset = offset;
    prev.ts = timestamp_ms.unwrap_or(prev.ts);
    Ok(RecordView {
        offset,
        timestamp_ms,
        key,
        value,
        headers,
        header_count,
        wire,
    })
}

#[inline]
fn read_header<'a>(c: &mut Cursor<'a>, wire: Wire) -> Result<(&'a [u8], Option<&'a [u8]>), Bad> {
    match wire {
        Wire::V1 => Ok((c.bytes()?, c.option(Cursor::bytes)?)),
        Wire::V2 => {
            let n = c.varint()?;
            Ok((c.take(n)?, c.sized()?))
        }
    }
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

fn decode(message: String) -> FrameError {
    FrameError::Decode(message)
}

/// Why a cursor read failed: two words, so the per-field reads of the walk over every record
/// return in registers; it becomes bincode's `FrameError` once, where the walk gives up.
#[derive(Debug, Clone, Copy)]
enum Bad {
    Short { needs: u64, left: usize },
    Tag(u8),
    Varint,
    Offset,
}

impl From<Bad> for FrameError {
    #[cold]
    fn from(b: Bad) -> Self {
        match b {
            Bad::Short { needs, left } => decode(format!("needs {needs} bytes, {left} left")),
            Bad::Tag(tag) => decode(format!("invalid Option tag {tag}")),
            Bad::Varint => decode("a varint longer than 64 bits".into()),
            Bad::Offset => decode("a record offset past i64::MAX".into()),
        }
    }
}

/// Reads bincode 1.3.3 fixint little-endian values (and version 2's varints) from
/// `bytes[at..]`, each bounded by what is left.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8], Bad> {
        let rest = &self.bytes[self.at..];
        match rest.get(..usize::try_from(n).unwrap_or(usize::MAX)) {
            Some(out) => {
                self.at += out.len();
                Ok(out)
            }
            None => Err(Bad::Short {
                needs: n,
                left: rest.len(),
            }),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        Ok(self.take(N as u64)?.try_into().expect("N bytes"))
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, Bad> {
        self.array().map(u64::from_le_bytes)
    }

    #[inline]
    fn i64(&mut self) -> Result<i64, Bad> {
        self.array().map(i64::from_le_bytes)
    }

    #[inline]
    fn i32(&mut self) -> Result<i32, Bad> {
        self.array().map(i32::from_le_bytes)
    }

    /// A length-prefixed byte string.
    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], Bad> {
        let n = self.u64()?;
        self.take(n)
    }

    /// Unsigned LEB128, at most ten bytes and 64 bits. Most of a frame's varints (deltas,
    /// lengths of keys and short values) are one byte, read here without a loop.
    #[inline]
    fn varint(&mut self) -> Result<u64, Bad> {
        match self.bytes.get(self.at) {
            Some(&byte) if byte < 0x80 => {
                self.at += 1;
                Ok(u64::from(byte))
            }
            _ => self.varint_wide(),
        }
    }

    #[inline(never)]
    fn varint_wide(&mut self) -> Result<u64, Bad> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.array::<1>()?[0];
            if shift == 63 && byte > 1 {
                return Err(Bad::Varint);
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(Bad::Varint)
    }

    /// Version 2's optional bytes: a varint of length + 1, 0 for none, then the bytes.
    #[inline]
    fn sized(&mut self) -> Result<Option<&'a [u8]>, Bad> {
        match self.varint()? {
            0 => Ok(None),
            n => self.take(n - 1).map(Some),
        }
    }

    #[inline]
    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Bad>,
    ) -> Result<Option<T>, Bad> {
        match self.array::<1>()?[0] {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(Bad::Tag(tag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::frame::{
        decode_frame, encode_frame, encode_frame_v1, frame_crc, FRAME_KIND_BATCH, FRAME_MAGIC,
    };
    use proptest::prelude::*;

    /// Mostly short, sometimes past 127 bytes, so that version 2 lengths take one varint
    /// byte and two.
    fn bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
        let len = prop_oneof![4 => 0usize..40, 1 => 120usize..300];
        proptest::option::of(len.prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n)))
    }

    fn batch() -> impl Strategy<Value = Batch> {
        let header = (proptest::collection::vec(any::<u8>(), 0..8), bytes())
            .prop_map(|(key, value)| Header { key, value });
        let record = (
            1i64..5,
            proptest::option::of(any::<i64>()),
            bytes(),
            bytes(),
            proptest::collection::vec(header, 0..3),
        );
        (
            "[a-z.é]{0,12}",
            any::<i32>(),
            0i64..1 << 40,
            proptest::collection::vec(record, 0..6),
            0i64..3,
        )
            .prop_map(|(topic, partition, start, records, tail)| {
                let mut offset = start - 1;
                let records: Vec<Record> = records
                    .into_iter()
                    .map(|(step, timestamp_ms, key, value, headers)| {
                        offset += step;
                        Record {
                            offset,
                            timestamp_ms,
                            key,
                            value,
                            headers,
                        }
                    })
                    .collect();
                Batch {
                    topic,
                    partition,
                    start_offset: start,
                    last_offset: offset.max(start) + tail,
                    records,
                }
            })
    }

    /// A version 1 frame around any payload, with a correct length and CRC, so a corruption
    /// of the payload reaches the decoders instead of the checksum.
    fn frame(payload: &[u8]) -> Vec<u8> {
        framed(1, payload)
    }

    fn framed(version: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = FRAME_MAGIC.to_vec();
        f.extend_from_slice(&[version, FRAME_KIND_BATCH, 0, 0]);
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = frame_crc(&f[..12], payload);
        f.extend_from_slice(&crc.to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Both decoders on the same bytes: both accept with the same batch and length, or both
    /// refuse with the same error kind.
    fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        match (decode_frame(bytes), BatchView::parse(bytes)) {
            (Ok((b, n)), Ok((v, m))) => {
                prop_assert_eq!(n, m);
                prop_assert_eq!(v.len(), b.records.len());
                prop_assert_eq!(v.to_batch(), b);
            }
            (Err(a), Err(b)) => prop_assert_eq!(
                std::mem::discriminant(&a),
                std::mem::discriminant(&b),
                "{} / {}",
                a,
                b
            ),
            (a, b) => prop_assert!(false, "decode_frame {:?}, view {:?}", a, b.map(|v| v.1)),
        }
        Ok(())
    }

    proptest! {
        /// Both versions: the view reads back the batch that was written, and a version 1
        /// frame exactly as bincode does.
        #[test]
        fn the_view_reads_what_decode_frame_reads(b in batch()) {
            let (mut v1, mut v2) = (Vec::new(), Vec::new());
            encode_frame_v1(&b, &mut v1).unwrap();
            encode_frame(&b, &mut v2).unwrap();
            for (version, mut buf) in [(1, v1), (2, v2)] {
                prop_assert_eq!(buf[4], version);
                buf.extend_from_slice(b"next frame");
                let (view, len) = BatchView::parse(&buf).unwrap();
                prop_assert_eq!(len, buf.len() - 10);
                prop_assert_eq!(view.topic, b.topic.as_str());
                for (v, r) in view.records().zip(&b.records) {
                    prop_assert_eq!(v.value, r.value.as_deref());
                    prop_assert_eq!(RecordRef::headers(&v).count(), r.headers.len());
                }
                prop_assert_eq!(view.to_batch(), b.clone());
                agree(&buf)?;
            }
        }

        /// A version 2 payload changed anywhere (CRC made right again), cut short or extended:
        /// the view never panics, and what it accepts is a valid batch it can walk whole.
        #[test]
        fn the_view_survives_any_corrupt_version_2_payload(
            b in batch(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in 1usize..40,
            extra in proptest::collection::vec(any::<u8>(), 1..3),
        ) {
            let mut whole = Vec::new();
            encode_frame(&b, &mut whole).unwrap();
            let payload = &whole[FRAME_HEADER_BYTES..];
            let mut changed = payload.to_vec();
            changed[at.index(payload.len())] = byte;
            let short = &payload[..payload.len().saturating_sub(cut)];
            let mut long = payload.to_vec();
            long.extend_from_slice(&extra);
            for p in [&changed[..], short, &long[..]] {
                if let Ok((view, _)) = BatchView::parse(&framed(2, p)) {
                    let batch = view.to_batch();
                    prop_assert!(batch.validate().is_ok());
                    prop_assert_eq!(batch.records.len(), view.len());
                }
            }
            prop_assert!(BatchView::parse(&framed(2, short)).is_err() || short.len() == payload.len());
            prop_assert!(BatchView::parse(&framed(2, &long)).is_err());
        }

        /// Any byte of the payload changed (CRC made right again), the payload cut short or
        /// extended: the view refuses exactly what `decode_frame` refuses.
        #[test]
        fn the_view_refuses_what_decode_frame_refuses(
            b in batch(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in 0usize..40,
            extra in proptest::collection::vec(any::<u8>(), 0..3),
        ) {
            let payload = bincode::serialize(&b).unwrap();
            let mut changed = payload.clone();
            changed[at.index(payload.len())] = byte;
            agree(&frame(&changed))?;
            let short = &payload[..payload.len().saturating_sub(cut)];
            agree(&frame(short))?;
            let mut long = payload.clone();
            long.extend_from_slice(&extra);
            agree(&frame(&long))?;
            // The whole frame, corrupted anywhere without fixing the CRC.
            let mut whole = frame(&payload);
            let i = at.index(whole.len());
            whole[i] ^= byte | 1;
            agree(&whole)?;
            agree(&whole[..i])?;
        }
    }

    /// The rules no random byte is likely to hit: offsets out of order or beyond the range,
    /// a negative start, a topic that is not UTF-8, an `Option` tag of 2.
    #[test]
    fn the_view_refuses_inconsistent_batches_like_decode_frame() {
        let record = |offset| Record {
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![],
        };
        let good = Batch {
            topic: "t".into(),
            partition: 0,
            start_offset: 5,
            last_offset: 7,
            records: vec![record(5), record(7)],
        };
        let mut cases = Vec::new();
        let mut b = good.clone();
        b.records.swap(0, 1);
        cases.push(b);
        let mut b = good.clone();
        b.records[1].offset = 8;
        cases.push(b);
        let mut b = good.clone();
        b.records[0].offset = 4;
        cases.push(b);
        let mut b = good.clone();
        b.start_offset = -1;
        cases.push(b);
        let mut b = good.clone();
        b.last_offset = 4;
        cases.push(b);
        for b in cases {
            let f = frame(&bincode::serialize(&b).unwrap());
            let FrameError::Invalid(why) = decode_frame(&f).unwrap_err() else {
                panic!("decode_frame must refuse {b:?} as invalid");
            };
            assert_eq!(BatchView::parse(&f).unwrap_err(), FrameError::Invalid(why));
        }
        let payload = bincode::serialize(&good).unwrap();
        let mut not_utf8 = payload.clone();
        not_utf8[8] = 0xff; // the topic's one byte
        let mut bad_tag = payload;
        bad_tag[8 + 1 + 4 + 8 + 8 + 8 + 8] = 2; // the first record's timestamp tag
        for p in [not_utf8, bad_tag] {
            let f = frame(&p);
            assert!(matches!(decode_frame(&f), Err(FrameError::Decode(_))));
            assert!(matches!(BatchView::parse(&f), Err(FrameError::Decode(_))));
        }
        assert!(BatchView::parse(&frame(&bincode::serialize(&good).unwrap())).is_ok());
    }

    /// Version 2's own rules: a varint past 64 bits, an offset past `i64::MAX`, a record past
    /// `last_offset`, a length past the payload.
    #[test]
    fn the_view_refuses_bad_version_2_records() {
        let head = |last: i64, count: u64| {
            let mut p = 1u64.to_le_bytes().to_vec();
            p.push(b't');
            p.extend_from_slice(&0i32.to_le_bytes());
            p.extend_from_slice(&5i64.to_le_bytes());
            p.extend_from_slice(&last.to_le_bytes());
            p.extend_from_slice(&count.to_le_bytes());
            p
        };
        let with = |last, record: &[u8]| {
            let mut p = head(last, 1);
            p.extend_from_slice(record);
            framed(2, &p)
        };
        let good = with(5, &[0, 0, 0, 2, b'v', 0]);
        assert_eq!(
            BatchView::parse(&good).unwrap().0.to_batch().records[0].offset,
            5
        );
        let eleven_bytes = [0xff; 10].iter().chain(&[1]).copied().collect::<Vec<u8>>();
        let mut too_long = eleven_bytes.clone();
        too_long.extend_from_slice(&[0, 0, 0, 0]);
        let mut past_max = [0x80; 9].to_vec(); // a step of 2^63 from offset 5
        past_max.extend_from_slice(&[1, 0, 0, 0, 0]);
        let cases: [(Vec<u8>, &str); 4] = [
            (with(5, &too_long), "varint"),
            (with(i64::MAX, &past_max), "i64::MAX"),
            (with(5, &[1, 0, 0, 0, 0]), "beyond last offset"),
            (with(5, &[0, 0, 0, 9, b'v', 0]), "needs 8 bytes"),
        ];
        for (f, why) in cases {
            let e = BatchView::parse(&f).unwrap_err().to_string();
            assert!(e.contains(why), "{e} should say {why}");
            assert_eq!(decode_frame(&f).unwrap_err().to_string(), e);
        }
    }
}
