//! Every HDFS call flumen makes goes through the [`Hdfs`] trait, so the commit protocol in
//! `commit/` is generic over it: production wraps hdfs-native ([`NativeHdfs`]), and the
//! deterministic simulation (`tests/sim.rs`) wraps an in-memory model with the same semantics.
//!
//! The contract every implementation keeps:
//! - a call either succeeds or returns a *final answer*: transient failures (NameNode down,
//!   DataNode busy, a timeout) are retried inside the implementation, forever, with a capped
//!   backoff. So a write call whose response was lost after the NameNode applied it comes back
//!   with the answer its retry got (`AlreadyExists` for a create or a rename onto an existing
//!   target, `FileNotFound` for a rename whose source is gone, `Ok(false)` for a delete);
//! - `create` never overwrites and creates missing parents;
//! - `rename` never overwrites (HDFS `rename2` without `OVERWRITE`), works on directories, and
//!   fails with `FileNotFound` when the source or the target's parent is missing;
//! - `list` of a missing directory is `FileNotFound`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdfs_native::file::FileWriter;
use hdfs_native::{Client, HdfsError, WriteOptions};

use crate::config::HdfsSettings;
use crate::hdfs_fault::{classify, Brief, Fault, FaultKind, Proof};
use crate::hdfs_window::{Window, PIECE_BYTES_MAX, UNACKED_BYTES_MAX};
use crate::health::Health;

/// An HDFS call slower than this marks HDFS unreachable on /health.
const SLOW_CALL: Duration = Duration::from_secs(10);
/// First retry delay for a transient error; doubles up to the configured maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// One directory entry: its full path and whether it is a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub is_dir: bool,
    pub length: u64,
}

impl Entry {
    /// The last path component.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// An open file being written. Dropping it without `close` leaves the lease with the
/// NameNode; whoever deletes the file fences the writer.
pub trait HdfsWriter: Send + 'static {
    fn write(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), HdfsError>> + Send;
    /// Flushes to every DataNode's disk.
    fn hsync(&mut self) -> impl Future<Output = Result<(), HdfsError>> + Send;
    /// Completes the file at the NameNode; after `Ok` the file is closed and its length final.
    fn close(&mut self) -> impl Future<Output = Result<(), HdfsError>> + Send;
}

/// The HDFS operations the commit protocol needs, with the semantics in the module doc.
pub trait Hdfs: Send + Sync + 'static {
    type Writer: HdfsWriter;
    fn create(&self, path: &str) -> impl Future<Output = Result<Self::Writer, HdfsError>> + Send;
    fn mkdirs(&self, path: &str) -> impl Future<Output = Result<(), HdfsError>> + Send;
    fn rename(&self, src: &str, dst: &str) -> impl Future<Output = Result<(), HdfsError>> + Send;
    fn delete(
        &self,
        path: &str,
        recursive: bool,
    ) -> impl Future<Output = Result<bool, HdfsError>> + Send;
    fn list(&self, dir: &str) -> impl Future<Output = Result<Vec<Entry>, HdfsError>> + Send;
    fn stat(&self, path: &str) -> impl Future<Output = Result<Entry, HdfsError>> + Send;
}

/// Errors worth retrying: the NameNode or a DataNode is unreachable or busy, or permissions are
/// wrong (an operator can fix them while we wait). Answers about the namespace are final.
pub fn is_transient(e: &HdfsError) -> bool {
    !matches!(
        e,
        HdfsError::AlreadyExists(_)
            | HdfsError::FileNotFound(_)
            | HdfsError::InvalidPath(_)
            | HdfsError::IsADirectoryError(_)
            | HdfsError::InvalidArgument(_)
    )
}

/// Whether `e` (normalized or not) is a final answer rather than a failure.
fn is_final_answer(e: &HdfsError) -> bool {
    match e {
        HdfsError::RPCError(exception, _) => exception.ends_with("FileNotFoundException"),
        other => !is_transient(other),
    }
}

/// hdfs-native maps `FileAlreadyExistsException` to `AlreadyExists` but passes
/// `FileNotFoundException` through as a generic RPC error; map it so "gone" is an answer, not a
/// reason to retry forever.
pub fn normalize(e: HdfsError) -> HdfsError {
    match e {
        HdfsError::RPCError(exception, msg) if exception.ends_with("FileNotFoundException") => {
            HdfsError::FileNotFound(msg)
        }
        other => other,
    }
}

/// Builds an hdfs-native client for `hdfs.url`: as `hdfs.user` when given, with the Kerberos
/// login and the Hadoop properties of the config.
pub fn connect(h: &HdfsSettings) -> Result<Client, HdfsError> {
    let mut b = hdfs_native::ClientBuilder::new()
        .with_url(&h.url)
        .with_config(h.properties.clone());
    if let Some(u) = &h.user {
        b = b.with_user(u);
    }
    if let Some(k) = &h.kerberos {
        b = crate::kerberos::Login::new(k).apply(b);
    }
    b.build()
}

/// The production [`Hdfs`]: hdfs-native, with retries, `/health` reporting and slow-call
/// warnings.
#[derive(Clone)]
pub struct NativeHdfs {
    client: Arc<Client>,
    backoff_max: Duration,
    health: Arc<Health>,
}

impl NativeHdfs {
    pub fn new(client: Arc<Client>, backoff_max: Duration, health: Arc<Health>) -> Self {
        Self {
            client,
            backoff_max,
            health,
        }
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The /health this client reports to.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Runs `op` until it succeeds or fails with a non-transient error, backing off
    /// exponentially up to `backoff_max`. Retries forever by design: an unreachable NameNode
    /// must stall the relay (the channel keeps the data), not crash it.
    pub async fn retry<T, F, Fut>(&self, what: &str, path: &str, mut op: F) -> Result<T, HdfsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HdfsError>>,
    {
        let mut backoff = BACKOFF_MIN;
        loop {
            match watch(&self.health, what, path, Proof::of_op(what), op())
                .await
                .map_err(normalize)
            {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) => {
                    crate::events::hdfs_retry(what, path, &e, backoff);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Records a failed call on /health (classified: a quota, safe mode, ...) and emits its event,
/// whose log line is rate-limited per kind.
fn failed(health: &Health, fault: Fault, what: &str, path: &str, error: &dyn std::fmt::Display) {
    let (kind, reason) = (fault.kind, fault.reason.clone());
    let line = health.hdfs_failed(fault, Instant::now());
    crate::events::hdfs_fault(kind, &reason, line, what, path, error);
}

/// Records a successful call: ends the faults it proves over (see `Proof`).
fn succeeded(health: &Health, proof: Option<Proof>) {
    let Some(proof) = proof else {
        return;
    };
    for (kind, reason, line) in health.hdfs_succeeded(proof, Instant::now()) {
        crate::events::hdfs_fault_cleared(kind, &reason, line);
    }
}

/// Awaits an HDFS call and reports its outcome to /health: a failure by its kind, a success as
/// the end of the faults `proof` says it disproves. If it has not answered after `SLOW_CALL`,
/// reports HDFS as unreachable (without cancelling the call: a write RPC cut short might still
/// commit) until it answers. The client itself keeps reconnecting underneath.
pub async fn watch<T>(
    health: &Health,
    what: &str,
    path: &str,
    proof: Option<Proof>,
    call: impl Future<Output = Result<T, HdfsError>>,
) -> Result<T, HdfsError> {
    // Boxed: HDFS call futures are large, and nesting them unboxed inside select! blew the
    // 2 MiB worker stack in debug builds.
    let mut call = Box::pin(call);
    let began = std::time::Instant::now();
    let mut slow = false;
    let r = tokio::select! {
        r = &mut call => r,
        _ = tokio::time::sleep(SLOW_CALL) => {
            let fault = Fault {
                kind: FaultKind::Unreachable,
                reason: format!(
                    "hdfs unreachable: {what} {path} has not answered for {} s",
                    SLOW_CALL.as_secs()
                ),
            };
            failed(health, fault, what, path, &"no answer yet; waiting");
            slow = true;
            call.await
        }
    };
    crate::events::hdfs_call(what, began.elapsed());
    match &r {
        // A slow call that answered ends the fault it reported, whatever else it proves.
        Ok(_) => succeeded(health, proof.or(slow.then_some(Proof::Answered))),
        // An answer about the namespace (exists, not found) is the protocol working.
        Err(e) if is_final_answer(e) => succeeded(health, Some(Proof::Answered)),
        Err(e) => failed(health, classify(what, path, e), what, path, &Brief(e)),
    }
    r
}

/// An hdfs-native file writer with slow-call reporting. Writes are not retried: a failed write
/// leaves the pipeline in an unknown state, so the caller abandons the file.
pub struct NativeWriter {
    inner: FileWriter,
    path: String,
    health: Arc<Health>,
    /// Bytes written without a failure; see `proof`.
    written: u64,
    failed: bool,
    /// What hdfs-native holds of our chunks until the DataNodes acknowledge it.
    unacked: Window,
}

impl NativeWriter {
    /// What a successful hsync or close proves: that blocks could be allocated and written,
    /// only if this file has data and none of its writes failed. Closing an abandoned writer
    /// (its block refused by a quota) succeeds too, and proves nothing.
    fn proof(&self) -> Option<Proof> {
        (self.written > 0 && !self.failed).then_some(Proof::BlockWritten)
    }

    fn note<T>(&mut self, r: &Result<T, HdfsError>) {
        self.failed |= r.is_err();
    }

    /// Writes one piece of at most `PIECE_BYTES_MAX` (see `hdfs_window`).
    async fn write_piece(&mut self, bytes: Bytes) -> Result<(), HdfsError> {
        let path = self.path.clone();
        let len = bytes.len() as u64;
        let (inner, unacked) = (&mut self.inner, &self.unacked);
        // Waits for acknowledgements first, so at most UNACKED_BYTES_MAX plus this piece are
        // pinned; a wait that long is a slow write on /health like any other.
        let write = async move {
            if !unacked.wait_within(UNACKED_BYTES_MAX, SLOW_CALL).await {
                crate::events::hdfs_write_window_expired();
            }
            inner.write_bytes(unacked.track(bytes)).await
        };
        let r = watch(&self.health, "write", &path, None, write).await;
        // The write woke the file's packet sender (an hdfs-native task on this runtime): until
        // the caller yields, the chunk's packets wait while it prepares the next one. Yielding
        // sends them now (the sink's time in writes halved, ARCHITECTURE.md).
        tokio::task::yield_now().await;
        self.note(&r);
        self.written += len;
        r.map(|_| ())
    }
}

impl HdfsWriter for NativeWriter {
    async fn write(&mut self, mut bytes: Bytes) -> Result<(), HdfsError> {
        while !bytes.is_empty() {
            let piece = bytes.split_to(bytes.len().min(PIECE_BYTES_MAX));
            self.write_piece(piece).await?;
        }
        Ok(())
    }
    async fn hsync(&mut self) -> Result<(), HdfsError> {
        let path = self.path.clone();
        let proof = self.proof();
        let r = watch(&self.health, "hsync", &path, proof, self.inner.hsync()).await;
        self.note(&r);
        r
    }
    async fn close(&mut self) -> Result<(), HdfsError> {
        let path = self.path.clone();
        let proof = self.proof();
        let r = watch(&self.health, "close", &path, proof, self.inner.close()).await;
        self.note(&r);
        r
    }
}

fn entry(s: hdfs_native::client::FileStatus) -> Entry {
    Entry {
        path: s.path,
        is_dir: s.isdir,
        length: s.length as u64,
    }
}

impl Hdfs for NativeHdfs {
    type Writer = NativeWriter;

    async fn create(&self, path: &str) -> Result<NativeWriter, HdfsError> {
        let opts = WriteOptions::default().overwrite(false).create_parent(true);
        let inner = self
            .retry("create", path, || self.client.create(path, opts.clone()))
            .await?;
        Ok(NativeWriter {
            inner,
            path: path.to_string(),
            health: self.health.clone(),
            written: 0,
            failed: false,
            unacked: Window::default(),
        })
    }

    async fn mkdirs(&self, path: &str) -> Result<(), HdfsError> {
        self.retry("mkdirs", path, || self.client.mkdirs(path, 0o755, true))
            .await
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<(), HdfsError> {
        self.retry("rename", src, || self.client.rename(src, dst, false))
            .await
    }

    async fn delete(&self, path: &str, recursive: bool) -> Result<bool, HdfsError> {
        match self
            .retry("delete", path, || self.client.delete(path, recursive))
            .await
        {
            Err(HdfsError::FileNotFound(_)) => Ok(false),
            other => other,
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>, HdfsError> {
        let listing = self
            .retry("list", dir, || self.client.list_status(dir, false))
            .await?;
        Ok(listing.into_iter().map(entry).collect())
    }

    async fn stat(&self, path: &str) -> Result<Entry, HdfsError> {
        let s = self
            .retry("stat", path, || self.client.get_file_info(path))
            .await?;
        Ok(Entry {
            path: path.to_string(),
            is_dir: s.isdir,
            length: s.length as u64,
        })
    }
}
