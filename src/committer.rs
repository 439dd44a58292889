//! The exactly-once file commit on HDFS, and the reconciliation that re-derives a partition's
//! committed position from HDFS alone. The protocol and its crash analysis are in
//! `wal-format.md` ("Commit protocol"); keep the two in step.
//!
//! HDFS layout under the state directory:
//! - `tmp/<topic>/<partition>/<start:020>.<uuid>.inprogress`: in-use files (a `_`-prefixed tree
//!   by default, so Spark and Hive never list them).
//! - `claims/<topic>/<partition>/<start:020>.<attempt:04>.claim`: one tiny JSON file per
//!   committed range, created with `overwrite=false`. Creation is atomic at the NameNode, so it
//!   is a compare-and-set keyed by the range's first offset: two writers (a zombie and the new
//!   owner) can never both claim a range starting at the same offset, and every writer derives
//!   its next start from the previous claim, so committed ranges never overlap.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdfs_native::{Client, HdfsError, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::health::Health;
use crate::wal::TopicPartition;

/// An HDFS call slower than this marks HDFS unreachable on /health.
const HDFS_SLOW_CALL: Duration = Duration::from_secs(10);

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
    #[error("HDFS client for {url}: {source}")]
    Connect { url: String, source: HdfsError },
}

/// The durable record of one committed range. Its presence under `claims/` is the commit point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The range is in HDFS under its final name, exactly once.
    Committed,
    /// Another writer holds the range starting at this offset; our temp file is gone.
    Fenced,
}

/// What reconciliation found for a partition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reconciled {
    /// Last offset committed to HDFS, or -1 when nothing was ever committed.
    pub committed_end: i64,
    /// The claim holding `committed_end`, if any.
    pub last_claim: Option<Claim>,
    /// A claim found closed but not renamed, and renamed now (a crash after the claim).
    pub rolled_forward: bool,
    /// In-use files of dead or fenced writers that were deleted.
    pub temps_deleted: usize,
}

#[derive(Clone)]
pub struct Committer {
    client: Arc<Client>,
    state_dir: String,
    writer_id: String,
    backoff_max: Duration,
    health: Arc<Health>,
}

/// Errors worth retrying: the NameNode or a DataNode is unreachable or busy, or permissions are
/// wrong (an operator can fix them while we wait). Answers about the namespace are final.
fn is_transient(e: &HdfsError) -> bool {
    !matches!(
        e,
        HdfsError::AlreadyExists(_)
            | HdfsError::FileNotFound(_)
            | HdfsError::InvalidPath(_)
            | HdfsError::IsADirectoryError(_)
            | HdfsError::InvalidArgument(_)
    )
}

/// hdfs-native maps `FileAlreadyExistsException` to `AlreadyExists` but passes
/// `FileNotFoundException` through as a generic RPC error; map it so "gone" is an answer, not a
/// reason to retry forever.
fn normalize(e: HdfsError) -> HdfsError {
    match e {
        HdfsError::RPCError(exception, msg) if exception.ends_with("FileNotFoundException") => {
            HdfsError::FileNotFound(msg)
        }
        other => other,
    }
}

pub fn connect(url: &str, user: Option<&str>) -> Result<Client, CommitError> {
    let mut b = hdfs_native::ClientBuilder::new().with_url(url);
    if let Some(u) = user {
        b = b.with_user(u);
    }
    b.build().map_err(|source| CommitError::Connect {
        url: url.into(),
        source,
    })
}

impl Committer {
    pub fn new(
        client: Arc<Client>,
        state_dir: String,
        backoff_max: Duration,
        health: Arc<Health>,
    ) -> Self {
        Self {
            client,
            state_dir,
            writer_id: uuid::Uuid::new_v4().to_string(),
            backoff_max,
            health,
        }
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn claims_dir(&self, tp: &TopicPartition) -> String {
        format!("{}/claims/{}/{}", self.state_dir, tp.topic, tp.partition)
    }

    pub fn temp_dir(&self, tp: &TopicPartition) -> String {
        format!("{}/tmp/{}/{}", self.state_dir, tp.topic, tp.partition)
    }

    /// A fresh in-use path for a file starting at `start`.
    pub fn temp_path(&self, tp: &TopicPartition, start: i64) -> String {
        format!(
            "{}/{start:020}.{}.inprogress",
            self.temp_dir(tp),
            uuid::Uuid::new_v4()
        )
    }

    /// Runs `op` until it succeeds or fails with a non-transient error, backing off
    /// exponentially up to `backoff_max`. Retries forever by design: an unreachable NameNode
    /// must stall the relay (the channel keeps the data), not crash it.
    pub async fn retry<T, F, Fut>(
        &self,
        what: &'static str,
        path: &str,
        mut op: F,
    ) -> Result<T, HdfsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HdfsError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.watch(what, path, op()).await.map_err(normalize) {
                Ok(v) => {
                    self.health.set_hdfs_ok();
                    return Ok(v);
                }
                Err(e) if is_transient(&e) => {
                    self.health.set_hdfs_error(format!("{what} {path}: {e}"));
                    crate::events::hdfs_retry(what, path, &e, backoff);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Awaits an HDFS call; if it has not answered after `HDFS_SLOW_CALL`, reports HDFS as
    /// unreachable on /health (without cancelling the call: a write RPC cut short might still
    /// commit). The client itself keeps reconnecting underneath.
    pub async fn watch<T>(
        &self,
        what: &str,
        path: &str,
        call: impl std::future::Future<Output = Result<T, HdfsError>>,
    ) -> Result<T, HdfsError> {
        // Boxed: HDFS call futures are large, and nesting them unboxed inside select! blew the
        // 2 MiB worker stack in debug builds.
        let mut call = Box::pin(call);
        tokio::select! {
            r = &mut call => return r,
            _ = tokio::time::sleep(HDFS_SLOW_CALL) => {}
        }
        self.health.set_hdfs_error(format!(
            "{what} {path} has not answered for {} s",
            HDFS_SLOW_CALL.as_secs()
        ));
        tracing::warn!(op = what, path, "HDFS call is not answering; waiting");
        let r = call.await;
        if r.is_ok() {
            self.health.set_hdfs_ok();
        }
        r
    }

    fn hdfs_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(HdfsError) -> CommitError + 'a {
        move |source| CommitError::Hdfs {
            op,
            path: path.into(),
            source,
        }
    }

    async fn exists(&self, path: &str) -> Result<bool, CommitError> {
        match self
            .retry("stat", path, || self.client.get_file_info(path))
            .await
        {
            Ok(_) => Ok(true),
            Err(HdfsError::FileNotFound(_)) => Ok(false),
            Err(e) => Err(Self::hdfs_err("stat", path)(e)),
        }
    }

    async fn read_claim(&self, path: &str) -> Result<Claim, CommitError> {
        let bytes = self
            .retry("read", path, || async {
                let reader = self.client.read(path).await?;
                reader.read_range(0, reader.file_length()).await
            })
            .await
            .map_err(Self::hdfs_err("read", path))?;
        serde_json::from_slice(&bytes).map_err(|e| CommitError::BadClaim {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// Lists claims as (start, attempt, path), sorted.
    async fn list_claims(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<(i64, u32, String)>, CommitError> {
        let dir = self.claims_dir(tp);
        let listing = match self
            .retry("list", &dir, || self.client.list_status(&dir, false))
            .await
        {
            Ok(l) => l,
            Err(HdfsError::FileNotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(Self::hdfs_err("list", &dir)(e)),
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

    /// A claim is void when neither its temp nor its final file exists: its writer lost the
    /// temp (fenced or deleted) before renaming, so the range was never delivered. The temp is
    /// checked first: once it is gone it never returns, so a rename racing with this check
    /// makes the final visible to the second stat.
    async fn is_void(&self, claim: &Claim) -> Result<bool, CommitError> {
        Ok(!self.exists(&claim.temp_path).await? && !self.exists(&claim.final_path).await?)
    }

    /// Creates `path` holding `body` with `overwrite=false`, the NameNode's atomic
    /// compare-and-set. Returns false when the path already existed (its content untouched).
    pub async fn create_exclusive(
        &self,
        what: &'static str,
        path: &str,
        body: Bytes,
    ) -> Result<bool, CommitError> {
        let opts = WriteOptions::default().overwrite(false).create_parent(true);
        let created = self
            .retry(what, path, || {
                let (body, opts) = (body.clone(), opts.clone());
                async move {
                    let mut w = self.client.create(path, opts).await?;
                    w.write_bytes(body).await?;
                    w.close().await
                }
            })
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(HdfsError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(Self::hdfs_err(what, path)(e)),
        }
    }

    async fn create_claim(&self, path: &str, claim: &Claim) -> Result<bool, CommitError> {
        let body = Bytes::from(serde_json::to_vec(claim).expect("claim serializes"));
        if self.create_exclusive("create claim", path, body).await? {
            return Ok(true);
        }
        // A lost response to our own create looks like this too: the claim is ours if it names
        // our temp file.
        let existing = self.read_claim(path).await?;
        Ok(existing.temp_path == claim.temp_path)
    }

    async fn rename_into_place(&self, claim: &Claim) -> Result<CommitOutcome, CommitError> {
        let (src, dst) = (claim.temp_path.as_str(), claim.final_path.as_str());
        let dir = dst
            .rsplit_once('/')
            .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
        self.retry("mkdirs", dir, || self.client.mkdirs(dir, 0o755, true))
            .await
            .map_err(Self::hdfs_err("mkdirs", dir))?;
        match self
            .retry("rename", src, || self.client.rename(src, dst, false))
            .await
        {
            Ok(()) => Ok(CommitOutcome::Committed),
            // Write RPCs are not retried by the client and a lost response may have committed:
            // stat both ends to learn what happened. The final existing means someone (we, or a
            // new owner rolling our claim forward) completed it.
            Err(e) => {
                if self.exists(dst).await? {
                    Ok(CommitOutcome::Committed)
                } else if !self.exists(src).await? {
                    Ok(CommitOutcome::Fenced)
                } else {
                    Err(Self::hdfs_err("rename", src)(e))
                }
            }
        }
    }

    /// Commits a closed temp file: claim the range (compare-and-set on its first offset), then
    /// rename the temp to its final name. The caller commits the Kafka offset afterwards.
    pub async fn commit(&self, mut claim: Claim) -> Result<CommitOutcome, CommitError> {
        claim.writer_id = self.writer_id.clone();
        let tp = TopicPartition::new(&claim.topic, claim.partition);
        let existing: Vec<_> = self
            .list_claims(&tp)
            .await?
            .into_iter()
            .filter(|c| c.0 >= claim.start_offset)
            .collect();
        // Any claim at a later start means our view is stale: someone committed past us.
        if existing.iter().any(|c| c.0 > claim.start_offset) {
            self.discard(&claim.temp_path).await?;
            return Ok(CommitOutcome::Fenced);
        }
        let mut attempt = 0;
        for (_, a, path) in &existing {
            let other = self.read_claim(path).await?;
            if other.temp_path == claim.temp_path {
                return self.rename_into_place(&claim).await; // our own, re-driven
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
        crate::crash_site!("commit-before-rename");
        self.rename_into_place(&claim).await
    }

    /// Deletes one of our own temp files (best effort is not enough: a leftover is harmless but
    /// the error is reported).
    pub async fn discard(&self, temp: &str) -> Result<(), CommitError> {
        match self
            .retry("delete", temp, || self.client.delete(temp, false))
            .await
        {
            Ok(_) | Err(HdfsError::FileNotFound(_)) => Ok(()),
            Err(e) => Err(Self::hdfs_err("delete", temp)(e)),
        }
    }

    /// Fences whoever still writes `path` and waits until the NameNode has closed it.
    async fn recover_lease(&self, path: &str) -> Result<(), CommitError> {
        // Bounded: the NameNode's lease recovery normally finishes within seconds; after 60 s we
        // proceed to delete, which a still-live writer will see as a failed write.
        for _ in 0..60 {
            match self
                .retry("recover lease", path, || self.client.recover_lease(path))
                .await
            {
                Ok(true) | Err(HdfsError::FileNotFound(_)) => return Ok(()),
                Ok(false) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(e) => return Err(Self::hdfs_err("recover lease", path)(e)),
            }
        }
        Ok(())
    }

    /// Re-derives a partition's committed end from HDFS: finds the newest claim, rolls it
    /// forward if its rename did not happen, and deletes every other in-use file after
    /// recovering its lease. Idempotent; safe to run after a crash at any step, including
    /// during a previous reconciliation.
    pub async fn reconcile(&self, tp: &TopicPartition) -> Result<Reconciled, CommitError> {
        let mut out = Reconciled {
            committed_end: -1,
            ..Default::default()
        };
        let claims = self.list_claims(tp).await?;
        // Walk back from the newest claim past void ones (their ranges were never delivered).
        let mut keep_temp = None;
        for (_, _, path) in claims.iter().rev() {
            let claim = self.read_claim(path).await?;
            if self.exists(&claim.temp_path).await? {
                self.recover_lease(&claim.temp_path).await?;
                if self.rename_into_place(&claim).await? == CommitOutcome::Committed {
                    out.rolled_forward = true;
                }
                crate::crash_site!("reconcile-after-roll-forward");
                keep_temp = Some(claim.temp_path.clone());
            } else if !self.exists(&claim.final_path).await? {
                tracing::warn!(claim = %path, "void claim: its writer lost the temp file before renaming");
                continue;
            }
            out.committed_end = claim.last_offset;
            out.last_claim = Some(claim);
            break;
        }
        let dir = self.temp_dir(tp);
        let temps = match self
            .retry("list", &dir, || self.client.list_status(&dir, false))
            .await
        {
            Ok(l) => l,
            Err(HdfsError::FileNotFound(_)) => Vec::new(),
            Err(e) => return Err(Self::hdfs_err("list", &dir)(e)),
        };
        for t in temps {
            if Some(&t.path) == keep_temp.as_ref() || t.isdir {
                continue;
            }
            self.recover_lease(&t.path).await?;
            self.discard(&t.path).await?;
            out.temps_deleted += 1;
        }
        Ok(out)
    }

    /// Read-only view of the committed end (no roll-forward, no deletes), for `flumen offsets`.
    pub async fn committed_end(&self, tp: &TopicPartition) -> Result<Option<Claim>, CommitError> {
        for (_, _, path) in self.list_claims(tp).await?.iter().rev() {
            let claim = self.read_claim(path).await?;
            if self.exists(&claim.final_path).await? || self.exists(&claim.temp_path).await? {
                return Ok(Some(claim));
            }
        }
        Ok(None)
    }

    /// Partitions with any claim under the state directory, for the tools.
    pub async fn claimed_partitions(&self) -> Result<Vec<TopicPartition>, CommitError> {
        let root = format!("{}/claims", self.state_dir);
        let listing = match self
            .retry("list", &root, || self.client.list_status(&root, true))
            .await
        {
            Ok(l) => l,
            Err(HdfsError::FileNotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(Self::hdfs_err("list", &root)(e)),
        };
        let mut tps: Vec<TopicPartition> = listing
            .iter()
            .filter(|s| s.isdir)
            .filter_map(|s| {
                let rest = s.path.strip_prefix(&format!("{root}/"))?;
                let (topic, part) = rest.split_once('/')?;
                Some(TopicPartition::new(topic, part.parse().ok()?))
            })
            .collect();
        tps.sort();
        tps.dedup();
        Ok(tps)
    }
}
