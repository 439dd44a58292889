//! The findings as scripted interleavings. Each builds the same world for the legacy
//! port and for the new ledger, drives the actors step by step (an actor "about to" make an
//! HDFS call has announced it and not had it applied), then drives everything to quiescence
//! with faults off and asks the oracle. Faults are off throughout: the schedule is the script.

use std::rc::Rc;

use flumen::commit::{CommitError, CommitOutcome};
use flumen::hdfs::HdfsWriter;

use super::driver::{Proto, Sim};
use super::hdfs_model::PendingOp;
use super::kafka_model::{Batch, PartitionLog};
use super::legacy::LegacyCommitter;
use super::members::ledger;
use super::oracle::Verdict;
use super::world::{content, tp, World, STATE};

pub const SEED: u64 = 7;

/// One partition with `records` offsets and no gaps, owned by member 0; `members` members.
pub fn world(proto: Proto, members: usize, records: i64) -> Sim {
    let mut sim = Sim::new(SEED, proto, members, 1);
    let mut log = PartitionLog::default();
    let mut rng = super::rng::Rng::new(1);
    log.produce(records, 0, &mut rng);
    sim.add_partition(0, log, 0);
    sim.w.roll_max.set(4);
    sim.w.fetch_max.set(4);
    sim
}

/// Polls task `i` until the call it is about to make matches `pred` (not applied yet).
pub fn run_until(sim: &mut Sim, i: usize, what: &str, pred: impl Fn(&PendingOp) -> bool) {
    for _ in 0..20_000 {
        if let Some(op) = sim.ex.pending(i, sim.hdfs()) {
            if pred(&op) {
                return;
            }
        }
        assert!(
            sim.ex.live(i),
            "{} ended before {what}: {:?}",
            sim.ex.slots[i].name,
            sim.ex.slots[i].result
        );
        sim.poll(i);
    }
    panic!("{} never got to {what}", sim.ex.slots[i].name);
}

/// Polls task `i` until `cond` holds on the world.
pub fn run_while_not(sim: &mut Sim, i: usize, what: &str, cond: impl Fn(&World) -> bool) {
    for _ in 0..20_000 {
        if cond(&sim.w) {
            return;
        }
        assert!(
            sim.ex.live(i),
            "{} ended before {what}",
            sim.ex.slots[i].name
        );
        sim.poll(i);
    }
    panic!("{} never got to {what}", sim.ex.slots[i].name);
}

/// Applies the call task `i` is about to make, and runs it to its next call.
pub fn apply(sim: &mut Sim, i: usize) {
    let seq = sim.ex.pending(i, sim.hdfs()).map(|o| o.seq);
    for _ in 0..20_000 {
        if !sim.ex.live(i) {
            return;
        }
        sim.poll(i);
        let now = sim.ex.pending(i, sim.hdfs()).map(|o| o.seq);
        if now.is_some() && now != seq {
            return;
        }
    }
}

pub fn run_to_end(sim: &mut Sim, i: usize) -> Result<(), String> {
    for _ in 0..100_000 {
        if !sim.ex.live(i) {
            return sim.ex.slots[i].result.clone().expect("finished");
        }
        sim.poll(i);
    }
    panic!("{} never finished", sim.ex.slots[i].name);
}

pub fn finish(sim: &mut Sim) -> Verdict {
    let wedged = sim.quiesce(40_000);
    sim.verdict(&wedged)
}

fn show(v: &Verdict) -> String {
    v.violations
        .iter()
        .take(8)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  ")
}

pub fn assert_ok(v: &Verdict, what: &str) {
    assert!(
        v.ok(),
        "new ledger, {what}: expected exactly once, got:\n  {}",
        show(v)
    );
}

/// "loss ×12 (0/0 …), wedged ×1 (p0: …)": what a verdict says, briefly.
pub fn summary(v: &Verdict) -> String {
    let mut kinds: Vec<(String, usize, String)> = Vec::new();
    for x in &v.violations {
        let k = x.split(':').next().unwrap_or("").to_string();
        match kinds.iter_mut().find(|(q, _, _)| *q == k) {
            Some(e) => e.1 += 1,
            None => kinds.push((k, 1, x.clone())),
        }
    }
    kinds
        .iter()
        .map(|(k, n, first)| format!("{k} x{n} (e.g. {first})"))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn assert_fails(v: &Verdict, kinds: &[&str], what: &str) {
    println!("legacy, {what}: {}", summary(v));
    assert!(
        kinds.iter().any(|k| v.has(k)),
        "legacy, {what}: expected {kinds:?}, got:\n  {}",
        show(v)
    );
}

fn is_claim_create(o: &PendingOp) -> bool {
    o.kind == "create" && o.path.contains("/claims/")
}
fn is_slot_claim(o: &PendingOp) -> bool {
    o.kind == "rename" && o.path.contains("/.staging/") && !o.dst.contains(".staging")
}
fn next_of(w: &World, m: usize) -> i64 {
    w.status.borrow().get(&(m, 0)).map_or(-1, |s| s.next)
}

/// A raw task on member `m`'s behalf with its own client id.
fn legacy_committer(sim: &Sim, client: u32) -> LegacyCommitter {
    LegacyCommitter::new(
        sim.hdfs().client(client),
        STATE,
        format!("c{client}"),
        sim.w.tokens.clone(),
    )
}

// ---------------------------------------------------------------------------------------------
// Finding 1: a failed roll-forward counts as committed.

/// Old owner A closes temp T for [S, x]; a stale reconciler B lists claims (none at S) and
/// temps (T); A claims S naming T; new owner C finds S.0 with T present and recovers T's lease;
/// B's R4 deletes T; C's rename fails (neither temp nor final exists), yet C carries on from
/// x + 1. [S, x] is lost. B could equally be `flumen replay`.
pub fn finding_1(proto: Proto) -> Verdict {
    let mut sim = world(proto, 2, 10);
    let a = sim.spawn_actor(0, 0);
    match proto {
        Proto::Legacy => {
            run_until(&mut sim, a, "A's claim create", is_claim_create);
            let temp = sim.ex.pending(a, sim.hdfs()).map(|_| ()).and_then(|_| {
                sim.hdfs()
                    .lock()
                    .all_paths()
                    .into_iter()
                    .find(|p| p.ends_with(".inprogress"))
            });
            let temp = temp.expect("A's closed temp");
            let c = legacy_committer(&sim, 901);
            let b = sim
                .ex
                .spawn("B stale reconciler", 9, 0, false, 901, async move {
                    c.reconcile(&tp(0))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            let t = temp.clone();
            run_until(&mut sim, b, "B recovers T", move |o| {
                o.kind == "recover_lease" && o.path == t
            });
            let t = temp.clone();
            run_until(&mut sim, a, "A renames T", move |o| {
                o.kind == "rename" && o.path == t
            });
            // The partition moves to C; A is paused (a zombie) from here on.
            sim.w.owner.borrow_mut().insert(0, 1);
            let cc = sim.spawn_actor(1, 0);
            let t = temp.clone();
            run_until(&mut sim, cc, "C rolls T forward", move |o| {
                o.kind == "rename" && o.path == t
            });
            run_to_end(&mut sim, b).expect("B");
            assert!(!sim.hdfs().lock().exists(&temp), "B deleted T");
        }
        Proto::New => {
            run_until(&mut sim, a, "A's claim", is_slot_claim);
            let staged = sim.ex.pending(a, sim.hdfs()).expect("pending").path;
            let l = ledger(&sim.w, 901);
            let b = sim
                .ex
                .spawn("B stale reconciler", 9, 0, false, 901, async move {
                    l.reconcile(&tp(0), true)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            let s = staged.clone();
            run_until(&mut sim, b, "B deletes A's staging", move |o| {
                o.kind == "delete" && o.path == s
            });
            apply(&mut sim, a); // A's claim lands
            sim.w.owner.borrow_mut().insert(0, 1);
            let cc = sim.spawn_actor(1, 0);
            run_until(&mut sim, cc, "C rolls the claim forward", |o| {
                o.kind == "rename" && o.dst.starts_with("/data/")
            });
            run_to_end(&mut sim, b).expect("B");
        }
    }
    finish(&mut sim)
}

// ---------------------------------------------------------------------------------------------
// Finding 2: the seek lands below Kafka's low watermark.

/// A commits a file and dies; the partition moves to B (empty channel) after retention passed
/// A's position. Legacy: librdkafka jumps to the low watermark and the file's range covers
/// the missing offsets as if they were a compaction gap. New: B halts loudly with the range,
/// an operator skips it, B continues.
pub fn finding_2(proto: Proto) -> (Verdict, usize) {
    let mut sim = world(proto, 2, 20);
    sim.w.fetch_max.set(2);
    let a = sim.spawn_actor(0, 0);
    run_while_not(&mut sim, a, "A commits a file", |w| {
        w.report.borrow().commits > 0 && next_of(w, 0) > 0
    });
    sim.kill_member(0);
    let next = next_of(&sim.w, 0);
    sim.w
        .kafka
        .borrow_mut()
        .get_mut(&0)
        .expect("p")
        .retain(next + 6);
    sim.w.owner.borrow_mut().insert(0, 1);
    sim.spawn_actor(1, 0);
    sim.alive[0] = true; // A stays down: it owns nothing now
    let v = finish(&mut sim);
    let halts = sim.w.report.borrow().halts.len();
    (v, halts)
}

// ---------------------------------------------------------------------------------------------
// Finding 3: void is inferred from final files that users move.

/// A commits three files; the user moves the newest `moved` of them; A restarts.
/// Legacy: one moved: the range is written again (duplicate); two: C1 fences forever (wedge);
/// all three: reconcile returns -1 and the partition starts over (duplicates).
pub fn finding_3(proto: Proto, moved: usize) -> Verdict {
    let mut sim = world(proto, 1, 12);
    sim.w.roll_max.set(1);
    sim.w.fetch_max.set(4);
    let a = sim.spawn_actor(0, 0);
    // Files of exactly four records: fetches of four, a roll of at most... keep it simple:
    // wait for three commits.
    run_while_not(&mut sim, a, "three commits", |w| {
        w.report.borrow().commits >= 3
    });
    sim.kill_member(0);
    let mut finals: Vec<String> = sim
        .hdfs()
        .lock()
        .all_files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with("/data/"))
        .collect();
    finals.sort();
    for f in finals.iter().rev().take(moved) {
        sim.user_move_path(f);
    }
    sim.start_member(0);
    finish(&mut sim)
}

// ---------------------------------------------------------------------------------------------
// Finding 4: no genesis claim.

/// `earliest` while retention moves the low watermark: A starts the partition at 0 and is
/// about to open its first file; retention moves the low watermark to 2; the partition moves
/// to B, which starts at 2 (legacy) — two starts, overlapping ranges. New: both agree on the
/// genesis offset; B finds 0..1 gone from Kafka, halts, and resumes once A's claim lands.
pub fn finding_4(proto: Proto) -> (Verdict, usize) {
    let mut sim = world(proto, 2, 12);
    let a = sim.spawn_actor(0, 0);
    // A has offsets 0..3 in its channel and is about to open its first file.
    run_until(&mut sim, a, "A opens its first file", |o| {
        o.kind == "create" && (o.path.ends_with(".inprogress") || o.path.contains("/.staging/"))
    });
    sim.w.kafka.borrow_mut().get_mut(&0).expect("p").retain(2);
    sim.w.owner.borrow_mut().insert(0, 1);
    let b = sim.spawn_actor(1, 0);
    match proto {
        Proto::Legacy => run_until(&mut sim, b, "B's claim create", is_claim_create),
        Proto::New => run_while_not(&mut sim, b, "B halts", |w| {
            w.status.borrow().get(&(1, 0)).is_some_and(|s| s.halted)
        }),
    }
    run_to_end(&mut sim, a).expect("A");
    let v = finish(&mut sim);
    let unresolved = sim
        .w
        .report
        .borrow()
        .halts
        .iter()
        .filter(|h| !h.resolved)
        .count();
    (v, unresolved)
}

// ---------------------------------------------------------------------------------------------
// Findings 5 and 8: a kill at any await.

/// Legacy: A is killed between the claim's create and its close: a 0-byte claim, BadClaim on
/// every later reconcile, a permanent wedge.
pub fn finding_5_legacy() -> Verdict {
    let mut sim = world(Proto::Legacy, 1, 8);
    let a = sim.spawn_actor(0, 0);
    run_until(&mut sim, a, "A writes its claim's body", |o| {
        o.kind == "write" && o.path.contains("/claims/")
    });
    sim.kill_member(0);
    sim.restarts.push((sim.step + 5, 0));
    finish(&mut sim)
}

/// New ledger: A is killed just before its `k`-th HDFS call (every await of open, write,
/// hsync, close, commit and the roll-forward), restarted, and must still deliver exactly once.
/// Finding 8 (the process outliving a dead source or writer thread) is daemon-level; its
/// protocol half is this: whatever part of a member dies, the survivors' view stays exact.
pub fn kill_at(k: u64) -> Verdict {
    let mut sim = world(Proto::New, 1, 8);
    let a = sim.spawn_actor(0, 0);
    let client = sim.ex.slots[a].client;
    for _ in 0..20_000 {
        let calls = sim.hdfs().lock().calls.get(&client).copied().unwrap_or(0);
        if calls >= k || !sim.ex.live(a) {
            break;
        }
        sim.poll(a);
    }
    sim.kill_member(0);
    sim.restarts.push((sim.step + 3, 0));
    finish(&mut sim)
}

// ---------------------------------------------------------------------------------------------
// Finding 6: a partition with no claim restarts at -1.

/// The partition's first offsets expired before flumen saw it (low watermark 10). A opens its
/// first file and loses it mid-write (a stale reconciler deleted it). Legacy: the partition
/// restarts at committed end -1 while the channel starts at 10: every batch is "beyond a hole",
/// forever. New: reconcile returns the genesis offset.
pub fn finding_6(proto: Proto) -> Verdict {
    let mut sim = world(proto, 1, 20);
    sim.w.roll_max.set(8);
    sim.w.kafka.borrow_mut().get_mut(&0).expect("p").retain(10);
    let a = sim.spawn_actor(0, 0);
    let in_use = |o: &PendingOp| {
        o.kind == "write" && (o.path.ends_with(".inprogress") || o.path.contains("/.staging/"))
    };
    run_until(&mut sim, a, "A writes its first file", in_use);
    let path = sim.ex.pending(a, sim.hdfs()).expect("pending").path;
    sim.hdfs().lock().delete(&path, false).expect("delete");
    finish(&mut sim)
}

// ---------------------------------------------------------------------------------------------
// Finding 7: trim races ahead of Activate.

/// A consumed offsets 0..7 into its channel and died before writing them; retention then
/// dropped them from Kafka. On restart the legacy sink trims the not-yet-active partition's
/// channel data before Activate, and the source starts at the low watermark: 0..7 are lost
/// without a word. New: the channel is trimmed only below what the ledger says HDFS holds.
pub fn finding_7(proto: Proto) -> Verdict {
    let mut sim = world(proto, 1, 16);
    sim.w.mark_started(0, 0);
    if proto == Proto::New {
        let l = ledger(&sim.w, 902);
        let g = sim.ex.spawn("genesis", 9, 0, false, 902, async move {
            l.genesis(&tp(0), 0)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        run_to_end(&mut sim, g).expect("genesis");
    }
    sim.w.channel(0, 0, |c| {
        c.append(Batch {
            start: 0,
            last: 3,
            records: vec![0, 1, 2, 3],
        });
        c.append(Batch {
            start: 4,
            last: 7,
            records: vec![4, 5, 6, 7],
        });
    });
    sim.w.kafka.borrow_mut().get_mut(&0).expect("p").retain(8);
    sim.w.legacy_trim_race.set(1000);
    sim.start_member(0);
    finish(&mut sim)
}

// ---------------------------------------------------------------------------------------------
// Finding 9: the bounded reconcile cancels lease recovery.

/// A dies mid-write; its in-use file's lease recovery is stuck (the last block's DataNodes are
/// unreachable). B is assigned the partition; the relay bounds each reconcile attempt to 10 s
/// and retries each second. Legacy: recover_lease polls up to 60 s, so every attempt is
/// cancelled before the fallback: the partition never starts (wedge). New: the ledger deletes
/// the staging directory without waiting for the lease. The poll thread blocking per partition
/// is daemon-level and not modelled.
pub fn finding_9(proto: Proto) -> Verdict {
    let mut sim = world(proto, 2, 12);
    sim.w.roll_max.set(8);
    let a = sim.spawn_actor(0, 0);
    let in_use = |o: &PendingOp| {
        o.kind == "hsync" && (o.path.ends_with(".inprogress") || o.path.contains("/.staging/"))
    };
    run_until(&mut sim, a, "A syncs its file", in_use);
    let path = sim.ex.pending(a, sim.hdfs()).expect("pending").path;
    sim.kill_member(0);
    sim.alive[0] = true;
    sim.hdfs()
        .lock()
        .file_mut(&path)
        .expect("file")
        .stuck_recovery = true;
    sim.w
        .reconcile_budget
        .set(Some(10 * super::legacy::SECOND_YIELDS as u64));
    sim.w.owner.borrow_mut().insert(0, 1);
    sim.spawn_actor(1, 0);
    finish(&mut sim)
}

// ---------------------------------------------------------------------------------------------
// Finding 10: the claims directory grows; every commit lists all of it.

/// 150 one-record files. Returns (entries listed by the first commit, by the last ten at most).
pub fn finding_10(proto: Proto) -> (Verdict, u64, u64) {
    let mut sim = world(proto, 1, 150);
    sim.w.roll_max.set(1);
    sim.w.fetch_max.set(1);
    sim.spawn_actor(0, 0);
    let v = finish(&mut sim);
    let r = sim.w.report.borrow();
    let first = r.listed_per_commit.first().copied().unwrap_or(0);
    let late = r
        .listed_per_commit
        .iter()
        .rev()
        .take(10)
        .copied()
        .max()
        .unwrap_or(0);
    (v, first, late)
}

// ---------------------------------------------------------------------------------------------
// Finding 11: dead letters written in place.

/// Offset 5 is oversized and goes to the dead-letter directory. The first attempt is killed
/// after creating the file and before closing it; the retry finds the name taken and counts
/// the record as delivered. Legacy writes in place (`create_exclusive`): the empty file is
/// "delivered". New: the dead letter is a one-record ledger file whose final path is in the
/// dead-letter directory, so a half-written one is never visible there.
pub fn finding_11(proto: Proto) -> Verdict {
    let mut sim = world(proto, 1, 6);
    // Only offset 5 is this scenario's business.
    sim.w.mark_started(0, 5);
    sim.w.owner.borrow_mut().insert(0, usize::MAX);
    let dead = "/dead/0/t+0+00000000000000000005.bin".to_string();
    let body = bytes::Bytes::from(content(&[5]));
    let attempt = |sim: &mut Sim, client: u32| -> usize {
        let (dead, body) = (dead.clone(), body.clone());
        match proto {
            Proto::Legacy => {
                let c = legacy_committer(sim, client);
                sim.ex
                    .spawn("dead letter", 9, 0, false, client, async move {
                        c.create_exclusive("create dead letter", &dead, body)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
            }
            Proto::New => {
                let l = ledger(&sim.w, client);
                sim.ex
                    .spawn("dead letter", 9, 0, false, client, async move {
                        let tp = tp(0);
                        let e = |e: CommitError| e.to_string();
                        let pos = l.reconcile(&tp, true).await.map_err(e)?;
                        let next = match pos.next {
                            Some(n) => n,
                            None => l.genesis(&tp, 5).await.map_err(e)?,
                        };
                        if next > 5 {
                            return Ok(()); // delivered by an earlier run
                        }
                        let mut st = l.open(&tp).await.map_err(e)?;
                        st.writer.write(body).await.map_err(|e| e.to_string())?;
                        st.writer.hsync().await.map_err(|e| e.to_string())?;
                        st.writer.close().await.map_err(|e| e.to_string())?;
                        match l
                            .commit(&tp, &st.token, 5, 5, &dead, Default::default())
                            .await
                            .map_err(e)?
                        {
                            CommitOutcome::Committed => Ok(()),
                            CommitOutcome::Fenced | CommitOutcome::Late => Err("fenced".into()),
                        }
                    })
            }
        }
    };
    let first = attempt(&mut sim, 903);
    run_until(&mut sim, first, "the dead letter's write", |o| {
        o.kind == "write"
    });
    sim.ex.kill(first);
    let second = attempt(&mut sim, 904);
    run_to_end(&mut sim, second).expect("retry");
    // Let the dead writer's lease expire (the file closes at its synced length).
    let hard = sim.hdfs().lock().hard_limit;
    for _ in 0..hard + 1 {
        sim.hdfs().lock().tick();
    }
    sim.verdict(&[])
}

// ---------------------------------------------------------------------------------------------
// Finding 12: `flumen replay` beside a live daemon.

/// A (live) is writing its in-use file when `flumen replay` runs over another channel holding
/// the same partition. Legacy: replay's reconcile recovers the lease on A's file and deletes
/// it; A's next write fails and it rewrites. New: replay reconciles with clean=false.
/// Returns the verdict and how many in-use files A lost.
pub fn finding_12(proto: Proto) -> (Verdict, u64) {
    let mut sim = world(proto, 2, 8);
    sim.w.roll_max.set(8);
    sim.w.channel(1, 0, |c| {
        c.append(Batch {
            start: 0,
            last: 3,
            records: vec![0, 1, 2, 3],
        })
    });
    let a = sim.spawn_actor(0, 0);
    let in_use = |o: &PendingOp| {
        o.kind == "write" && (o.path.ends_with(".inprogress") || o.path.contains("/.staging/"))
    };
    run_until(&mut sim, a, "A writes", in_use);
    let r = sim.spawn_replay(1, 0);
    let _ = run_to_end(&mut sim, r);
    let v = finish(&mut sim);
    let lost = sim
        .w
        .report
        .borrow()
        .in_use_lost
        .get(&0)
        .copied()
        .unwrap_or(0);
    (v, lost)
}

// ---------------------------------------------------------------------------------------------
// A ledger bug the random runs found: `skip` answers Refused after its entry landed.

/// The operator's skip renames its entry onto the slot, then lists the partition to check it
/// is the tip. If the halted member sees the skip (committed_end moved) and claims the next
/// slot in between, the operator is told "another writer claimed offset {from} first" although
/// its skip is in force. Returns the operator's answer and whether its entry is in the ledger.
pub fn skip_refused_but_effective() -> (Result<(), String>, bool) {
    let mut sim = world(Proto::New, 1, 8);
    let w: Rc<World> = sim.w.clone();
    let l0 = ledger(&w, 905);
    let g = sim.ex.spawn("genesis", 9, 0, false, 905, async move {
        l0.genesis(&tp(0), 0)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    run_to_end(&mut sim, g).expect("genesis");
    let l1 = ledger(&w, 906);
    let op = sim.ex.spawn("operator", 9, 0, false, 906, async move {
        l1.skip(&tp(0), 0, 3).await.map_err(|e| e.to_string())
    });
    run_until(&mut sim, op, "the skip's claim", is_slot_claim);
    apply(&mut sim, op); // the skip entry is the slot at 0 now
                         // Another writer sees the skip as the tip and claims [4, 5].
    let l2 = ledger(&w, 907);
    let other = sim.ex.spawn("writer", 9, 0, false, 907, async move {
        l2.skip(&tp(0), 4, 5).await.map_err(|e| e.to_string())
    });
    run_to_end(&mut sim, other).expect("the second writer");
    let answer = run_to_end(&mut sim, op);
    let effective = sim.hdfs().lock().all_paths().iter().any(|p| {
        p.starts_with(&format!(
            "{STATE}/ledger/t/0/00000000000000000000/v1.skip.00000000000000000003."
        ))
    });
    (answer, effective)
}
