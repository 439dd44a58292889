//! How many bytes one HDFS file writer has handed to hdfs-native and not had back, and a wait
//! that keeps them under a bound.
//!
//! hdfs-native does not copy what it writes: its packets are slices of our chunks, kept until
//! the DataNodes acknowledge them, up to 100 queued and 100 unacknowledged packets of 64 KiB
//! per writer (`WRITE_PACKET_BUFFER_LEN`, not configurable in 0.14). A slow pipeline could so
//! pin ~12.8 MB per open file. The window counts a chunk from the write that hands it over
//! until hdfs-native drops its last slice of it (the chunk's owner is dropped then), and the
//! writer waits before its next write while the count is over the bound. The wait is capped,
//! so a pipeline that stopped answering is still found out by hdfs-native's own write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

/// Bytes handed over and not yet released, per writer, before the next write waits: 16
/// packets of 64 KiB, more than one chunk (at most 272 KiB, whose tail can sit in a packet not
/// yet full, so not yet sent, until the next write) and room for acknowledgements in flight.
pub const UNACKED_BYTES_MAX: usize = 1 << 20;

/// The most one write hands over at once; a larger chunk goes as several writes. A chunk
/// counts until its last slice is dropped, and its tail can wait in a packet not yet full
/// until the next write: a chunk above [`UNACKED_BYTES_MAX`] (a Parquet row group of several
/// MB) kept the count over the bound, so that next write waited out its whole patience, 10 s
/// per row group, and /health said HDFS was unreachable meanwhile. Half the bound leaves
/// room for the previous piece's tail; the text formats' chunks (at most 272 KiB) stay whole.
pub const PIECE_BYTES_MAX: usize = UNACKED_BYTES_MAX / 2;

#[derive(Default)]
struct Shared {
    held: AtomicUsize,
    released: Notify,
}

/// One writer's count of bytes handed to hdfs-native and not released yet.
#[derive(Clone, Default)]
pub struct Window {
    shared: Arc<Shared>,
}

/// A chunk as hdfs-native sees it: released from the window when its last slice is dropped.
struct Held {
    bytes: Bytes,
    shared: Arc<Shared>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared
            .held
            .fetch_sub(self.bytes.len(), Ordering::AcqRel);
        self.shared.released.notify_waiters();
    }
}

impl Window {
    /// Bytes handed over and not released yet.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::Acquire)
    }

    /// The same bytes (no copy), counted until every slice of them is dropped.
    pub fn track(&self, bytes: Bytes) -> Bytes {
        self.shared.held.fetch_add(bytes.len(), Ordering::AcqRel);
        Bytes::from_owner(Held {
            bytes,
            shared: self.shared.clone(),
        })
    }

    /// Waits until at most `max` bytes are held, or `patience` has passed. True if the bound
    /// holds on return.
    pub async fn wait_within(&self, max: usize, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let released = self.shared.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait wakes it.
            released.as_mut().enable();
            if self.held() <= max {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.held() <= max;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chunk_is_held_until_its_last_slice_is_dropped() {
        let w = Window::default();
        let mut b = w.track(Bytes::from(vec![7u8; 1000]));
        assert_eq!(w.held(), 1000);
        let head = b.split_to(600);
        assert_eq!((&head[..3], b.len()), (&[7u8, 7, 7][..], 400));
        drop(b);
        assert_eq!(w.held(), 1000, "a slice still refers to the chunk");
        drop(head);
        assert_eq!(w.held(), 0);
    }

    #[tokio::test]
    async fn the_wait_ends_when_enough_is_released_or_when_patience_runs_out() {
        let w = Window::default();
        let a = w.track(Bytes::from(vec![0u8; 700]));
        let b = w.track(Bytes::from(vec![0u8; 700]));
        let waiter = tokio::spawn({
            let w = w.clone();
            async move { w.wait_within(1000, Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "1400 bytes held, bound 1000");
        drop(a);
        assert!(waiter.await.unwrap(), "700 held after the release");
        let t = std::time::Instant::now();
        assert!(!w.wait_within(100, Duration::from_millis(50)).await);
        assert!(t.elapsed() >= Duration::from_millis(50));
        drop(b);
        assert!(w.wait_within(0, Duration::ZERO).await);
    }
}
