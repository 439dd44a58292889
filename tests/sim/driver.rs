//! The run driver: members, kills, reassignments with zombies, retention, a user moving final
//! files, replays and operator skips, all drawn from one seed; then quiescence with faults off
//! and the oracle.

use std::rc::Rc;

use super::hdfs_model::{Faults, SimHdfs};
use super::kafka_model::PartitionLog;
use super::members::{operator, run_legacy, run_new};
use super::oracle::{self, Verdict};
use super::rng::Rng;
use super::world::{client_id, Exec, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    New,
    Legacy,
}

pub struct Sim {
    pub w: Rc<World>,
    pub ex: Exec,
    pub proto: Proto,
    pub rng: Rng,
    pub members: usize,
    pub parts: i32,
    pub alive: Vec<bool>,
    /// (due step, member): the supervisor restarts a killed or crashed member.
    pub restarts: Vec<(u64, usize)>,
    /// (due step, task): a zombie resumes.
    pub resumes: Vec<(u64, usize)>,
    pub step: u64,
    pub moves: u64,
    next_operator: u32,
}

impl Sim {
    /// A world with `parts` partitions, each owned by a member, faults configured by the caller.
    pub fn new(seed: u64, proto: Proto, members: usize, parts: i32) -> Self {
        let mut rng = Rng::new(seed);
        let hdfs = SimHdfs::new(rng.next_u64());
        let w = World::new(hdfs, rng.fork());
        Self {
            w,
            ex: Exec::default(),
            proto,
            rng,
            members,
            parts,
            alive: vec![true; members],
            restarts: Vec::new(),
            resumes: Vec::new(),
            step: 0,
            moves: 0,
            next_operator: 9000,
        }
    }

    pub fn hdfs(&self) -> &SimHdfs {
        &self.w.hdfs
    }

    pub fn add_partition(&mut self, p: i32, log: PartitionLog, owner: usize) {
        self.w.kafka.borrow_mut().insert(p, log);
        self.w.owner.borrow_mut().insert(p, owner);
    }

    /// Spawns member `m`'s actor for `p`.
    pub fn spawn_actor(&mut self, m: usize, p: i32) -> usize {
        self.spawn(m, p, false)
    }

    pub fn spawn_replay(&mut self, m: usize, p: i32) -> usize {
        self.spawn(m, p, true)
    }

    /// A member's actor, or with `replay` a `flumen replay` of its channel (not a group member).
    fn spawn(&mut self, m: usize, p: i32, replay: bool) -> usize {
        let w = self.w.clone();
        let name = if replay {
            format!("replay m{m}/p{p}")
        } else {
            format!("m{m}/p{p}")
        };
        let c = client_id(m, p, replay);
        match self.proto {
            Proto::New => self
                .ex
                .spawn(name, m, p, !replay, c, run_new(w, m, p, replay)),
            Proto::Legacy => self
                .ex
                .spawn(name, m, p, !replay, c, run_legacy(w, m, p, replay)),
        }
    }

    /// Spawns an actor for every partition `m` owns.
    pub fn start_member(&mut self, m: usize) {
        self.alive[m] = true;
        let owned: Vec<i32> = (0..self.parts).filter(|&p| self.w.owns(m, p)).collect();
        for p in owned {
            self.spawn_actor(m, p);
        }
    }

    /// kill -9: every task of the member is dropped where it stands.
    pub fn kill_member(&mut self, m: usize) {
        self.alive[m] = false;
        // Its halts die with it; the restarted member reports again if still stuck.
        for p in 0..self.parts {
            self.w.resolve_halts(m, p);
        }
        for i in 0..self.ex.slots.len() {
            if self.ex.slots[i].member == m && self.ex.slots[i].owner_actor {
                self.ex.kill(i);
            }
        }
    }

    fn live_owner_actor(&self, m: usize, p: i32) -> Option<usize> {
        (0..self.ex.slots.len()).find(|&i| {
            let s = &self.ex.slots[i];
            s.owner_actor && s.member == m && s.part == p && s.fut.is_some()
        })
    }

    /// Moves `p` to member `to`; the old owner's actor learns of it at its next check, or, as
    /// a zombie, is paused now and resumes `zombie_for` steps later.
    pub fn reassign(&mut self, p: i32, to: usize, zombie_for: Option<u64>) {
        let from = self.w.owner.borrow()[&p];
        if let (Some(d), Some(i)) = (zombie_for, self.live_owner_actor(from, p)) {
            self.ex.slots[i].paused = true;
            self.resumes.push((self.step + d, i));
        }
        self.w.owner.borrow_mut().insert(p, to);
        self.w.resolve_halts(from, p);
        if self.alive[to] && self.live_owner_actor(to, p).is_none() {
            self.spawn_actor(to, p);
        }
    }

    /// Polls task `i` once and handles its end (a crash schedules a supervisor restart).
    pub fn poll(&mut self, i: usize) {
        self.step += 1;
        if self.ex.poll(i, &self.w.hdfs) {
            let s = &self.ex.slots[i];
            if let Some(Err(e)) = &s.result {
                let who = format!("{}: {e}", s.name);
                let (m, owner_actor) = (s.member, s.owner_actor);
                self.w.crash(who);
                if owner_actor && self.alive[m] {
                    self.kill_member(m);
                    self.restarts.push((self.step + 10, m));
                }
            }
        }
    }

    fn due(&mut self) {
        let now = self.step;
        if !self.restarts.iter().any(|&(t, _)| t <= now)
            && !self.resumes.iter().any(|&(t, _)| t <= now)
        {
            return;
        }
        let (ready, rest): (Vec<_>, Vec<_>) = self.restarts.drain(..).partition(|&(t, _)| t <= now);
        self.restarts = rest;
        for (_, m) in ready {
            if !self.alive[m] {
                self.start_member(m);
            }
        }
        let (ready, rest): (Vec<_>, Vec<_>) = self.resumes.drain(..).partition(|&(t, _)| t <= now);
        self.resumes = rest;
        for (_, i) in ready {
            self.ex.slots[i].paused = false;
        }
    }

    /// Polls a random runnable task a few times in a row. False when none is runnable.
    pub fn poll_random(&mut self) -> bool {
        self.due();
        let r = self.ex.runnable();
        if r.is_empty() {
            // Time passes while everyone waits (for a restart, a lease to expire).
            self.step += 1;
            self.w.hdfs.lock().tick();
            return false;
        }
        let i = r[self.rng.below(r.len() as u64) as usize];
        for _ in 0..1 + self.rng.below(4) {
            if !self.ex.live(i) || self.ex.slots[i].paused {
                break;
            }
            self.poll(i);
        }
        true
    }

    /// The user renames a random final file into `/moved/<p>/`.
    pub fn user_move(&mut self) {
        let mut st = self.w.hdfs.lock();
        let finals: Vec<String> = st
            .all_files()
            .into_iter()
            .filter(|(p, f)| p.starts_with("/data/") && !f.is_open())
            .map(|(p, _)| p)
            .collect();
        if finals.is_empty() {
            return;
        }
        let src = finals[self.rng.below(finals.len() as u64) as usize].clone();
        let p = src.split('/').nth(3).unwrap_or("x").to_string();
        self.moves += 1;
        let dst = format!(
            "/moved/{p}/{}-{}",
            self.moves,
            src.rsplit('/').next().unwrap_or("")
        );
        st.mkdirs(&format!("/moved/{p}")).expect("mkdirs");
        st.rename(&src, &dst).expect("user rename");
        drop(st);
        self.w.report.borrow_mut().moved.push((src, dst));
    }

    pub fn user_move_path(&mut self, src: &str) {
        let p = src.split('/').nth(3).unwrap_or("x").to_string();
        self.moves += 1;
        let dst = format!(
            "/moved/{p}/{}-{}",
            self.moves,
            src.rsplit('/').next().unwrap_or("")
        );
        let mut st = self.w.hdfs.lock();
        st.mkdirs(&format!("/moved/{p}")).expect("mkdirs");
        st.rename(src, &dst).expect("user rename");
    }

    /// Spawns the operator for every unresolved halt it has not acted on.
    pub fn operators(&mut self) {
        if self.proto != Proto::New {
            return;
        }
        let todo: Vec<(usize, i32, i64, i64)> = {
            let mut r = self.w.report.borrow_mut();
            r.halts
                .iter_mut()
                .enumerate()
                .filter(|(_, h)| !h.resolved && !h.operator_sent)
                .map(|(i, h)| {
                    h.operator_sent = true;
                    (i, h.part, h.from, h.through)
                })
                .collect()
        };
        for (_, p, from, through) in todo {
            self.next_operator += 1;
            let c = self.next_operator;
            let w = self.w.clone();
            self.ex.spawn(
                format!("operator p{p}"),
                usize::MAX,
                p,
                false,
                c,
                operator(w, p, from, through, c),
            );
        }
    }

    /// Live tasks that are not the current owner's actor (zombies, replays, operators).
    fn others_running(&self) -> bool {
        self.ex
            .slots
            .iter()
            .any(|s| s.fut.is_some() && !(s.owner_actor && self.w.owns(s.member, s.part)))
    }

    /// Each partition's owner has a live actor that is idle or halted. Returns what is not.
    pub fn not_settled(&self) -> Vec<String> {
        let mut out = Vec::new();
        let status = self.w.status.borrow();
        for p in 0..self.parts {
            let m = self.w.owner.borrow()[&p];
            match self.live_owner_actor(m, p) {
                None => out.push(format!("p{p}: owner m{m} has no live actor")),
                Some(_) => {
                    let s = status.get(&(m, p)).cloned().unwrap_or_default();
                    // A halt an operator already skipped is about to resume.
                    let r = self.w.report.borrow();
                    let skipped = r.halts.iter().any(|h| {
                        h.member == m
                            && h.part == p
                            && !h.resolved
                            && r.skips.iter().any(|&(q, a, _)| q == p && a == h.from)
                    });
                    // Idle counts only with nothing left in Kafka: a stale idle flag (an
                    // actor not polled since new records arrived) must not end the run.
                    let last = self.w.kafka.borrow()[&p].last_record().unwrap_or(-1);
                    let done = s.idle && s.next > last;
                    // Halted counts only while the halt is on the report and not yet skipped.
                    let reported = r
                        .halts
                        .iter()
                        .any(|h| h.member == m && h.part == p && !h.resolved);
                    let halted = s.halted && reported && !skipped;
                    if !done && !halted {
                        out.push(format!("p{p}: owner m{m} busy at {}", s.next));
                    }
                }
            }
        }
        out
    }

    /// Faults off, zombies resumed, dead members restarted; runs until every owner is idle or
    /// halted and nothing else runs. Returns the wedged partitions.
    pub fn quiesce(&mut self, max_steps: u64) -> Vec<String> {
        self.w.hdfs.lock().faults = Faults::default();
        for (_, i) in self.resumes.drain(..) {
            self.ex.slots[i].paused = false;
        }
        for s in self.ex.slots.iter_mut() {
            s.paused = false;
        }
        for m in 0..self.members {
            if !self.alive[m] {
                self.start_member(m);
            }
        }
        self.restarts.clear();
        let deadline = self.step + max_steps;
        let mut settled_rounds = 0;
        while self.step < deadline {
            self.operators();
            if !self.poll_random() && self.restarts.is_empty() {
                break;
            }
            if self.not_settled().is_empty() && !self.others_running() {
                settled_rounds += 1;
                if settled_rounds > 8 {
                    break;
                }
            } else {
                settled_rounds = 0;
            }
        }
        let mut wedged = self.not_settled();
        for s in &self.ex.slots {
            if s.fut.is_some() && !(s.owner_actor && self.w.owns(s.member, s.part)) {
                wedged.push(format!("{} never finished", s.name));
            }
        }
        // An idle owner short of Kafka's last record, not halted, is stuck.
        let status = self.w.status.borrow();
        for p in 0..self.parts {
            let m = self.w.owner.borrow()[&p];
            let s = status.get(&(m, p)).cloned().unwrap_or_default();
            let last = self.w.kafka.borrow()[&p].last_record().unwrap_or(-1);
            if s.idle && !s.halted && s.next <= last {
                wedged.push(format!(
                    "p{p}: owner m{m} idle at {} but Kafka holds up to {last}",
                    s.next
                ));
            }
        }
        wedged
    }

    pub fn verdict(&self, wedged: &[String]) -> Verdict {
        let st = self.w.hdfs.lock();
        oracle::check(
            &st,
            &self.w.kafka.borrow(),
            &self.w.started.borrow(),
            &self.w.report.borrow(),
            wedged,
        )
    }

    /// Every path under the state directory (for debugging a failed seed).
    pub fn dump(&self) -> String {
        let st = self.w.hdfs.lock();
        st.all_paths()
            .into_iter()
            .filter(|p| p != "/")
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Sizes of a random run.
#[derive(Debug, Clone, Copy)]
pub struct RunSize {
    pub chaos_steps: u64,
    pub quiesce_steps: u64,
}

pub struct RunOutcome {
    pub verdict: Verdict,
    pub steps: u64,
    pub commits: u64,
    /// Files found late at their claim and written again (completeness markers' seal).
    pub late_rewrites: u64,
    pub halts: usize,
    pub crashes: usize,
    pub known_bugs: Vec<String>,
    /// The namespace and the report, for a failed run.
    pub detail: String,
}

/// One seeded run: everything (schedule, faults, events) comes from `seed`.
pub fn run_seed(seed: u64, proto: Proto, size: RunSize) -> RunOutcome {
    let mut rng = Rng::new(seed);
    let members = 2 + rng.below(2) as usize;
    let parts = 1 + rng.below(2) as i32;
    let mut sim = Sim::new(rng.next_u64(), proto, members, parts);
    {
        let mut st = sim.w.hdfs.lock();
        st.faults = Faults {
            on: true,
            slow: rng.below(100) as u32,
            lost: rng.below(80) as u32,
            write_fail: rng.below(30) as u32,
            close_lag: rng.below(200) as u32,
        };
        st.hard_limit = 50 + rng.below(300);
    }
    sim.w.roll_max.set(1 + rng.below(8) as usize);
    sim.w.fetch_max.set(1 + rng.below(6) as usize);
    let gap_pm = rng.below(200);
    for p in 0..parts {
        let mut log = PartitionLog::default();
        log.produce(5 + rng.below(25) as i64, gap_pm, &mut rng);
        // Some partitions lost a prefix to retention before flumen ever saw them.
        if rng.chance(300) {
            let to = rng.below(log.high as u64) as i64;
            log.retain(to);
        }
        let owner = rng.below(members as u64) as usize;
        sim.add_partition(p, log, owner);
    }
    // Intensities per run, so some seeds are calm and some are storms.
    let kill_pm = rng.below(15);
    let move_pm = if rng.chance(500) { rng.below(10) } else { 0 };
    let reassign_pm = rng.below(15);
    let retain_pm = rng.below(10);
    let replay_pm = rng.below(4);
    for m in 0..members {
        sim.start_member(m);
    }
    for _ in 0..size.chaos_steps {
        let r = rng.below(1000);
        let p = rng.below(parts as u64) as i32;
        let mut t = 0;
        let mut hit = |pm: u64| {
            t += pm;
            r < t
        };
        if hit(10) {
            let n = 1 + rng.below(8) as i64;
            sim.w
                .kafka
                .borrow_mut()
                .get_mut(&p)
                .expect("p")
                .produce(n, gap_pm, &mut rng);
        } else if hit(retain_pm) {
            if sim.w.started.borrow().contains_key(&p) {
                let mut k = sim.w.kafka.borrow_mut();
                let log = k.get_mut(&p).expect("p");
                let to = log.low + rng.below(6) as i64;
                log.retain(to);
            }
        } else if hit(kill_pm) {
            let m = rng.below(members as u64) as usize;
            if sim.alive[m] {
                sim.kill_member(m);
                let d = sim.step + rng.below(60);
                sim.restarts.push((d, m));
            }
        } else if hit(reassign_pm) {
            let to = rng.below(members as u64) as usize;
            if sim.w.owner.borrow()[&p] != to {
                let zombie = rng.chance(500).then(|| 1 + rng.below(150));
                sim.reassign(p, to, zombie);
            }
        } else if hit(move_pm) {
            sim.user_move();
        } else if hit(replay_pm) {
            let m = rng.below(members as u64) as usize;
            let busy = sim
                .ex
                .slots
                .iter()
                .any(|s| s.fut.is_some() && !s.owner_actor && s.member == m && s.part == p);
            if !busy && sim.w.channel(m, p, |c| !c.batches.is_empty()) {
                sim.spawn_replay(m, p);
            }
        } else if hit(5) {
            sim.operators();
        } else {
            sim.poll_random();
        }
    }
    let wedged = sim.quiesce(size.quiesce_steps);
    let verdict = sim.verdict(&wedged);
    let detail = if verdict.ok() {
        // A passing run still names the errors that stopped an actor, for a replay to read.
        let r = sim.w.report.borrow();
        if r.crashes.is_empty() {
            String::new()
        } else {
            format!("crashes {:?}", r.crashes)
        }
    } else {
        let r = sim.w.report.borrow();
        format!(
            "members {members} parts {parts}\nkafka {:?}\nowners {:?}\nstarted {:?}\nhalts {:?}\nskips {:?}\ncrashes {:?}\nalarms {:?}\nmoved {:?}\nstatus {:?}\nnamespace:\n{}",
            sim.w.kafka.borrow(),
            sim.w.owner.borrow(),
            sim.w.started.borrow(),
            r.halts,
            r.skips,
            r.crashes,
            r.alarms,
            r.moved,
            sim.w.status.borrow(),
            sim.dump()
        )
    };
    let r = sim.w.report.borrow();
    RunOutcome {
        detail,
        steps: sim.step,
        commits: r.commits,
        late_rewrites: r.late_rewrites,
        halts: r.halts.len(),
        crashes: r.crashes.len(),
        known_bugs: r.known_bugs.clone(),
        verdict,
    }
}
