//! Feeds arbitrary bytes to the channel's frame decoder and to the segment scanner.
//!
//! Properties checked (any panic is a finding):
//! - `decode_frame` never panics and never allocates for a payload it has not verified: lengths
//!   above `FRAME_PAYLOAD_BYTES_MAX` are refused from the header, shorter inputs are
//!   `Truncated`, and bincode runs with a size limit (libFuzzer's -malloc_limit_mb catches
//!   a big allocation);
//! - a decoded batch is valid, re-encodes in its frame's version and decodes to the same batch;
//!   a version 1 payload is also the canonical encoding (bincode 1 fixint has exactly one
//!   encoding per value; version 2 readers accept varints longer than the shortest form);
//! - `scan_segment` on a file never panics or fails with an I/O error; behind a valid header
//!   the intact frames and the damaged ranges it reports tile the file from byte 32 to its end
//!   in order, each frame decodes on its own, and the intact end is the last frame's end.
//!
//! The first input byte selects the shape: bit 0 puts a valid segment header in front of the
//! segment bytes, bit 1 cuts the rest into length-prefixed chunks and wraps each in a valid frame
//! header and CRC (so the fuzzer reaches the decoders and `Batch::validate` past the checksum),
//! bit 2 makes those headers (and the wrapped raw bytes') version 2 instead of 1.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use flumen::wal::encoder::encode_batch;
use flumen::wal::frame::{
    decode_frame, decode_header, FrameVersion, FRAME_HEADER_BYTES, FRAME_KIND_BATCH, FRAME_MAGIC,
    FRAME_PAYLOAD_BYTES_MAX,
};
use flumen::wal::log::{
    scan_segment, segment_path, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, SEGMENT_VERSION,
};
use libfuzzer_sys::fuzz_target;

const SEGMENT_ID: u64 = 7;

/// Wraps `payload` in a frame header of `version` with the right length and CRC.
fn frame_around(version: FrameVersion, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&FRAME_MAGIC);
    out.push(version.byte());
    out.push(FRAME_KIND_BATCH);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[4..12]);
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A valid 32-byte segment header (magic, version, id, crc32 of bytes 0..24).
fn segment_header(id: u64) -> Vec<u8> {
    let mut h = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_frame(bytes: &[u8]) {
    let header = decode_header(bytes);
    match decode_frame(bytes) {
        Ok((batch, len)) => {
            assert!(len >= FRAME_HEADER_BYTES && len <= bytes.len());
            assert_eq!(header, Ok(len - FRAME_HEADER_BYTES));
            assert!(len - FRAME_HEADER_BYTES <= FRAME_PAYLOAD_BYTES_MAX);
            batch.validate().expect("decoded batch validates");
            let version = FrameVersion::from_byte(bytes[4]).expect("a decoded frame's version");
            let again = encode_batch(&batch, version).expect("decoded batch re-encodes").bytes;
            let (round, used) = decode_frame(&again).expect("re-encoded frame decodes");
            assert_eq!(used, again.len());
            assert_eq!(round, batch);
            if version == FrameVersion::V1 {
                assert_eq!(
                    &again[FRAME_HEADER_BYTES..],
                    &bytes[FRAME_HEADER_BYTES..len],
                    "payload encoding is not canonical"
                );
            }
        }
        Err(_) => {
            // A header that parses but whose frame does not decode is fine; a header that
            // does not parse must make the whole frame fail (checked by reaching here).
        }
    }
}

fn scratch_file() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Leaked on purpose: one directory per fuzzing process, removed with the temp dir.
        let dir = tempfile::Builder::new()
            .prefix("flumen-fuzz-")
            .tempdir()
            .expect("fuzz tempdir")
            .keep();
        segment_path(&dir, SEGMENT_ID)
    })
}

fn check_segment(bytes: &[u8], header_valid: bool) {
    let path = scratch_file();
    std::fs::write(path, bytes).expect("write scratch segment");
    let mut frames = Vec::new();
    let scan = scan_segment(path, SEGMENT_ID, |f| {
        frames.push((f.pos, f.len, f.batch.to_batch()))
    })
    .expect("scan_segment does not fail on content");
    let file_len = bytes.len() as u64;
    assert_eq!(scan.file_len, file_len);
    assert!(scan.end <= file_len, "intact end {} past the file end {file_len}", scan.end);
    if !header_valid {
        if bytes.len() < SEGMENT_HEADER_BYTES as usize {
            assert!(frames.is_empty() && scan.end == 0);
        }
        return;
    }
    // Frames and damaged ranges, in file order, cover 32..file_len exactly once.
    let mut pieces: Vec<(u64, u64)> = frames.iter().map(|(at, len, _)| (*at, at + len)).collect();
    for d in &scan.damage {
        assert_eq!(d.segment, SEGMENT_ID);
        assert!(d.byte_start < d.byte_end, "an empty damaged range");
        pieces.push((d.byte_start, d.byte_end));
    }
    pieces.sort();
    let mut pos = SEGMENT_HEADER_BYTES;
    for (start, end) in pieces {
        assert_eq!(start, pos, "frames and damage tile the segment");
        pos = end;
    }
    assert_eq!(pos, file_len, "frames and damage reach the file's end");
    for (at, len, batch) in &frames {
        let slice = &bytes[*at as usize..(*at + *len) as usize];
        let (decoded, used) = decode_frame(slice).expect("a scanned frame decodes alone");
        assert_eq!(used as u64, *len);
        assert_eq!(&decoded, batch);
    }
    let last_end = frames.last().map_or(SEGMENT_HEADER_BYTES, |(at, len, _)| at + len);
    assert_eq!(scan.end, last_end, "the intact end is the last frame's end");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // The raw bytes as a frame, and as a payload behind a correct header and CRC.
    let version = if mode & 4 != 0 {
        FrameVersion::V2
    } else {
        FrameVersion::V1
    };
    check_frame(rest);
    check_frame(&frame_around(version, rest));

    // The segment body: either the raw bytes or length-prefixed chunks, each a valid frame
    // around arbitrary payload bytes.
    let body = if mode & 2 != 0 {
        let mut body = Vec::new();
        let mut r = rest;
        while let Some((&n, tail)) = r.split_first() {
            let n = (n as usize).min(tail.len());
            body.extend_from_slice(&frame_around(version, &tail[..n]));
            r = &tail[n..];
        }
        body
    } else {
        rest.to_vec()
    };
    let header_valid = mode & 1 != 0;
    let mut segment = if header_valid {
        segment_header(SEGMENT_ID)
    } else {
        Vec::new()
    };
    segment.extend_from_slice(&body);
    check_segment(&segment, header_valid);
});
