//! A faithful port of the OLD commit protocol (`src/commit.rs` at de38371) onto the
//! in-memory HDFS model: claims as JSON files under `claims/`, void-claim inference from temp
//! and final files, `create_exclusive` as create + write + close inside one retry, and the
//! reconcile that walks back past void claims, recovers leases, rolls forward and deletes every
//! other temp.
//!
//! Differences, all mechanical: the model's calls already retry transient errors (the old
//! `retry` wrapper is the model's contract), except `create_exclusive`, whose retry loop spans
//! create + write + close exactly as the old closure did; `tokio::time::sleep(1 s)` is
//! `SECOND_YIELDS` yields; uuids come from the shared token counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flumen::hdfs::{is_transient, Hdfs, HdfsWriter};
use flumen::wal::TopicPartition;
use hdfs_native::HdfsError;

use super::hdfs_model::{yield_now, SimHdfs};

/// One modelled second of `tokio::time::sleep`.
pub const SECOND_YIELDS: usize = 5;

pub struct LegacyCommitter {
    pub hdfs: SimHdfs,
    state_dir: String,
    writer_id: String,
    ids: Arc<AtomicU64>,
}

// The old protocol's types, as the v1 `src/commit.rs` defined them at de38371 (the module is gone
// from the crate; the baseline keeps its own copy).

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("HDFS {op} {path}: {source}")]
    Hdfs {
        op: &'static str,
        path: String,
        source: HdfsError,
    },
    #[error("claim {path} does not parse: {reason}")]
    BadClaim { path: String, reason: String },
}

/// The durable record of one committed range. Its presence under `claims/` is the commit point.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    pub topic: String,
    pub partition: i32,
    pub start_offset: i64,
    pub last_offset: i64,
    pub records: u64,
    pub temp_path: String,
    pub final_path: String,
    pub writer_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    Fenced,
}

/// What reconciliation found for a partition.
#[derive(Debug, Clone, Default)]
pub struct Reconciled {
    pub committed_end: i64,
    pub last_claim: Option<Claim>,
    pub rolled_forward: bool,
    pub temps_deleted: usize,
}

fn hdfs_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(HdfsError) -> CommitError + 'a {
    move |source| CommitError::Hdfs {
        op,
        path: path.into(),
        source,
    }
}

pub async fn sleep_secs(n: usize) {
    for _ in 0..n * SECOND_YIELDS {
        yield_now().await;
    }
}

impl LegacyCommitter {
    pub fn new(hdfs: SimHdfs, state_dir: &str, writer_id: String, ids: Arc<AtomicU64>) -> Self {
        Self {
            hdfs,
            state_dir: state_dir.into(),
            writer_id,
            ids,
        }
    }

    pub fn claims_dir(&self, tp: &TopicPartition) -> String {
        format!("{}/claims/{}/{}", self.state_dir, tp.topic, tp.partition)
    }

    pub fn temp_dir(&self, tp: &TopicPartition) -> String {
        format!("{}/tmp/{}/{}", self.state_dir, tp.topic, tp.partition)
    }

    pub fn temp_path(&self, tp: &TopicPartition, start: i64) -> String {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{}/{start:020}.u{id}.inprogress", self.temp_dir(tp))
    }

    async fn exists(&self, path: &str) -> Result<bool, CommitError> {
        match self.hdfs.stat(path).await {
            Ok(_) => Ok(true),
            Err(HdfsError::FileNotFound(_)) => Ok(false),
            Err(e) => Err(hdfs_err("stat", path)(e)),
        }
    }

    async fn read_claim(&self, path: &str) -> Result<Claim, CommitError> {
        let bytes = self.hdfs.read(path).await.map_err(hdfs_err("read", path))?;
        serde_json::from_slice(&bytes).map_err(|e| CommitError::BadClaim {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    async fn list_claims(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<(i64, u32, String)>, CommitError> {
        let dir = self.claims_dir(tp);
        let listing = match self.hdfs.list(&dir).await {
            Ok(l) => l,
            Err(HdfsError::FileNotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(hdfs_err("list", &dir)(e)),
        };
        let mut claims: Vec<(i64, u32, String)> = listing
            .into_iter()
            .filter_map(|s| {
                let name = s
                    .path
                    .rsplit('/')
                    .next()?
                    .strip_suffix(".claim")?
                    .to_string();
                let (start, attempt) = name.split_once('.')?;
                Some((start.parse().ok()?, attempt.parse().ok()?, s.path))
            })
            .collect();
        claims.sort();
        Ok(claims)
    }

    async fn is_void(&self, claim: &Claim) -> Result<bool, CommitError> {
        Ok(!self.exists(&claim.temp_path).await? && !self.exists(&claim.final_path).await?)
    }

    /// create + write + close inside one retry, as the old `retry(|| async { create; write;
    /// close })`: a transient failure after the create re-runs the create, which now answers
    /// AlreadyExists.
    pub async fn create_exclusive(
        &self,
        what: &'static str,
        path: &str,
        body: Bytes,
    ) -> Result<bool, CommitError> {
        let created = loop {
            let attempt = async {
                let mut w = self.hdfs.create(path).await?;
                w.write(body.clone()).await?;
                w.close().await
            };
            match attempt.await {
                Err(e) if is_transient(&e) => yield_now().await,
                other => break other,
            }
        };
        match created {
            Ok(()) => Ok(true),
            Err(HdfsError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(hdfs_err(what, path)(e)),
        }
    }

    async fn create_claim(&self, path: &str, claim: &Claim) -> Result<bool, CommitError> {
        let body = Bytes::from(serde_json::to_vec(claim).expect("claim serializes"));
        if self.create_exclusive("create claim", path, body).await? {
            return Ok(true);
        }
        let existing = self.read_claim(path).await?;
        Ok(existing.temp_path == claim.temp_path)
    }

    async fn rename_into_place(&self, claim: &Claim) -> Result<CommitOutcome, CommitError> {
        let (src, dst) = (claim.temp_path.as_str(), claim.final_path.as_str());
        let dir = dst
            .rsplit_once('/')
            .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
        self.hdfs
            .mkdirs(dir)
            .await
            .map_err(hdfs_err("mkdirs", dir))?;
        match self.hdfs.rename(src, dst).await {
            Ok(()) => Ok(CommitOutcome::Committed),
            Err(e) => {
                if self.exists(dst).await? {
                    Ok(CommitOutcome::Committed)
                } else if !self.exists(src).await? {
                    Ok(CommitOutcome::Fenced)
                } else {
                    Err(hdfs_err("rename", src)(e))
                }
            }
        }
    }

    pub async fn commit(&self, mut claim: Claim) -> Result<CommitOutcome, CommitError> {
        claim.writer_id = self.writer_id.clone();
        let tp = TopicPartition::new(&claim.topic, claim.partition);
        let existing: Vec<_> = self
            .list_claims(&tp)
            .await?
            .into_iter()
            .filter(|c| c.0 >= claim.start_offset)
            .collect();
        if existing.iter().any(|c| c.0 > claim.start_offset) {
            self.discard(&claim.temp_path).await?;
            return Ok(CommitOutcome::Fenced);
        }
        let mut attempt = 0;
        for (_, a, path) in &existing {
            let other = self.read_claim(path).await?;
            if other.temp_path == claim.temp_path {
                return self.rename_into_place(&claim).await;
            }
            if !self.is_void(&other).await? {
                self.discard(&claim.temp_path).await?;
                return Ok(CommitOutcome::Fenced);
            }
            attempt = a + 1;
        }
        let path = format!(
            "{}/{:020}.{attempt:04}.claim",
            self.claims_dir(&tp),
            claim.start_offset
        );
        if !self.create_claim(&path, &claim).await? {
            self.discard(&claim.temp_path).await?;
            return Ok(CommitOutcome::Fenced);
        }
        self.rename_into_place(&claim).await
    }

    pub async fn discard(&self, temp: &str) -> Result<(), CommitError> {
        match self.hdfs.delete(temp, false).await {
            Ok(_) | Err(HdfsError::FileNotFound(_)) => Ok(()),
            Err(e) => Err(hdfs_err("delete", temp)(e)),
        }
    }

    async fn recover_lease(&self, path: &str) -> Result<(), CommitError> {
        for _ in 0..60 {
            match self.hdfs.recover_lease(path).await {
                Ok(true) | Err(HdfsError::FileNotFound(_)) => return Ok(()),
                Ok(false) => sleep_secs(1).await,
                Err(e) => return Err(hdfs_err("recover lease", path)(e)),
            }
        }
        Ok(())
    }

    pub async fn reconcile(&self, tp: &TopicPartition) -> Result<Reconciled, CommitError> {
        let mut out = Reconciled {
            committed_end: -1,
            ..Default::default()
        };
        let claims = self.list_claims(tp).await?;
        let mut keep_temp = None;
        for (_, _, path) in claims.iter().rev() {
            let claim = self.read_claim(path).await?;
            if self.exists(&claim.temp_path).await? {
                self.recover_lease(&claim.temp_path).await?;
                if self.rename_into_place(&claim).await? == CommitOutcome::Committed {
                    out.rolled_forward = true;
                }
                keep_temp = Some(claim.temp_path.clone());
            } else if !self.exists(&claim.final_path).await? {
                continue; // void claim
            }
            out.committed_end = claim.last_offset;
            out.last_claim = Some(claim);
            break;
        }
        let dir = self.temp_dir(tp);
        let temps = match self.hdfs.list(&dir).await {
            Ok(l) => l,
            Err(HdfsError::FileNotFound(_)) => Vec::new(),
            Err(e) => return Err(hdfs_err("list", &dir)(e)),
        };
        for t in temps {
            if Some(&t.path) == keep_temp.as_ref() || t.is_dir {
                continue;
            }
            self.recover_lease(&t.path).await?;
            self.discard(&t.path).await?;
            out.temps_deleted += 1;
        }
        Ok(out)
    }
}
