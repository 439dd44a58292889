//! The oracle, outside the system under test: it reads the model's namespace directly (every
//! file outside the state directory is delivered, wherever the user moved it), parses each
//! file's lines, and checks them against everything Kafka ever held.

use std::collections::{BTreeMap, HashMap};

use super::hdfs_model::State;
use super::kafka_model::PartitionLog;
use super::world::{Report, STATE, TOPIC};

/// Which partition a delivered path belongs to: `/data/<topic>/<p>/…`, `/moved/<p>/…`,
/// `/dead/<p>/…`.
fn partition_of(path: &str) -> Option<i32> {
    let comps: Vec<&str> = path.split('/').collect();
    match comps.get(1).copied()? {
        "data" if comps.get(2) == Some(&TOPIC) => comps.get(3)?.parse().ok(),
        "moved" | "dead" => comps.get(2)?.parse().ok(),
        _ => None,
    }
}

/// `f-<first>-<last>` in a final name.
fn name_range(path: &str) -> Option<(i64, i64)> {
    let name = path.rsplit('/').next()?;
    let name = name.split_once("f-")?.1;
    let (a, b) = name.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

pub struct Verdict {
    pub violations: Vec<String>,
    pub delivered: usize,
    pub files: usize,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
    pub fn has(&self, what: &str) -> bool {
        self.violations.iter().any(|v| v.starts_with(what))
    }
}

/// `starts`: each partition's first offset (what the oracle owes from). `wedged`: live members
/// the driver found stuck.
pub fn check(
    st: &State,
    kafka: &BTreeMap<i32, PartitionLog>,
    starts: &HashMap<i32, i64>,
    report: &Report,
    wedged: &[String],
) -> Verdict {
    let mut v = Vec::new();
    let mut seen: HashMap<(i32, i64), Vec<String>> = HashMap::new();
    let mut files = 0;
    for (path, f) in st.all_files() {
        if path.starts_with(&format!("{STATE}/")) {
            continue;
        }
        files += 1;
        let Some(p) = partition_of(&path) else {
            v.push(format!("stray: {path} is outside every delivery directory"));
            continue;
        };
        if f.is_open() {
            v.push(format!("half-written: {path} is still open"));
        }
        let text = String::from_utf8_lossy(&f.bytes).to_string();
        let range = name_range(&path);
        for line in text.lines() {
            match line.parse::<i64>() {
                Ok(o) => {
                    if let Some((a, b)) = range {
                        if o < a || o > b {
                            v.push(format!("misnamed: {path} holds offset {o}"));
                        }
                    }
                    seen.entry((p, o)).or_default().push(path.clone());
                }
                Err(_) => v.push(format!("garbled: {path} line {line:?}")),
            }
        }
    }
    let skipped = |p: i32, o: i64| {
        report
            .skips
            .iter()
            .any(|&(q, a, b)| q == p && a <= o && o <= b)
    };
    let halted = |p: i32, o: i64| {
        report
            .halts
            .iter()
            .any(|h| h.part == p && !h.resolved && h.from <= o && o <= h.through)
    };
    let mut delivered = 0;
    for (&p, log) in kafka {
        let Some(&start) = starts.get(&p) else {
            continue;
        };
        for o in log.held_from(start) {
            let n = seen.get(&(p, o)).map_or(0, Vec::len);
            delivered += n.min(1);
            if skipped(p, o) {
                if n > 0 {
                    v.push(format!(
                        "skipped-but-delivered: {p}/{o} in {:?}",
                        seen[&(p, o)]
                    ));
                }
            } else if n > 1 {
                v.push(format!("duplicate: {p}/{o} in {:?}", seen[&(p, o)]));
            } else if n == 0 && !halted(p, o) {
                v.push(format!("loss: {p}/{o} is in no file and no reported halt"));
            }
        }
        for (&(q, o), paths) in &seen {
            if q == p && (!log.exists_ever(o) || o < start) {
                v.push(format!(
                    "phantom: {p}/{o} never held by Kafka (from {start}), in {paths:?}"
                ));
            }
        }
    }
    for a in &report.alarms {
        v.push(format!("alarm: {a}"));
    }
    for w in wedged {
        v.push(format!("wedged: {w}"));
    }
    v.sort();
    v.dedup();
    Verdict {
        violations: v,
        delivered,
        files,
    }
}
