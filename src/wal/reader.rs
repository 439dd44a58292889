//! Follows the channel from a cursor up to the durable end, for the sink and the tools.

use std::fs::File;
use std::sync::Arc;

use super::log::{WalIndex, SEGMENT_HEADER_BYTES};
use super::segment::read_frame_at;
use super::view::FrameShape;
use super::Batch;

/// Position of a frame: segment id and byte offset inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPos {
    pub segment: u64,
    pub offset: u64,
}

/// A cursor over the channel. Reads only bytes the writer has made durable, holds one frame in
/// memory at a time, and moves past a damaged range to the next intact frame the recovery scan
/// found (the damage was reported at open; the lost range is re-fetched from Kafka because the
/// chain stops there).
pub struct WalReader {
    index: Arc<WalIndex>,
    pos: WalPos,
    file: Option<(u64, File)>,
    buf: Vec<u8>,
}

impl WalReader {
    /// A reader positioned at the oldest segment.
    pub fn new(index: Arc<WalIndex>) -> Self {
        let segment = index.first_segment().unwrap_or(0);
        Self {
            index,
            pos: WalPos {
                segment,
                offset: SEGMENT_HEADER_BYTES,
            },
            file: None,
            buf: Vec::new(),
        }
    }

    pub fn position(&self) -> WalPos {
        self.pos
    }

    /// Moves the cursor back (never forward) to the start of `segment`; rewinding to the
    /// current segment restarts it from its first frame.
    pub fn rewind_to(&mut self, segment: u64) {
        if segment <= self.pos.segment {
            self.pos = WalPos {
                segment,
                offset: SEGMENT_HEADER_BYTES,
            };
            self.file = None;
        }
    }

    /// Returns the next durable batch, or `None` when the cursor is at the durable end.
    pub fn next_batch(&mut self) -> Result<Option<(WalPos, Batch)>, std::io::Error> {
        let mut buf = std::mem::take(&mut self.buf);
        let next = self.next_frame(&mut buf);
        let batch = next.map(|n| n.map(|(at, shape)| (at, shape.view(&buf).to_batch())));
        self.buf = buf;
        batch
    }

    /// Reads the next durable frame into `frame` (which then holds exactly that frame) and
    /// checks it as `decode_frame` would; `shape.view(frame)` reads its records without
    /// copying them. `None` when the cursor is at the durable end.
    pub fn next_frame(
        &mut self,
        frame: &mut Vec<u8>,
    ) -> Result<Option<(WalPos, FrameShape)>, std::io::Error> {
        loop {
            let Some((path, durable, seed)) = self.index.segment(self.pos.segment) else {
                // Trimmed (or never existed): continue at the next live segment.
                match self.index.next_segment(self.pos.segment) {
                    Some(next) => self.move_to(next),
                    None => return Ok(None),
                }
                continue;
            };
            if self.pos.offset >= durable {
                if self.pos.segment == self.index.active_segment() {
                    return Ok(None);
                }
                match self.index.next_segment(self.pos.segment) {
                    Some(next) => {
                        self.move_to(next);
                        continue;
                    }
                    None => {
                        // A closed segment read to its end and no newer one yet: wait at the
                        // active segment (created by the next append), so the closed one can
                        // be trimmed once it is done.
                        let active = self.index.active_segment();
                        if active > self.pos.segment {
                            self.move_to(active);
                        }
                        return Ok(None);
                    }
                }
            }
            let file = match &mut self.file {
                Some((id, f)) if *id == self.pos.segment => f,
                _ => {
                    let f = File::open(&path)?;
                    &mut self.file.insert((self.pos.segment, f)).1
                }
            };
            let at = self.pos;
            match read_frame_at(file, at.offset, durable, frame, seed) {
                Ok(shape) => {
                    self.pos.offset += frame.len() as u64;
                    return Ok(Some((at, shape)));
                }
                Err(reason) => {
                    let resume = self.index.damage_end(at.segment, at.offset);
                    tracing::warn!(segment = at.segment, byte = at.offset, resume = ?resume, %reason,
                        "skipping a damaged range of a channel segment");
                    self.pos.offset = resume.unwrap_or(durable);
                }
            }
        }
    }

    fn move_to(&mut self, segment: u64) {
        self.pos = WalPos {
            segment,
            offset: SEGMENT_HEADER_BYTES,
        };
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{EncodedBatch, Record, Wal, WalOptions};

    fn batch(p: i32, start: i64, n: i64) -> Batch {
        Batch {
            topic: "t".into(),
            partition: p,
            start_offset: start,
            last_offset: start + n - 1,
            records: (start..start + n)
                .map(|o| Record {
                    offset: o,
                    timestamp_ms: None,
                    key: None,
                    value: Some(vec![b'x'; 100]),
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn opts(dir: &std::path::Path) -> WalOptions {
        WalOptions {
            dir: dir.to_path_buf(),
            segment_bytes_max: 4096,
            group_commit_bytes_max: 1 << 20,
            segment_version: crate::wal::log::SEGMENT_VERSION,
        }
    }

    #[test]
    fn reads_back_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(opts(dir.path())).unwrap();
            for i in 0..20 {
                let b = EncodedBatch::encode(&batch((i % 2) as i32, (i / 2) * 10, 10)).unwrap();
                wal.writer.append(&[b]).unwrap();
            }
            assert!(wal.index.segment_count() > 2, "small segments must roll");
        }
        let wal = Wal::open(opts(dir.path())).unwrap();
        assert!(wal.damage.is_empty());
        assert_eq!(wal.batches_recovered, 20);
        let mut r = WalReader::new(wal.index.clone());
        let mut seen = 0;
        while let Some((_, b)) = r.next_batch().unwrap() {
            assert_eq!(b.records.len(), 10);
            seen += 1;
        }
        assert_eq!(seen, 20);
        let tp = crate::wal::TopicPartition::new("t", 1);
        assert_eq!(wal.index.chain_end(&tp, -1), 99);
        assert_eq!(wal.index.chain_end(&tp, 49), 99);
    }

    /// A channel a version 1 build wrote, appended to by this one: both versions are read back
    /// in order, across segments and a reopen.
    #[test]
    fn frames_of_both_versions_read_back_in_order() {
        use crate::wal::{encoder::encode_batch, FrameVersion};
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Batch> = (0..12).map(|i| batch(0, i * 10, 10)).collect();
        {
            let mut wal = Wal::open(opts(dir.path())).unwrap();
            for (i, b) in batches.iter().enumerate() {
                let version = [FrameVersion::V1, FrameVersion::V2][i / 3 % 2];
                let frame = encode_batch(b, version).unwrap().bytes;
                assert_eq!(frame[4], version.byte());
                let e = EncodedBatch {
                    tp: crate::wal::TopicPartition::new("t", 0),
                    start_offset: b.start_offset,
                    last_offset: b.last_offset,
                    frame,
                };
                wal.writer.append(&[e]).unwrap();
            }
        }
        let wal = Wal::open(opts(dir.path())).unwrap();
        assert!(wal.damage.is_empty());
        assert_eq!(wal.batches_recovered, 12);
        let mut r = WalReader::new(wal.index.clone());
        for want in &batches {
            let (_, got) = r.next_batch().unwrap().expect("a batch");
            assert_eq!(&got, want);
        }
        assert!(r.next_batch().unwrap().is_none());
    }

    /// Damage in a version 1 frame is skipped to the version 2 frames after it, and only the
    /// damaged batch is missing.
    #[test]
    fn damage_in_a_version_1_frame_resumes_at_the_version_2_frame_after_it() {
        use crate::wal::{encoder::encode_batch, FrameVersion};
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Batch> = (0..4).map(|i| batch(0, i * 10, 10)).collect();
        let segment_bytes_max = 1 << 20;
        {
            let mut wal = Wal::open(WalOptions {
                segment_bytes_max,
                ..opts(dir.path())
            })
            .unwrap();
            for (i, b) in batches.iter().enumerate() {
                let version = if i == 1 {
                    FrameVersion::V1
                } else {
                    FrameVersion::V2
                };
                let e = EncodedBatch {
                    tp: crate::wal::TopicPartition::new("t", 0),
                    start_offset: b.start_offset,
                    last_offset: b.last_offset,
                    frame: encode_batch(b, version).unwrap().bytes,
                };
                wal.writer.append(&[e]).unwrap();
            }
        }
        let path = crate::wal::log::segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        let v1_at = 32
            + encode_batch(&batches[0], FrameVersion::V2)
                .unwrap()
                .bytes
                .len();
        assert_eq!(bytes[v1_at + 4], 1, "the second frame is version 1");
        bytes[v1_at + 100] ^= 0x40; // inside its payload
        std::fs::write(&path, bytes).unwrap();
        let wal = Wal::open(WalOptions {
            segment_bytes_max,
            ..opts(dir.path())
        })
        .unwrap();
        assert_eq!(wal.damage.len(), 1);
        assert_eq!(wal.damage[0].byte_start, v1_at as u64);
        assert_eq!(wal.batches_recovered, 3);
        let mut r = WalReader::new(wal.index.clone());
        let (_, first) = r
            .next_batch()
            .unwrap()
            .expect("the batch before the damage");
        assert_eq!(first, batches[0]);
    }

    #[test]
    fn a_frame_is_read_into_exactly_its_own_bytes() {
        // The sink's frame buffer lives as long as the reader: reading a frame must not leave
        // it with more room than the frame (no doubling on the way in).
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(WalOptions {
            segment_bytes_max: 1 << 20,
            ..opts(dir.path())
        })
        .unwrap();
        let (small, large) = (batch(0, 0, 2), batch(0, 2, 300));
        for b in [&small, &large] {
            wal.writer
                .append(&[EncodedBatch::encode(b).unwrap()])
                .unwrap();
        }
        let mut r = WalReader::new(wal.index.clone());
        let mut frame = Vec::new();
        for want in [&small, &large] {
            let (_, shape) = r.next_frame(&mut frame).unwrap().expect("a frame");
            // The same bytes but the CRC, which the segment binds to itself (version 2).
            let mut encoded = EncodedBatch::encode(want).unwrap().frame;
            let head = crate::wal::frame::Seed::segment(1).sealed_header(&encoded);
            encoded[..16].copy_from_slice(&head);
            assert_eq!(frame, encoded);
            assert_eq!(frame.capacity(), frame.len());
            assert_eq!(shape.view(&frame).to_batch(), *want);
        }
    }

    #[test]
    fn rewind_to_the_current_segment_rereads_it() {
        // Regression: a partition re-assigned with uncommitted batches in the segment under the
        // cursor was never re-read, so its sink waited forever for offsets it had skipped.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(opts(dir.path())).unwrap();
        wal.writer
            .append(&[EncodedBatch::encode(&batch(0, 0, 3)).unwrap()])
            .unwrap();
        let mut r = WalReader::new(wal.index.clone());
        assert!(r.next_batch().unwrap().is_some());
        assert!(r.next_batch().unwrap().is_none());
        r.rewind_to(r.position().segment);
        let (_, again) = r.next_batch().unwrap().expect("re-read after rewind");
        assert_eq!(again.start_offset, 0);
    }

    #[test]
    fn trim_deletes_only_done_segments_behind_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(opts(dir.path())).unwrap();
        for i in 0..10 {
            let b = EncodedBatch::encode(&batch(0, i * 10, 10)).unwrap();
            wal.writer.append(&[b]).unwrap();
        }
        let segments = wal.index.segment_count();
        let before = wal.index.bytes_total();
        // Nothing done: nothing deleted.
        assert_eq!(wal.index.trim(u64::MAX, |_, _| false).unwrap(), 0);
        // Offsets up to 49 done: only segments whose batches all end at or below 49 go.
        let n = wal.index.trim(u64::MAX, |_, last| last <= 49).unwrap();
        assert!(n > 0 && n < segments);
        assert!(wal.index.bytes_total() < before);
        let tp = crate::wal::TopicPartition::new("t", 0);
        assert_eq!(wal.index.chain_end(&tp, 49), 99);
    }

    #[test]
    fn second_open_of_a_locked_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _wal = Wal::open(opts(dir.path())).unwrap();
        let err = Wal::open(opts(dir.path())).err().expect("must be locked");
        assert!(err.to_string().contains("in use"), "{err}");
    }
}
