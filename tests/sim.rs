//! Deterministic simulation of the commit protocol (FoundationDB / VOPR style).
//!
//! Everything runs on one thread: members are boxed futures polled with a noop waker in an
//! order drawn from one seeded PRNG (splitmix64); HDFS is an in-memory model
//! (`sim/hdfs_model.rs`) whose every call yields before it applies, with seeded faults (slow
//! calls, responses lost after applying, failed writes, lagging closes, lease expiry); Kafka is
//! an in-memory log with retention and compaction gaps (`sim/kafka_model.rs`). Killing a
//! member drops its futures at whatever await they are in; its channel (`sim/world.rs`)
//! survives as its disk. The oracle (`sim/oracle.rs`) reads the model's namespace directly.
//!
//! - `seeds`: `FLUMEN_SIM_SEEDS` runs (default 10 000) against the new ledger; a failure
//!   prints its seed, and `FLUMEN_SIM_SEED=<n>` replays exactly that run. Long mode:
//!   `FLUMEN_SIM_SEEDS=1000000 cargo test --release --test sim seeds -- --nocapture`.
//! - `finding_*`: the findings as scripted interleavings, each run against the legacy
//!   port (`sim/legacy.rs`, the v1 `src/commit.rs` at de38371), which must fail, and the new
//!   ledger, which must pass (`sim/scenarios.rs`).
//! - `oracle_*`: the checker itself catches planted bugs.

#[path = "sim/driver.rs"]
mod driver;
#[path = "sim/hdfs_model.rs"]
mod hdfs_model;
#[path = "sim/kafka_model.rs"]
mod kafka_model;
#[path = "sim/legacy.rs"]
mod legacy;
#[path = "sim/members.rs"]
mod members;
#[path = "sim/oracle.rs"]
mod oracle;
#[path = "sim/rng.rs"]
mod rng;
#[path = "sim/scenarios.rs"]
mod scenarios;
#[path = "sim/world.rs"]
mod world;

use driver::{run_seed, Proto, RunSize};

const SIZE: RunSize = RunSize {
    chaos_steps: 300,
    quiesce_steps: 30_000,
};

/// Legacy runs wedge often; a wedge is found by running out of quiescence steps, so keep that short.
const LEGACY_SIZE: RunSize = RunSize {
    chaos_steps: 400,
    quiesce_steps: 3_000,
};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

fn check_seed(seed: u64) -> Result<driver::RunOutcome, String> {
    let out = run_seed(seed, Proto::New, SIZE);
    // A skip the operator was told failed although it is in force (fixed; see
    // `skip_that_a_member_built_on_is_reported_as_recorded`).
    if !out.known_bugs.is_empty() {
        return Err(format!("seed {seed}: {}", out.known_bugs.join("; ")));
    }
    if out.verdict.ok() {
        Ok(out)
    } else {
        let shown: Vec<_> = out.verdict.violations.iter().take(12).cloned().collect();
        Err(format!(
            "seed {seed} failed ({} violations); replay with FLUMEN_SIM_SEED={seed} cargo test --test sim seeds -- --nocapture\n  {}",
            out.verdict.violations.len(),
            shown.join("\n  ")
        ))
    }
}

#[test]
fn seeds() {
    if let Some(seed) = env_u64("FLUMEN_SIM_SEED") {
        let proto = match std::env::var("FLUMEN_SIM_PROTO").as_deref() {
            Ok("legacy") => Proto::Legacy,
            _ => Proto::New,
        };
        let out = run_seed(seed, proto, SIZE);
        println!(
            "seed {seed}: {} steps, {} commits, {} halts, {} crashes, {} files, {} offsets delivered",
            out.steps, out.commits, out.halts, out.crashes, out.verdict.files, out.verdict.delivered
        );
        for v in &out.verdict.violations {
            println!("  {v}");
        }
        for b in &out.known_bugs {
            println!("  wrong ledger answer: {b}");
        }
        println!("{}", out.detail);
        assert!(
            out.verdict.ok() && out.known_bugs.is_empty(),
            "seed {seed} failed"
        );
        return;
    }
    let n = env_u64("FLUMEN_SIM_SEEDS").unwrap_or(10_000);
    let base = env_u64("FLUMEN_SIM_BASE").unwrap_or(0);
    let began = std::time::Instant::now(); // reporting only; never feeds the simulation
    let (mut steps, mut commits, mut halts, mut crashes) = (0, 0, 0, 0);
    let mut late_rewrites = 0;
    let mut failures = Vec::new();
    // Seeds where an actor stopped on an error (its supervisor restarted it): not violations,
    // but worth replaying, so the first few are named.
    let mut crashed = Vec::new();
    for seed in base..base + n {
        match check_seed(seed) {
            Ok(o) => {
                steps += o.steps;
                commits += o.commits;
                late_rewrites += o.late_rewrites;
                halts += o.halts;
                crashes += o.crashes;
                if o.crashes > 0 && crashed.len() < 5 {
                    crashed.push(seed);
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failures.push(seed);
                if failures.len() >= 5 {
                    break;
                }
            }
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{n} seeds in {secs:.1} s ({:.0} seeds/s): {steps} polls, {commits} commits, {halts} halts, {crashes} crashes",
        n as f64 / secs
    );
    if !crashed.is_empty() {
        println!("seeds with a crashed actor (replay with FLUMEN_SIM_SEED): {crashed:?}");
    }
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    // The seal's refusal (an advance passed a file's horizon) must happen in the runs, or
    // its rewrite path would go unchecked by the oracle.
    println!("{late_rewrites} files found late at their claim and written again");
    assert!(
        n < 100 || late_rewrites > 0,
        "no file was ever found late at its claim"
    );
}

// ---------------------------------------------------------------------------------------------
// The oracle catches planted bugs.

fn clean_run() -> driver::Sim {
    let mut sim = scenarios::world(Proto::New, 1, 12);
    sim.spawn_actor(0, 0);
    let v = scenarios::finish(&mut sim);
    assert!(v.ok(), "{:?}", v.violations);
    sim
}

fn first_final(sim: &driver::Sim) -> (String, Vec<u8>) {
    let st = sim.hdfs().lock();
    let (p, f) = st
        .all_files()
        .into_iter()
        .find(|(p, _)| p.starts_with("/data/"))
        .expect("a final file");
    (p, f.bytes)
}

#[test]
fn oracle_catches_a_planted_duplicate() {
    let sim = clean_run();
    let (path, bytes) = first_final(&sim);
    sim.hdfs()
        .lock()
        .put(
            &format!("/moved/0/copy-of-{}", path.rsplit('/').next().unwrap()),
            &bytes,
        )
        .unwrap();
    let v = sim.verdict(&[]);
    assert!(v.has("duplicate"), "{:?}", v.violations);
}

#[test]
fn oracle_catches_a_planted_loss_and_a_half_written_file() {
    let sim = clean_run();
    let (path, _) = first_final(&sim);
    sim.hdfs().lock().delete(&path, false).unwrap();
    let v = sim.verdict(&[]);
    assert!(v.has("loss"), "{:?}", v.violations);
    let sim = clean_run();
    let (path, _) = first_final(&sim);
    let mut st = sim.hdfs().lock();
    st.delete(&path, false).unwrap();
    st.create(&path).unwrap(); // open, empty
    drop(st);
    let v = sim.verdict(&[]);
    assert!(v.has("half-written") && v.has("loss"), "{:?}", v.violations);
}

#[test]
fn oracle_catches_a_wedge_and_a_phantom() {
    let sim = clean_run();
    sim.hdfs()
        .lock()
        .put(
            "/data/t/0/f-00000000000000000100-00000000000000000100",
            b"100\n",
        )
        .unwrap();
    let v = sim.verdict(&["p0: planted".into()]);
    assert!(v.has("phantom") && v.has("wedged"), "{:?}", v.violations);
}

// ---------------------------------------------------------------------------------------------
// The findings: legacy fails, the new ledger delivers exactly once.

use scenarios::{assert_fails, assert_ok};

#[test]
fn finding_01_failed_roll_forward_counts_as_committed() {
    assert_fails(&scenarios::finding_1(Proto::Legacy), &["loss"], "finding 1");
    assert_ok(&scenarios::finding_1(Proto::New), "finding 1");
}

#[test]
fn finding_02_seek_below_low_watermark() {
    let (v, halts) = scenarios::finding_2(Proto::Legacy);
    assert_fails(&v, &["loss"], "finding 2");
    assert_eq!(halts, 0, "legacy never reports");
    let (v, halts) = scenarios::finding_2(Proto::New);
    assert_ok(&v, "finding 2");
    assert!(halts >= 1, "the new rules halt loudly");
}

#[test]
fn finding_03_void_inferred_from_moved_finals() {
    assert_fails(
        &scenarios::finding_3(Proto::Legacy, 1),
        &["duplicate"],
        "finding 3, newest moved",
    );
    assert_fails(
        &scenarios::finding_3(Proto::Legacy, 2),
        &["wedged"],
        "finding 3, two moved",
    );
    assert_fails(
        &scenarios::finding_3(Proto::Legacy, 3),
        &["duplicate", "wedged"],
        "finding 3, all moved",
    );
    for moved in 1..=3 {
        assert_ok(
            &scenarios::finding_3(Proto::New, moved),
            &format!("finding 3, {moved} moved"),
        );
    }
}

#[test]
fn finding_04_no_genesis_two_starts() {
    let (v, _) = scenarios::finding_4(Proto::Legacy);
    assert_fails(&v, &["duplicate"], "finding 4");
    let (v, unresolved) = scenarios::finding_4(Proto::New);
    assert_ok(&v, "finding 4");
    assert_eq!(unresolved, 0, "B's halt resolves once A's claim lands");
}

#[test]
fn finding_05_08_kill_between_claim_create_and_close() {
    assert_fails(&scenarios::finding_5_legacy(), &["wedged"], "finding 5");
    // The new ledger, killed before each of its first 40 HDFS calls.
    for k in 1..=40 {
        assert_ok(&scenarios::kill_at(k), &format!("kill before call {k}"));
    }
}

#[test]
fn finding_06_no_claim_restarts_at_minus_one() {
    assert_fails(
        &scenarios::finding_6(Proto::Legacy),
        &["wedged", "loss"],
        "finding 6",
    );
    assert_ok(&scenarios::finding_6(Proto::New), "finding 6");
}

#[test]
fn finding_07_trim_before_activate() {
    assert_fails(&scenarios::finding_7(Proto::Legacy), &["loss"], "finding 7");
    assert_ok(&scenarios::finding_7(Proto::New), "finding 7");
}

#[test]
fn finding_09_bounded_reconcile_cancels_lease_recovery() {
    assert_fails(
        &scenarios::finding_9(Proto::Legacy),
        &["wedged"],
        "finding 9",
    );
    assert_ok(&scenarios::finding_9(Proto::New), "finding 9");
}

#[test]
fn finding_10_listing_per_commit_is_bounded() {
    let (v, first, late) = scenarios::finding_10(Proto::Legacy);
    assert!(v.ok(), "{:?}", v.violations);
    println!("legacy: first commit listed {first} entries, late commits up to {late}");
    assert!(
        late >= 140,
        "legacy lists every claim on each commit: {late}"
    );
    let (v, first, late) = scenarios::finding_10(Proto::New);
    assert_ok(&v, "finding 10");
    println!("new: first commit listed {first} entries, late commits up to {late}");
    // The simulated members seal every predecessor (completeness markers), which reads the
    // partition's listing a second time and walks the tip's (delivered, empty) claim mirror:
    // twice the bound of a commit without the seal, and still independent of the history.
    assert!(
        late <= 2 * (2 * flumen::commit::ledger::SLOTS_KEPT as u64 + 4) + 4,
        "bounded: {late}"
    );
}

#[test]
fn finding_11_dead_letter_in_place() {
    assert_fails(
        &scenarios::finding_11(Proto::Legacy),
        &["loss", "half-written"],
        "finding 11",
    );
    assert_ok(&scenarios::finding_11(Proto::New), "finding 11");
}

#[test]
fn finding_12_replay_beside_a_live_daemon() {
    let (_, lost) = scenarios::finding_12(Proto::Legacy);
    assert!(
        lost >= 1,
        "legacy replay deleted the live member's in-use file"
    );
    let (v, lost) = scenarios::finding_12(Proto::New);
    assert_ok(&v, "finding 12");
    assert_eq!(lost, 0, "replay left the live member's in-use file alone");
}

/// Regression for a ledger bug the random runs found (seed 2144): `Ledger::skip` answered
/// Refused ("another writer claimed offset {from} first") although its skip entry landed and
/// was in force, because the halted member had already claimed past it when `skip` looked.
#[test]
fn skip_that_a_member_built_on_is_reported_as_recorded() {
    let (answer, effective) = scenarios::skip_refused_but_effective();
    assert!(effective, "the skip entry is in the ledger");
    assert_eq!(answer, Ok(()), "so the operator must be told it succeeded");
}

/// The same random runs against the legacy port: the simulation must find its failures on its
/// own (this is what makes the 10 000 passing seeds of the new ledger mean something).
#[test]
fn legacy_random_runs_fail() {
    let n = env_u64("FLUMEN_SIM_LEGACY_SEEDS").unwrap_or(60);
    let mut kinds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut failed = 0;
    for seed in 0..n {
        let out = run_seed(seed, Proto::Legacy, LEGACY_SIZE);
        if !out.verdict.ok() {
            failed += 1;
            let mut seen = std::collections::BTreeSet::new();
            for v in &out.verdict.violations {
                seen.insert(v.split(':').next().unwrap_or("").to_string());
            }
            for k in seen {
                let e = kinds.entry(k).or_insert((0, seed));
                e.0 += 1;
            }
        }
    }
    println!(
        "legacy: {failed} of {n} seeds violate exactly-once; runs per kind (first seed): {kinds:?}"
    );
    assert!(failed > 0, "the random runs found no legacy failure");
}
