//! Frame and batch codec. The byte layout is specified in `wal-format.md`; keep the two in step.

use bincode::Options;
use serde::{Deserialize, Serialize};

/// Magic bytes that open every frame: ASCII "FLWB" (flumen WAL batch).
pub const FRAME_MAGIC: [u8; 4] = *b"FLWB";
/// The frame versions this binary writes and reads (`channel.frame_version`); the value is
/// the version byte of a frame header (byte 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum FrameVersion {
    /// bincode 1.3.3, fixed-width integers: what binaries before version 2 read.
    V1 = 1,
    /// Varint lengths, offset and timestamp deltas (`wal-format.md` §2.3).
    #[default]
    V2 = 2,
}

impl FrameVersion {
    /// The version byte of a frame header (byte 4).
    pub fn byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(byte: u8) -> Option<Self> {
        [Self::V1, Self::V2].into_iter().find(|v| v.byte() == byte)
    }
}

/// Frame kind for a record batch; the only kind in versions 1 and 2.
pub const FRAME_KIND_BATCH: u8 = 1;
/// magic(4) + version(1) + kind(1) + reserved(2) + payload_len(4) + crc32(4).
pub const FRAME_HEADER_BYTES: usize = 16;
/// Upper bound on one frame's payload. The decoder refuses anything larger before allocating,
/// so a corrupt length can never make recovery allocate gigabytes.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One Kafka record as the channel stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub offset: i64,
    /// Kafka record timestamp in milliseconds since the epoch, if the broker supplied one.
    pub timestamp_ms: Option<i64>,
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// One Kafka header. Both key and value are bytes: Kafka does not promise UTF-8 keys.
/// `key` was a `String` before; bincode 1.3.3 encodes a string and a byte string alike (u64 LE
/// length, then the bytes), so the channel format did not change (`wal-format.md` §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// A contiguous range of one partition's offsets, consumed together.
///
/// `start_offset..=last_offset` is the range *consumed*, not only the offsets present: compaction
/// and transaction markers leave gaps, and the range still covers them so ranges chain without
/// holes (`next.start_offset == prev.last_offset + 1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub topic: String,
    pub partition: i32,
    pub start_offset: i64,
    pub last_offset: i64,
    pub records: Vec<Record>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("truncated frame: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("bad frame magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame payload length {0} exceeds the {FRAME_PAYLOAD_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    #[error("frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("batch payload does not decode: {0}")]
    Decode(String),
    #[error("batch is inconsistent: {0}")]
    Invalid(&'static str),
}

/// bincode 1.3.3 with fixed-width little-endian integers, a size limit, and no trailing bytes.
/// `bincode::serialize` uses the same wire format; the explicit options add the limit.
fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(FRAME_PAYLOAD_BYTES_MAX as u64)
        .reject_trailing_bytes()
}

impl Batch {
    /// Checks the invariants every stored batch must satisfy. The writer asserts them before
    /// encoding and the reader re-checks them after decoding.
    pub fn validate(&self) -> Result<(), FrameError> {
        if self.start_offset < 0 {
            return Err(FrameError::Invalid("negative start offset"));
        }
        if self.last_offset < self.start_offset {
            return Err(FrameError::Invalid("last offset below start offset"));
        }
        let mut previous = self.start_offset - 1;
        for record in &self.records {
            if record.offset <= previous {
                return Err(FrameError::Invalid("record offsets not increasing"));
            }
            previous = record.offset;
        }
        if previous > self.last_offset {
            return Err(FrameError::Invalid("record beyond last offset"));
        }
        Ok(())
    }

    /// The records' keys and values plus 16 bytes each: an estimate of the encoded size, for
    /// sizing buffers only.
    pub fn payload_bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len) + 16)
            .sum()
    }
}

/// Appends one complete frame for `batch` to `out`, in the version this binary writes
/// (through the streaming encoder the source uses), and returns the frame length.
pub fn encode_frame(batch: &Batch, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    let frame = super::encoder::encode_batch(batch, FrameVersion::default())?;
    out.extend_from_slice(&frame.bytes);
    Ok(frame.bytes.len())
}

/// Appends one version 1 frame (bincode 1.3.3) for `batch`: what binaries before version 2
/// wrote, for the tests that hold the reader to it.
#[cfg(test)]
pub(crate) fn encode_frame_v1(batch: &Batch, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    batch.validate()?;
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC);
    out.push(FrameVersion::V1.byte());
    out.push(FRAME_KIND_BATCH);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&[0; 8]); // length and crc, patched below
    codec()
        .serialize_into(&mut *out, batch)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    if payload_len > FRAME_PAYLOAD_BYTES_MAX {
        out.truncate(start);
        return Err(FrameError::TooLarge(payload_len));
    }
    out[start + 8..start + 12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let crc = frame_crc(&out[start..start + 12], &out[start + FRAME_HEADER_BYTES..]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    Ok(out.len() - start)
}

/// CRC32 (IEEE, as crc32fast computes it) over header bytes 4..12 and the payload: the CRC a
/// frame carries in a version 1 segment, and the one the source computes (`Seed::NONE`).
pub(crate) fn frame_crc(header_first_12: &[u8], payload: &[u8]) -> u32 {
    Seed::NONE.crc(header_first_12, payload)
}

/// What a frame's CRC is bound to (`wal-format.md` §2.2). In a version 2 segment the CRC
/// starts with the segment's id (8 bytes LE), so a frame left in a recycled file from its
/// earlier life never verifies in its new one. In a version 1 segment it is unseeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seed(Option<u64>);

impl Seed {
    pub const NONE: Seed = Seed(None);

    /// The seed of a version 2 segment's frames.
    pub fn segment(id: u64) -> Self {
        Seed(Some(id))
    }

    fn hasher(self) -> crc32fast::Hasher {
        let mut h = crc32fast::Hasher::new();
        if let Some(id) = self.0 {
            h.update(&id.to_le_bytes());
        }
        h
    }

    /// The CRC of a frame from its first 12 header bytes and its payload.
    pub fn crc(self, header_first_12: &[u8], payload: &[u8]) -> u32 {
        let mut h = self.hasher();
        h.update(&header_first_12[4..12]);
        h.update(payload);
        h.finalize()
    }

    /// The frame's CRC under this seed, from its unseeded CRC (what the source wrote): CRC-32's
    /// combine, O(log n) in the frame's length, with no second pass over the payload.
    pub fn reseal(self, frame: &[u8]) -> u32 {
        let unseeded = u32::from_le_bytes(frame[12..16].try_into().expect("a frame header"));
        if self.0.is_none() {
            return unseeded;
        }
        let covered = (frame.len() - FRAME_HEADER_BYTES + 8) as u64;
        let mut h = self.hasher();
        h.combine(&crc32fast::Hasher::new_with_initial_len(unseeded, covered));
        h.finalize()
    }

    /// The frame's 16-byte header with its CRC bound to this seed (`reseal`).
    pub fn sealed_header(self, frame: &[u8]) -> [u8; FRAME_HEADER_BYTES] {
        let mut head: [u8; FRAME_HEADER_BYTES] = frame[..FRAME_HEADER_BYTES]
            .try_into()
            .expect("a frame header");
        head[12..16].copy_from_slice(&self.reseal(frame).to_le_bytes());
        head
    }
}

/// Parses a frame header and returns the payload length. Does not look at the payload.
pub fn decode_header(header: &[u8]) -> Result<usize, FrameError> {
    if header.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_BYTES,
            available: header.len(),
        });
    }
    let magic: [u8; 4] = header[0..4].try_into().expect("slice of 4");
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    if FrameVersion::from_byte(header[4]).is_none() {
        return Err(FrameError::UnsupportedVersion(header[4]));
    }
    if header[5] != FRAME_KIND_BATCH {
        return Err(FrameError::UnknownKind(header[5]));
    }
    if header[6..8] != [0, 0] {
        return Err(FrameError::Invalid("reserved header bytes are not zero"));
    }
    let len = u32::from_le_bytes(header[8..12].try_into().expect("slice of 4")) as usize;
    if len > FRAME_PAYLOAD_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// The payload of the frame at the front of `bytes` and the frame length, once its header and
/// CRC hold; the one check both `decode_frame` and the borrowed `view` start from.
pub(crate) fn checked_payload(bytes: &[u8], seed: Seed) -> Result<(&[u8], usize), FrameError> {
    let payload_len = decode_header(bytes)?;
    let total = FRAME_HEADER_BYTES + payload_len;
    if bytes.len() < total {
        return Err(FrameError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    }
    let payload = &bytes[FRAME_HEADER_BYTES..total];
    let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("slice of 4"));
    let computed = seed.crc(&bytes[..12], payload);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok((payload, total))
}

/// Decodes one frame from the front of `bytes`; returns the batch and the frame length. A
/// version 1 frame goes through bincode itself (the reference the borrowed view is held to),
/// a version 2 frame through the view.
pub fn decode_frame(bytes: &[u8]) -> Result<(Batch, usize), FrameError> {
    if bytes.get(4) == Some(&FrameVersion::V2.byte()) {
        let (view, total) = super::view::BatchView::parse(bytes)?;
        return Ok((view.to_batch(), total));
    }
    let (payload, total) = checked_payload(bytes, Seed::NONE)?;
    let batch: Batch = codec()
        .deserialize(payload)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    batch.validate()?;
    Ok((batch, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(partition: i32, start: i64, n: i64) -> Batch {
        Batch {
            topic: "t".into(),
            partition,
            start_offset: start,
            last_offset: start + n - 1,
            records: (start..start + n)
                .map(|o| Record {
                    offset: o,
                    timestamp_ms: Some(1_700_000_000_000 + o),
                    key: Some(format!("k{o}").into_bytes()),
                    value: Some(format!("v{o}").into_bytes()),
                    headers: vec![Header {
                        key: b"h".to_vec(),
                        value: None,
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip() {
        let batch = sample(2, 10, 5);
        let mut buf = Vec::new();
        let len = encode_frame(&batch, &mut buf).unwrap();
        assert_eq!(len, buf.len());
        let (decoded, used) = decode_frame(&buf).unwrap();
        assert_eq!(used, len);
        assert_eq!(decoded, batch);
    }

    #[test]
    fn a_resealed_crc_is_the_seeded_crc_and_binds_the_frame_to_its_segment() {
        for n in [0, 1, 7, 300] {
            let mut frame = Vec::new();
            encode_frame(&sample(0, 5, n.max(1)), &mut frame).unwrap();
            let (head, payload) = (&frame[..12], &frame[FRAME_HEADER_BYTES..]);
            assert_eq!(Seed::NONE.reseal(&frame), Seed::NONE.crc(head, payload));
            for id in [1, 2, 3, 1 << 31, u64::MAX] {
                let seed = Seed::segment(id);
                let sealed = seed.reseal(&frame);
                assert_eq!(sealed, seed.crc(head, payload), "{n} records, segment {id}");
                let mut bound = frame.clone();
                bound[12..16].copy_from_slice(&sealed.to_le_bytes());
                assert!(checked_payload(&bound, seed).is_ok());
                // Neither unseeded nor under another segment's id does it verify.
                assert!(checked_payload(&bound, Seed::NONE).is_err());
                assert!(checked_payload(&bound, Seed::segment(id ^ 1)).is_err());
            }
        }
    }

    #[test]
    fn a_version_1_payload_is_bincode_1_fixint_little_endian() {
        // Version 1 is bincode 1.3.3's default wire format; the legacy free function
        // `bincode::serialize` produces exactly that, so the two must agree byte for byte.
        let batch = sample(0, 0, 2);
        let mut buf = Vec::new();
        encode_frame_v1(&batch, &mut buf).unwrap();
        assert_eq!(buf[4], 1);
        assert_eq!(
            &buf[FRAME_HEADER_BYTES..],
            &bincode::serialize(&batch).unwrap()[..]
        );
        // The topic length prefix is a u64 little-endian: 1 for "t".
        assert_eq!(&buf[16..24], &1u64.to_le_bytes());
        assert_eq!(decode_frame(&buf).unwrap(), (batch, buf.len()));
    }

    /// Version 2 byte for byte, as `wal-format.md` §2.3 lays it out.
    #[test]
    fn a_version_2_frame_is_laid_out_as_the_spec_says() {
        let ts = 1_700_000_000_000i64;
        let record = |offset, timestamp_ms, key: Option<&[u8]>, value: Option<&[u8]>| Record {
            offset,
            timestamp_ms,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: vec![],
        };
        let mut second = record(12, Some(ts - 1), None, Some(b""));
        second.headers = vec![Header {
            key: b"h".to_vec(),
            value: Some(b"x".to_vec()),
        }];
        let batch = Batch {
            topic: "t".into(),
            partition: 3,
            start_offset: 10,
            last_offset: 13,
            records: vec![record(10, Some(ts), Some(b"ab"), None), second],
        };
        let mut payload = 1u64.to_le_bytes().to_vec();
        payload.push(b't');
        payload.extend_from_slice(&3i32.to_le_bytes());
        payload.extend_from_slice(&10i64.to_le_bytes());
        payload.extend_from_slice(&13i64.to_le_bytes());
        payload.extend_from_slice(&2u64.to_le_bytes());
        // Offset 10 is 0 past start - 1 + 1; ts zigzag 2*ts as LEB128; key "ab" as 3; no value;
        // no headers.
        payload.push(0);
        payload.push(1);
        let mut zz = 2 * ts as u64;
        while zz >= 0x80 {
            payload.push(zz as u8 | 0x80);
            zz >>= 7;
        }
        payload.push(zz as u8);
        payload.extend_from_slice(&[3, b'a', b'b', 0, 0]);
        // Offset 12 is 1 past 10 + 1; ts -1 zigzags to 1; no key; an empty value is 1; one
        // header "h" = Some("x").
        payload.extend_from_slice(&[1, 1, 1, 0, 1, 1, 1, b'h', 2, b'x']);
        let mut want = FRAME_MAGIC.to_vec();
        want.extend_from_slice(&[2, FRAME_KIND_BATCH, 0, 0]);
        want.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        want.extend_from_slice(&frame_crc(&want[..12], &payload).to_le_bytes());
        want.extend_from_slice(&payload);
        let mut got = Vec::new();
        encode_frame(&batch, &mut got).unwrap();
        assert_eq!(got, want);
        assert_eq!(decode_frame(&got).unwrap(), (batch, got.len()));
    }

    /// What version 2 is for: a 100-byte event with an 8-byte key and a timestamp takes 114
    /// bytes of channel instead of version 1's 151.
    #[test]
    fn version_2_stores_a_small_event_in_fewer_bytes() {
        let batch = Batch {
            topic: "t".into(),
            partition: 0,
            start_offset: 0,
            last_offset: 999,
            records: (0..1000)
                .map(|o| Record {
                    offset: o,
                    timestamp_ms: Some(1_700_000_000_000 + o / 10),
                    key: Some(format!("{o:08}").into_bytes()),
                    value: Some(vec![b'x'; 100]),
                    headers: vec![],
                })
                .collect(),
        };
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        encode_frame_v1(&batch, &mut v1).unwrap();
        encode_frame(&batch, &mut v2).unwrap();
        let per_record = |f: &Vec<u8>| f.len() / batch.records.len();
        assert_eq!((per_record(&v1), per_record(&v2)), (151, 114));
    }

    /// Regression guard for the change of `Header::key` from `String` to bytes (a non-UTF-8
    /// key panicked the Kafka thread): a frame written by the old type must decode unchanged,
    /// and the new type must write the old bytes, so channels written before stay readable.
    #[test]
    fn header_key_bytes_decode_frames_written_with_a_string_key() {
        #[derive(Serialize)]
        struct OldHeader {
            key: String,
            #[serde(with = "serde_bytes")]
            value: Option<Vec<u8>>,
        }
        #[derive(Serialize)]
        struct OldRecord {
            offset: i64,
            timestamp_ms: Option<i64>,
            #[serde(with = "serde_bytes")]
            key: Option<Vec<u8>>,
            #[serde(with = "serde_bytes")]
            value: Option<Vec<u8>>,
            headers: Vec<OldHeader>,
        }
        #[derive(Serialize)]
        struct OldBatch {
            topic: String,
            partition: i32,
            start_offset: i64,
            last_offset: i64,
            records: Vec<OldRecord>,
        }
        let old = OldBatch {
            topic: "t".into(),
            partition: 4,
            start_offset: 9,
            last_offset: 9,
            records: vec![OldRecord {
                offset: 9,
                timestamp_ms: None,
                key: None,
                value: Some(b"v".to_vec()),
                headers: vec![
                    OldHeader {
                        key: "trace-id".into(),
                        value: Some(vec![0xff]),
                    },
                    OldHeader {
                        key: "é".into(),
                        value: None,
                    },
                ],
            }],
        };
        let payload = bincode::serialize(&old).unwrap();
        let mut frame = FRAME_MAGIC.to_vec();
        frame.extend_from_slice(&[FrameVersion::V1.byte(), FRAME_KIND_BATCH, 0, 0]);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&frame_crc(&frame[..12], &payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let (batch, used) = decode_frame(&frame).unwrap();
        assert_eq!(used, frame.len());
        let keys: Vec<&[u8]> = batch.records[0]
            .headers
            .iter()
            .map(|h| h.key.as_slice())
            .collect();
        assert_eq!(keys, [&b"trace-id"[..], "é".as_bytes()]);
        assert_eq!(batch.records[0].headers[0].value, Some(vec![0xff]));
        let mut again = Vec::new();
        encode_frame_v1(&batch, &mut again).unwrap();
        assert_eq!(again, frame, "the new type writes the old bytes");
        // And a key that no String could hold goes through.
        let mut bytes_key = batch;
        bytes_key.records[0].headers[0].key = vec![0xc3, 0x28, 0x00];
        let mut buf = Vec::new();
        encode_frame(&bytes_key, &mut buf).unwrap();
        assert_eq!(decode_frame(&buf).unwrap().0, bytes_key);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_frame(&sample(1, 0, 3), &mut buf).unwrap();
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_frame(&bad).is_err(),
                    "flip at {byte}.{bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn huge_length_is_refused_before_allocation() {
        let mut buf = Vec::new();
        encode_frame(&sample(1, 0, 1), &mut buf).unwrap();
        buf[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_frame(&buf),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
    }

    #[test]
    fn invalid_batches_are_refused_by_the_encoder() {
        let mut batch = sample(0, 5, 2);
        batch.last_offset = 4;
        assert!(encode_frame(&batch, &mut Vec::new()).is_err());
    }
}
