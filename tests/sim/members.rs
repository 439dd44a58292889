//! Members: a flumen instance's work for one partition, once over the new ledger and once over
//! the legacy port, both fed from the same Kafka model into the member's own channel.
//!
//! New rules (`run_new`): on assignment `reconcile(clean=true)`, `genesis(low watermark)` when
//! the ledger has none; the channel is trimmed only below what `committed_end`/the ledger says
//! HDFS holds; a needed offset that is neither in the channel nor in Kafka halts the partition
//! loudly (reported) until an operator `skip`s it or the ledger moves past it.
//!
//! Legacy rules (`run_legacy`), from the old relay/source/sink: reconcile, then committed end
//! -1 with no channel data falls back to the watermark; the channel may be trimmed before
//! Activate (the race of finding 7); the source seeks to the channel's chain end + 1 and
//! librdkafka silently jumps to the low watermark when that is gone, the batch still starting
//! at the position asked for; the sink skips batches "beyond a hole"; a fence or a failed
//! write restarts the partition at the reconciled committed end with no watermark fallback.

use std::rc::Rc;
use std::sync::Arc;

use crate::legacy::{Claim, CommitOutcome as OldOutcome};
use bytes::Bytes;
use flumen::commit::{CommitError, CommitOutcome, Ledger, Marks};
use flumen::hdfs::HdfsWriter;
use flumen::wal::TopicPartition;

use super::hdfs_model::{yield_now, SimHdfs, SimWriter};
use super::kafka_model::OutOfRange;
use super::legacy::{sleep_secs, LegacyCommitter};
use super::world::{budget, client_id, content, final_path, tp, World, STATE};

pub type SimLedger = Ledger<SimHdfs>;

pub fn ledger(w: &World, client: u32) -> SimLedger {
    Ledger::new(Arc::new(w.hdfs.client(client)), STATE).with_tokens(w.token_source())
}

fn ce(e: CommitError) -> String {
    e.to_string()
}

/// An idle advance of the partition's tip, as the marker task makes it; the watermark it reads
/// never goes down.
async fn advance_tip(l: &SimLedger, tp: &TopicPartition, to: i64) -> Result<(), String> {
    let Some(tip) = l.tip(tp).await.map_err(ce)? else {
        return Ok(());
    };
    let before = tip.meta.watermark;
    if l.advance(tp, &tip, to).await.map_err(ce)? {
        let after = l.tip(tp).await.map_err(ce)?.and_then(|t| t.meta.watermark);
        if after < before {
            return Err(format!(
                "{tp}: watermark went down from {before:?} to {after:?}"
            ));
        }
    }
    Ok(())
}

/// Writes `records` through a fresh staged file and commits it. Ok(true) committed, Ok(false)
/// fenced or the in-use file was lost (the caller re-derives its position).
// One step of a modelled member: each argument is a piece of its state the step needs, and a
// struct holding them would exist only for this call.
#[allow(clippy::too_many_arguments)]
pub async fn write_and_commit(
    w: &World,
    l: &SimLedger,
    m: usize,
    tp: &TopicPartition,
    records: &[i64],
    first: i64,
    last: i64,
    final_path: &str,
) -> Result<bool, String> {
    // Now and then a bucket file whose horizon lies just above its records (the offset stands
    // in for the record time), so an advance may pass it before the claim. A file found late
    // at its claim is written again without a horizon, as the sink writes it to the late path.
    let horizon = w.chance(300).then(|| last + 1 + w.below(8) as i64);
    let file = File {
        records,
        first,
        last,
        final_path,
    };
    match write_once(w, l, m, tp, &file, horizon).await? {
        Some(committed) => Ok(committed),
        None => {
            w.report.borrow_mut().late_rewrites += 1;
            Ok(write_once(w, l, m, tp, &file, None).await?.unwrap_or(false))
        }
    }
}

/// One file a member writes.
struct File<'a> {
    records: &'a [i64],
    first: i64,
    last: i64,
    final_path: &'a str,
}

/// [`write_and_commit`] once: Some(committed) as there, None when the commit found the file
/// late (its staging copy is gone; nothing was claimed).
async fn write_once(
    w: &World,
    l: &SimLedger,
    m: usize,
    tp: &TopicPartition,
    file: &File<'_>,
    horizon: Option<i64>,
) -> Result<Option<bool>, String> {
    let File {
        records,
        first,
        last,
        final_path,
    } = *file;
    let mut st = l.open(tp).await.map_err(ce)?;
    // One to three writes, hsync after some of them.
    let chunks = 1 + w.below(3) as usize;
    let per = records.len().div_ceil(chunks).max(1);
    let mut ok = true;
    for chunk in records.chunks(per) {
        if st.writer.write(Bytes::from(content(chunk))).await.is_err() {
            ok = false;
            break;
        }
        if w.chance(300) && st.writer.hsync().await.is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        ok = st.writer.hsync().await.is_ok() && st.writer.close().await.is_ok();
    }
    if !ok {
        w.in_use_lost(m);
        drop(st.writer);
        l.discard(tp, &st.token).await.map_err(ce)?;
        return Ok(Some(false));
    }
    // The marker task races the writer: it may advance the tip's watermark (a rename of the
    // entry the commit then seals) at any point, even while the tip is being delivered.
    if w.chance(300) {
        advance_tip(l, tp, last + w.below(16) as i64).await?;
    }
    let listed_before = listed(w, l);
    // Every commit seals its predecessor, so the seal, its races, the advances and late
    // files run under every fault.
    let marks = Marks {
        file_max_ms: Some(last),
        horizon_ms: horizon,
        seal: true,
        ..Marks::default()
    };
    let r = l
        .commit(tp, &st.token, first, last, final_path, marks)
        .await;
    {
        let mut rep = w.report.borrow_mut();
        rep.commits += 1;
        let n = listed(w, l) - listed_before;
        rep.listed_per_commit.push(n);
    }
    match r {
        Ok(CommitOutcome::Committed) => Ok(Some(true)),
        Ok(CommitOutcome::Fenced) => Ok(Some(false)),
        Ok(CommitOutcome::Late) => Ok(None),
        Err(e @ (CommitError::FinalOccupied { .. } | CommitError::BadEntry { .. })) => {
            w.report
                .borrow_mut()
                .alarms
                .push(format!("member {m}: {e}"));
            Err(e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn listed(w: &World, l: &SimLedger) -> u64 {
    listed_by(w, l.hdfs().client)
}

/// Directory entries HDFS returned to `client` so far.
fn listed_by(w: &World, client: u32) -> u64 {
    w.hdfs.lock().listed.get(&client).copied().unwrap_or(0)
}

/// Assignment: reconcile, and genesis at the low watermark when the ledger has none.
async fn position(w: &World, l: &SimLedger, p: i32, clean: bool) -> Result<Option<i64>, String> {
    let tp = tp(p);
    let pos = loop {
        match w.reconcile_budget.get() {
            None => break l.reconcile(&tp, clean).await.map_err(ce)?,
            Some(b) => match budget(b, l.reconcile(&tp, clean)).await {
                Some(r) => break r.map_err(ce)?,
                None => sleep_secs(1).await,
            },
        }
    };
    if let Some(n) = pos.next {
        return Ok(Some(n));
    }
    if !clean {
        return Ok(None); // a replay never starts a partition
    }
    let low = w.low(p);
    let g = l.genesis(&tp, low).await.map_err(ce)?;
    w.mark_started(p, g);
    Ok(Some(g))
}

/// A member (or, with `replay`, `flumen replay` over member `m`'s channel) for partition `p`.
pub async fn run_new(w: Rc<World>, m: usize, p: i32, replay: bool) -> Result<(), String> {
    let key = (m + if replay { 1000 } else { 0 }, p);
    let l = ledger(&w, client_id(m, p, replay));
    let tp = tp(p);
    w.set_status(key, |s| *s = Default::default());
    let Some(mut next) = position(&w, &l, p, !replay).await? else {
        return Ok(());
    };
    loop {
        if !replay && !w.owns(m, p) {
            return Ok(()); // revoked
        }
        w.set_status(key, |s| s.next = next);
        if !replay {
            w.channel(m, p, |c| c.trim(next - 1));
        }
        let mut worked = false;
        // Consume from Kafka into the channel.
        let writable = w.channel(m, p, |c| c.records_from(next, 1).is_some());
        if !replay && (w.chance(600) || !writable) {
            let pos = w.channel(m, p, |c| c.chain_end(next - 1)) + 1;
            yield_now().await;
            let fetched = w.kafka.borrow()[&p].fetch(pos, w.fetch_max.get());
            match fetched {
                // Write what the channel holds first; the gap is only a gap once we reach it.
                Err(_) if writable => {}
                Ok(Some(b)) => {
                    w.channel(m, p, |c| c.append(b));
                    worked = true;
                }
                Ok(None) => {}
                Err(OutOfRange { low }) => {
                    // Neither the channel nor Kafka has `pos`: halt loudly, never skip.
                    w.halt(m, p, pos, low - 1);
                    w.set_status(key, |s| s.halted = true);
                    loop {
                        for _ in 0..5 {
                            yield_now().await;
                        }
                        if !w.owns(m, p) {
                            w.resolve_halts(m, p);
                            return Ok(());
                        }
                        // Still halted (a reassignment away and back cleared the report).
                        w.halt(m, p, pos, low - 1);
                        if l.committed_end(&tp)
                            .await
                            .map_err(ce)?
                            .is_some_and(|e| e >= pos)
                        {
                            break; // an operator skip, or another writer, moved past it
                        }
                    }
                    w.resolve_halts(m, p);
                    w.set_status(key, |s| s.halted = false);
                    match position(&w, &l, p, true).await? {
                        Some(n) => next = n,
                        None => return Err("ledger lost its genesis".into()),
                    }
                    continue;
                }
            }
        }
        // Write one file from the channel.
        let roll = 1 + w.below(w.roll_max.get() as u64) as usize;
        if let Some((records, last)) = w.channel(m, p, |c| c.records_from(next, roll)) {
            worked = true;
            w.set_status(key, |s| s.idle = false);
            let fp = final_path(p, next, last);
            if write_and_commit(&w, &l, m, &tp, &records, next, last, &fp).await? {
                next = last + 1;
            } else {
                if !replay && !w.owns(m, p) {
                    return Ok(());
                }
                match position(&w, &l, p, !replay).await? {
                    Some(n) => next = n,
                    None => return Ok(()),
                }
            }
        } else if replay {
            return Ok(()); // the channel is delivered
        }
        if !worked {
            w.set_status(key, |s| s.idle = true);
            yield_now().await;
        } else {
            w.set_status(key, |s| s.idle = false);
        }
    }
}

/// The operator: skips a reported range through the ledger.
pub async fn operator(
    w: Rc<World>,
    p: i32,
    from: i64,
    through: i64,
    client: u32,
) -> Result<(), String> {
    // Remember the tokens this operator's ledger hands out, to find its entry afterwards.
    let issued = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (inner, rec) = (w.token_source(), issued.clone());
    let l = Ledger::new(Arc::new(w.hdfs.client(client)), STATE).with_tokens(Box::new(move || {
        let t = inner();
        rec.lock().expect("lock").push(t.clone());
        t
    }));
    match l.skip(&tp(p), from, through).await {
        Ok(()) => {
            w.report.borrow_mut().skips.push((p, from, through));
            Ok(())
        }
        Err(e @ CommitError::Refused { .. }) => {
            // Did the refused skip take effect anyway? Look for its entry in the namespace.
            let names: Vec<String> = issued
                .lock()
                .expect("lock")
                .iter()
                .map(|t| format!("/v1.skip.{through:020}.{t}"))
                .collect();
            let slot = format!("{STATE}/ledger/{}/{p}/{:020}", super::world::TOPIC, from);
            let effective = w
                .hdfs
                .lock()
                .all_paths()
                .iter()
                .any(|q| q.starts_with(&slot) && names.iter().any(|n| q.ends_with(n.as_str())));
            if effective {
                let mut r = w.report.borrow_mut();
                r.skips.push((p, from, through));
                r.known_bugs.push(format!(
                    "skip({p}, {from}, {through}) answered \"{e}\" but its skip entry is the slot at {from}"
                ));
                return Ok(());
            }
            // The ledger is elsewhere now; act again if the halt is still reported.
            for h in w.report.borrow_mut().halts.iter_mut() {
                if h.part == p && h.from == from && !h.resolved {
                    h.operator_sent = false;
                }
            }
            for _ in 0..20 {
                yield_now().await;
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The legacy sink's open file.
struct OpenFile {
    writer: SimWriter,
    temp: String,
    start: i64,
    last: i64,
    records: Vec<i64>,
}

/// A legacy member (or `flumen replay` with `replay`) for partition `p`.
pub async fn run_legacy(w: Rc<World>, m: usize, p: i32, replay: bool) -> Result<(), String> {
    let key = (m + if replay { 1000 } else { 0 }, p);
    let tp = tp(p);
    let c = LegacyCommitter::new(
        w.hdfs.client(client_id(m, p, replay)),
        STATE,
        format!("writer-{m}"),
        w.tokens.clone(),
    );
    w.set_status(key, |s| *s = Default::default());
    // assigned(): the sink may trim the channel before Activate arrives (finding 7).
    if !replay && w.chance(w.legacy_trim_race.get()) {
        w.channel(m, p, |ch| ch.batches.clear());
    }
    // RelayOwnership::assigned: a bounded attempt, retried every second by the poll thread.
    let r = loop {
        match w.reconcile_budget.get() {
            None => break c.reconcile(&tp).await.map_err(|e| e.to_string())?,
            Some(b) => match budget(b, c.reconcile(&tp)).await {
                Some(r) => break r.map_err(|e| e.to_string())?,
                None => sleep_secs(1).await,
            },
        }
    };
    let mut committed_end = r.committed_end;
    if !replay && committed_end < 0 && w.channel(m, p, |ch| ch.chain_end(-1)) < 0 {
        committed_end = if w.legacy_earliest.get() {
            w.low(p)
        } else {
            w.high(p)
        } - 1;
    }
    if !replay {
        w.mark_started(p, committed_end + 1);
    }
    let chain_end = w.channel(m, p, |ch| ch.chain_end(committed_end));
    let mut position = chain_end + 1;
    // Sink state after Activate.
    let mut next_expected = committed_end + 1;
    let mut cursor = first_after(&w, m, p, committed_end);
    let mut open: Option<OpenFile> = None;
    loop {
        if !replay && !w.owns(m, p) {
            return Ok(()); // Deactivate: the open file is dropped
        }
        w.set_status(key, |s| s.next = next_expected);
        let mut worked = false;
        let drained = w.channel(m, p, |ch| ch.batches.iter().all(|(s, _)| *s < cursor));
        if !replay && (w.chance(600) || drained) {
            yield_now().await;
            let b = w.kafka.borrow()[&p].fetch_jumping(position, w.fetch_max.get());
            if let Some(b) = b {
                position = b.last + 1;
                w.channel(m, p, |ch| ch.append(b));
                worked = true;
            }
        }
        let batch = w.channel(m, p, |ch| {
            ch.batches.iter().find(|(s, _)| *s >= cursor).cloned()
        });
        let mut restart = false;
        if let Some((seq, b)) = batch {
            worked = true;
            cursor = seq + 1;
            if b.last >= next_expected && b.start <= next_expected {
                let from = next_expected;
                let recs: Vec<i64> = b.records.iter().copied().filter(|&r| r >= from).collect();
                if open.is_none() && !recs.is_empty() {
                    let start = committed_end + 1;
                    let temp = c.temp_path(&tp, start);
                    let writer = flumen::hdfs::Hdfs::create(&c.hdfs, &temp)
                        .await
                        .map_err(|e| format!("create {temp}: {e}"))?;
                    open = Some(OpenFile {
                        writer,
                        temp,
                        start,
                        last: start,
                        records: Vec::new(),
                    });
                }
                if let Some(f) = open.as_mut() {
                    if f.writer.write(Bytes::from(content(&recs))).await.is_err() {
                        w.in_use_lost(m);
                        restart = true;
                    } else {
                        f.records.extend(&recs);
                        f.last = b.last;
                    }
                }
                if !restart {
                    next_expected = b.last + 1;
                    if open
                        .as_ref()
                        .is_some_and(|f| f.records.len() >= w.roll_max.get())
                    {
                        match roll(&w, &c, m, &tp, open.take().expect("open")).await? {
                            Some(end) => {
                                committed_end = end;
                                w.channel(m, p, |ch| ch.trim(end));
                            }
                            None => restart = true,
                        }
                    }
                }
            }
            // else: already written, or beyond a hole (the source would refetch it).
        } else if let Some(f) = open.take() {
            // Idle timeout: roll what we have.
            worked = true;
            match roll(&w, &c, m, &tp, f).await? {
                Some(end) => {
                    committed_end = end;
                    w.channel(m, p, |ch| ch.trim(end));
                }
                None => restart = true,
            }
        } else if replay {
            return Ok(());
        }
        if restart {
            // restart_partition: drop the open file, apply a revocation, reconcile, activate
            // at the reconciled committed end (no watermark fallback).
            if let Some(f) = open.take() {
                drop(f.writer);
                c.discard(&f.temp).await.map_err(|e| e.to_string())?;
            }
            if !replay && !w.owns(m, p) {
                return Ok(());
            }
            let r = c.reconcile(&tp).await.map_err(|e| e.to_string())?;
            committed_end = r.committed_end;
            next_expected = committed_end + 1;
            cursor = first_after(&w, m, p, committed_end);
        }
        let idle = !worked && open.is_none();
        w.set_status(key, |s| s.idle = idle);
        if !worked {
            yield_now().await;
        }
    }
}

fn first_after(w: &World, m: usize, p: i32, committed_end: i64) -> u64 {
    w.channel(m, p, |ch| {
        ch.batches
            .iter()
            .find(|(_, b)| b.last > committed_end)
            .map_or(ch.next_seq, |(s, _)| *s)
    })
}

/// Close, claim, rename. Some(last) committed; None when fenced or the close failed.
async fn roll(
    w: &World,
    c: &LegacyCommitter,
    m: usize,
    tp: &TopicPartition,
    mut f: OpenFile,
) -> Result<Option<i64>, String> {
    let closed = async {
        f.writer.hsync().await?;
        f.writer.close().await
    }
    .await;
    if closed.is_err() {
        w.in_use_lost(m);
        c.discard(&f.temp).await.map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let claim = Claim {
        topic: tp.topic.clone(),
        partition: tp.partition,
        start_offset: f.start,
        last_offset: f.last,
        records: f.records.len() as u64,
        temp_path: f.temp.clone(),
        final_path: final_path(tp.partition, f.start, f.last),
        writer_id: String::new(),
    };
    let before = listed_by(w, c.hdfs.client);
    let r = c.commit(claim).await.map_err(|e| e.to_string())?;
    {
        let after = listed_by(w, c.hdfs.client);
        let mut rep = w.report.borrow_mut();
        rep.commits += 1;
        rep.listed_per_commit.push(after - before);
    }
    Ok(match r {
        OldOutcome::Committed => Some(f.last),
        OldOutcome::Fenced => None,
    })
}
