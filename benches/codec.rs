//! The channel's record codec on one core, with no disk: `FrameBuilder::push` (what the poll
//! thread spends per record) and `BatchView::parse` plus a walk over every record (what the
//! sink spends per record), for both frame versions.
//!
//! Records are the e2e bench's: 100-byte values, keys `cell-N`, increasing timestamps, no
//! headers, 10,000 to a frame. Criterion reports records per second; compare versions, or two
//! builds (`git stash`), in one run on the same machine.
//!
//! `cargo bench --bench codec`

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use flumen::wal::encoder::{FrameBuilder, RecordFields};
use flumen::wal::{BatchView, FrameVersion};

const RECORDS: usize = 10_000;

struct Input {
    keys: Vec<Vec<u8>>,
    value: Vec<u8>,
}

impl Input {
    fn new() -> Self {
        Input {
            keys: (0..RECORDS)
                .map(|i| format!("cell-{i}").into_bytes())
                .collect(),
            value: vec![b'x'; 100],
        }
    }

    fn frame(&self, version: FrameVersion) -> Vec<u8> {
        let buf = Vec::with_capacity(RECORDS * 160);
        let mut b = FrameBuilder::new("flume.txn", 0, 1_000_000, version, buf).unwrap();
        for (i, key) in self.keys.iter().enumerate() {
            let r = RecordFields {
                offset: 1_000_000 + i as i64,
                timestamp_ms: Some(1_764_000_000_000 + (i as i64 / 7)),
                key: Some(key),
                value: Some(&self.value),
            };
            b.push(&r, std::iter::empty()).unwrap();
        }
        b.finish(None).unwrap().bytes
    }
}

fn walk(frame: &[u8]) -> usize {
    let (view, _) = BatchView::parse(frame).unwrap();
    view.records()
        .map(|r| r.value.map_or(0, <[u8]>::len) + r.key.map_or(0, <[u8]>::len))
        .sum()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let input = Input::new();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for (name, version) in [("v1", FrameVersion::V1), ("v2", FrameVersion::V2)] {
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| black_box(input.frame(version)))
        });
        let frame = input.frame(version);
        g.bench_function(format!("view/{name}"), |b| {
            b.iter(|| walk(black_box(&frame)))
        });
    }
    g.finish();
    c.final_summary();
}
