//! A zero-copy view over one channel frame: the sink formats records straight from the frame's
//! bytes instead of decoding a `Batch` (a `Vec` per key, value and header).
//!
//! The view accepts exactly the frames [`decode_frame`](super::frame::decode_frame) accepts:
//! the same header, length and CRC checks, the payload read as bincode 1.3.3 reads it (fixed
//! little-endian integers, `u64` lengths bounded by the bytes left, `Option` tags 0 or 1, a
//! UTF-8 topic, no trailing bytes), then `Batch::validate`'s offset rules, in that order.
//! The tests below hold the two to that on random batches and corruptions.

use super::frame::{checked_payload, Batch, FrameError, Header, Record, FRAME_HEADER_BYTES};

/// A frame that passed every check, by position only, so a reader can check it into its own
/// buffer and hand it out without borrowing ([`FrameShape::view`] borrows it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
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
        let (_, total) = checked_payload(bytes)?;
        Ok((Self::check_payload(&bytes[..total])?, total))
    }

    fn check_payload(frame: &[u8]) -> Result<Self, FrameError> {
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
        let (mut increasing, mut previous) = (true, start_offset - 1);
        let mut n = 0u64;
        while n < count {
            let offset = read_record(&mut c)?.offset;
            increasing &= offset > previous;
            previous = offset;
            n += 1;
        }
        if c.at != frame.len() {
            return Err(decode("trailing bytes after the batch".into()));
        }
        validate(start_offset, last_offset, increasing, previous)?;
        Ok(Self {
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
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordView<'a>;

    fn next(&mut self) -> Option<RecordView<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(read_record(&mut self.c).expect("checked when the frame was read"))
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
}

impl<'a> RecordView<'a> {
    /// Each header's key and value, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        let mut c = self.headers;
        (0..self.header_count).map(move |_| read_header(&mut c).expect("checked"))
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

#[inline]
fn read_record<'a>(c: &mut Cursor<'a>) -> Result<RecordView<'a>, Bad> {
    let offset = c.i64()?;
    let timestamp_ms = c.option(Cursor::i64)?;
    let key = c.option(Cursor::bytes)?;
    let value = c.option(Cursor::bytes)?;
    let header_count = c.u64()?;
    let headers = *c;
    for _ in 0..header_count {
        read_header(c)?;
    }
    Ok(RecordView {
        offset,
        timestamp_ms,
        key,
        value,
        headers,
        header_count,
    })
}

#[inline]
fn read_header<'a>(c: &mut Cursor<'a>) -> Result<(&'a [u8], Option<&'a [u8]>), Bad> {
    Ok((c.bytes()?, c.option(Cursor::bytes)?))
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
}

impl From<Bad> for FrameError {
    #[cold]
    fn from(b: Bad) -> Self {
        match b {
            Bad::Short { needs, left } => decode(format!("needs {needs} bytes, {left} left")),
            Bad::Tag(tag) => decode(format!("invalid Option tag {tag}")),
        }
    }
}

/// Reads bincode 1.3.3 fixint little-endian values from `bytes[at..]`, each bounded by what
/// is left.
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
    use crate::wal::frame::{decode_frame, encode_frame, frame_crc, FRAME_KIND_BATCH, FRAME_MAGIC};
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))
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

    /// A frame around any payload, with a correct length and CRC, so a corruption of the
    /// payload reaches the decoders instead of the checksum.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = FRAME_MAGIC.to_vec();
        f.extend_from_slice(&[1, FRAME_KIND_BATCH, 0, 0]);
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
        #[test]
        fn the_view_reads_what_decode_frame_reads(b in batch()) {
            let mut buf = Vec::new();
            encode_frame(&b, &mut buf).unwrap();
            buf.extend_from_slice(b"next frame");
            let (view, len) = BatchView::parse(&buf).unwrap();
            prop_assert_eq!(len, buf.len() - 10);
            prop_assert_eq!(view.topic, b.topic.as_str());
            for (v, r) in view.records().zip(&b.records) {
                prop_assert_eq!(v.value, r.value.as_deref());
                prop_assert_eq!(RecordRef::headers(&v).count(), r.headers.len());
            }
            agree(&buf)?;
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
}
