//! A run of messages from one partition, encoded into its pending frame with the partition's
//! state borrowed once for the run. Looking the state up per message (hashing the topic name,
//! comparing it) was 2-3% of a live relay's profile. The run stops wherever the caller needs
//! all of `Source`: a full batch to flush, a frame to flush before its record fits, a poison
//! record to halt on.

use std::time::Instant;

use super::batch::Msg;
use super::{headers, HashSet, Ownership, PartState, Pending, SourceError, SourceOptions};
use crate::poison::Poison;
use crate::wal::encoder::{FrameBuilder, Pushed, RecordFields};
use crate::wal::TopicPartition;

/// Where `encode_run` stopped.
pub(super) enum RunStop<'b> {
    /// The run has no more messages.
    Done,
    /// The partition's batch reached `batch_records_max` or `batch_bytes_max`: flush it, then
    /// go on with the run.
    Flush,
    /// The message's record would take the frame past the payload limit: flush the batch so
    /// far, then encode the message again into a new frame.
    Retry(Msg<'b>),
    /// The record at this offset is poison under policy `fail`.
    Poison(i64, Poison),
}

/// What `encode_run` borrows of `Source` beside the partition's state.
pub(super) struct RunCtx<'s> {
    pub opts: &'s SourceOptions,
    pub recovering: &'s mut HashSet<TopicPartition>,
    pub ownership: &'s dyn Ownership,
}

/// Encodes `retry` (a message `RunStop::Retry` returned, after its flush) and then each
/// message `run` yields, all of partition `tp`, into `st`'s pending frame, until the run ends
/// or a message needs more than `st`.
pub(super) fn encode_run<'b>(
    st: &mut PartState,
    cx: RunCtx<'_>,
    tp: &TopicPartition,
    retry: Option<Msg<'b>>,
    run: &mut impl Iterator<Item = Msg<'b>>,
) -> Result<RunStop<'b>, SourceError> {
    let mut retried = retry.is_some();
    let mut next = retry;
    while let Some(m) = next.take().or_else(|| run.next()) {
        let offset = m.offset();
        if offset < st.position {
            continue; // a prefetched record from before our seek
        }
        let (key, value) = (m.key(), m.payload());
        if let Some(poison) = cx.opts.poison.halts(value) {
            return Ok(RunStop::Poison(offset, poison));
        }
        if !cx.recovering.is_empty() && cx.recovering.remove(tp) {
            cx.ownership.resumed(tp);
        }
        let record = RecordFields {
            offset,
            timestamp_ms: m.timestamp_ms(),
            key,
            value,
        };
        if encode(st, tp, &record, &m, cx.opts)? == Pushed::Full {
            if !retried {
                return Ok(RunStop::Retry(m));
            }
            // Refused by a frame holding nothing else: the record alone passes the limit.
            let frame = st.pending.as_ref().map(|p| &p.frame);
            let source = frame.expect("opened by encode").too_large(&record);
            return Err(SourceError::Encode {
                tp: tp.clone(),
                source,
            });
        }
        retried = false;
        st.position = offset + 1;
        let p = st.pending.as_ref().expect("encode opened it");
        if p.frame.records() >= cx.opts.batch_records_max as u64
            || p.bytes >= cx.opts.batch_bytes_max
        {
            return Ok(RunStop::Flush);
        }
    }
    Ok(RunStop::Done)
}

/// Encodes `record` (with `m`'s headers) into `tp`'s pending frame, opening one at the
/// partition's position if there is none. `Full` leaves the frame as it was.
fn encode(
    st: &mut PartState,
    tp: &TopicPartition,
    record: &RecordFields<'_>,
    m: &Msg<'_>,
    opts: &SourceOptions,
) -> Result<Pushed, SourceError> {
    let encode_err = |source| SourceError::Encode {
        tp: tp.clone(),
        source,
    };
    if st.pending.is_none() {
        let buf = Vec::with_capacity(st.frame_capacity);
        let frame = FrameBuilder::new(
            &tp.topic,
            tp.partition,
            st.position,
            opts.frame_version,
            buf,
        )
        .map_err(encode_err)?;
        st.pending = Some(Pending {
            frame,
            bytes: 0,
            opened: Instant::now(),
        });
    }
    let p = st.pending.as_mut().expect("opened above");
    let pushed = p
        .frame
        .push(record, headers::borrow(m))
        .map_err(encode_err)?;
    if pushed == Pushed::Kept {
        let len = |v: Option<&[u8]>| v.map_or(0, <[u8]>::len);
        p.bytes += len(record.key) + len(record.value);
    }
    Ok(pushed)
}
