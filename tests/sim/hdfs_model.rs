//! In-memory HDFS with the semantics `flumen::hdfs` promises, plus seeded faults.
//!
//! - A namespace of directories and files keyed by absolute path; files are inodes, so an open
//!   file keeps its writer across a rename (the HDFS lease follows the inode).
//! - `create` never overwrites and makes parents; `rename` is rename2 without overwrite (source
//!   checked first, then the target's parent, then the target); `delete` of an open file fences
//!   its writer; `list` of a missing directory is `FileNotFound`.
//! - An open file shows its hsynced length; its bytes past that are lost if its lease is
//!   recovered (by `recover_lease`, legacy only, or by the hard limit after its writer died).
//! - Every call announces itself (`pending`), yields at least once, then applies atomically.
//!   With faults on, calls may yield many times (slow), lose their response after applying
//!   (the caller gets what a retry would get), writes may fail, and close may lag.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use flumen::hdfs::{Entry, Hdfs, HdfsWriter};
use hdfs_native::HdfsError;

use super::rng::Rng;

/// Returns Pending once, so the scheduler can run anyone else before we continue.
pub struct YieldNow(bool);
impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub on: bool,
    /// Per mille of calls that yield 2..=20 times instead of once.
    pub slow: u32,
    /// Per mille of applied mutating calls whose response is lost.
    pub lost: u32,
    /// Per mille of writes/hsyncs that fail (pipeline failure); the caller abandons the file.
    pub write_fail: u32,
    /// Per mille of closes that lag (several extra yields before completing).
    pub close_lag: u32,
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Debug, Clone)]
pub struct FileData {
    pub bytes: Vec<u8>,
    pub synced: usize,
    /// The lease holder (a writer id) while open.
    pub lease: Option<u64>,
    /// Model time the lease holder died (writer dropped unclosed).
    pub orphaned_at: Option<u64>,
    pub deleted: bool,
    /// Lease recovery that never completes (a stuck last block), for finding 9.
    pub stuck_recovery: bool,
}

/// A call announced by a client and not yet answered.
#[derive(Debug, Clone)]
pub struct PendingOp {
    pub seq: u64,
    pub kind: &'static str,
    pub path: String,
    pub dst: String,
}

pub struct State {
    nodes: BTreeMap<String, Node>,
    pub files: HashMap<u64, FileData>,
    next_id: u64,
    pub rng: Rng,
    pub faults: Faults,
    /// Model time, advanced by the executor once per poll.
    pub now: u64,
    /// Steps after which the lease of a dead writer's file expires (the hard limit).
    pub hard_limit: u64,
    pub pending: HashMap<u32, PendingOp>,
    op_seq: u64,
    /// Entries returned by `list`, per client (finding 10 counts them per commit).
    pub listed: HashMap<u32, u64>,
    /// Calls per client.
    pub calls: HashMap<u32, u64>,
    /// Open files whose writer is gone, waiting for the hard limit.
    pub orphans: Vec<u64>,
}

fn parent(p: &str) -> &str {
    match p.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((d, _)) => d,
    }
}

fn nf(p: &str) -> HdfsError {
    HdfsError::FileNotFound(p.to_string())
}

fn lease_lost(p: &str) -> HdfsError {
    HdfsError::RPCError(
        "org.apache.hadoop.hdfs.server.namenode.LeaseExpiredException".into(),
        format!("no lease on {p}"),
    )
}

impl State {
    pub fn new(seed: u64) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), Node::Dir);
        Self {
            nodes,
            files: HashMap::new(),
            next_id: 1,
            rng: Rng::new(seed),
            faults: Faults::default(),
            now: 0,
            hard_limit: 200,
            pending: HashMap::new(),
            op_seq: 0,
            listed: HashMap::new(),
            calls: HashMap::new(),
            orphans: Vec::new(),
        }
    }

    fn is_dir(&self, p: &str) -> bool {
        matches!(self.nodes.get(p), Some(Node::Dir))
    }

    pub fn exists(&self, p: &str) -> bool {
        self.nodes.contains_key(p)
    }

    pub fn mkdirs(&mut self, p: &str) -> Result<(), HdfsError> {
        if p == "/" {
            return Ok(());
        }
        match self.nodes.get(p) {
            Some(Node::Dir) => return Ok(()),
            Some(Node::File(_)) => return Err(HdfsError::AlreadyExists(p.into())),
            None => {}
        }
        self.mkdirs(parent(p))?;
        self.nodes.insert(p.to_string(), Node::Dir);
        Ok(())
    }

    /// Creates an open file; returns (inode, writer id).
    pub fn create(&mut self, p: &str) -> Result<(u64, u64), HdfsError> {
        if self.nodes.contains_key(p) {
            return Err(HdfsError::AlreadyExists(p.into()));
        }
        self.mkdirs(parent(p))?;
        let inode = self.next_id;
        let writer = self.next_id + 1;
        self.next_id += 2;
        self.nodes.insert(p.to_string(), Node::File(inode));
        self.files.insert(
            inode,
            FileData {
                bytes: Vec::new(),
                synced: 0,
                lease: Some(writer),
                orphaned_at: None,
                deleted: false,
                stuck_recovery: false,
            },
        );
        Ok((inode, writer))
    }

    /// A whole closed file in one step (the user's and the scenarios' own files).
    pub fn put(&mut self, p: &str, bytes: &[u8]) -> Result<(), HdfsError> {
        let (inode, _) = self.create(p)?;
        let f = self.files.get_mut(&inode).expect("created");
        f.bytes = bytes.to_vec();
        f.synced = bytes.len();
        f.lease = None;
        Ok(())
    }

    fn subtree(&self, p: &str) -> Vec<String> {
        let prefix = format!("{p}/");
        let mut v = vec![p.to_string()];
        v.extend(
            self.nodes
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        v
    }

    pub fn rename(&mut self, src: &str, dst: &str) -> Result<(), HdfsError> {
        if !self.nodes.contains_key(src) || src == "/" {
            return Err(nf(src));
        }
        if !self.is_dir(parent(dst)) {
            return Err(nf(dst));
        }
        if self.nodes.contains_key(dst) {
            return Err(HdfsError::AlreadyExists(dst.into()));
        }
        if dst.starts_with(&format!("{src}/")) {
            return Err(HdfsError::InvalidPath(dst.into()));
        }
        for k in self.subtree(src) {
            let node = self.nodes.remove(&k).expect("listed");
            let moved = format!("{dst}{}", &k[src.len()..]);
            self.nodes.insert(moved, node);
        }
        Ok(())
    }

    pub fn delete(&mut self, p: &str, recursive: bool) -> Result<bool, HdfsError> {
        if !self.nodes.contains_key(p) || p == "/" {
            return Ok(false);
        }
        let sub = self.subtree(p);
        if sub.len() > 1 && !recursive {
            return Err(HdfsError::InvalidArgument(format!(
                "{p} is a non-empty directory"
            )));
        }
        for k in sub {
            if let Some(Node::File(inode)) = self.nodes.remove(&k) {
                let f = self.files.get_mut(&inode).expect("inode");
                f.deleted = true;
                f.lease = None;
            }
        }
        Ok(true)
    }

    fn entry(&self, p: &str) -> Entry {
        match &self.nodes[p] {
            Node::Dir => Entry {
                path: p.to_string(),
                is_dir: true,
                length: 0,
            },
            Node::File(i) => {
                let f = &self.files[i];
                Entry {
                    path: p.to_string(),
                    is_dir: false,
                    length: f.visible().len() as u64,
                }
            }
        }
    }

    pub fn list(&self, dir: &str) -> Result<Vec<Entry>, HdfsError> {
        match self.nodes.get(dir) {
            None => Err(nf(dir)),
            Some(Node::File(_)) => Ok(vec![self.entry(dir)]),
            Some(Node::Dir) => {
                let prefix = if dir == "/" {
                    "/".to_string()
                } else {
                    format!("{dir}/")
                };
                Ok(self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter(|(k, _)| k.len() > prefix.len() && !k[prefix.len()..].contains('/'))
                    .map(|(k, _)| self.entry(k))
                    .collect())
            }
        }
    }

    pub fn stat(&self, p: &str) -> Result<Entry, HdfsError> {
        if !self.nodes.contains_key(p) {
            return Err(nf(p));
        }
        Ok(self.entry(p))
    }

    pub fn file_mut(&mut self, p: &str) -> Option<&mut FileData> {
        match self.nodes.get(p)? {
            Node::File(i) => self.files.get_mut(i),
            Node::Dir => None,
        }
    }

    /// Visible bytes: hsynced while open, everything once closed.
    pub fn read(&self, p: &str) -> Result<Vec<u8>, HdfsError> {
        match self.nodes.get(p) {
            None => Err(nf(p)),
            Some(Node::Dir) => Err(HdfsError::IsADirectoryError(p.into())),
            Some(Node::File(i)) => Ok(self.files[i].visible().to_vec()),
        }
    }

    /// HDFS recoverLease: true when the file is closed; otherwise starts recovery (which here
    /// completes at once unless the file's recovery is stuck), fences the writer, answers false.
    pub fn recover_lease(&mut self, p: &str) -> Result<bool, HdfsError> {
        let f = self.file_mut(p).ok_or_else(|| nf(p))?;
        if f.lease.is_none() {
            return Ok(true);
        }
        if !f.stuck_recovery {
            f.close_at_synced();
        }
        Ok(false)
    }

    /// Every file path (not directory) in the namespace, with its data.
    pub fn all_files(&self) -> Vec<(String, FileData)> {
        self.nodes
            .iter()
            .filter_map(|(k, n)| match n {
                Node::File(i) => Some((k.clone(), self.files[i].clone())),
                Node::Dir => None,
            })
            .collect()
    }

    pub fn all_paths(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Advances model time; expires the leases of dead writers past the hard limit.
    pub fn tick(&mut self) {
        self.now += 1;
        let now = self.now;
        let hard = self.hard_limit;
        if self.orphans.is_empty() {
            return;
        }
        let files = &mut self.files;
        self.orphans.retain(|i| {
            let f = files.get_mut(i).expect("inode");
            if f.lease.is_none() {
                return false;
            }
            if !f.stuck_recovery && f.orphaned_at.is_some_and(|t| t + hard <= now) {
                f.close_at_synced();
                return false;
            }
            true
        });
    }

    fn roll(&mut self, per_mille: u32) -> bool {
        self.faults.on && per_mille > 0 && self.rng.below(1000) < per_mille as u64
    }
}

impl FileData {
    pub fn visible(&self) -> &[u8] {
        if self.lease.is_some() {
            &self.bytes[..self.synced]
        } else {
            &self.bytes
        }
    }
    pub fn is_open(&self) -> bool {
        self.lease.is_some()
    }
    fn close_at_synced(&mut self) {
        self.bytes.truncate(self.synced);
        self.lease = None;
    }
}

/// One client's handle on the shared namespace.
#[derive(Clone)]
pub struct SimHdfs {
    pub st: Arc<Mutex<State>>,
    pub client: u32,
}

impl SimHdfs {
    pub fn new(seed: u64) -> Self {
        Self {
            st: Arc::new(Mutex::new(State::new(seed))),
            client: 0,
        }
    }

    /// Another client (its own pending-op slot and counters) on the same namespace.
    pub fn client(&self, client: u32) -> Self {
        Self {
            st: self.st.clone(),
            client,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().expect("model lock")
    }

    /// Announces a call, yields (once, or many times when slow), returns whether its response
    /// will be lost (decided now, applied by the caller after the mutation).
    async fn enter(&self, kind: &'static str, path: &str, dst: &str, extra_yields: u64) -> bool {
        let (yields, lost) = {
            let mut st = self.lock();
            st.op_seq += 1;
            let seq = st.op_seq;
            st.pending.insert(
                self.client,
                PendingOp {
                    seq,
                    kind,
                    path: path.to_string(),
                    dst: dst.to_string(),
                },
            );
            *st.calls.entry(self.client).or_default() += 1;
            let slow = st.faults.slow;
            let yields = if st.roll(slow) {
                2 + st.rng.below(19)
            } else {
                1
            };
            let lost_pm = st.faults.lost;
            (yields + extra_yields, st.roll(lost_pm))
        };
        for _ in 0..yields {
            yield_now().await;
        }
        lost
    }

    fn leave(&self) {
        self.lock().pending.remove(&self.client);
    }

    pub async fn read(&self, path: &str) -> Result<Vec<u8>, HdfsError> {
        self.enter("read", path, "", 0).await;
        let r = self.lock().read(path);
        self.leave();
        r
    }

    pub async fn recover_lease(&self, path: &str) -> Result<bool, HdfsError> {
        self.enter("recover_lease", path, "", 0).await;
        let r = self.lock().recover_lease(path);
        self.leave();
        r
    }
}

pub struct SimWriter {
    hdfs: SimHdfs,
    inode: u64,
    id: u64,
    path: String,
    closed: bool,
}

impl SimWriter {
    async fn op(&mut self, kind: &'static str, data: Option<Bytes>) -> Result<(), HdfsError> {
        let extra = if kind == "close" {
            let mut st = self.hdfs.lock();
            let lag = st.faults.close_lag;
            if st.roll(lag) {
                3 + st.rng.below(10)
            } else {
                0
            }
        } else {
            0
        };
        let path = self.path.clone();
        self.hdfs.enter(kind, &path, "", extra).await;
        let r = {
            let mut st = self.hdfs.lock();
            let wf = st.faults.write_fail;
            let fail = kind != "close" && st.roll(wf);
            let f = st.files.get_mut(&self.inode).expect("inode");
            if f.deleted || f.lease != Some(self.id) {
                Err(lease_lost(&path))
            } else if fail {
                Err(HdfsError::DataTransferError(format!(
                    "pipeline failed writing {path}"
                )))
            } else {
                match kind {
                    "write" => f.bytes.extend_from_slice(&data.expect("data")),
                    "hsync" => f.synced = f.bytes.len(),
                    _ => {
                        f.lease = None;
                        self.closed = true;
                    }
                }
                Ok(())
            }
        };
        self.hdfs.leave();
        r
    }
}

impl Drop for SimWriter {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(mut st) = self.hdfs.st.lock() {
            let now = st.now;
            if let Some(f) = st.files.get_mut(&self.inode) {
                if f.lease == Some(self.id) && f.orphaned_at.is_none() {
                    f.orphaned_at = Some(now);
                    st.orphans.push(self.inode);
                }
            }
        }
    }
}

impl HdfsWriter for SimWriter {
    async fn write(&mut self, bytes: Bytes) -> Result<(), HdfsError> {
        self.op("write", Some(bytes)).await
    }
    async fn hsync(&mut self) -> Result<(), HdfsError> {
        self.op("hsync", None).await
    }
    async fn close(&mut self) -> Result<(), HdfsError> {
        self.op("close", None).await
    }
}

impl Hdfs for SimHdfs {
    type Writer = SimWriter;

    async fn create(&self, path: &str) -> Result<SimWriter, HdfsError> {
        let lost = self.enter("create", path, "", 0).await;
        let r = {
            let mut st = self.lock();
            match st.create(path) {
                Ok((inode, id)) if lost => {
                    // Applied; the retry is answered AlreadyExists. Our client still holds the
                    // lease but no writer: it is orphaned from now on.
                    let now = st.now;
                    st.files.get_mut(&inode).expect("created").orphaned_at = Some(now);
                    st.orphans.push(inode);
                    let _ = id;
                    Err(HdfsError::AlreadyExists(path.into()))
                }
                Ok((inode, id)) => Ok(SimWriter {
                    hdfs: self.clone(),
                    inode,
                    id,
                    path: path.to_string(),
                    closed: false,
                }),
                Err(e) => Err(e),
            }
        };
        self.leave();
        r
    }

    async fn mkdirs(&self, path: &str) -> Result<(), HdfsError> {
        self.enter("mkdirs", path, "", 0).await;
        let r = self.lock().mkdirs(path);
        self.leave();
        r
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<(), HdfsError> {
        let lost = self.enter("rename", src, dst, 0).await;
        let r = match self.lock().rename(src, dst) {
            Ok(()) if lost => Err(nf(src)),
            other => other,
        };
        self.leave();
        r
    }

    async fn delete(&self, path: &str, recursive: bool) -> Result<bool, HdfsError> {
        let lost = self.enter("delete", path, "", 0).await;
        let r = match self.lock().delete(path, recursive) {
            Ok(true) if lost => Ok(false),
            other => other,
        };
        self.leave();
        r
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>, HdfsError> {
        self.enter("list", dir, "", 0).await;
        let r = {
            let mut st = self.lock();
            let r = st.list(dir);
            if let Ok(v) = &r {
                *st.listed.entry(self.client).or_default() += v.len() as u64;
            }
            r
        };
        self.leave();
        r
    }

    async fn stat(&self, path: &str) -> Result<Entry, HdfsError> {
        self.enter("stat", path, "", 0).await;
        let r = self.lock().stat(path);
        self.leave();
        r
    }
}
