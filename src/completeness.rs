//! The marker task: writes an empty marker file (`_COMPLETE`) into each time bucket directory
//! once every partition of the configured topics has committed past the bucket's end plus the
//! allowed lateness, and advances the watermark of partitions with nothing left to deliver.
//! Every instance runs it; the ledger's compare-and-sets and the marker's exclusive create make
//! each step safe to race and to crash at any await. The rule and its proof are in
//! `wal-format.md` §6.6.
//!
//! One round:
//! 1. list `<state>/completeness/pending` (a note per bucket end with data, made by the sink
//!    before each claim); with none, the round ends (nothing to mark, nothing to advance);
//! 2. take the wall clock `T`, then read every partition's log end from Kafka;
//! 3. per partition, read its ledger tip: the watermark `W_p` it records. A partition whose
//!    ledger holds every offset below its log end is idle: its watermark is advanced to `T`
//!    (when that completes at least one more bucket), since any later record was appended
//!    after `T`;
//! 4. for each pending end, oldest first, while `end + lateness <= min W_p`: create the marker
//!    in each noted directory (exclusive), then delete the note.

use std::sync::Arc;
use std::time::Duration;

use hdfs_native::HdfsError;

use crate::commit::{CommitError, Ledger, Tip};
use crate::events;
use crate::hdfs::{Hdfs, HdfsWriter};
use crate::shutdown::Shutdown;
use crate::sink::bucket::Rule;
use crate::wal::TopicPartition;

/// What the marker task needs from Kafka. Blocking calls; run off the async threads.
pub trait KafkaView: Send + Sync + 'static {
    /// Every partition of `topic` with its log end (the high watermark: the next offset).
    fn log_ends(&self, topic: &str) -> Result<Vec<(i32, i64)>, String>;
}

/// Most pending bucket ends marked in one round; the rest wait for the next.
const ENDS_PER_ROUND_MAX: usize = 1024;
/// How long the Kafka reads of one round may take before the round is given up.
const KAFKA_READ_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("HDFS {op} {path}: {}", crate::hdfs_fault::Brief(source))]
    Hdfs {
        op: &'static str,
        path: String,
        source: HdfsError,
    },
    #[error("reading the log ends of topic {topic}: {reason}")]
    Kafka { topic: String, reason: String },
}

pub struct Markers<H: Hdfs> {
    pub ledger: Arc<Ledger<H>>,
    pub rule: Rule,
    /// File name of the marker.
    pub marker: String,
    /// `<state>/completeness/pending`.
    pub pending_dir: String,
    pub topics: Vec<String>,
    pub kafka: Arc<dyn KafkaView>,
}

/// How often a round runs: a twelfth of the bucket width, between 5 s and 60 s.
pub fn round_interval(rule: &Rule) -> Duration {
    let width_ms = rule.width.end_ms(0) - rule.width.start_ms(0);
    Duration::from_millis((width_ms / 12).clamp(5_000, 60_000) as u64)
}

/// A failed round is logged at most this often (the next rounds retry regardless).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Runs rounds until the shutdown notice; a failed round is retried in the next one, and
/// logged at most once a minute (HDFS and Kafka outages are on `/health` already).
pub async fn run<H: Hdfs>(m: Markers<H>, mut shutdown: Shutdown) {
    let every = round_interval(&m.rule);
    let mut logged: Option<std::time::Instant> = None;
    // Runs until the shutdown notice.
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.recv() => return,
        }
        let result = tokio::select! {
            r = m.round() => r,
            _ = shutdown.recv() => return,
        };
        match result {
            Err(e) if logged.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY) => {
                tracing::warn!(error = %e, "completeness round failed; retrying every round");
                logged = Some(std::time::Instant::now());
            }
            Err(_) => {}
            Ok(_) if logged.take().is_some() => {
                tracing::info!("over: completeness rounds succeed again");
            }
            Ok(_) => {}
        }
    }
}

impl<H: Hdfs> Markers<H> {
    /// One round; returns the bucket ends it marked.
    pub async fn round(&self) -> Result<Vec<i64>, MarkerError> {
        let pending = self.pending_ends().await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let ends = self.log_ends().await?;
        let min = self.min_watermark(&ends, now_ms).await?;
        if let Some(w) = min {
            events::completeness_watermark(w);
        }
        let mut marked = Vec::new();
        for end in pending.into_iter().take(ENDS_PER_ROUND_MAX) {
            if !self.rule.is_complete(end, min) {
                break; // sorted: no later end is complete either
            }
            self.mark(end).await?;
            marked.push(end);
        }
        Ok(marked)
    }

    /// The pending bucket ends, oldest first.
    async fn pending_ends(&self) -> Result<Vec<i64>, MarkerError> {
        let mut ends: Vec<i64> = self
            .list(&self.pending_dir)
            .await?
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.name().parse().ok())
            .collect();
        ends.sort_unstable();
        Ok(ends)
    }

    /// Every partition of every configured topic with its log end, read off the async threads.
    async fn log_ends(&self) -> Result<Vec<(TopicPartition, i64)>, MarkerError> {
        let mut out = Vec::new();
        for topic in &self.topics {
            let (kafka, t) = (self.kafka.clone(), topic.clone());
            let read = tokio::task::spawn_blocking(move || kafka.log_ends(&t));
            let kafka_err = |reason: String| MarkerError::Kafka {
                topic: topic.clone(),
                reason,
            };
            let ends = tokio::time::timeout(KAFKA_READ_MAX, read)
                .await
                .map_err(|_| kafka_err("timed out".into()))?
                .map_err(|e| kafka_err(e.to_string()))?
                .map_err(kafka_err)?;
            if ends.is_empty() {
                return Err(kafka_err("no partitions in its metadata".into()));
            }
            out.extend(
                ends.into_iter()
                    .map(|(p, end)| (TopicPartition::new(topic, p), end)),
            );
        }
        Ok(out)
    }

    /// The least watermark over `ends`' partitions, advancing idle ones to `now_ms` first.
    /// `None` while any partition has none (no genesis, no record yet, an undelivered tip).
    async fn min_watermark(
        &self,
        ends: &[(TopicPartition, i64)],
        now_ms: i64,
    ) -> Result<Option<i64>, MarkerError> {
        let mut min = Some(i64::MAX);
        for (tp, log_end) in ends {
            let w = match self.ledger.tip(tp).await? {
                Some(tip) if tip.delivered => self.advance_idle(tp, &tip, *log_end, now_ms).await?,
                _ => None,
            };
            min = min.min(w);
        }
        Ok(min)
    }

    /// The tip's watermark, advanced to `now_ms` when the ledger holds every offset below the
    /// log end (read after `now_ms`) and the advance would complete another bucket.
    async fn advance_idle(
        &self,
        tp: &TopicPartition,
        tip: &Tip,
        log_end: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, MarkerError> {
        let w = tip.meta.watermark;
        if tip.next() < log_end || !completes_a_bucket(&self.rule, w, now_ms) {
            return Ok(w);
        }
        if self.ledger.advance(tp, tip, now_ms).await? {
            events::watermark_advanced(tp, now_ms);
            return Ok(Some(now_ms));
        }
        Ok(w) // raced with a writer's seal or another advance: next round
    }

    /// Creates the marker in every directory noted under the pending `end`, then deletes the
    /// note. A marker that exists already was made by another instance or an earlier round.
    async fn mark(&self, end: i64) -> Result<(), MarkerError> {
        let note = format!("{}/{end:020}", self.pending_dir);
        let mut dirs = Vec::new();
        self.leaves(&note, &mut dirs).await?;
        for dir in dirs {
            let bucket_dir = &dir[note.len()..];
            let path = format!("{bucket_dir}/{}", self.marker);
            if self.create_marker(&path).await? {
                events::marker_written(&path, end);
            }
        }
        crate::crash_site!("marker-before-note-delete");
        self.ledger
            .hdfs()
            .delete(&note, true)
            .await
            .map_err(hdfs_err("delete", &note))?;
        Ok(())
    }

    /// The empty directories below `dir`: each mirrors one bucket directory. Bounded by the
    /// template's depth.
    async fn leaves(&self, dir: &str, out: &mut Vec<String>) -> Result<(), MarkerError> {
        let mut stack = vec![dir.to_string()];
        while let Some(d) = stack.pop() {
            let Some(children) = self.list(&d).await? else {
                // Gone while this walk ran: another instance finished the note (its markers
                // are written), and a directory whose child vanished is no bucket. Seen once
                // as a marker in a day directory above the minute buckets.
                out.clear();
                return Ok(());
            };
            if children.is_empty() && d != dir {
                out.push(d);
            }
            stack.extend(children.into_iter().filter(|c| c.is_dir).map(|c| c.path));
        }
        Ok(())
    }

    /// Creates the empty marker without overwrite; false when it exists.
    async fn create_marker(&self, path: &str) -> Result<bool, MarkerError> {
        match self.ledger.hdfs().create(path).await {
            Ok(mut w) => {
                w.close().await.map_err(hdfs_err("close", path))?;
                Ok(true)
            }
            Err(HdfsError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(hdfs_err("create", path)(e)),
        }
    }

    /// `None` if `dir` does not exist (any more).
    async fn list(&self, dir: &str) -> Result<Option<Vec<crate::hdfs::Entry>>, MarkerError> {
        match self.ledger.hdfs().list(dir).await {
            Ok(l) => Ok(Some(l)),
            Err(HdfsError::FileNotFound(_)) => Ok(None),
            Err(e) => Err(hdfs_err("list", dir)(e)),
        }
    }
}

/// Whether raising a watermark from `w` to `to_ms` passes some bucket's horizon, so an idle
/// partition's watermark is written about once per bucket, not once per round.
fn completes_a_bucket(rule: &Rule, w: Option<i64>, to_ms: i64) -> bool {
    let Some(w) = w else {
        return true;
    };
    // The first horizon above `w` belongs to the bucket holding `w - lateness`.
    let next_horizon = rule.width.end_ms(w - rule.lateness_ms) + rule.lateness_ms;
    next_horizon <= to_ms
}

fn hdfs_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(HdfsError) -> MarkerError + 'a {
    move |source| MarkerError::Hdfs {
        op,
        path: path.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hdfs::Entry;
    use crate::sink::bucket::Width;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Directories and empty files, enough for the marker walk. `vanish` deletes a tree the
    /// moment a given directory is listed, as another instance finishing the same note does.
    #[derive(Default)]
    struct Namespace {
        paths: Mutex<BTreeMap<String, bool>>,
        vanish: Mutex<Option<(String, String)>>,
    }

    struct Empty;

    impl HdfsWriter for Empty {
        async fn write(&mut self, _: bytes::Bytes) -> Result<(), HdfsError> {
            Ok(())
        }
        async fn hsync(&mut self) -> Result<(), HdfsError> {
            Ok(())
        }
        async fn close(&mut self) -> Result<(), HdfsError> {
            Ok(())
        }
    }

    impl Namespace {
        fn remove_tree(&self, path: &str) -> bool {
            let mut paths = self.paths.lock().unwrap();
            let below = format!("{path}/");
            let before = paths.len();
            paths.retain(|p, _| p != path && !p.starts_with(&below));
            paths.len() != before
        }

        fn files(&self) -> Vec<String> {
            let paths = self.paths.lock().unwrap();
            paths
                .iter()
                .filter(|(_, dir)| !**dir)
                .map(|(p, _)| p.clone())
                .collect()
        }
    }

    impl Hdfs for Namespace {
        type Writer = Empty;
        async fn create(&self, path: &str) -> Result<Empty, HdfsError> {
            let mut paths = self.paths.lock().unwrap();
            if paths.contains_key(path) {
                return Err(HdfsError::AlreadyExists(path.into()));
            }
            paths.insert(path.into(), false);
            Ok(Empty)
        }
        async fn mkdirs(&self, path: &str) -> Result<(), HdfsError> {
            let mut paths = self.paths.lock().unwrap();
            for (i, _) in path.match_indices('/').skip(1) {
                paths.insert(path[..i].into(), true);
            }
            paths.insert(path.into(), true);
            Ok(())
        }
        async fn rename(&self, _: &str, _: &str) -> Result<(), HdfsError> {
            unimplemented!("the marker walk renames nothing")
        }
        async fn delete(&self, path: &str, _: bool) -> Result<bool, HdfsError> {
            Ok(self.remove_tree(path))
        }
        async fn list(&self, dir: &str) -> Result<Vec<Entry>, HdfsError> {
            let vanish = self.vanish.lock().unwrap().clone();
            if let Some((_, tree)) = vanish.filter(|(listed, _)| listed == dir) {
                self.remove_tree(&tree);
            }
            let paths = self.paths.lock().unwrap();
            if paths.get(dir) != Some(&true) {
                return Err(HdfsError::FileNotFound(dir.into()));
            }
            let children = paths
                .iter()
                .filter(|(p, _)| p.rsplit_once('/').is_some_and(|(parent, _)| parent == dir));
            Ok(children
                .map(|(p, is_dir)| Entry {
                    path: p.clone(),
                    is_dir: *is_dir,
                    length: 0,
                })
                .collect())
        }
        async fn stat(&self, _: &str) -> Result<Entry, HdfsError> {
            unimplemented!("the marker walk stats nothing")
        }
    }

    struct NoKafka;

    impl KafkaView for NoKafka {
        fn log_ends(&self, _: &str) -> Result<Vec<(i32, i64)>, String> {
            Ok(Vec::new())
        }
    }

    const NOTE: &str = "/state/completeness/pending/00000000000000000042";

    /// A namespace holding the note of end 42 for two minute buckets of one day.
    async fn noted() -> (Markers<Namespace>, Arc<Namespace>) {
        let ns = Arc::new(Namespace::default());
        for minute in ["1200", "1201"] {
            ns.mkdirs(&format!("{NOTE}/out/20261203/{minute}"))
                .await
                .unwrap();
        }
        let m = Markers {
            ledger: Arc::new(Ledger::new(ns.clone(), "/state")),
            rule: Rule {
                width: Width::Minute,
                lateness_ms: 0,
            },
            marker: "_COMPLETE".into(),
            pending_dir: "/state/completeness/pending".into(),
            topics: Vec::new(),
            kafka: Arc::new(NoKafka),
        };
        (m, ns)
    }

    #[tokio::test]
    async fn a_note_marks_each_bucket_it_holds_and_nothing_else() {
        let (m, ns) = noted().await;
        m.mark(42).await.unwrap();
        let want = [
            "/out/20261203/1200/_COMPLETE",
            "/out/20261203/1201/_COMPLETE",
        ];
        assert_eq!(ns.files(), want);
        assert!(!ns.paths.lock().unwrap().contains_key(NOTE), "note deleted");
    }

    #[tokio::test]
    async fn a_note_finished_by_another_instance_during_the_walk_marks_nothing() {
        // Regression (CI, tests/completeness.rs): the other instance deleted the note while
        // this walk listed it, the vanished day directory was taken for an empty bucket, and a
        // marker landed in out/20261203/ above the minute buckets.
        let (m, ns) = noted().await;
        *ns.vanish.lock().unwrap() = Some((format!("{NOTE}/out/20261203"), NOTE.into()));
        m.mark(42).await.unwrap();
        assert_eq!(ns.files(), Vec::<String>::new());
    }

    #[test]
    fn an_idle_advance_is_written_once_per_bucket() {
        let rule = Rule {
            width: Width::Minute,
            lateness_ms: 10_000,
        };
        // w = 12:00:30 is below the horizon of [12:00, 12:01) (12:01:10): the next advance
        // that helps is to 12:01:10 or later.
        let w = 12 * 3_600_000 + 30_000;
        let horizon = 12 * 3_600_000 + 70_000;
        assert!(completes_a_bucket(&rule, None, 0));
        assert!(!completes_a_bucket(&rule, Some(w), horizon - 1));
        assert!(completes_a_bucket(&rule, Some(w), horizon));
        // Exactly at a horizon, the next one is a bucket later.
        assert!(!completes_a_bucket(&rule, Some(horizon), horizon + 59_999));
        assert!(completes_a_bucket(&rule, Some(horizon), horizon + 60_000));
    }

    #[test]
    fn rounds_follow_the_bucket_width() {
        let rule = |width| Rule {
            width,
            lateness_ms: 0,
        };
        assert_eq!(round_interval(&rule(Width::Minute)), Duration::from_secs(5));
        assert_eq!(round_interval(&rule(Width::Hour)), Duration::from_secs(60));
        assert_eq!(round_interval(&rule(Width::Second)), Duration::from_secs(5));
    }
}
