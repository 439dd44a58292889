//! One Kafka partition log: offsets `0..high`, some never existing (compaction gaps), the ones
//! below `low` deleted by retention. The oracle keeps what the log *ever* held.

use std::collections::BTreeSet;

use super::rng::Rng;

#[derive(Debug, Clone, Default)]
pub struct PartitionLog {
    /// Offsets that never existed (compacted away before anyone could read them).
    pub gaps: BTreeSet<i64>,
    /// The low watermark: offsets below it are gone.
    pub low: i64,
    /// The high watermark: the next offset to be produced.
    pub high: i64,
}

/// A fetch below the low watermark: librdkafka with `auto.offset.reset=error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub low: i64,
}

/// A fetched batch as the source builds it: `start` is the position it fetched from (so the
/// range covers gaps before the first record), `last` the last record's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub start: i64,
    pub last: i64,
    pub records: Vec<i64>,
}

impl PartitionLog {
    /// Produces `n` offsets, each a gap with probability `gap_per_mille`. The first and last
    /// produced offsets are always real records.
    pub fn produce(&mut self, n: i64, gap_per_mille: u64, rng: &mut Rng) {
        for i in 0..n {
            let o = self.high;
            if i > 0 && i + 1 < n && rng.chance(gap_per_mille) {
                self.gaps.insert(o);
            }
            self.high += 1;
        }
    }

    /// Retention: offsets below `to` become unreadable.
    pub fn retain(&mut self, to: i64) {
        self.low = self.low.max(to.min(self.high));
    }

    /// Up to `max` records from `pos`; an empty batch (None) when none exist yet.
    pub fn fetch(&self, pos: i64, max: usize) -> Result<Option<Batch>, OutOfRange> {
        if pos < self.low {
            return Err(OutOfRange { low: self.low });
        }
        let records: Vec<i64> = (pos..self.high)
            .filter(|o| !self.gaps.contains(o))
            .take(max)
            .collect();
        Ok(records.last().copied().map(|last| Batch {
            start: pos,
            last,
            records,
        }))
    }

    /// The legacy consumer (`auto.offset.reset=earliest`): below the low watermark librdkafka
    /// silently jumps to it; the batch still starts at the position the source asked for.
    pub fn fetch_jumping(&self, pos: i64, max: usize) -> Option<Batch> {
        let from = pos.max(self.low);
        let mut b = self.fetch(from, max).expect("at or above low")?;
        b.start = pos;
        Some(b)
    }

    /// Every offset the log ever held, from `from` on (the oracle's obligation).
    pub fn held_from(&self, from: i64) -> impl Iterator<Item = i64> + '_ {
        (from.max(0)..self.high).filter(|o| !self.gaps.contains(o))
    }

    /// The last real record, if any.
    pub fn last_record(&self) -> Option<i64> {
        (0..self.high).rev().find(|o| !self.gaps.contains(o))
    }
}

impl PartitionLog {
    /// The offset was produced as a real record (retention does not change this).
    pub fn exists_ever(&self, o: i64) -> bool {
        o >= 0 && o < self.high && !self.gaps.contains(&o)
    }
}
