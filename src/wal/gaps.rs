//! Missing segments and holes in a partition's offset chain (`wal-format.md` §4.1). Pure: it
//! reads what a scan of the channel found and touches no file.

use std::collections::{BTreeMap, BTreeSet};

use super::segment::SegmentInfo;
use super::TopicPartition;

/// Why a partition's chain has a hole between two of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HoleCause {
    /// Segment ids between the two batches are absent: deleted or lost outside flumen.
    MissingSegment,
    /// A damaged range lies between the two batches.
    Damage,
    /// Only trimmed segments lie between: HDFS held those offsets when they were trimmed.
    Trimmed,
    /// Nothing is missing from the channel: this collector did not consume those offsets (a
    /// rebalance gave them to another member, or retention removed them and an operator
    /// recorded a skip). The HDFS ledger says whether they were delivered.
    NotConsumed,
}

impl HoleCause {
    /// True when the channel itself lost the offsets (as opposed to never holding them).
    pub fn is_loss(self) -> bool {
        matches!(self, HoleCause::MissingSegment | HoleCause::Damage)
    }

    pub fn describe(self) -> &'static str {
        match self {
            HoleCause::MissingSegment => "a segment holding them is missing",
            HoleCause::Damage => "they were in a damaged range",
            HoleCause::Trimmed => "trimmed after HDFS took them",
            HoleCause::NotConsumed => "not consumed by this collector (rebalance or skip)",
        }
    }
}

/// Offsets `from..=through` of `tp` that the channel does not hold, between the batch that
/// ends in segment `after_segment` and the one that starts in `before_segment`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainHole {
    pub tp: TopicPartition,
    pub from: i64,
    pub through: i64,
    pub after_segment: u64,
    pub before_segment: u64,
    pub cause: HoleCause,
}

/// Segment ids `first..=last` absent from between the oldest and newest segment, with no
/// trimmed placeholder standing for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MissingSegments {
    pub first: u64,
    pub last: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Gaps {
    pub missing: Vec<MissingSegments>,
    pub holes: Vec<ChainHole>,
}

impl Gaps {
    /// True when the channel lost something: a missing segment or a hole caused by one.
    pub fn lost(&self) -> bool {
        !self.missing.is_empty()
            || self
                .holes
                .iter()
                .any(|h| h.cause == HoleCause::MissingSegment)
    }

    /// The holes that a missing range explains.
    pub fn holes_across(&self, m: &MissingSegments) -> impl Iterator<Item = &ChainHole> + '_ {
        let m = *m;
        self.holes.iter().filter(move |h| {
            h.cause == HoleCause::MissingSegment
                && h.after_segment < m.first
                && h.before_segment > m.last
        })
    }
}

pub fn find_gaps(segments: &BTreeMap<u64, SegmentInfo>, placeholders: &BTreeSet<u64>) -> Gaps {
    let missing = missing_segments(segments, placeholders);
    let holes = chain_holes(segments, placeholders, &missing);
    Gaps { missing, holes }
}

/// Gaps in the ids present between the oldest and the newest segment. Segment ids only grow
/// and a trim inside the range leaves a placeholder, so an absent id was lost.
fn missing_segments(
    segments: &BTreeMap<u64, SegmentInfo>,
    placeholders: &BTreeSet<u64>,
) -> Vec<MissingSegments> {
    let (Some(&lo), Some(&hi)) = (segments.keys().next(), segments.keys().next_back()) else {
        return Vec::new();
    };
    let ids: BTreeSet<u64> = segments
        .keys()
        .copied()
        .chain(placeholders.range(lo..=hi).copied())
        .collect();
    let ids: Vec<u64> = ids.into_iter().collect();
    ids.windows(2)
        .filter(|w| w[1] > w[0] + 1)
        .map(|w| MissingSegments {
            first: w[0] + 1,
            last: w[1] - 1,
        })
        .collect()
}

/// Per partition, every place where a batch starts beyond the previous batch's end + 1.
/// Batches that overlap or go back (a re-fetch after a rebalance) are not holes.
fn chain_holes(
    segments: &BTreeMap<u64, SegmentInfo>,
    placeholders: &BTreeSet<u64>,
    missing: &[MissingSegments],
) -> Vec<ChainHole> {
    let tps: BTreeSet<&TopicPartition> = segments.values().flat_map(|s| s.ranges.keys()).collect();
    let mut holes = Vec::new();
    for tp in tps {
        let mut prev: Option<(u64, i64)> = None;
        for (&id, seg) in segments {
            for &(start, last) in seg.ranges.get(tp).into_iter().flatten() {
                if let Some((prev_id, prev_last)) = prev {
                    if start > prev_last + 1 {
                        holes.push(ChainHole {
                            tp: tp.clone(),
                            from: prev_last + 1,
                            through: start - 1,
                            after_segment: prev_id,
                            before_segment: id,
                            cause: cause(segments, placeholders, missing, prev_id, id),
                        });
                    }
                }
                let end = prev.map_or(last, |(_, l)| l.max(last));
                prev = Some((id, end));
            }
        }
    }
    holes
}

fn cause(
    segments: &BTreeMap<u64, SegmentInfo>,
    placeholders: &BTreeSet<u64>,
    missing: &[MissingSegments],
    after: u64,
    before: u64,
) -> HoleCause {
    if missing.iter().any(|m| m.first > after && m.last < before) {
        return HoleCause::MissingSegment;
    }
    if segments
        .range(after..=before)
        .any(|(_, s)| !s.damaged.is_empty())
    {
        return HoleCause::Damage;
    }
    if placeholders.range(after..=before).next().is_some() {
        return HoleCause::Trimmed;
    }
    HoleCause::NotConsumed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(ranges: &[(i32, i64, i64)]) -> SegmentInfo {
        let mut s = SegmentInfo::default();
        for &(p, a, b) in ranges {
            s.add(&TopicPartition::new("t", p), a, b);
        }
        s
    }

    #[test]
    fn a_deleted_middle_segment_is_missing_and_explains_the_hole() {
        // Regression: a channel segment deleted by hand was reported as "0 damaged ranges".
        let mut segs = BTreeMap::new();
        segs.insert(1, seg(&[(0, 0, 99), (1, 0, 9)]));
        segs.insert(3, seg(&[(0, 200, 299)]));
        let gaps = find_gaps(&segs, &BTreeSet::new());
        assert_eq!(gaps.missing, vec![MissingSegments { first: 2, last: 2 }]);
        assert_eq!(gaps.holes.len(), 1, "{gaps:?}");
        let h = &gaps.holes[0];
        assert_eq!(
            (h.from, h.through, h.cause),
            (100, 199, HoleCause::MissingSegment)
        );
        assert!(gaps.lost());
        assert_eq!(gaps.holes_across(&gaps.missing[0]).count(), 1);
    }

    #[test]
    fn a_trimmed_placeholder_is_not_missing() {
        let mut segs = BTreeMap::new();
        segs.insert(4, seg(&[(0, 0, 99), (2, 0, 9)]));
        segs.insert(6, seg(&[(0, 200, 299)]));
        let gaps = find_gaps(&segs, &BTreeSet::from([5]));
        assert!(gaps.missing.is_empty());
        assert_eq!(gaps.holes[0].cause, HoleCause::Trimmed);
        assert!(!gaps.lost());
    }

    #[test]
    fn overlaps_are_not_holes_and_plain_holes_are_not_losses() {
        let mut segs = BTreeMap::new();
        segs.insert(1, seg(&[(0, 0, 99)]));
        segs.insert(2, seg(&[(0, 50, 149), (0, 300, 399)]));
        let gaps = find_gaps(&segs, &BTreeSet::new());
        assert_eq!(gaps.holes.len(), 1, "{gaps:?}");
        assert_eq!((gaps.holes[0].from, gaps.holes[0].through), (150, 299));
        assert_eq!(gaps.holes[0].cause, HoleCause::NotConsumed);
        assert!(!gaps.lost());
    }
}
